//! Runs: the record the daemon keeps of each, the per-run task that owns the process, the kill
//! plan, and the output drains.
pub mod agent;
pub mod beats;
pub mod kill;
pub mod output;
pub mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The run lifecycle: `QUEUED -> STARTING -> RUNNING -> STOPPING -> terminal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Queued,
    Starting,
    Running,
    Stopping,
    Succeeded,
    Failed,
    Killed,
    Cancelled,
    TimedOut,
    Lost,
}

impl RunStatus {
    /// The statuses of a run not yet ended.
    pub const LIVE: [RunStatus; 4] = [
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Running,
        RunStatus::Stopping,
    ];
    /// The statuses a run ends in (see [`RunStatus::is_terminal`]).
    pub const FINISHED: [RunStatus; 6] = [
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Killed,
        RunStatus::Cancelled,
        RunStatus::TimedOut,
        RunStatus::Lost,
    ];

    /// Terminal states are final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Killed
                | RunStatus::Cancelled
                | RunStatus::TimedOut
                | RunStatus::Lost
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "QUEUED",
            RunStatus::Starting => "STARTING",
            RunStatus::Running => "RUNNING",
            RunStatus::Stopping => "STOPPING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
            RunStatus::Cancelled => "CANCELLED",
            RunStatus::TimedOut => "TIMED_OUT",
            RunStatus::Lost => "LOST",
        }
    }
}

/// What to run: everything needed to start it again on Restart.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signals: Vec<String>,
    pub grace: Duration,
    /// For runs started from a workflow template.
    pub agent: Option<agent::AgentSpec>,
    /// Queue, priority, dependencies, deadlines and restart policy.
    pub policy: crate::schedule::RunPolicy,
    /// Who started the run (kept by its restarts); None for runs from before owners existed.
    pub owner: Option<crate::access::RunOwner>,
}

/// Everything the daemon records of one run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    /// Fixed at spawn; shared, so a snapshot of the run (List, Watch) does not copy it.
    pub spec: std::sync::Arc<RunSpec>,
    pub status: RunStatus,
    pub pid: i32,
    pub pgid: i32,
    pub created_at: i64,
    pub started_at: i64,
    pub ended_at: i64,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub error: String,
    pub attempt: u32,
    pub restart_of: String,
    pub last_heartbeat_at: i64,
    pub heartbeats: u64,
    pub containment: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub end_reason: String,
    pub output_truncated: bool,
    pub logs_missing: bool,
    /// Progress of an agent run (workflow runs only).
    pub agent: Option<agent::AgentState>,
    /// Unix ms when the run was queued (0: it never waited).
    pub queued_at: i64,
    /// Unix ms when the running run will be timed out (0: no timeout, or not running).
    pub timeout_at: i64,
    /// For a QUEUED run: why it waits (the scheduler's words; not stored).
    pub waiting_reason: String,
    /// Restarts by policy in this run's chain before it (its place in the backoff).
    pub policy_restarts: u32,
    /// The run that restarted this one by policy, once there is one.
    pub restarted_as: String,
    /// What the run cost the host: live figures while it runs, the final ones once it ended
    /// (None for runs that never started, and runs of daemons from before usage was read).
    pub usage: Option<crate::usage::Usage>,
}

impl RunRecord {
    /// A new run of `spec`, QUEUED, created at `created_at`, attempt 1, every other field empty.
    pub fn new(run_id: String, spec: std::sync::Arc<RunSpec>, created_at: i64) -> RunRecord {
        RunRecord {
            run_id,
            spec,
            status: RunStatus::Queued,
            pid: 0,
            pgid: 0,
            created_at,
            started_at: 0,
            ended_at: 0,
            exit_code: None,
            signal: None,
            error: String::new(),
            attempt: 1,
            restart_of: String::new(),
            last_heartbeat_at: 0,
            heartbeats: 0,
            containment: String::new(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            end_reason: String::new(),
            output_truncated: false,
            logs_missing: false,
            agent: None,
            queued_at: 0,
            timeout_at: 0,
            waiting_reason: String::new(),
            policy_restarts: 0,
            restarted_as: String::new(),
            usage: None,
        }
    }

    /// A plain `true` run in `status` with every other field empty: the unit tests' fixture.
    #[cfg(test)]
    pub(crate) fn for_test(run_id: &str, status: RunStatus) -> RunRecord {
        let spec = RunSpec {
            argv: vec!["true".into()],
            cwd: "/".into(),
            env: Default::default(),
            labels: Default::default(),
            stop_signals: Vec::new(),
            grace: std::time::Duration::from_secs(1),
            agent: None,
            policy: Default::default(),
            owner: None,
        };
        RunRecord {
            status,
            ..RunRecord::new(run_id.into(), std::sync::Arc::new(spec), 0)
        }
    }
}

/// Which phase ended a kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillPhase {
    /// The stop signals sufficed.
    Term,
    /// KILL was needed or forced.
    Kill,
    /// Something outlived the KILL deadline.
    Survivors,
    /// The leader had exited on its own before the kill; what it left behind was ended.
    AlreadyExited,
    /// The run was still queued: it was cancelled and no process ever existed.
    NotStarted,
}

/// One cleanup step and how it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupStep {
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// A process that outlived the kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survivor {
    pub pid: i32,
    pub state: char,
    pub comm: String,
}

/// What a kill did, as the Kill response reports it.
#[derive(Debug, Clone)]
pub struct KillReport {
    pub phase: KillPhase,
    pub signals_sent: Vec<String>,
    pub started_at: i64,
    pub killed_at: i64,
    pub duration: Duration,
    pub survivors: Vec<Survivor>,
    pub cleanup: Vec<CleanupStep>,
    pub message: String,
}
