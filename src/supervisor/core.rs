//! The core task: the run table, spawn validation, kill bookkeeping (who waits for which kill,
//! why the run is ending) and the terminal status of each run. Handling a message never awaits.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::process::cgroup::Containment;
use crate::process::pidfd::ExitKind;
use crate::process::reaper::Reaper;
use crate::process::signals::{parse_signal, signal_name_raw};
use crate::process::spawn::HEARTBEAT_FD;
use crate::run::output::OutputProgress;
use crate::run::task::{self, describe_exit, Control, RunContext};
use crate::run::{KillPhase, KillReport, RunRecord, RunSpec, RunStatus};
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
    kill_waiters: Vec<oneshot::Sender<Result<KillOutcome, ApiError>>>,
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
}

/// Start the core task; returns the handle the API uses.
pub fn start(settings: CoreSettings) -> SupervisorHandle {
    let (tx, rx) = mpsc::channel(8192);
    let (events, _) = broadcast::channel(4096);
    let core = Core {
        s: settings,
        tx: tx.clone(),
        events: events.clone(),
        runs: HashMap::new(),
        next_seq: 0,
        live: 0,
        shutting_down: false,
        shutdown_waiters: Vec::new(),
    };
    tokio::spawn(core.run(rx));
    SupervisorHandle { tx, events }
}

