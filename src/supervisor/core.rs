//! The core task: the run table and the queue, kill bookkeeping (who waits for which kill, why
//! the run is ending) and the terminal status of each run. Handling a message never awaits.
//! Spawn validation is in `validate.rs`, the scheduling decision in `crate::schedule`; the
//! core's side of the queue (dispatch, cancel, timeouts, restarts by policy) in `queue.rs`.
mod queue;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::agent::health::{
    assess, next_deadline, Action, Health, HealthInput, RuleKind, StuckRules,
};
use crate::config::Config;
use crate::process::cgroup::Containment;
use crate::process::pidfd::ExitKind;
use crate::process::reaper::Reaper;
use crate::process::signals::signal_name_raw;
use crate::run::agent::AgentState;
use crate::run::beats::{Beat, Poller};
use crate::run::output::OutputProgress;
use crate::run::task::{describe_exit, Control};
use crate::run::{KillPhase, KillReport, RunRecord, RunStatus};
use crate::store::{AuditRecord, Batch, Caller, CommitError, LoadedRun, Store};
use crate::supervisor::handle::restart_request;
use crate::supervisor::handle::{ApiError, KillOutcome, LogSource, SpawnRequest};
use crate::supervisor::validate::Validator;
use crate::supervisor::{EndIntent, Msg, RunEvent, SupervisorHandle};
use crate::time::now_ms;
use crate::usage::UsageProbe;

