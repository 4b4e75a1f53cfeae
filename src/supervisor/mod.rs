//! The core: one task owns the run table (invariant 6). The API, run tasks and drains talk to it
//! by messages (`Msg`); it never awaits while handling one, so no state is touched by two parties
//! and no lock is held across an await. `SupervisorHandle` is the API side of the queue.
mod core;
mod handle;
pub mod recover;
pub(crate) mod validate;

pub use self::core::{start, AgentUser, CoreSettings};
pub use self::handle::{
    restart_request, ApiError, CancelOutcome, KillOutcome, LogSource, Overrides, QueueFigures,
    Selector, SpawnRequest, SupervisorHandle,
};
pub use self::validate::{restart_policy, MAX_IDEMPOTENCY_KEY};

use tokio::sync::oneshot;

use crate::process::pidfd::ExitKind;
use crate::run::{KillReport, RunRecord, RunStatus};

/// Why a run is being ended, which decides its terminal status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndIntent {
    /// An operator's or orchestrator's kill: KILLED.
    Kill { reason: String },
    /// ForceComplete: the given outcome (SUCCEEDED or FAILED).
    Complete { outcome: RunStatus, reason: String },
    /// The daemon is stopping: KILLED.
    Shutdown,
    /// A stuck rule fired with action kill or restart, or the run's timeout passed: TIMED_OUT.
    TimedOut { reason: String, restart: bool },
    /// An operator's or orchestrator's Cancel (or a Kill of a queued run): CANCELLED.
    Cancel { reason: String },
}

/// A state change, as Watch streams it.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub run_id: String,
    pub at: i64,
    pub kind: &'static str,
    pub message: String,
    pub status: RunStatus,
    /// The whole run for state changes; heartbeat events carry only `heartbeat`, so a chatty
    /// agent costs each watcher a few words, not a copy of its run.
    pub run: Option<std::sync::Arc<RunRecord>>,
    /// (last_heartbeat_at, heartbeats) for heartbeat events.
    pub heartbeat: Option<(i64, u64)>,
}

/// Messages to the core.
#[derive(Debug)]
pub enum Msg {
    // From the API.
    Spawn {
        req: Box<SpawnRequest>,
        reply: oneshot::Sender<Result<RunRecord, ApiError>>,
    },
    Get {
        run_id: String,
        reply: oneshot::Sender<Result<RunRecord, ApiError>>,
    },
    /// Matching runs, newest first: at most `limit` (0: all), only older than `before` (a seq),
    /// and the seq to page on from when more match than were answered.
    List {
        filter: Selector,
        limit: usize,
        before: Option<u64>,
        reply: oneshot::Sender<(Vec<RunRecord>, Option<u64>)>,
    },
    /// End a queued run (CANCELLED, never started) or a live one (graceful kill, CANCELLED).
    Cancel {
        run_id: String,
        reason: String,
        reply: oneshot::Sender<Result<CancelOutcome, ApiError>>,
    },
    /// Pause or resume a queue, or change its limit live.
    UpdateQueue {
        queue: String,
        paused: Option<bool>,
        max_concurrent: Option<usize>,
        reply: oneshot::Sender<Result<QueueFigures, ApiError>>,
    },
    /// Figures per queue (the total is the caller's sum).
    QueueHealth {
        reply: oneshot::Sender<Vec<QueueFigures>>,
    },
    Kill {
        run_id: String,
        force: bool,
        grace: Option<std::time::Duration>,
        intent: EndIntent,
        reply: oneshot::Sender<Result<KillOutcome, ApiError>>,
    },
    Logs {
        run_id: String,
        reply: oneshot::Sender<Result<LogSource, ApiError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Remove finished runs: one by id, or every run of `status` that ended before `ended_before`.
    Purge {
        run_id: Option<String>,
        status: Option<RunStatus>,
        ended_before: i64,
        reply: oneshot::Sender<Result<Vec<String>, ApiError>>,
    },
    /// Live, total and queued run counts.
    Counts {
        reply: oneshot::Sender<(usize, usize, usize)>,
    },
    /// The workflow templates in force.
    Workflows {
        reply: oneshot::Sender<Vec<crate::config::Workflow>>,
    },
    /// Apply a re-read config: limits, timeouts and workflow templates change live.
    Reload {
        config: Box<crate::config::Config>,
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Test-only fault: block the core task forever (proves the watchdog restarts a wedged core).
    Wedge,
    // From run tasks and drains.
    Started {
        run_id: String,
        pid: i32,
        pgid: i32,
    },
    SpawnFailed {
        run_id: String,
        error: String,
    },
    /// The first record of a new run could not be written: the run is dropped, unless it has
    /// been started since (then its STARTING record decides).
    NotRecorded {
        run_id: String,
        error: crate::store::CommitError,
        /// The failed record was STARTING (else QUEUED).
        starting: bool,
        /// The spawn's reply, for a QUEUED record.
        reply: Option<oneshot::Sender<Result<RunRecord, ApiError>>>,
    },
    LeaderExited {
        run_id: String,
        exit: Option<ExitKind>,
    },
    /// Every process of the run is gone (its end is still being wrapped up): its slot is free.
    Vacated {
        run_id: String,
    },
    /// A run's heartbeats since the last report (from its own task, the pipe being quiet).
    Heartbeat(crate::run::beats::Beat),
    /// The busy heartbeat pipes' reports of one batch, from the heartbeat poller.
    Heartbeats(Vec<crate::run::beats::Beat>),
    /// An agent run's stdout progress changed.
    Agent {
        run_id: String,
        state: Box<crate::run::agent::AgentState>,
    },
    Ended {
        run_id: String,
        exit: Option<ExitKind>,
        report: KillReport,
    },
}