impl Core {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Spawn { req, reply } => self.spawn(req, reply),
            Msg::Get { run_id, reply } => {
                let r = self
                    .runs
                    .get(&run_id)
                    .map(|e| snapshot(e))
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
                entries.sort_by(|a, b| b.seq.cmp(&a.seq));
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
            Msg::Started { run_id, pid, pgid } => {
                let Some(e) = self.runs.get_mut(&run_id) else { return };
                e.record.pid = pid;
                e.record.pgid = pgid;
                e.record.started_at = now_ms();
                if e.record.status == RunStatus::Starting {
                    e.record.status = RunStatus::Running;
                }
                let rec = snapshot(e);
                if let Some(r) = e.spawn_reply.take() {
                    let _ = r.send(Ok(rec.clone()));
                }
                self.emit(&run_id, "started", format!("pid {pid}"), rec);
            }
            Msg::SpawnFailed { run_id, error } => {
                let Some(e) = self.runs.get_mut(&run_id) else { return };
                e.record.status = RunStatus::Failed;
                e.record.error = error.clone();
                e.record.ended_at = now_ms();
                e.control = None;
                let rec = snapshot(e);
                if let Some(r) = e.spawn_reply.take() {
                    let _ = r.send(Ok(rec.clone()));
                }
                for w in e.kill_waiters.drain(..) {
                    let _ = w.send(Err(ApiError::FailedPrecondition(format!(
                        "run {run_id} never started: {error}"
                    ))));
                }
                self.live -= 1;
                warn!(run_id, error, "run failed to start");
                self.emit(&run_id, "failed", error, rec);
                self.check_shutdown();
            }
            Msg::LeaderExited { run_id, exit } => {
                let Some(e) = self.runs.get_mut(&run_id) else { return };
                e.exited_on_own = true;
                e.record.status = RunStatus::Stopping;
                let rec = snapshot(e);
                let what = exit.map(describe_exit).unwrap_or_else(|| "exited".into());
                self.emit(&run_id, "leader_exited", what, rec);
            }
            Msg::Heartbeat { run_id, count, at } => {
                let Some(e) = self.runs.get_mut(&run_id) else { return };
                e.record.heartbeats += count;
                e.record.last_heartbeat_at = at;
                let rec = snapshot(e);
                if self.events.receiver_count() > 0 {
                    self.emit(&run_id, "heartbeat", format!("{count} line(s)"), rec);
                }
            }
            Msg::Ended {
                run_id,
                exit,
                report,
            } => self.ended(run_id, exit, report),
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
            run,
        });
    }

    fn spawn(&mut self, req: SpawnRequest, reply: oneshot::Sender<Result<RunRecord, ApiError>>) {
        if self.shutting_down {
            let _ = reply.send(Err(ApiError::Unavailable(
                "the daemon is shutting down".into(),
            )));
            return;
        }
        let spec = match self.validate(&req) {
            Ok(s) => s,
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
        let mut run_id = crate::ids::new_run_id();
        while self.runs.contains_key(&run_id) {
            run_id = crate::ids::new_run_id();
        }
        let (restart_of, attempt) = req.restart_of.clone().unwrap_or_default();
        let record = RunRecord {
            run_id: run_id.clone(),
            spec: spec.clone(),
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
        };
        let mut child_env = base_env();
        child_env.extend(spec.env.clone());
        child_env.insert("WF_RUN_ID".into(), run_id.clone());
        child_env.insert("WF_HEARTBEAT_FD".into(), HEARTBEAT_FD.to_string());
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress_rx) = watch::channel(OutputProgress::default());
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
            uid_gid: None,
        };
        self.next_seq += 1;
        self.live += 1;
        info!(run_id, argv = ?record.spec.argv, attempt = record.attempt, "spawning");
        self.emit(&run_id, "spawned", String::new(), record.clone());
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
                kill_waiters: Vec::new(),
            },
        );
        tokio::spawn(task::run(ctx));
    }

    fn validate(&self, req: &SpawnRequest) -> Result<RunSpec, ApiError> {
        if req.argv.is_empty() {
            return Err(ApiError::invalid("argv", "must name a program to run"));
        }
        if req.argv[0].is_empty() {
            return Err(ApiError::invalid("argv", "argv[0] (the program) is empty"));
        }
        if let Some(i) = req.argv.iter().position(|a| a.contains('\0')) {
            return Err(ApiError::invalid("argv", format!("argv[{i}] contains a NUL byte")));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("{k:?} is not a valid variable name"),
                ));
            }
            if v.contains('\0') {
                return Err(ApiError::invalid("env", format!("the value of {k} contains a NUL byte")));
            }
            if k == "WF_RUN_ID" || k == "WF_HEARTBEAT_FD" {
                return Err(ApiError::invalid("env", format!("{k} is set by the daemon")));
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
                return Err(ApiError::invalid("cwd", format!("{:?} is not an absolute path", req.cwd)));
            }
            if !p.is_dir() {
                return Err(ApiError::invalid("cwd", format!("{:?} is not an existing directory", req.cwd)));
            }
            p
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
        })
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
            (None, EndIntent::Complete { .. }) | (Some(EndIntent::Kill { .. }), EndIntent::Complete { .. }) => {
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
            if !e.exited_on_own {
                e.record.status = RunStatus::Stopping;
            }
            let rec = snapshot(e);
            let why = match &intent {
                EndIntent::Kill { reason } | EndIntent::Complete { reason, .. } => reason.clone(),
                EndIntent::Shutdown => "daemon shutdown".into(),
            };
            info!(run_id, force, reason = why, "kill requested");
            self.emit(&run_id, "stopping", why, rec);
        } else if force && !e.force_sent {
            e.force_sent = true;
            let _ = control.send(Control::Escalate);
        }
    }

    fn ended(&mut self, run_id: String, exit: Option<ExitKind>, report: KillReport) {
        let Some(e) = self.runs.get_mut(&run_id) else { return };
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
            Some(EndIntent::Complete { outcome, reason }) => (*outcome, format!("force-completed: {reason}")),
            None => (from_exit, String::new()),
        };
        r.status = status;
        r.end_reason = reason;
        if r.error.is_empty() {
            if report.phase == KillPhase::Survivors {
                r.error = report.message.clone();
            } else if status == RunStatus::Failed && e.intent.is_none() {
                r.error = exit.map(describe_exit).unwrap_or_default();
            }
        }
        e.control = None;
        let rec = snapshot(e);
        for w in e.kill_waiters.drain(..) {
            let _ = w.send(Ok(KillOutcome {
                report: report.clone(),
                run: rec.clone(),
            }));
        }
        self.live -= 1;
        info!(run_id, status = status.as_str(), exit = ?exit, "run finished");
        self.emit(&run_id, "ended", status.as_str().to_string(), rec);
        self.check_shutdown();
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
    let p = *e.progress.borrow();
    r.stdout_bytes = p.stdout;
    r.stderr_bytes = p.stderr;
    r
}

/// The few variables a clean child environment keeps from the daemon's.
fn base_env() -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for k in ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"] {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.to_string(), v);
        }
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env
}