/// What the core needs besides the config.
pub struct CoreSettings {
    pub config: Config,
    pub state_dir: PathBuf,
    pub default_cwd: PathBuf,
    pub containment: Containment,
    pub reaper: Reaper,
    pub store: Store,
    /// Runs of earlier daemons, already reconciled (none is live).
    pub history: Vec<LoadedRun>,
    /// Send `WATCHDOG=1` this often from the core's own loop (half of systemd's interval).
    pub watchdog: Option<Duration>,
    /// The unprivileged user agents run as, when configured.
    pub agent_user: Option<AgentUser>,
    /// Where run starts and ends are counted.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// The user agents run as: resolved once at start.
#[derive(Debug, Clone)]
pub struct AgentUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

struct Entry {
    seq: u64,
    record: RunRecord,
    control: Option<mpsc::UnboundedSender<Control>>,
    progress: watch::Receiver<OutputProgress>,
    intent: Option<EndIntent>,
    kill_sent: bool,
    force_sent: bool,
    exited_on_own: bool,
    spawn_reply: Option<oneshot::Sender<Result<RunRecord, ApiError>>>,
    /// The spawn call's audit record, written with the run's start (or its failure to start).
    /// Boxed: a queued run holds none, so it should not pay for one inline.
    spawn_audit: Option<Box<AuditRecord>>,
    kill_waiters: Vec<oneshot::Sender<Result<KillOutcome, ApiError>>>,
    /// Changed since last written (heartbeats are written in batches, not one by one).
    dirty: bool,
    /// Stuck rules that already raised an alert for this run.
    alerted: Vec<RuleKind>,
    /// Output byte counts as last written to the store (idle runs are not rewritten).
    written_bytes: (u64, u64),
    /// The run's resource usage, read by its run task (a fresh one for each start; runs that
    /// have not started share one that is never attached).
    usage: UsageProbe,
    /// Unix ms when its run task was launched (for the spawn latency).
    launched_at: i64,
    /// Its queue slot was given back when its last process was gone (`Msg::Vacated`), before
    /// its run task finished the bookkeeping.
    vacated: bool,
    /// Its QUEUED record is durable (set by the store's answer; true for runs loaded from the
    /// store). Such a run may start while its STARTING record is written (`start_run`).
    queued_on_record: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Where a queued run stands in the queue: priority first, then age.
type QueueKey = (std::cmp::Reverse<i32>, u64);

fn queue_key(e: &Entry) -> QueueKey {
    (std::cmp::Reverse(e.record.spec.policy.priority), e.seq)
}

struct Core {
    s: CoreSettings,
    tx: mpsc::Sender<Msg>,
    events: broadcast::Sender<RunEvent>,
    /// Boxed entries: the table's slots stay small, so its spare capacity costs little.
    runs: HashMap<String, Box<Entry>>,
    next_seq: u64,
    /// Runs started and not yet ended (their end recorded or on its way). The periodic work
    /// (the status line, the flush of heartbeats and output counts) walks these, never the
    /// whole table: with thousands of queued or finished runs, a walk of the table each second
    /// cost tens of milliseconds of the core's time.
    live: HashSet<String>,
    shutting_down: bool,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    /// Stuck-rule timers: when each agent run's earliest rule could fire.
    deadlines: BTreeSet<(i64, String)>,
    armed: HashMap<String, i64>,
    /// Runs in QUEUED, in the order they would start (priority, then age), and indexed.
    queued: queue::Queued,
    /// Slots held per queue and in all: live runs that still have a process (a run whose last
    /// process is gone gives its slot back before its end is recorded; `live` counts it until
    /// then, and a shutdown waits for that).
    live_by_queue: HashMap<String, usize>,
    occupied: usize,
    /// Queues paused by UpdateQueue, and live limits (until the next reload).
    paused: HashSet<String>,
    live_limits: HashMap<String, usize>,
    /// Idempotency key -> the run its first spawn made.
    idempotency: HashMap<String, String>,
    /// Run -> the run that restarted it (any restart: operator, stuck rule, policy).
    successors: HashMap<String, String>,
    /// Wall-clock timeouts of running runs.
    timeouts: BTreeSet<(i64, String)>,
    timeout_armed: HashMap<String, i64>,
    /// When the scheduler wants to plan again (a not_before, a queue deadline, an alert wait).
    sched_wake: Option<i64>,
    /// Something changed that the scheduler must see before the next message.
    dispatch_needed: bool,
    /// Dedup keys of alerts this core fired and has not resolved.
    firing: HashSet<String>,
    /// The progress of a run that has not started (shared by all queued runs).
    no_output: watch::Receiver<OutputProgress>,
    /// The usage probe of a run that has not started (shared; replaced at its start).
    no_usage: UsageProbe,
    /// Reads the busy heartbeat pipes of every run (see `run::beats`).
    beats: Poller,
}

type Done = Box<dyn FnOnce(Result<(), CommitError>) + Send>;

/// Turn a commit result into the API's answer: a failed commit is an internal error, a full
/// disk an exhausted resource.
fn committed<T>(r: Result<(), CommitError>, ok: T) -> Result<T, ApiError> {
    r.map(|()| ok).map_err(|e| {
        let m = format!("the change could not be recorded: {e}");
        match e.fault {
            crate::store::failing::Fault::Full => ApiError::ResourceExhausted(m),
            _ => ApiError::Internal(m),
        }
    })
}

/// The kill's answer: the report whatever the store did, with a warning when the run's end could
/// not be recorded yet (ending processes never depends on the disk).
fn kill_answer(r: &Result<(), CommitError>, report: &KillReport, run: &RunRecord) -> KillOutcome {
    let mut report = report.clone();
    let record_pending = r.as_ref().err().map(|e| {
        let warn = pending_warning(e);
        report.message = if report.message.is_empty() {
            warn
        } else {
            format!("{}; {warn}", report.message)
        };
        e.to_string()
    });
    KillOutcome {
        report,
        run: run.clone(),
        record_pending,
    }
}

/// The answer to a spawn whose run could not be recorded.
fn not_recorded(e: &CommitError) -> ApiError {
    let m = format!("the run could not be recorded, so it was not started: {e}");
    match e.fault {
        crate::store::failing::Fault::Full => ApiError::ResourceExhausted(m),
        _ => ApiError::Unavailable(m),
    }
}

fn pending_warning(e: &CommitError) -> String {
    format!(
        "warning: the run's end is not on record yet ({e}); the daemon keeps it and writes it once the store accepts writes again"
    )
}

/// Start the core task; returns the handle the API uses.
pub fn start(settings: CoreSettings) -> SupervisorHandle {
    let (tx, rx) = mpsc::channel(8192);
    let (events, _) = broadcast::channel(16384);
    let mut settings = settings;
    let history = std::mem::take(&mut settings.history);
    let mut core = Core {
        s: settings,
        tx: tx.clone(),
        events: events.clone(),
        runs: HashMap::new(),
        next_seq: 0,
        live: HashSet::new(),
        shutting_down: false,
        shutdown_waiters: Vec::new(),
        deadlines: BTreeSet::new(),
        armed: HashMap::new(),
        queued: queue::Queued::default(),
        live_by_queue: HashMap::new(),
        occupied: 0,
        paused: HashSet::new(),
        live_limits: HashMap::new(),
        idempotency: HashMap::new(),
        successors: HashMap::new(),
        timeouts: BTreeSet::new(),
        timeout_armed: HashMap::new(),
        sched_wake: None,
        dispatch_needed: false,
        firing: HashSet::new(),
        no_output: watch::channel(OutputProgress::default()).1,
        no_usage: UsageProbe::new(),
        beats: Poller::start(tx.clone()),
    };
    // A pause an operator set before a restart still holds.
    match core.s.store.paused_queues() {
        Ok(paused) => {
            if !paused.is_empty() {
                info!(queues = ?paused, "queues paused before the restart stay paused");
            }
            core.paused.extend(paused);
        }
        Err(e) => warn!(error = %e, "cannot read the paused queues; none is paused"),
    }
    // Alerts an earlier daemon left firing are resolved by this one once their condition is gone.
    if let Ok(open) = core
        .s
        .store
        .alerts_of_kinds(crate::schedule::QUEUE_ALERT_KINDS, i64::MAX)
    {
        core.firing.extend(
            open.into_iter()
                .map(|a| a.dedup_key)
                .filter(|k| !k.is_empty()),
        );
    }
    // No run of an earlier daemon is live: its stuck-run alerts are over.
    let over: Vec<String> = core
        .firing
        .iter()
        .filter(|k| k.starts_with("stuck:"))
        .cloned()
        .collect();
    if !over.is_empty() {
        core.firing.retain(|k| !k.starts_with("stuck:"));
        core.s.store.write(
            Batch {
                resolve: over,
                ..Batch::default()
            },
            None,
        );
    }
    for h in history {
        let r = &h.record;
        if r.status == RunStatus::Queued {
            core.queued.insert(
                (std::cmp::Reverse(r.spec.policy.priority), h.seq),
                r.run_id.clone(),
            );
        }
        if !r.restart_of.is_empty() {
            core.successors
                .insert(r.restart_of.clone(), r.run_id.clone());
        }
        if !r.restarted_as.is_empty() {
            core.successors
                .insert(r.run_id.clone(), r.restarted_as.clone());
        }
        if !r.spec.policy.idempotency_key.is_empty() {
            core.idempotency
                .insert(r.spec.policy.idempotency_key.clone(), r.run_id.clone());
        }
        core.next_seq = core.next_seq.max(h.seq);
        let done = OutputProgress {
            stdout: h.record.stdout_bytes,
            stderr: h.record.stderr_bytes,
            done: true,
            truncated: h.record.output_truncated,
        };
        let (_tx, progress) = watch::channel(done);
        core.runs.insert(
            h.record.run_id.clone(),
            Box::new(Entry {
                seq: h.seq,
                record: h.record,
                control: None,
                progress,
                intent: None,
                kill_sent: false,
                force_sent: false,
                exited_on_own: false,
                spawn_reply: None,
                spawn_audit: None,
                kill_waiters: Vec::new(),
                dirty: false,
                alerted: Vec::new(),
                written_bytes: (0, 0),
                usage: core.no_usage.clone(),
                launched_at: 0,
                vacated: false,
                queued_on_record: std::sync::Arc::new(true.into()),
            }),
        );
    }
    tokio::spawn(core.run(rx));
    SupervisorHandle { tx, events }
}

impl Core {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut flush = tokio::time::interval(Duration::from_secs(2));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The watchdog is fed from this loop: if the core wedges, the pings stop.
        let mut dog = tokio::time::interval(self.s.watchdog.unwrap_or(Duration::from_secs(3600)));
        dog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status_tick = tokio::time::interval(Duration::from_secs(1));
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = String::new();
        // What the earlier daemon left: LOST runs restarted by policy, queued runs started.
        self.restart_lost();
        self.dispatch();
        loop {
            // One timer for all stuck rules, run timeouts and the scheduler: the earliest.
            let next = [
                self.deadlines.first().map(|(at, _)| *at),
                self.timeouts.first().map(|(at, _)| *at),
                self.sched_wake,
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match next {
                    Some(at) => {
                        let wait = (at - now_ms()).max(0) as u64;
                        tokio::time::sleep(Duration::from_millis(wait)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => break,
                },
                _ = flush.tick() => self.flush_dirty(),
                _ = sleep => {
                    self.fire_due_rules();
                    self.fire_due_timeouts();
                    if self.sched_wake.is_some_and(|at| at <= now_ms()) {
                        self.sched_wake = None;
                        self.dispatch_needed = true;
                    }
                }
                _ = dog.tick(), if self.s.watchdog.is_some() => crate::systemd::watchdog(),
                _ = status_tick.tick() => {
                    let line = self.status_line();
                    if line != last_status {
                        crate::systemd::status(&line);
                        last_status = line;
                    }
                }
            }
            if self.dispatch_needed {
                self.dispatch_needed = false;
                self.dispatch();
            }
        }
        self.flush_dirty();
    }

    /// Write the run now; `done` runs once it is durable.
    fn persist(&mut self, run_id: &str, done: Option<Done>) {
        self.persist_with(run_id, Vec::new(), done)
    }

    /// Write the run now, and `audits` in the same commit; `done` runs once they are durable.
    fn persist_with(&mut self, run_id: &str, audits: Vec<AuditRecord>, done: Option<Done>) {
        let Some(e) = self.runs.get_mut(run_id) else {
            if let Some(d) = done {
                d(Ok(()));
            }
            return;
        };
        e.dirty = false;
        let rec = snapshot(e);
        e.written_bytes = (rec.stdout_bytes, rec.stderr_bytes);
        let batch = Batch {
            runs: vec![(e.seq, rec)],
            audits,
            ..Batch::default()
        };
        self.s.store.write(batch, done);
    }

    /// Write every run changed only by heartbeats or output since the last write.
    fn flush_dirty(&mut self) {
        let mut batch = Batch::default();
        // Only live runs are changed by heartbeats and output.
        for id in &self.live {
            let Some(e) = self.runs.get_mut(id) else {
                continue;
            };
            let p = *e.progress.borrow();
            let output_moved = e.control.is_some() && (p.stdout, p.stderr) != e.written_bytes;
            if e.dirty || output_moved {
                e.dirty = false;
                let rec = snapshot(e);
                e.written_bytes = (rec.stdout_bytes, rec.stderr_bytes);
                batch.runs.push((e.seq, rec));
            }
        }
        if !batch.is_empty() {
            self.s.store.write(batch, None);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Spawn { req, reply } => {
                self.spawn(*req, reply);
            }
            Msg::Cancel {
                run_id,
                reason,
                reply,
            } => self.cancel(run_id, reason, reply),
            Msg::UpdateQueue {
                queue,
                paused,
                max_concurrent,
                reply,
            } => self.update_queue(queue, paused, max_concurrent, reply),
            Msg::QueueHealth { reply } => {
                let _ = reply.send(self.queue_figures());
            }
            Msg::Get { run_id, reply } => {
                // A live run's usage is read now (a few small files), not as last sampled.
                let r = self
                    .runs
                    .get(&run_id)
                    .map(|e| {
                        if e.control.is_some() {
                            e.usage.sample();
                        }
                        self.shown(e)
                    })
                    .ok_or(ApiError::NotFound(run_id));
                let _ = reply.send(r);
            }
            Msg::List {
                filter,
                limit,
                before,
                reply,
            } => {
                // Filtered first, by reference; only the answered page is copied.
                let mut entries: Vec<&Entry> = self
                    .runs
                    .values()
                    .filter(|e| before.is_none_or(|b| e.seq < b) && filter.matches(&e.record))
                    .map(|e| &**e)
                    .collect();
                let more = limit > 0 && entries.len() > limit;
                if more {
                    entries.select_nth_unstable_by_key(limit, |e| std::cmp::Reverse(e.seq));
                    entries.truncate(limit);
                }
                entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
                let next = if more {
                    entries.last().map(|e| e.seq)
                } else {
                    None
                };
                let st = self.standing();
                let runs = entries.into_iter().map(|e| self.shown_in(e, &st)).collect();
                let _ = reply.send((runs, next));
            }
            Msg::Kill {
                run_id,
                force,
                grace,
                intent,
                reply,
            } => self.kill(run_id, force, grace, intent, reply),
            Msg::Logs { run_id, reply } => {
                let r = match self.runs.get(&run_id) {
                    Some(e) => Ok(LogSource {
                        dir: self.log_dir(&run_id),
                        progress: e.progress.clone(),
                        queued: e.record.status == RunStatus::Queued,
                    }),
                    None => Err(ApiError::NotFound(run_id)),
                };
                let _ = reply.send(r);
            }
            Msg::Shutdown { reply } => self.shutdown(reply),
            Msg::Purge {
                run_id,
                status,
                ended_before,
                reply,
            } => self.purge(run_id, status, ended_before, reply),
            Msg::Counts { reply } => {
                let _ = reply.send((self.live.len(), self.runs.len(), self.queued.len()));
            }
            Msg::Workflows { reply } => {
                let _ = reply.send(self.s.config.workflows.values().cloned().collect());
            }
            Msg::Reload { config, reply } => {
                let _ = reply.send(self.reload(*config));
            }
            Msg::Wedge => {
                warn!("test fault: wedging the core task");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            Msg::Started { run_id, pid, pgid } => {
                let Some(e) = self.runs.get_mut(&run_id) else {
                    return;
                };
                e.record.pid = pid;
                e.record.pgid = pgid;
                e.record.started_at = now_ms();
                if e.record.status == RunStatus::Starting {
                    e.record.status = RunStatus::Running;
                }
                self.arm_timeout(&run_id);
                // The stuck rules run from the start: an agent that never prints a line nor
                // writes a heartbeat is the stuck start init_timeout is for.
                self.arm_health(&run_id);
                let Some(e) = self.runs.get_mut(&run_id) else {
                    return;
                };
                let rec = snapshot(e);
                self.s
                    .metrics
                    .run_started(&rec, rec.started_at - e.launched_at);
                let reply = e.spawn_reply.take();
                let audits = spawn_audit_outcome(e.spawn_audit.take().map(|a| *a), &rec);
                let answer = rec.clone();
                let id = run_id.clone();
                self.persist_with(
                    &run_id,
                    audits,
                    Some(Box::new(move |r| {
                        // The store keeps the RUNNING record and writes it once it can.
                        if let Err(e) = r {
                            warn!(run_id = id, error = %e, "a started run's record is not written yet");
                        }
                    })),
                );
                // Answered now, not after the RUNNING commit: the run and the spawn's audit
                // record are on record already (STARTING is durable before the fork, and a
                // daemon that dies now recovers a STARTING run as it does a RUNNING one), and
                // its process runs, so the answer cannot be taken back.
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(answer));
                }
                self.emit(&run_id, "started", format!("pid {pid}"), rec);
            }
            Msg::SpawnFailed { run_id, error } => {
                let Some(e) = self.runs.get_mut(&run_id) else {
                    return;
                };
                e.record.status = RunStatus::Failed;
                e.record.error = error.clone();
                e.record.ended_at = now_ms();
                e.control = None;
                let rec = snapshot(e);
                let reply = e.spawn_reply.take();
                let audits = spawn_audit_outcome(e.spawn_audit.take().map(|a| *a), &rec);
                let waiters: Vec<_> = e.kill_waiters.drain(..).collect();
                let answer = rec.clone();
                let why = format!("run {run_id} never started: {error}");
                self.persist_with(
                    &run_id,
                    audits,
                    Some(Box::new(move |r| {
                        if let Some(reply) = reply {
                            let _ = reply.send(committed(r, answer));
                        }
                        for w in waiters {
                            let _ = w.send(Err(ApiError::FailedPrecondition(why.clone())));
                        }
                    })),
                );
                self.release_slot(&run_id);
                warn!(run_id, error, "run failed to start");
                self.emit(&run_id, "failed", error, rec);
                self.check_shutdown();
            }
            Msg::NotRecorded {
                run_id,
                error,
                starting,
                reply,
            } => self.drop_unrecorded(run_id, error, starting, reply),
            Msg::Vacated { run_id } => self.vacate_slot(&run_id),
            Msg::LeaderExited { run_id, exit } => {
                let Some(e) = self.runs.get_mut(&run_id) else {
                    return;
                };
                e.exited_on_own = true;
                e.record.status = RunStatus::Stopping;
                // Written with the next flush or, usually first, with the terminal state: after a
                // crash a STOPPING run and a RUNNING one are recovered the same way.
                e.dirty = true;
                let rec = snapshot(e);
                let what = exit.map(describe_exit).unwrap_or_else(|| "exited".into());
                self.emit(&run_id, "leader_exited", what, rec);
            }
            Msg::Agent { run_id, state } => self.agent_progress(run_id, *state),
            Msg::Heartbeat(beat) => self.heartbeat(beat),
            Msg::Heartbeats(beats) => {
                for beat in beats {
                    self.heartbeat(beat);
                }
            }
            Msg::Ended {
                run_id,
                exit,
                report,
            } => self.ended(run_id, exit, report),
        }
    }

