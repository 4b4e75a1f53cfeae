//! The core task: the run table, spawn validation, kill bookkeeping (who waits for which kill,
//! why the run is ending) and the terminal status of each run. Handling a message never awaits.
use std::collections::{BTreeSet, HashMap};
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
use crate::process::signals::{parse_signal, signal_name_raw};
use crate::process::spawn::HEARTBEAT_FD;
use crate::run::agent::{AgentSpec, AgentState};
use crate::run::output::OutputProgress;
use crate::run::task::{self, describe_exit, Control, RunContext};
use crate::run::{KillPhase, KillReport, RunRecord, RunSpec, RunStatus};
use crate::store::{AuditRecord, Batch, Caller, LoadedRun, Store};
use crate::supervisor::handle::restart_request;
use crate::supervisor::handle::{ApiError, KillOutcome, LogSource, SpawnRequest};
use crate::supervisor::{EndIntent, Msg, RunEvent, SupervisorHandle};
use crate::time::now_ms;

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
    spawn_audit: Option<AuditRecord>,
    kill_waiters: Vec<oneshot::Sender<Result<KillOutcome, ApiError>>>,
    /// Changed since last written (heartbeats are written in batches, not one by one).
    dirty: bool,
    /// Stuck rules that already raised an alert for this run.
    alerted: Vec<RuleKind>,
    /// Output byte counts as last written to the store (idle runs are not rewritten).
    written_bytes: (u64, u64),
}

struct Core {
    s: CoreSettings,
    tx: mpsc::Sender<Msg>,
    events: broadcast::Sender<RunEvent>,
    runs: HashMap<String, Entry>,
    next_seq: u64,
    live: usize,
    shutting_down: bool,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    /// Stuck-rule timers: when each agent run's earliest rule could fire.
    deadlines: BTreeSet<(i64, String)>,
    armed: HashMap<String, i64>,
}