    /// "3 running, 0 queued, 1 stuck": the line `systemctl status` shows.
    pub fn status_line(&self) -> String {
        let queued = self.queued.len();
        let mut running = 0;
        let mut stuck = 0;
        for e in self.live.iter().filter_map(|id| self.runs.get(id)) {
            if matches!(
                e.record.status,
                RunStatus::Starting | RunStatus::Running | RunStatus::Stopping
            ) {
                running += 1;
            }
            if !e.record.status.is_terminal()
                && e.record.agent.as_ref().is_some_and(|a| a.health == "STUCK")
            {
                stuck += 1;
            }
        }
        let mut line = format!("{running} running, {queued} queued, {stuck} stuck");
        if let Some(e) = self.s.store.write_failing() {
            line = format!("{line}; ALERT store_write_failing: {e}");
        }
        if self.shutting_down {
            line = format!("stopping: {line}");
        }
        line
    }

    /// Take what can change live from a re-read config; say what cannot.
    fn reload(&mut self, new: crate::config::Config) -> Vec<String> {
        let old = &self.s.config;
        let mut needs_restart = Vec::new();
        if new.socket != old.socket {
            needs_restart.push("daemon.socket".to_string());
        }
        if new.state_dir != old.state_dir {
            needs_restart.push("daemon.state_dir".to_string());
        }
        if new.listen != old.listen {
            needs_restart.push("daemon.listen".to_string());
        }
        if new.containment != old.containment || new.cgroup_root != old.cgroup_root {
            needs_restart.push("containment".to_string());
        }
        info!(
            max_live_runs = new.max_live_runs,
            grace_ms = new.grace.as_millis() as u64,
            workflows = new.workflows.len(),
            "config reloaded"
        );
        let keep_socket = old.socket.clone();
        let keep_state = old.state_dir.clone();
        let keep_listen = old.listen;
        let keep_cont = (old.containment, old.cgroup_root.clone());
        self.s.config = new;
        self.s.config.socket = keep_socket;
        self.s.config.state_dir = keep_state;
        self.s.config.listen = keep_listen;
        (self.s.config.containment, self.s.config.cgroup_root) = keep_cont;
        let ids: Vec<String> = self.armed.keys().cloned().collect();
        for id in ids {
            self.arm_health(&id);
        }
        // Live limit changes last until a reload; pauses stay (an incident's pause must not end
        // with an unrelated reload).
        self.live_limits.clear();
        self.dispatch_needed = true;
        needs_restart
    }

    /// The stuck rules of a run's workflow, if it has one.
    fn rules_for(&self, e: &Entry) -> Option<StuckRules> {
        let agent = e.record.spec.agent.as_ref()?;
        Some(
            self.s
                .config
                .workflows
                .get(&agent.workflow)
                .map(|w| w.rules)
                .unwrap_or_default(),
        )
    }

    fn health_input(e: &Entry, now: i64) -> HealthInput {
        let a = e.record.agent.clone().unwrap_or_default();
        HealthInput {
            started_at_ms: if e.record.started_at > 0 {
                e.record.started_at
            } else {
                e.record.created_at
            },
            now_ms: now,
            turns: a.turns,
            past_init: a.past_init,
            last_output_at: (a.last_output_at > 0).then_some(a.last_output_at),
            last_heartbeat_at: (e.record.last_heartbeat_at > 0)
                .then_some(e.record.last_heartbeat_at),
            api_retries: a.api_retries,
            pending_mcp_servers: a.pending_mcp_servers.clone(),
        }
    }

    /// Re-arm the run's stuck-rule timer after something changed, and refresh its health.
    fn arm_health(&mut self, run_id: &str) {
        if let Some(at) = self.armed.remove(run_id) {
            self.deadlines.remove(&(at, run_id.to_string()));
        }
        let Some(e) = self.runs.get(run_id) else {
            return;
        };
        if e.control.is_none() || e.record.status != RunStatus::Running {
            return;
        }
        let Some(rules) = self.rules_for(e) else {
            return;
        };
        let input = Self::health_input(e, now_ms());
        let health = assess(&rules, &input);
        let next = next_deadline(&rules, &input);
        let mut recovered = Vec::new();
        if let Some(e) = self.runs.get_mut(run_id) {
            if let Some(a) = e.record.agent.as_mut() {
                set_health(a, &health);
            }
            // A stuck run that shows signs of life again: its alerts resolve.
            if !matches!(health, Health::Stuck { .. }) && !e.alerted.is_empty() {
                recovered = e.alerted.drain(..).map(|r| stuck_key(run_id, r)).collect();
            }
        }
        self.resolve_alerts(recovered);
        if let Some(at) = next {
            self.deadlines.insert((at, run_id.to_string()));
            self.armed.insert(run_id.to_string(), at);
        }
    }

    /// A stuck-rule timer went off: judge the due runs and act.
    fn fire_due_rules(&mut self) {
        let now = now_ms();
        let due: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect();
        for id in due {
            if let Some(at) = self.armed.remove(&id) {
                self.deadlines.remove(&(at, id.clone()));
            }
            let Some(e) = self.runs.get(&id) else {
                continue;
            };
            let Some(rules) = self.rules_for(e) else {
                continue;
            };
            let health = assess(&rules, &Self::health_input(e, now));
            if let Health::Stuck {
                rule,
                action,
                reason,
            } = &health
            {
                self.act_on_stuck(&id, *rule, *action, reason.clone());
            }
            if let Some(e) = self.runs.get_mut(&id) {
                if let Some(a) = e.record.agent.as_mut() {
                    set_health(a, &health);
                }
            }
            self.arm_health(&id);
        }
    }