type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Turn a commit result into the API's answer: a failed commit is an internal error.
fn committed<T>(r: Result<(), String>, ok: T) -> Result<T, ApiError> {
    r.map(|()| ok)
        .map_err(|e| ApiError::Internal(format!("the change could not be recorded: {e}")))
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
        live: 0,
        shutting_down: false,
        shutdown_waiters: Vec::new(),
        deadlines: BTreeSet::new(),
        armed: HashMap::new(),
    };
    for h in history {
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
            Entry {
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
            },
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
        loop {
            // One timer for all stuck rules: the earliest deadline of any run.
            let next = self.deadlines.first().map(|(at, _)| *at);
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
                _ = sleep => self.fire_due_rules(),
                _ = dog.tick(), if self.s.watchdog.is_some() => crate::systemd::watchdog(),
                _ = status_tick.tick() => {
                    let line = self.status_line();
                    if line != last_status {
                        crate::systemd::status(&line);
                        last_status = line;
                    }
                }
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
        for e in self.runs.values_mut() {
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
            Msg::Spawn { req, reply } => self.spawn(req, reply),
            Msg::Get { run_id, reply } => {
                let r = self
                    .runs
                    .get(&run_id)
                    .map(snapshot)
                    .ok_or(ApiError::NotFound(run_id));
                let _ = reply.send(r);
            }
            Msg::List {
                statuses,
                limit,
                reply,
            } => {
                let mut entries: Vec<&Entry> = self
                    .runs
                    .values()
                    .filter(|e| statuses.is_empty() || statuses.contains(&e.record.status))
                    .collect();
                entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
                if limit > 0 {
                    entries.truncate(limit);
                }
                let _ = reply.send(entries.into_iter().map(snapshot).collect());
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
                let _ = reply.send((self.live, self.runs.len()));
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
                let rec = snapshot(e);
                let reply = e.spawn_reply.take();
                let audits = spawn_audit_outcome(e.spawn_audit.take(), &rec);
                let answer = rec.clone();
                self.persist_with(
                    &run_id,
                    audits,
                    Some(Box::new(move |r| {
                        if let Some(reply) = reply {
                            let _ = reply.send(committed(r, answer));
                        }
                    })),
                );
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
                let audits = spawn_audit_outcome(e.spawn_audit.take(), &rec);
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
                self.live -= 1;
                warn!(run_id, error, "run failed to start");
                self.emit(&run_id, "failed", error, rec);
                self.check_shutdown();
            }
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
            Msg::Heartbeat {
                run_id,
                count,
                at,
                state,
            } => {
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
                        run_id: run_id.clone(),
                        at: now_ms(),
                        kind: "heartbeat",
                        message: String::new(),
                        status,
                        run: None,
                        heartbeat: Some((at, beats)),
                    });
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
        let mut running = 0;
        let mut queued = 0;
        let mut stuck = 0;
        for e in self.runs.values() {
            match e.record.status {
                RunStatus::Queued => queued += 1,
                RunStatus::Starting | RunStatus::Running | RunStatus::Stopping => running += 1,
                _ => {}
            }
            if !e.record.status.is_terminal()
                && e.record.agent.as_ref().is_some_and(|a| a.health == "STUCK")
            {
                stuck += 1;
            }
        }
        let mut line = format!("{running} running, {queued} queued, {stuck} stuck");
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
        if let Some(e) = self.runs.get_mut(run_id) {
            if let Some(a) = e.record.agent.as_mut() {
                set_health(a, &health);
            }
        }
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
                self.s.store.write(
                    Batch {
                        audits: vec![audit("stuck_alert", reason.clone())],
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

    fn spawn(
        &mut self,
        mut req: SpawnRequest,
        reply: oneshot::Sender<Result<RunRecord, ApiError>>,
    ) {
        let spawn_audit = req.audit.take();
        if self.shutting_down {
            let _ = reply.send(Err(ApiError::Unavailable(
                "the daemon is shutting down".into(),
            )));
            return;
        }
        let spec = match self.validate(&req) {
            Ok(s) => RunSpec {
                owner: req.owner.clone(),
                ..s
            },
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if self.live >= self.s.config.max_live_runs {
            let _ = reply.send(Err(ApiError::ResourceExhausted(format!(
                "{} runs are live, the configured maximum (runs.max_live_runs)",
                self.live
            ))));
            return;
        }
        if let Some((old, _)) = &req.restart_of {
            // One successor per run: a retried Restart, or an operator's Restart racing the stuck
            // rule's, must not start a second agent on the same work.
            if let Some(next) = self.runs.values().find(|e| &e.record.restart_of == old) {
                let _ = reply.send(Err(ApiError::FailedPrecondition(format!(
                    "run {old} was already restarted as {} (attempt {}, {}); restart that run instead",
                    next.record.run_id,
                    next.record.attempt,
                    next.record.status.as_str()
                ))));
                return;
            }
        }
        let mut run_id = crate::ids::new_run_id();
        while self.runs.contains_key(&run_id) {
            run_id = crate::ids::new_run_id();
        }
        let (restart_of, attempt) = req.restart_of.clone().unwrap_or_default();
        let record = RunRecord {
            run_id: run_id.clone(),
            spec: std::sync::Arc::new(spec.clone()),
            status: RunStatus::Starting,
            pid: 0,
            pgid: 0,
            created_at: now_ms(),
            started_at: 0,
            ended_at: 0,
            exit_code: None,
            signal: None,
            error: String::new(),
            attempt: attempt.max(1),
            restart_of,
            last_heartbeat_at: 0,
            heartbeats: 0,
            containment: self.s.containment.name().to_string(),
            stdout_bytes: 0,
            stderr_bytes: 0,
            end_reason: String::new(),
            output_truncated: false,
            logs_missing: false,
            agent: spec.agent.as_ref().map(|_| AgentState {
                phase: "STARTING".into(),
                health: "OK".into(),
                ..AgentState::default()
            }),
        };
        let mut child_env = crate::process::spawn::base_env();
        if let Some(u) = &self.s.agent_user {
            child_env.insert("HOME".into(), u.home.display().to_string());
            child_env.insert("USER".into(), u.name.clone());
            child_env.insert("LOGNAME".into(), u.name.clone());
        }
        if let Some(wf) = spec
            .agent
            .as_ref()
            .and_then(|a| self.s.config.workflows.get(&a.workflow))
        {
            child_env.extend(wf.env.clone());
        }
        child_env.extend(spec.env.clone());
        child_env.insert("WF_RUN_ID".into(), run_id.clone());
        child_env.insert("WF_HEARTBEAT_FD".into(), HEARTBEAT_FD.to_string());
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress_rx) = watch::channel(OutputProgress::default());
        let spec_has_agent = spec.agent.is_some();
        let critical_graces = spec
            .agent
            .as_ref()
            .and_then(|a| self.s.config.workflows.get(&a.workflow))
            .map(|w| w.critical)
            .unwrap_or_default();
        let ctx = RunContext {
            run_id: run_id.clone(),
            spec,
            child_env,
            log_dir: self.log_dir(&run_id),
            containment: self.s.containment.clone(),
            reaper: self.s.reaper.clone(),
            kill_deadline: self.s.config.kill_deadline,
            core: self.tx.clone(),
            control: control_rx,
            progress: progress_tx,
            uid_gid: self.s.agent_user.as_ref().map(|u| (u.uid, u.gid)),
            limits: (self.s.config.memory_max_bytes, self.s.config.pids_max),
            spawn_method: self.s.config.spawn_method,
            log_cap: self.s.config.log_max_bytes_per_stream,
            agent_stdout: spec_has_agent,
            max_line_bytes: self.s.config.max_line_bytes,
            critical_graces,
        };
        self.next_seq += 1;
        self.live += 1;
        debug!(run_id, argv = ?record.spec.argv, attempt = record.attempt, "spawning");
        self.emit(&run_id, "spawned", String::new(), record.clone());
        let record_id = run_id.clone();
        self.runs.insert(
            run_id,
            Entry {
                seq: self.next_seq,
                record,
                control: Some(control_tx),
                progress: progress_rx,
                intent: None,
                kill_sent: false,
                force_sent: false,
                exited_on_own: false,
                spawn_reply: Some(reply),
                spawn_audit,
                kill_waiters: Vec::new(),
                dirty: false,
                alerted: Vec::new(),
                written_bytes: (0, 0),
            },
        );
        // Fork only once the run is on record: a daemon killed in between must not leave an
        // agent that no later daemon knows about.
        let rt = tokio::runtime::Handle::current();
        let core = self.tx.clone();
        let key = record_id.clone();
        self.persist(
            &key,
            Some(Box::new(move |r| match r {
                Ok(()) => {
                    rt.spawn(task::run(ctx));
                }
                Err(e) => {
                    rt.spawn(async move {
                        let msg = Msg::SpawnFailed {
                            run_id: record_id,
                            error: format!(
                                "the run could not be recorded, so it was not started: {e}"
                            ),
                        };
                        let _ = core.send(msg).await;
                    });
                }
            })),
        );
    }

    fn validate(&self, req: &SpawnRequest) -> Result<RunSpec, ApiError> {
        if !req.workflow.is_empty() {
            return self.validate_workflow(req);
        }
        if !req.prompt.is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                "a prompt goes with a workflow; name one",
            ));
        }
        if req.argv.is_empty() {
            return Err(ApiError::invalid("argv", "must name a program to run"));
        }
        if req.argv[0].is_empty() {
            return Err(ApiError::invalid("argv", "argv[0] (the program) is empty"));
        }
        if let Some(i) = req.argv.iter().position(|a| a.contains('\0')) {
            return Err(ApiError::invalid(
                "argv",
                format!("argv[{i}] contains a NUL byte"),
            ));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("{k:?} is not a valid variable name"),
                ));
            }
            if v.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("the value of {k} contains a NUL byte"),
                ));
            }
            if k == "WF_RUN_ID" || k == "WF_HEARTBEAT_FD" {
                return Err(ApiError::invalid(
                    "env",
                    format!("{k} is set by the daemon"),
                ));
            }
        }
        for k in req.labels.keys() {
            if k.is_empty() {
                return Err(ApiError::invalid("labels", "a label key is empty"));
            }
        }
        let cwd = if req.cwd.is_empty() {
            self.s.default_cwd.clone()
        } else {
            let p = PathBuf::from(&req.cwd);
            if !p.is_absolute() {
                return Err(ApiError::invalid(
                    "cwd",
                    format!("{:?} is not an absolute path", req.cwd),
                ));
            }
            if !p.is_dir() {
                return Err(ApiError::invalid(
                    "cwd",
                    format!("{:?} is not an existing directory", req.cwd),
                ));
            }
            // Resolve `..` and symlinks: the run records (and rules check) where it really runs.
            std::fs::canonicalize(&p).map_err(|e| {
                ApiError::invalid("cwd", format!("cannot resolve {:?}: {e}", req.cwd))
            })?
        };
        let stop_signals = if req.stop_signals.is_empty() {
            self.s.config.stop_signals.clone()
        } else {
            req.stop_signals.clone()
        };
        let stop_signals = stop_signals
            .iter()
            .map(|s| {
                parse_signal(s)
                    .map(crate::process::signals::signal_name)
                    .map_err(|e| ApiError::invalid("stop_signals", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if req.grace_ms > 3_600_000 {
            return Err(ApiError::invalid(
                "grace_ms",
                format!("{} is over the limit of 3600000 (one hour)", req.grace_ms),
            ));
        }
        let grace = if req.grace_ms == 0 {
            self.s.config.grace
        } else {
            Duration::from_millis(req.grace_ms)
        };
        Ok(RunSpec {
            argv: req.argv.clone(),
            cwd,
            env: req.env.clone(),
            labels: req.labels.clone(),
            stop_signals,
            grace,
            agent: None,
            owner: None,
        })
    }

    /// A spawn from a workflow template: the daemon builds the Claude argv itself.
    fn validate_workflow(&self, req: &SpawnRequest) -> Result<RunSpec, ApiError> {
        let Some(wf) = self.s.config.workflows.get(&req.workflow) else {
            let known: Vec<&str> = self.s.config.workflows.keys().map(|k| k.as_str()).collect();
            return Err(ApiError::invalid(
                "workflow",
                format!(
                    "unknown workflow {:?}; known: {}",
                    req.workflow,
                    if known.is_empty() {
                        "none configured".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if !req.argv.is_empty() {
            return Err(ApiError::invalid(
                "argv",
                "give argv or a workflow, not both",
            ));
        }
        if req.prompt.trim().is_empty() {
            return Err(ApiError::invalid(
                "prompt",
                format!("workflow {} needs a prompt", wf.name),
            ));
        }
        if req.prompt.contains('\0') {
            return Err(ApiError::invalid("prompt", "contains a NUL byte"));
        }
        let mut template = wf.template.clone();
        let o = &req.overrides;
        if let Some(m) = &o.model {
            template.model = Some(m.clone()).filter(|m| !m.is_empty());
        }
        if let Some(t) = o.max_turns {
            template.max_turns = Some(t).filter(|t| *t > 0);
        }
        if let Some(p) = &o.permission_mode {
            template.permission_mode = Some(p.clone()).filter(|p| !p.is_empty());
        }
        if let Some(t) = &o.allowed_tools {
            template.allowed_tools = t.clone();
        }
        if let Some(a) = &o.append_system_prompt {
            template.append_system_prompt = Some(a.clone()).filter(|a| !a.is_empty());
        }
        template
            .validate()
            .map_err(|e| ApiError::invalid("overrides", e.to_string()))?;
        let argv =
            crate::agent::claude::build_argv(&template, &req.prompt, req.resume_session.as_deref());
        // The workflow's own env (API keys, HOME) stays in the config: it is added at spawn and
        // never recorded with the run. The spec keeps only what the caller passed.
        let mut plain = req.clone();
        plain.workflow.clear();
        plain.prompt.clear();
        plain.argv = argv;
        if plain.cwd.is_empty() {
            if let Some(c) = &wf.cwd {
                plain.cwd = c.display().to_string();
            }
        }
        if plain.stop_signals.is_empty() {
            plain.stop_signals = wf.stop_signals.clone();
        }
        if plain.grace_ms == 0 {
            plain.grace_ms = wf.grace.as_millis() as u64;
        }
        let mut spec = self.validate(&plain)?;
        let allowed = |p: &PathBuf| {
            let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            spec.cwd.starts_with(real)
        };
        if !wf.allowed_cwds.is_empty() && !wf.allowed_cwds.iter().any(allowed) {
            return Err(ApiError::invalid(
                "cwd",
                format!(
                    "{} is outside the workflow's allowed directories ({})",
                    spec.cwd.display(),
                    wf.allowed_cwds
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        spec.agent = Some(AgentSpec {
            workflow: wf.name.clone(),
            prompt: req.prompt.clone(),
            template,
            resume_session: req.resume_session.clone(),
        });
        Ok(spec)
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
            Some(EndIntent::Complete { outcome, reason }) => {
                (*outcome, format!("force-completed: {reason}"))
            }
            None => match r.agent.as_ref().and_then(|a| a.failure.clone()) {
                // The agent's own result says it failed, whatever the exit code.
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
        if r.error.is_empty() {
            if report.phase == KillPhase::Survivors {
                r.error = report.message.clone();
            } else if status == RunStatus::Failed && e.intent.is_none() {
                r.error = exit.map(describe_exit).unwrap_or_default();
            }
        }
        e.control = None;
        let rec = snapshot(e);
        let waiters: Vec<_> = e.kill_waiters.drain(..).collect();
        let answer = rec.clone();
        self.persist(
            &run_id,
            Some(Box::new(move |r| {
                for w in waiters {
                    let outcome = KillOutcome {
                        report: report.clone(),
                        run: answer.clone(),
                    };
                    let _ = w.send(committed(r.clone(), outcome));
                }
            })),
        );
        self.live -= 1;
        if let Some(at) = self.armed.remove(&run_id) {
            self.deadlines.remove(&(at, run_id.clone()));
        }
        info!(
            run_id,
            status = status.as_str(),
            exit = exit.map(describe_exit).unwrap_or_default(),
            "run finished"
        );
        self.emit(&run_id, "ended", status.as_str().to_string(), rec.clone());
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
            self.runs.remove(id);
        }
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
        let live: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, e)| !e.record.status.is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        info!(live = live.len(), "shutting down: ending every live run");
        for id in live {
            let (tx, _rx) = oneshot::channel();
            self.kill(id, false, None, EndIntent::Shutdown, tx);
        }
        self.check_shutdown();
    }

    fn check_shutdown(&mut self) {
        if self.shutting_down && self.live == 0 {
            for w in self.shutdown_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
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