    fn act_on_stuck(&mut self, run_id: &str, rule: RuleKind, action: Action, reason: String) {
        let Some(e) = self.runs.get_mut(run_id) else {
            return;
        };
        if e.kill_sent {
            return;
        }
        let rec = snapshot(e);
        let audit = |what: &str, msg: String| {
            AuditRecord::new(
                Caller::Daemon,
                what,
                run_id,
                serde_json::json!({"rule": rule.as_str(), "action": action.as_str()}),
            )
            .outcome("ok", msg)
        };
        match action {
            Action::Alert => {
                if e.alerted.contains(&rule) {
                    return;
                }
                e.alerted.push(rule);
                warn!(
                    run_id,
                    rule = rule.as_str(),
                    reason,
                    "run is stuck (alert only)"
                );
                let mut labels = std::collections::BTreeMap::new();
                labels.insert("run_id".to_string(), run_id.to_string());
                labels.insert("rule".to_string(), rule.as_str().to_string());
                labels.insert("queue".to_string(), rec.spec.policy.queue.clone());
                if let Some(a) = &rec.spec.agent {
                    labels.insert("workflow".to_string(), a.workflow.clone());
                }
                let key = stuck_key(run_id, rule);
                self.firing.insert(key.clone());
                self.s.store.write(
                    Batch {
                        audits: vec![audit("stuck_alert", reason.clone())],
                        fire: vec![crate::store::AlertFire {
                            kind: "stuck_run".into(),
                            dedup_key: key,
                            message: format!("run {run_id} is stuck: {reason}"),
                            labels,
                        }],
                        ..Batch::default()
                    },
                    None,
                );
                self.emit(run_id, "stuck_alert", reason, rec);
            }
            Action::Kill | Action::Restart => {
                let restart = action == Action::Restart;
                warn!(
                    run_id,
                    rule = rule.as_str(),
                    action = action.as_str(),
                    reason,
                    "run is stuck; acting"
                );
                self.s.store.write(
                    Batch {
                        audits: vec![audit(
                            if restart {
                                "stuck_restart"
                            } else {
                                "stuck_kill"
                            },
                            reason.clone(),
                        )],
                        ..Batch::default()
                    },
                    None,
                );
                self.emit(run_id, "stuck", reason.clone(), rec);
                let (tx, _rx) = oneshot::channel();
                self.kill(
                    run_id.to_string(),
                    false,
                    None,
                    EndIntent::TimedOut { reason, restart },
                    tx,
                );
            }
        }
    }

    /// Heartbeats a run's reader reported: counted, its critical section noted, its health
    /// re-assessed, and an event for watchers.
    fn heartbeat(&mut self, beat: Beat) {
        let Beat {
            run_id,
            count,
            at,
            state,
        } = beat;
        let Some(e) = self.runs.get_mut(&run_id) else {
            return;
        };
        e.record.heartbeats += count;
        e.record.last_heartbeat_at = at;
        e.dirty = true;
        let critical_changed = match (e.record.agent.as_mut(), state) {
            (Some(a), Some(state)) => {
                let before = a.critical.clone();
                a.apply_heartbeats(&state);
                before != a.critical
            }
            _ => false,
        };
        if critical_changed {
            let what = e
                .record
                .agent
                .as_ref()
                .and_then(|a| a.critical.clone())
                .map(|c| format!("critical section {c} open"))
                .unwrap_or_else(|| "critical section closed".into());
            info!(run_id, what, "critical section");
        }
        let (status, beats) = (e.record.status, e.record.heartbeats);
        if e.record.agent.is_some() {
            self.arm_health(&run_id);
        }
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(RunEvent {
                run_id,
                at: now_ms(),
                kind: "heartbeat",
                message: String::new(),
                status,
                run: None,
                heartbeat: Some((at, beats)),
            });
        }
    }

    /// New stdout progress of an agent run.
    fn agent_progress(&mut self, run_id: String, state: AgentState) {
        let Some(e) = self.runs.get_mut(&run_id) else {
            return;
        };
        let Some(a) = e.record.agent.as_mut() else {
            return;
        };
        let turn = state.turns > a.turns;
        let started = a.phase != state.phase;
        let retry = state.api_retries > a.api_retries;
        // Keep what the heartbeat side and the health judge own.
        let keep = (
            a.health.clone(),
            a.health_reason.clone(),
            a.critical.clone(),
            a.heartbeat_message.clone(),
            a.heartbeat_progress,
            a.malformed_heartbeats,
        );
        *a = state;
        (
            a.health,
            a.health_reason,
            a.critical,
            a.heartbeat_message,
            a.heartbeat_progress,
            a.malformed_heartbeats,
        ) = keep;
        e.dirty = true;
        let rec = snapshot(e);
        self.arm_health(&run_id);
        let a = rec.agent.clone().unwrap_or_default();
        if retry {
            warn!(
                run_id,
                retries = a.api_retries,
                last = a.last_retry,
                "agent is retrying the API"
            );
            self.emit(&run_id, "api_retry", a.last_retry.clone(), rec);
        } else if started || turn {
            let what = format!("{} turn {} {}", a.phase, a.turns, a.current_tool);
            self.emit(&run_id, "progress", what.trim().to_string(), rec);
        } else if self.events.receiver_count() > 0 {
            self.emit(&run_id, "event", String::new(), rec);
        }
    }

    fn log_dir(&self, run_id: &str) -> PathBuf {
        self.s.state_dir.join("runs").join(run_id)
    }

    fn emit(&self, run_id: &str, kind: &'static str, message: String, run: RunRecord) {
        // Every path to a terminal status announces it as "ended" (or "failed" to start).
        if matches!(kind, "ended" | "failed") && run.status.is_terminal() {
            self.s.metrics.run_ended(&run);
        }
        let _ = self.events.send(RunEvent {
            run_id: run_id.to_string(),
            at: now_ms(),
            kind,
            message,
            status: run.status,
            run: Some(std::sync::Arc::new(run)),
            heartbeat: None,
        });
    }

    /// Admit a spawn: validate it, record the run QUEUED, and let the scheduler start it at
    /// once if it may. A run that stays queued is answered once its QUEUED record is durable; a
    /// started one once it runs (or failed to start). Returns the new run's id.
    fn spawn(
        &mut self,
        mut req: SpawnRequest,
        reply: oneshot::Sender<Result<RunRecord, ApiError>>,
    ) -> Option<String> {
        let spawn_audit = req.audit.take();
        if self.shutting_down {
            let _ = reply.send(Err(ApiError::Unavailable(
                "the daemon is shutting down".into(),
            )));
            return None;
        }
        if let Some(e) = self.s.store.write_failing() {
            // A run that cannot be recorded is not started (invariant 5): refused, nothing made.
            let _ = reply.send(Err(not_recorded(&e)));
            return None;
        }
        let now = now_ms();
        if !req.idempotency_key.is_empty() {
            if let Some(first) = self.idempotent_run(&req.idempotency_key, now) {
                // A retried call: the run the first call made, whatever became of it.
                info!(
                    run_id = first.run_id,
                    "spawn with a known idempotency key: returning its run"
                );
                let audits = spawn_audit
                    .map(|mut a| {
                        a.run_id = first.run_id.clone();
                        vec![a.outcome(
                            "ok",
                            format!(
                                "idempotency key seen before: returned the first run ({})",
                                first.status.as_str()
                            ),
                        )]
                    })
                    .unwrap_or_default();
                self.s.store.write(
                    Batch {
                        audits,
                        ..Batch::default()
                    },
                    Some(Box::new(move |r| {
                        let _ = reply.send(committed(r, first));
                    })),
                );
                return None;
            }
        }
        let spec = {
            let runs = &self.runs;
            let known = |id: &str| runs.contains_key(id);
            let v = Validator {
                config: &self.s.config,
                default_cwd: &self.s.default_cwd,
                known_run: &known,
                now_ms: now,
            };
            match v.validate(&req) {
                Ok(s) => s,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return None;
                }
            }
        };
        if let Some((old, _)) = &req.restart_of {
            // One successor per run: a retried Restart, or an operator's Restart racing the stuck
            // rule's or the policy's, must not start a second agent on the same work.
            if let Some(next) = self.successors.get(old).and_then(|id| self.runs.get(id)) {
                let _ = reply.send(Err(ApiError::FailedPrecondition(format!(
                    "run {old} was already restarted as {} (attempt {}, {}); restart that run instead",
                    next.record.run_id,
                    next.record.attempt,
                    next.record.status.as_str()
                ))));
                return None;
            }
        }
        let mut run_id = crate::ids::new_run_id();
        while self.runs.contains_key(&run_id) {
            run_id = crate::ids::new_run_id();
        }
        let (restart_of, attempt) = req.restart_of.clone().unwrap_or_default();
        let queue = spec.policy.queue.clone();
        let key = spec.policy.idempotency_key.clone();
        let record = RunRecord {
            attempt: attempt.max(1),
            restart_of: restart_of.clone(),
            containment: self.s.containment.name().to_string(),
            policy_restarts: req.policy_restarts,
            ..RunRecord::new(run_id.clone(), std::sync::Arc::new(spec), now)
        };
        self.next_seq += 1;
        self.runs.insert(
            run_id.clone(),
            Box::new(Entry {
                seq: self.next_seq,
                record,
                control: None,
                // No output yet: every queued run shares one channel until it starts.
                progress: self.no_output.clone(),
                intent: None,
                kill_sent: false,
                force_sent: false,
                exited_on_own: false,
                spawn_reply: Some(reply),
                spawn_audit: spawn_audit.map(Box::new),
                kill_waiters: Vec::new(),
                dirty: false,
                alerted: Vec::new(),
                written_bytes: (0, 0),
                usage: self.no_usage.clone(),
                launched_at: 0,
                vacated: false,
                queued_on_record: std::sync::Arc::default(),
            }),
        );
        if let Some(e) = self.runs.get(&run_id) {
            self.queued.insert(queue_key(e), run_id.clone());
        }
        if !restart_of.is_empty() {
            self.successors.insert(restart_of, run_id.clone());
        }
        if !key.is_empty() {
            self.idempotency.insert(key.clone(), run_id.clone());
        }
        self.dispatch();
        let Some(e) = self.runs.get_mut(&run_id) else {
            return Some(run_id);
        };
        if e.record.status != RunStatus::Queued || e.spawn_reply.is_none() {
            // Started (answered once it runs) or already ended (answered by that path).
            return Some(run_id);
        }
        let max_queued = self
            .s
            .config
            .queues
            .get(&queue)
            .map(|q| q.max_queued)
            .unwrap_or(0);
        // The others waiting in its queue (the last dispatch counted this run too).
        let waiting = self.queued.depth(&queue).saturating_sub(1);
        if waiting >= max_queued {
            // No room to wait: the run never existed.
            let e = self.runs.remove(&run_id);
            if let Some(e) = &e {
                self.queued.remove(&queue_key(e));
            }
            self.successors.retain(|_, v| v != &run_id);
            if !key.is_empty() {
                self.idempotency.remove(&key);
            }
            if let Some(reply) = e.and_then(|mut e| e.spawn_reply.take()) {
                let _ = reply.send(Err(ApiError::ResourceExhausted(format!(
                    "queue {queue} is full: {waiting} runs wait, its max_queued is {max_queued}"
                ))));
            }
            return None;
        }
        let e = self.runs.get_mut(&run_id)?;
        e.record.queued_at = e.record.created_at;
        let rec = self.shown(self.runs.get(&run_id)?);
        let e = self.runs.get_mut(&run_id)?;
        let reply = e.spawn_reply.take();
        let audits = e
            .spawn_audit
            .take()
            .map(|mut a| {
                a.run_id = run_id.clone();
                vec![a.outcome(
                    "ok",
                    format!("QUEUED in queue {queue}: {}", rec.waiting_reason),
                )]
            })
            .unwrap_or_default();
        let answer = rec.clone();
        let on_record = e.queued_on_record.clone();
        debug!(run_id, queue, reason = rec.waiting_reason, "queued");
        let rt = tokio::runtime::Handle::current();
        let core = self.tx.clone();
        let id = run_id.clone();
        self.persist_with(
            &run_id,
            audits,
            Some(Box::new(move |r| match r {
                Ok(()) => {
                    on_record.store(true, std::sync::atomic::Ordering::Release);
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(error) => {
                    // Its QUEUED record is not durable: the core drops the run (so it does not
                    // start later either) and answers.
                    rt.spawn(async move {
                        let msg = Msg::NotRecorded {
                            run_id: id,
                            error,
                            starting: false,
                            reply,
                        };
                        let _ = core.send(msg).await;
                    });
                }
            })),
        );
        self.emit(&run_id, "spawned", rec.waiting_reason.clone(), rec);
        Some(run_id)
    }

    fn kill(
        &mut self,
        run_id: String,
        force: bool,
        grace: Option<Duration>,
        intent: EndIntent,
        reply: oneshot::Sender<Result<KillOutcome, ApiError>>,
    ) {
        let Some(e) = self.runs.get_mut(&run_id) else {
            let _ = reply.send(Err(ApiError::NotFound(run_id)));
            return;
        };
        if e.record.status.is_terminal() {
            let _ = reply.send(Err(ApiError::FailedPrecondition(format!(
                "run {run_id} has already ended ({})",
                e.record.status.as_str()
            ))));
            return;
        }
        if e.record.status == RunStatus::Queued {
            // Nothing to kill: a queued run is cancelled, and its process never exists.
            let why = match &intent {
                EndIntent::Kill { reason } if reason.is_empty() => "cancelled by a kill".into(),
                EndIntent::Kill { reason } => format!("cancelled by a kill: {reason}"),
                EndIntent::Complete { reason, .. } => {
                    format!("cancelled by force-complete: {reason}")
                }
                EndIntent::Cancel { reason } | EndIntent::TimedOut { reason, .. } => reason.clone(),
                EndIntent::Shutdown => "daemon shutdown".into(),
            };
            e.kill_waiters.push(reply);
            self.end_queued(&run_id, why, Vec::new(), None);
            return;
        }
        let Some(control) = e.control.clone() else {
            let _ = reply.send(Err(ApiError::FailedPrecondition(format!(
                "run {run_id} is ending already"
            ))));
            return;
        };
        // The first reason wins, except that an operator's ForceComplete sets the outcome.
        match (&e.intent, &intent) {
            (None, EndIntent::Complete { .. })
            | (Some(EndIntent::Kill { .. }), EndIntent::Complete { .. }) => {
                e.intent = Some(intent.clone())
            }
            (None, _) if !e.exited_on_own => e.intent = Some(intent.clone()),
            _ => {}
        }
        e.kill_waiters.push(reply);
        if !e.kill_sent {
            e.kill_sent = true;
            e.force_sent = force;
            let _ = control.send(Control::Kill { force, grace });
            let why = match &intent {
                EndIntent::Kill { reason } | EndIntent::Complete { reason, .. } => reason.clone(),
                EndIntent::Shutdown => "daemon shutdown".into(),
                EndIntent::TimedOut { reason, .. } => reason.clone(),
                EndIntent::Cancel { reason } => reason.clone(),
            };
            if !e.exited_on_own {
                e.record.status = RunStatus::Stopping;
                // Committed with STOPPING, so that a daemon dying in the grace leaves on record
                // why the run was being stopped; the end of the run sets the final reason.
                e.record.end_reason = why.clone();
            }
            let rec = snapshot(e);
            info!(run_id, force, reason = why, "kill requested");
            self.persist(&run_id, None);
            self.emit(&run_id, "stopping", why, rec);
        } else if force && !e.force_sent {
            e.force_sent = true;
            let _ = control.send(Control::Escalate);
        }
    }

    fn ended(&mut self, run_id: String, exit: Option<ExitKind>, report: KillReport) {
        self.s.metrics.run_stopped(&report);
        let left_survivors = report.phase == KillPhase::Survivors;
        let Some(e) = self.runs.get_mut(&run_id) else {
            return;
        };
        let r = &mut e.record;
        match exit {
            Some(ExitKind::Code(c)) => r.exit_code = Some(c),
            Some(ExitKind::Signal(s)) => r.signal = Some(signal_name_raw(s)),
            None => {}
        }
        r.ended_at = now_ms();
        let from_exit = match exit {
            Some(ExitKind::Code(0)) => RunStatus::Succeeded,
            _ => RunStatus::Failed,
        };
        let (status, reason) = match &e.intent {
            Some(EndIntent::Kill { reason }) => (RunStatus::Killed, reason.clone()),
            Some(EndIntent::Shutdown) => (RunStatus::Killed, "daemon shutdown".to_string()),
            Some(EndIntent::TimedOut { reason, .. }) => (RunStatus::TimedOut, reason.clone()),
            Some(EndIntent::Cancel { reason }) => (RunStatus::Cancelled, reason.clone()),
            Some(EndIntent::Complete { outcome, reason }) => {
                (*outcome, format!("force-completed: {reason}"))
            }
            None => match r
                .agent
                .as_ref()
                .and_then(|a| a.failure_at_exit(matches!(exit, Some(ExitKind::Code(0)))))
            {
                // The agent's own account says it failed (see `failure_at_exit`).
                Some(f) => {
                    if r.error.is_empty() {
                        r.error = f;
                    }
                    (RunStatus::Failed, String::new())
                }
                None => (from_exit, String::new()),
            },
        };
        r.status = status;
        r.end_reason = reason;
        if status == RunStatus::TimedOut && r.error.is_empty() {
            r.error = r.end_reason.clone();
        }
        if let Some(a) = r.agent.as_mut() {
            a.current_tool.clear();
        }
        let restart_policy = matches!(&e.intent, Some(EndIntent::TimedOut { restart: true, .. }));
        // An operator's (or the daemon's own shutdown's) end of a run is never retried.
        let by_operator = matches!(
            &e.intent,
            Some(EndIntent::Kill { .. })
                | Some(EndIntent::Complete { .. })
                | Some(EndIntent::Shutdown)
                | Some(EndIntent::Cancel { .. })
        );
        let stuck_keys: Vec<String> = e
            .alerted
            .drain(..)
            .map(|rule| stuck_key(&run_id, rule))
            .collect();
        if r.error.is_empty() {
            if report.phase == KillPhase::Survivors {
                r.error = report.message.clone();
            } else if status == RunStatus::Failed && e.intent.is_none() {
                r.error = exit.map(describe_exit).unwrap_or_default();
            }
        }
        // The run task read the final figures before it removed the cgroup.
        if let Some(u) = e.usage.latest() {
            let limits = (self.s.config.memory_max_bytes, self.s.config.pids_max);
            if let Some(note) = crate::usage::end_note(&u, limits.0, limits.1) {
                r.error = if r.error.is_empty() {
                    note
                } else {
                    format!("{note} ({})", r.error)
                };
            }
            r.usage = Some(u);
        }
        e.control = None;
        let rec = snapshot(e);
        let waiters: Vec<_> = e.kill_waiters.drain(..).collect();
        let answer = rec.clone();
        self.persist(
            &run_id,
            Some(Box::new(move |r| {
                for w in waiters {
                    let _ = w.send(Ok(kill_answer(&r, &report, &answer)));
                }
            })),
        );
        self.release_slot(&run_id);
        if let Some(at) = self.armed.remove(&run_id) {
            self.deadlines.remove(&(at, run_id.clone()));
        }
        self.resolve_alerts(stuck_keys);
        if let Some(fire) = crate::alerts::end_alert(&rec, left_survivors) {
            self.s.store.write(
                Batch {
                    fire: vec![fire],
                    ..Batch::default()
                },
                None,
            );
        }
        info!(
            run_id,
            status = status.as_str(),
            exit = exit.map(describe_exit).unwrap_or_default(),
            "run finished"
        );
        self.emit(&run_id, "ended", status.as_str().to_string(), rec.clone());
        if !restart_policy && !self.shutting_down {
            self.apply_restart_policy(&run_id, by_operator);
        }
        if restart_policy && !self.shutting_down {
            // The stuck rule's action was restart: a new linked run, resuming the session.
            let (req, note) = restart_request(&rec, true);
            info!(run_id, note, "restarting a stuck run by policy");
            let (tx, rx) = oneshot::channel();
            self.spawn(req, tx);
            let store = self.s.store.clone();
            let old = run_id.clone();
            tokio::spawn(async move {
                let msg = match rx.await {
                    Ok(Ok(new)) => {
                        format!("new run {} (attempt {}): {note}", new.run_id, new.attempt)
                    }
                    Ok(Err(e)) => format!("restart refused: {e}"),
                    Err(_) => "restart abandoned: the daemon is stopping".into(),
                };
                let rec = AuditRecord::new(
                    Caller::Daemon,
                    "restart_by_policy",
                    &old,
                    serde_json::json!({"resume": true}),
                )
                .outcome("ok", msg);
                let _ = store.audit(rec).await;
            });
        }
        self.check_shutdown();
    }

    /// A new run whose first record could not be written: it is dropped, so that `ps`, the
    /// store and the spawn's answer agree that it never existed. The store forgets what it kept
    /// of the run for a retry, so it is not written later either; the API audits the refusal.
    fn drop_unrecorded(
        &mut self,
        run_id: String,
        error: CommitError,
        starting: bool,
        reply: Option<oneshot::Sender<Result<RunRecord, ApiError>>>,
    ) {
        let Some(e) = self.runs.get_mut(&run_id) else {
            if let Some(reply) = reply {
                let _ = reply.send(Err(not_recorded(&error)));
            }
            return;
        };
        let droppable = match e.record.status {
            RunStatus::Queued => !starting,
            // A failed STARTING record: the process was never started.
            RunStatus::Starting => starting,
            _ => false,
        };
        if !droppable {
            // Started since its QUEUED record failed: its STARTING record (kept behind the QUEUED
            // one) decides. Still starting: answered as that start is; past it: it is on record.
            if let Some(reply) = reply {
                if e.record.status == RunStatus::Starting && e.spawn_reply.is_none() {
                    e.spawn_reply = Some(reply);
                } else {
                    let _ = reply.send(Ok(snapshot(e)));
                }
            }
            return;
        }
        if let Some(reply) = reply {
            e.spawn_reply = Some(reply);
        }
        let was_live = e.record.status == RunStatus::Starting && e.control.is_some();
        if was_live {
            self.release_slot(&run_id);
        }
        let Some(mut e) = self.runs.remove(&run_id) else {
            return;
        };
        self.queued.remove(&queue_key(&e));
        self.wake_dependents(&run_id);
        if let Some(at) = self.armed.remove(&run_id) {
            self.deadlines.remove(&(at, run_id.clone()));
        }
        self.successors.retain(|_, v| v != &run_id);
        let key = &e.record.spec.policy.idempotency_key;
        if self.idempotency.get(key) == Some(&run_id) {
            self.idempotency.remove(key);
        }
        let answer = not_recorded(&error);
        warn!(run_id, error = %error, "a new run could not be recorded; dropped");
        if let Some(reply) = e.spawn_reply.take() {
            let _ = reply.send(Err(answer.clone()));
        }
        for w in e.kill_waiters.drain(..) {
            let _ = w.send(Err(ApiError::FailedPrecondition(format!(
                "run {run_id} never started: {answer}"
            ))));
        }
        self.s.store.write(
            Batch {
                forget: vec![run_id.clone()],
                ..Batch::default()
            },
            None,
        );
        let mut rec = snapshot(&e);
        rec.status = RunStatus::Failed;
        rec.error = answer.to_string();
        self.emit(&run_id, "failed", rec.error.clone(), rec);
        self.dispatch_needed = true;
        self.check_shutdown();
    }

    fn purge(
        &mut self,
        run_id: Option<String>,
        status: Option<RunStatus>,
        ended_before: i64,
        reply: oneshot::Sender<Result<Vec<String>, ApiError>>,
    ) {
        let ids: Vec<String> = match (&run_id, status) {
            (Some(id), _) => match self.runs.get(id) {
                None => {
                    let _ = reply.send(Err(ApiError::NotFound(id.clone())));
                    return;
                }
                Some(e) if !e.record.status.is_terminal() || e.control.is_some() => {
                    let _ = reply.send(Err(ApiError::FailedPrecondition(format!(
                        "run {id} is {}: kill it first, or purge with force",
                        e.record.status.as_str()
                    ))));
                    return;
                }
                Some(_) => vec![id.clone()],
            },
            (None, Some(st)) => self
                .runs
                .iter()
                .filter(|(_, e)| {
                    e.record.status == st && e.control.is_none() && e.record.ended_at < ended_before
                })
                .map(|(id, _)| id.clone())
                .collect(),
            (None, None) => {
                let _ = reply.send(Err(ApiError::invalid(
                    "status",
                    "a status (or a run_id) is required; there is no purge-everything",
                )));
                return;
            }
        };
        for id in &ids {
            if let Some(e) = self.runs.remove(id) {
                let key = &e.record.spec.policy.idempotency_key;
                if self.idempotency.get(key) == Some(id) {
                    self.idempotency.remove(key);
                }
            }
        }
        // Dependents of a purged run see it as missing; a purged successor keeps its link.
        self.queued.recheck_all();
        self.dispatch_needed = true;
        let dirs: Vec<PathBuf> = ids.iter().map(|id| self.log_dir(id)).collect();
        let answer = ids.clone();
        info!(count = ids.len(), "purging runs");
        self.s.store.write(
            Batch {
                deletes: ids,
                ..Batch::default()
            },
            Some(Box::new(move |r| {
                if r.is_ok() {
                    for d in dirs {
                        if let Err(e) = std::fs::remove_dir_all(&d) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                warn!(dir = %d.display(), error = %e, "cannot remove purged run's logs");
                            }
                        }
                    }
                }
                let _ = reply.send(committed(r, answer));
            })),
        );
    }

    fn shutdown(&mut self, reply: oneshot::Sender<()>) {
        self.shutting_down = true;
        self.shutdown_waiters.push(reply);
        // Queued runs stay queued, on record, for the next start.
        let live: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, e)| !e.record.status.is_terminal() && e.record.status != RunStatus::Queued)
            .map(|(id, _)| id.clone())
            .collect();
        info!(
            live = live.len(),
            queued = self.queued.len(),
            "shutting down: ending every live run"
        );
        for id in live {
            let (tx, _rx) = oneshot::channel();
            self.kill(id, false, None, EndIntent::Shutdown, tx);
        }
        self.check_shutdown();
    }

    fn check_shutdown(&mut self) {
        if self.shutting_down && self.live.is_empty() {
            for w in self.shutdown_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

/// The dedup key of a stuck-rule alert.
fn stuck_key(run_id: &str, rule: RuleKind) -> String {
    format!("stuck:{run_id}:{}", rule.as_str())
}

/// The record with the output counters as of now.
fn snapshot(e: &Entry) -> RunRecord {
    let mut r = e.record.clone();
    if e.control.is_some() || !r.status.is_terminal() || r.stdout_bytes == 0 {
        let p = *e.progress.borrow();
        r.stdout_bytes = r.stdout_bytes.max(p.stdout);
        r.stderr_bytes = r.stderr_bytes.max(p.stderr);
        r.output_truncated |= p.truncated;
    }
    if e.control.is_some() {
        if let Some(u) = e.usage.latest() {
            r.usage = Some(u);
        }
    }
    r
}

fn set_health(a: &mut AgentState, h: &Health) {
    let (health, reason) = match h {
        Health::Ok => ("OK", String::new()),
        Health::Slow { reason } => ("SLOW", reason.clone()),
        Health::Stuck { reason, .. } => ("STUCK", reason.clone()),
    };
    a.health = health.to_string();
    a.health_reason = reason;
}

/// The spawn call's audit record, completed with what became of the run.
fn spawn_audit_outcome(audit: Option<AuditRecord>, run: &RunRecord) -> Vec<AuditRecord> {
    audit
        .map(|mut a| {
            a.run_id = run.run_id.clone();
            vec![a.outcome("ok", format!("{} pid {}", run.status.as_str(), run.pid))]
        })
        .unwrap_or_default()
}
