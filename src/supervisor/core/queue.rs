//! The core's side of the work queue: it carries out the scheduler's decisions
//! (`crate::schedule`) on the run table it owns. Starting a queued run, ending one that never
//! started, a run's wall-clock timeout, restarts by policy (also of runs LOST in a crash), queue
//! control and figures, and the queue alerts (fired and resolved through the store's alert
//! model). Nothing here awaits; every change is written before it is acknowledged. The queued
//! runs are kept in `Queued`: by start order, and in the scheduler's indexes, which every change
//! of a queued run's standing (new, started, ended, a dependency ending, a time passing) keeps
//! in step, so a dispatch looks at what changed and at the heads of the queues.
use std::collections::{BTreeMap, HashMap};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::{committed, snapshot, Core, QueueKey};
use crate::process::cgroup::Containment;
use crate::process::spawn::HEARTBEAT_FD;
use crate::run::agent::AgentState;
use crate::run::output::OutputProgress;
use crate::run::task::{self, RunContext};
use crate::run::{KillPhase, KillReport, RunRecord, RunStatus};
use crate::schedule::backoff::{self, Decision, Ending};
use crate::schedule::index::{Class, Index};
use crate::schedule::{self, Dep, Occupancy, QueueLimits, RestartOn, Verdict, Waiting};
use crate::store::{AlertFire, AuditRecord, Batch, Caller};
use crate::supervisor::handle::{restart_request, ApiError, CancelOutcome, QueueFigures};
use crate::supervisor::{EndIntent, Msg};
use crate::time::now_ms;

/// Called with the run once its change is durable (or with the failure).
/// The run as ended, and why its end is not on record yet if it is not.
pub(super) type RunReply = Box<dyn FnOnce(RunRecord, Option<String>) + Send>;

/// How long an idempotency key names its run.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

impl Core {
    /// The run an idempotency key named within the last 24 hours.
    pub(super) fn idempotent_run(&self, key: &str, now: i64) -> Option<RunRecord> {
        let id = self.idempotency.get(key)?;
        let e = self.runs.get(id)?;
        (now - e.record.created_at < IDEMPOTENCY_WINDOW_MS).then(|| self.shown(e))
    }

    /// Each queue's limits as in force: the config's, with live changes from UpdateQueue.
    pub(super) fn queue_limits(&self) -> BTreeMap<String, QueueLimits> {
        self.s
            .config
            .queues
            .iter()
            .map(|(name, q)| {
                (
                    name.clone(),
                    QueueLimits {
                        max_concurrent: self
                            .live_limits
                            .get(name)
                            .copied()
                            .unwrap_or(q.max_concurrent),
                        paused: self.paused.contains(name),
                    },
                )
            })
            .collect()
    }

    /// What became of a dependency, following restarts to the newest attempt.
    fn dep_state(&self, id: &str) -> Dep {
        let mut cur = id.to_string();
        for _ in 0..10_000 {
            let Some(e) = self.runs.get(&cur) else {
                return Dep::Missing { run_id: cur };
            };
            match e.record.status {
                RunStatus::Succeeded => return Dep::Succeeded,
                s if !s.is_terminal() => return Dep::Pending { run_id: cur },
                s => match self.successors.get(&cur) {
                    Some(next) => cur = next.clone(),
                    None => {
                        return Dep::Failed {
                            run_id: cur,
                            status: s.as_str().to_string(),
                        }
                    }
                },
            }
        }
        Dep::Pending { run_id: cur }
    }

    /// What the scheduler needs to know of one queued run.
    fn waiting_of<'a>(&self, e: &'a super::Entry) -> Waiting<'a> {
        let p = &e.record.spec.policy;
        Waiting {
            queue: &p.queue,
            priority: p.priority,
            seq: e.seq,
            not_before: p.not_before,
            expires_at: expires_at(e),
            queue_timeout_ms: p.queue_timeout_ms,
            deps: p.after.iter().map(|d| self.dep_state(d)).collect(),
        }
    }

    fn occupancy(&self) -> Occupancy {
        Occupancy {
            running: self.live_by_queue.clone(),
            host_live: self.occupied,
            host_max: self.s.config.max_live_runs,
        }
    }

    /// What the reasons of queued runs are read against: taken once for a whole List.
    pub(super) fn standing(&self) -> Standing {
        Standing {
            now: now_ms(),
            limits: self.queue_limits(),
            occupancy: self.occupancy(),
        }
    }

    /// Why a queued run waits, read from the state now (None for a run not queued).
    pub(super) fn wait_of(&self, e: &super::Entry, st: &Standing) -> Option<schedule::Wait> {
        if e.record.status != RunStatus::Queued {
            return None;
        }
        let w = self.waiting_of(e);
        Some(schedule::wait_reason(st.now, &w, &st.limits, &st.occupancy))
    }

    /// The run as the API shows it: its snapshot, and why it waits if it is queued.
    pub(super) fn shown(&self, e: &super::Entry) -> RunRecord {
        self.shown_in(e, &self.standing())
    }

    pub(super) fn shown_in(&self, e: &super::Entry, st: &Standing) -> RunRecord {
        let mut r = snapshot(e);
        if let Some(w) = self.wait_of(e, st) {
            r.waiting_reason = w.describe(&r.spec.policy.queue);
        }
        r
    }

    /// Carry out what the scheduler decides for the queued runs whose standing changed (new,
    /// due, or woken by a dependency's end), then start the heads of the queues with room. Called
    /// after every event that can change the answer; never on a poll. Costs what changed and
    /// one look per start, not the length of the queue (`schedule::index`).
    pub(super) fn dispatch(&mut self) {
        if self.shutting_down {
            return;
        }
        // Cancelling a run can fail its dependents: decide again until nothing more is cancelled.
        for _ in 0..10_000 {
            let now = now_ms();
            let mut recheck = std::mem::take(&mut self.queued.recheck);
            recheck.extend(self.queued.index.take_due(now));
            let mut cancel: Vec<(String, String)> = Vec::new();
            for key in recheck {
                let Some(id) = self.queued.ids.get(&key) else {
                    continue;
                };
                let Some(e) = self.runs.get(id) else {
                    continue;
                };
                let w = self.waiting_of(e);
                let class = match schedule::classify(now, &w) {
                    Verdict::Cancel(reason) => {
                        cancel.push((id.clone(), reason));
                        continue;
                    }
                    Verdict::Deps(pending) => Class::Dep(pending[0].clone()),
                    Verdict::NotBefore(at) => Class::Timed(at),
                    Verdict::Eligible => Class::Ready,
                };
                let (queue, expires) = (w.queue.to_string(), w.expires_at);
                self.queued.index.admit(key, &queue, expires, class);
            }
            let starts = self
                .queued
                .index
                .starts(&self.queue_limits(), &self.occupancy());
            for key in starts {
                if let Some(id) = self.queued.ids.get(&key).cloned() {
                    if let Some(e) = self.runs.get_mut(&id) {
                        // Its own probe from now on (queued runs share one never attached).
                        e.usage = crate::usage::UsageProbe::new();
                    }
                    self.start_run(&id);
                }
            }
            self.sched_wake = self.queued.index.wake_at();
            if cancel.is_empty() {
                self.check_queue_alerts(now);
                break;
            }
            for (id, reason) in cancel {
                info!(run_id = id, reason, "queued run cancelled by policy");
                let audit = AuditRecord::new(
                    Caller::Daemon,
                    "cancel_by_policy",
                    &id,
                    serde_json::json!({}),
                )
                .outcome("ok", reason.clone());
                self.end_queued(&id, reason, vec![audit], None);
            }
        }
    }

    /// A run ended, or left the table: the queued runs waiting for it are decided again.
    pub(super) fn wake_dependents(&mut self, run_id: &str) {
        let keys = self.queued.index.take_dependents(run_id);
        if !keys.is_empty() {
            self.queued.recheck.extend(keys);
            self.dispatch_needed = true;
        }
    }

    /// Start a run. A new one (never recorded) is started once STARTING is on record: a daemon
    /// killed in between must not leave an agent no later daemon knows about. A run that waited
    /// in its queue, on record as QUEUED, starts while STARTING is written where its cgroup
    /// marks the start: recovery takes a QUEUED run with a cgroup for one that may have run
    /// (`recover`), and the run task removes that cgroup only once STARTING is durable.
    fn start_run(&mut self, run_id: &str) {
        let cgroups = matches!(self.s.containment, Containment::Cgroup(_));
        let store_ok = self.s.store.write_failing().is_none();
        let Some(e) = self.runs.get_mut(run_id) else {
            return;
        };
        let start_while_recording = cgroups
            && store_ok
            && e.record.status == RunStatus::Queued
            && e.queued_on_record
                .load(std::sync::atomic::Ordering::Acquire);
        self.queued.remove(&super::queue_key(e));
        e.record.status = RunStatus::Starting;
        let spec = (*e.record.spec).clone();
        if spec.agent.is_some() {
            e.record.agent = Some(AgentState {
                phase: "STARTING".into(),
                health: "OK".into(),
                ..AgentState::default()
            });
        }
        let mut child_env = crate::process::spawn::base_env();
        if let Some(u) = &self.s.agent_user {
            child_env.insert("HOME".into(), u.home.display().to_string());
            child_env.insert("USER".into(), u.name.clone());
            child_env.insert("LOGNAME".into(), u.name.clone());
        }
        let workflow = spec
            .agent
            .as_ref()
            .and_then(|a| self.s.config.workflows.get(&a.workflow));
        if let Some(wf) = workflow {
            child_env.extend(wf.env.clone());
        }
        child_env.extend(spec.env.clone());
        child_env.insert("WF_RUN_ID".into(), run_id.to_string());
        child_env.insert("WF_HEARTBEAT_FD".into(), HEARTBEAT_FD.to_string());
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (recorded_tx, recorded) = oneshot::channel();
        let (progress_tx, progress_rx) = watch::channel(OutputProgress::default());
        let critical_graces = workflow.map(|w| w.critical).unwrap_or_default();
        let queue = spec.policy.queue.clone();
        let ctx = RunContext {
            run_id: run_id.to_string(),
            agent_stdout: spec.agent.is_some(),
            spec,
            child_env,
            log_dir: self.s.state_dir.join("runs").join(run_id),
            containment: self.s.containment.clone(),
            reaper: self.s.reaper.clone(),
            kill_deadline: self.s.config.kill_deadline,
            core: self.tx.clone(),
            beats: self.beats.clone(),
            control: control_rx,
            progress: progress_tx,
            uid_gid: self.s.agent_user.as_ref().map(|u| (u.uid, u.gid)),
            nice: self.s.config.run_nice,
            limits: (self.s.config.memory_max_bytes, self.s.config.pids_max),
            spawn_method: self.s.config.spawn_method,
            log_cap: self.s.config.log_max_bytes_per_stream,
            max_line_bytes: self.s.config.max_line_bytes,
            critical_graces,
            usage: e.usage.clone(),
            usage_interval: self.s.config.metrics.usage_sample_interval,
            recorded,
            start_while_recording,
        };
        e.control = Some(control_tx);
        e.progress = progress_rx;
        e.launched_at = crate::time::now_ms();
        let waited = e.record.queued_at > 0;
        let rec = snapshot(e);
        self.live.insert(run_id.to_string());
        self.occupied += 1;
        *self.live_by_queue.entry(queue).or_default() += 1;
        tracing::debug!(run_id, argv = ?rec.spec.argv, attempt = rec.attempt, "spawning");
        if waited {
            self.emit(run_id, "dequeued", String::new(), rec);
        } else {
            self.emit(run_id, "spawned", String::new(), rec);
        }
        // The spawn's audit record goes with STARTING: the Spawn is answered as soon as the
        // process runs, and by then both are durable.
        let audits = self
            .runs
            .get_mut(run_id)
            .and_then(|e| e.spawn_audit.take())
            .map(|mut a| {
                a.run_id = run_id.to_string();
                vec![a.outcome(
                    "ok",
                    "STARTING: its process is started once this is on record",
                )]
            })
            .unwrap_or_default();
        // The task prepares the run while STARTING is written; it starts the process once the
        // store says that is durable, or at once for a run on record as QUEUED (see above).
        let rt = tokio::runtime::Handle::current();
        rt.spawn(task::run(ctx));
        let core = self.tx.clone();
        let id = run_id.to_string();
        self.persist_with(
            run_id,
            audits,
            Some(Box::new(move |r| match r {
                Ok(()) => {
                    let _ = recorded_tx.send(Ok(()));
                }
                Err(error) if start_while_recording => {
                    // Its process may run already: the run goes on, the store keeps the change
                    // for a retry, and its cgroup stays as the mark of its start meanwhile.
                    warn!(run_id = id, error = %error, "STARTING of a dequeued run not recorded yet; the run goes on");
                    let _ = recorded_tx.send(Err(error.to_string()));
                }
                Err(error) => {
                    let _ = recorded_tx.send(Err(error.to_string()));
                    // Not started, and dropped: a run the store does not know must not show.
                    rt.spawn(async move {
                        let msg = Msg::NotRecorded {
                            run_id: id,
                            error,
                            starting: true,
                            reply: None,
                        };
                        let _ = core.send(msg).await;
                    });
                }
            })),
        );
    }

    /// A live run's last process is gone: its slot goes to the next run at once, while its
    /// run task still reads the final usage, drains the pipes and removes the cgroup. Given
    /// back once; `release_slot` does it if this never came.
    pub(super) fn vacate_slot(&mut self, run_id: &str) {
        let Some(e) = self.runs.get(run_id) else {
            return;
        };
        let holds = matches!(
            e.record.status,
            RunStatus::Starting | RunStatus::Running | RunStatus::Stopping
        );
        if holds {
            self.give_back_slot(run_id);
            self.dispatch_needed = true;
        }
    }

    /// The run's slot, in its queue and host-wide, is free (once, whichever path comes first).
    fn give_back_slot(&mut self, run_id: &str) {
        let Some(e) = self.runs.get_mut(run_id) else {
            return;
        };
        if std::mem::replace(&mut e.vacated, true) {
            return;
        }
        self.occupied = self.occupied.saturating_sub(1);
        if let Some(n) = self.live_by_queue.get_mut(&e.record.spec.policy.queue) {
            *n = n.saturating_sub(1);
        }
    }

    /// A live run has ended (or never started): it is no longer live, and its slot is free.
    pub(super) fn release_slot(&mut self, run_id: &str) {
        self.live.remove(run_id);
        self.give_back_slot(run_id);
        if let Some(at) = self.timeout_armed.remove(run_id) {
            self.timeouts.remove(&(at, run_id.to_string()));
        }
        self.wake_dependents(run_id);
        self.dispatch_needed = true;
    }

    /// End a queued run CANCELLED: its process never exists. `reply` gets the run once durable.
    pub(super) fn end_queued(
        &mut self,
        run_id: &str,
        reason: String,
        mut audits: Vec<AuditRecord>,
        reply: Option<RunReply>,
    ) {
        let Some(e) = self.runs.get_mut(run_id) else {
            return;
        };
        self.queued.remove(&super::queue_key(e));
        e.record.status = RunStatus::Cancelled;
        e.record.ended_at = now_ms();
        e.record.end_reason = reason.clone();
        let rec = snapshot(e);
        // A spawn still waiting for its answer (its dependency had already failed) gets it now.
        let spawn_reply = e.spawn_reply.take();
        audits.extend(e.spawn_audit.take().map(|a| {
            let mut a = *a;
            a.run_id = run_id.to_string();
            a.outcome("ok", format!("CANCELLED at once: {reason}"))
        }));
        let waiters: Vec<_> = e.kill_waiters.drain(..).collect();
        let answer = rec.clone();
        self.persist_with(
            run_id,
            audits,
            Some(Box::new(move |r| {
                if let Some(s) = spawn_reply {
                    let _ = s.send(committed(r.clone(), answer.clone()));
                }
                for w in waiters {
                    let _ = w.send(Ok(super::kill_answer(&r, &not_started_report(), &answer)));
                }
                if let Some(reply) = reply {
                    reply(answer, r.err().map(|e| e.to_string()));
                }
            })),
        );
        self.emit(run_id, "ended", "CANCELLED".into(), rec);
        self.wake_dependents(run_id);
        self.dispatch_needed = true;
    }

    /// Cancel: a queued run at once, a live one through the graceful kill.
    pub(super) fn cancel(
        &mut self,
        run_id: String,
        reason: String,
        reply: oneshot::Sender<Result<CancelOutcome, ApiError>>,
    ) {
        let Some(e) = self.runs.get(&run_id) else {
            let _ = reply.send(Err(ApiError::NotFound(run_id)));
            return;
        };
        let why = if reason.is_empty() {
            "cancelled".to_string()
        } else {
            format!("cancelled: {reason}")
        };
        if e.record.status == RunStatus::Queued {
            info!(run_id, reason = why, "cancelling a queued run");
            self.end_queued(
                &run_id,
                why,
                Vec::new(),
                Some(Box::new(move |run, record_pending| {
                    let _ = reply.send(Ok(CancelOutcome {
                        killed: false,
                        report: None,
                        run,
                        record_pending,
                    }));
                })),
            );
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.kill(run_id, false, None, EndIntent::Cancel { reason: why }, tx);
        tokio::spawn(async move {
            let r = match rx.await {
                Ok(r) => r.map(|o| CancelOutcome {
                    killed: o.report.phase != KillPhase::NotStarted,
                    report: Some(o.report),
                    run: o.run,
                    record_pending: o.record_pending,
                }),
                Err(_) => Err(ApiError::Unavailable("the daemon is shutting down".into())),
            };
            let _ = reply.send(r);
        });
    }

    /// Arm the wall-clock timeout of a run that just started running.
    pub(super) fn arm_timeout(&mut self, run_id: &str) {
        let Some(e) = self.runs.get_mut(run_id) else {
            return;
        };
        let ms = e.record.spec.policy.timeout_ms;
        if ms == 0 || e.record.started_at == 0 {
            return;
        }
        let at = e.record.started_at.saturating_add(ms as i64);
        e.record.timeout_at = at;
        self.timeouts.insert((at, run_id.to_string()));
        self.timeout_armed.insert(run_id.to_string(), at);
    }

    /// Time out every run whose timeout has passed: TIMED_OUT through the kill state machine.
    pub(super) fn fire_due_timeouts(&mut self) {
        let now = now_ms();
        let due: Vec<(i64, String)> = self
            .timeouts
            .iter()
            .take_while(|(at, _)| *at <= now)
            .cloned()
            .collect();
        for (at, id) in due {
            self.timeouts.remove(&(at, id.clone()));
            self.timeout_armed.remove(&id);
            let Some(e) = self.runs.get(&id) else {
                continue;
            };
            let ms = e.record.spec.policy.timeout_ms;
            let reason = format!(
                "timeout_ms: ran longer than its timeout of {}",
                schedule::human_ms(ms)
            );
            warn!(run_id = id, reason, "run timed out");
            let audit = AuditRecord::new(
                Caller::Daemon,
                "timeout",
                &id,
                serde_json::json!({"timeout_ms": ms}),
            )
            .outcome("ok", reason.clone());
            self.s.store.write(
                Batch {
                    audits: vec![audit],
                    ..Batch::default()
                },
                None,
            );
            let (tx, _rx) = oneshot::channel();
            self.kill(
                id,
                false,
                None,
                EndIntent::TimedOut {
                    reason,
                    restart: false,
                },
                tx,
            );
        }
    }

    /// A run just ended (or was found LOST): restart it by policy, or record that the policy
    /// gave up. Returns the note for the end reason, if any.
    pub(super) fn apply_restart_policy(&mut self, run_id: &str, by_operator: bool) {
        let Some(e) = self.runs.get(run_id) else {
            return;
        };
        let r = &e.record;
        if !r.restarted_as.is_empty() || self.successors.contains_key(run_id) {
            return;
        }
        let status = match r.status {
            RunStatus::Failed => Some(RestartOn::Failed),
            RunStatus::TimedOut => Some(RestartOn::TimedOut),
            RunStatus::Lost => Some(RestartOn::Lost),
            _ => None,
        };
        let now = now_ms();
        let lived = if r.started_at > 0 {
            r.ended_at.max(r.started_at) - r.started_at
        } else {
            0
        };
        let decision = backoff::decide(
            r.spec.policy.restart.as_ref(),
            Ending {
                status,
                by_operator,
                lived_ms: lived,
                streak: r.policy_restarts,
                now,
            },
        );
        match decision {
            Decision::No => {}
            Decision::GaveUp { restarts } => {
                if r.end_reason.contains("gave up after") {
                    return;
                }
                let note = format!("gave up after {restarts} restarts");
                let mut labels = BTreeMap::new();
                labels.insert("run_id".to_string(), run_id.to_string());
                labels.insert("queue".to_string(), r.spec.policy.queue.clone());
                let fire = AlertFire {
                    kind: "restart_gave_up".into(),
                    dedup_key: format!("restart_gave_up:{run_id}"),
                    message: format!(
                        "run {run_id} ended {} and its restart policy {note}",
                        r.status.as_str()
                    ),
                    labels,
                };
                warn!(run_id, note, "restart policy gave up");
                let audit = AuditRecord::new(
                    Caller::Daemon,
                    "restart_gave_up",
                    run_id,
                    serde_json::json!({"restarts": restarts}),
                )
                .outcome("ok", note.clone());
                let Some(e) = self.runs.get_mut(run_id) else {
                    return;
                };
                e.record.end_reason = if e.record.end_reason.is_empty() {
                    note
                } else {
                    format!("{}; {note}", e.record.end_reason)
                };
                let rec = snapshot(e);
                self.s.store.write(
                    Batch {
                        runs: vec![(e.seq, rec.clone())],
                        audits: vec![audit],
                        fire: vec![fire],
                        ..Batch::default()
                    },
                    None,
                );
                self.emit(run_id, "gave_up", rec.end_reason.clone(), rec);
            }
            Decision::Restart {
                not_before,
                delay_ms,
                streak,
            } => {
                let old = snapshot(e);
                let (mut req, note) = restart_request(&old, true);
                req.not_before = not_before;
                req.policy_restarts = streak;
                let (tx, _rx) = oneshot::channel();
                let new = self.spawn(req, tx);
                let msg = match &new {
                    Some(id) => format!(
                        "new run {id} (attempt {}, restart {streak}) queued not before {} (backoff {}): {note}",
                        old.attempt + 1,
                        schedule::clock(not_before),
                        schedule::human_ms(delay_ms)
                    ),
                    None => "restart refused".to_string(),
                };
                info!(run_id, msg, "restarting by policy");
                let audit = AuditRecord::new(
                    Caller::Daemon,
                    "restart_by_policy",
                    run_id,
                    serde_json::json!({"on": old.status.as_str(), "backoff_ms": delay_ms}),
                )
                .outcome(if new.is_some() { "ok" } else { "failed" }, msg);
                let Some(e) = self.runs.get_mut(run_id) else {
                    return;
                };
                if let Some(id) = new {
                    e.record.restarted_as = id;
                }
                let rec = snapshot(e);
                self.s.store.write(
                    Batch {
                        runs: vec![(e.seq, rec)],
                        audits: vec![audit],
                        ..Batch::default()
                    },
                    None,
                );
            }
        }
    }

    /// At start: runs an earlier daemon lost (crashed with them live) are restarted where their
    /// policy says so, once: a run with a successor (on record before this start) is not.
    pub(super) fn restart_lost(&mut self) {
        let mut lost: Vec<(u64, String)> = self
            .runs
            .values()
            .filter(|e| e.record.status == RunStatus::Lost && e.record.restarted_as.is_empty())
            .filter(|e| {
                e.record
                    .spec
                    .policy
                    .restart
                    .as_ref()
                    .is_some_and(|p| p.on.contains(&RestartOn::Lost))
            })
            .map(|e| (e.seq, e.record.run_id.clone()))
            .collect();
        lost.sort();
        for (_, id) in lost {
            self.apply_restart_policy(&id, false);
        }
    }

    /// Resolve the alerts of these dedup keys that this core has firing.
    pub(super) fn resolve_alerts(&mut self, keys: Vec<String>) {
        let resolve: Vec<String> = keys.into_iter().filter(|k| self.firing.remove(k)).collect();
        if resolve.is_empty() {
            return;
        }
        for k in &resolve {
            info!(key = k, "alert resolved");
        }
        self.s.store.write(
            Batch {
                resolve,
                ..Batch::default()
            },
            None,
        );
    }

    /// Pause or resume a queue, or change its limit until the next reload. A pause or a resume
    /// is in the store (it holds across a restart) before it is answered.
    pub(super) fn update_queue(
        &mut self,
        queue: String,
        paused: Option<bool>,
        max_concurrent: Option<usize>,
        reply: oneshot::Sender<Result<QueueFigures, ApiError>>,
    ) {
        if !self.s.config.queues.contains_key(&queue) {
            let _ = reply.send(Err(crate::supervisor::validate::unknown_queue(
                &self.s.config,
                &queue,
            )));
            return;
        }
        if let Some(m) = max_concurrent {
            if m == 0 || m > 1_000_000 {
                let _ = reply.send(Err(ApiError::invalid(
                    "max_concurrent",
                    format!("{m} must be between 1 and 1000000"),
                )));
                return;
            }
            self.live_limits.insert(queue.clone(), m);
        }
        let changed = paused.filter(|p| {
            if *p {
                self.paused.insert(queue.clone())
            } else {
                self.paused.remove(&queue)
            }
        });
        info!(queue, ?paused, ?max_concurrent, "queue updated");
        self.dispatch();
        let figures = self
            .queue_figures()
            .into_iter()
            .find(|f| f.name == queue)
            .unwrap_or_default();
        match changed {
            Some(p) => self.s.store.write(
                Batch {
                    queue_paused: vec![(queue, p)],
                    ..Batch::default()
                },
                Some(Box::new(move |r| {
                    let _ = reply.send(committed(r, figures));
                })),
            ),
            None => {
                let _ = reply.send(Ok(figures));
            }
        }
    }

    /// Figures of every configured queue, from the run table.
    pub(super) fn queue_figures(&self) -> Vec<QueueFigures> {
        let now = now_ms();
        let limits = self.queue_limits();
        let mut out: BTreeMap<String, QueueFigures> = self
            .s
            .config
            .queues
            .iter()
            .map(|(name, q)| {
                let l = limits[name];
                (
                    name.clone(),
                    QueueFigures {
                        name: name.clone(),
                        max_concurrent: l.max_concurrent,
                        max_queued: q.max_queued,
                        paused: l.paused,
                        ..QueueFigures::default()
                    },
                )
            })
            .collect();
        for e in self.runs.values() {
            let r = &e.record;
            let Some(f) = out.get_mut(&r.spec.policy.queue) else {
                continue;
            };
            match r.status {
                RunStatus::Queued => {
                    f.queued += 1;
                    let since = if r.queued_at > 0 {
                        r.queued_at
                    } else {
                        r.created_at
                    };
                    f.longest_queued_wait_ms =
                        f.longest_queued_wait_ms.max((now - since).max(0) as u64);
                }
                RunStatus::Starting | RunStatus::Running | RunStatus::Stopping => {
                    f.running += 1;
                    if r.started_at > 0 {
                        f.oldest_running_ms =
                            f.oldest_running_ms.max((now - r.started_at).max(0) as u64);
                    }
                    if r.agent.as_ref().is_some_and(|a| a.health == "STUCK") {
                        f.stuck += 1;
                    }
                }
                s => {
                    let ago = now - r.ended_at;
                    if ago <= 24 * 3600 * 1000 {
                        *f.ended_last_day.entry(s.as_str().to_string()).or_default() += 1;
                        if ago <= 3600 * 1000 {
                            *f.ended_last_hour.entry(s.as_str().to_string()).or_default() += 1;
                        }
                    }
                }
            }
        }
        out.into_values().collect()
    }

    /// Fire the queue alerts whose condition holds and resolve those whose condition is gone;
    /// arm a wake-up for the next run to cross its queue's wait threshold.
    pub(super) fn check_queue_alerts(&mut self, now: i64) {
        // Depth and the longest wait per queue, over the runs that stay queued.
        let mut depth: HashMap<&str, usize> = HashMap::new();
        let mut oldest: HashMap<&str, i64> = HashMap::new();
        for q in self.queued.index.queues() {
            depth.insert(q, self.queued.index.depth(q));
            let since = self
                .queued
                .index
                .oldest(q)
                .and_then(|k| self.queued.ids.get(&k))
                .and_then(|id| self.runs.get(id))
                .map(|e| waiting_since(e));
            if let Some(s) = since {
                oldest.insert(q, s);
            }
        }
        let mut fire = Vec::new();
        let mut resolve = Vec::new();
        let mut wake: Option<i64> = None;
        for (name, q) in &self.s.config.queues {
            let d = depth.get(name.as_str()).copied().unwrap_or(0);
            let key = format!("queue_depth:{name}");
            let deep = d > q.alert_queue_depth;
            let mut labels = BTreeMap::new();
            labels.insert("queue".to_string(), name.clone());
            if deep && self.firing.insert(key.clone()) {
                fire.push(AlertFire {
                    kind: "queue_depth".into(),
                    dedup_key: key,
                    message: format!(
                        "queue {name} has {d} runs waiting, more than its alert_queue_depth of {}",
                        q.alert_queue_depth
                    ),
                    labels: labels.clone(),
                });
            } else if !deep && self.firing.remove(&key) {
                resolve.push(key);
            }
            let key = format!("queue_wait:{name}");
            let limit = q.alert_queue_wait.as_millis() as i64;
            let waited = oldest.get(name.as_str()).map(|s| now - s);
            let long = waited.is_some_and(|w| w >= limit);
            if long && self.firing.insert(key.clone()) {
                fire.push(AlertFire {
                    kind: "queue_wait".into(),
                    dedup_key: key,
                    message: format!(
                        "a run in queue {name} has waited {}, longer than its alert_queue_wait of {}",
                        schedule::human_ms(waited.unwrap_or(0).max(0) as u64 / 1000 * 1000),
                        schedule::human_ms(limit as u64)
                    ),
                    labels,
                });
            } else if !long && self.firing.remove(&key) {
                resolve.push(key);
            }
            if let (false, Some(s)) = (long, oldest.get(name.as_str())) {
                let at = s + limit;
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        if let Some(at) = wake {
            self.sched_wake = Some(self.sched_wake.map_or(at, |w| w.min(at)));
        }
        if !fire.is_empty() || !resolve.is_empty() {
            for f in &fire {
                warn!(
                    kind = f.kind,
                    key = f.dedup_key,
                    message = f.message,
                    "alert"
                );
            }
            for k in &resolve {
                info!(key = k, "alert resolved");
            }
            self.s.store.write(
                Batch {
                    fire,
                    resolve,
                    ..Batch::default()
                },
                None,
            );
        }
    }
}

/// Queue limits, occupancy and the time, as of one read.
pub(super) struct Standing {
    now: i64,
    limits: BTreeMap<String, QueueLimits>,
    occupancy: Occupancy,
}

/// The queued runs: by start order, and indexed by where each stands (`schedule::index`).
#[derive(Default)]
pub(super) struct Queued {
    /// Every queued run, by its place in the start order.
    pub(super) ids: BTreeMap<QueueKey, String>,
    pub(super) index: Index,
    /// Queued runs not (or no longer) in the index: decided at the next dispatch.
    pub(super) recheck: Vec<QueueKey>,
}

impl Queued {
    /// A run that became QUEUED (new, or loaded at start): decided at the next dispatch.
    pub(super) fn insert(&mut self, key: QueueKey, run_id: String) {
        self.ids.insert(key, run_id);
        self.recheck.push(key);
    }

    /// A run that left QUEUED (started, ended, or dropped).
    pub(super) fn remove(&mut self, key: &QueueKey) -> Option<String> {
        self.index.remove(*key);
        self.ids.remove(key)
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Runs waiting in `queue` (as of the last dispatch).
    pub(super) fn depth(&self, queue: &str) -> usize {
        self.index.depth(queue)
    }

    /// Decide every queued run again (after a purge: a dependency may be gone).
    pub(super) fn recheck_all(&mut self) {
        self.index.clear();
        self.recheck = self.ids.keys().copied().collect();
    }
}

/// Unix ms when a queued run's queue_timeout passes (0: never).
fn expires_at(e: &super::Entry) -> i64 {
    let p = &e.record.spec.policy;
    if p.queue_timeout_ms > 0 {
        waiting_since(e).saturating_add(p.queue_timeout_ms as i64)
    } else {
        0
    }
}

/// Since when a queued run has waited.
fn waiting_since(e: &super::Entry) -> i64 {
    if e.record.queued_at > 0 {
        e.record.queued_at
    } else {
        e.record.created_at
    }
}

/// The report of a kill that found the run still queued.
pub(super) fn not_started_report() -> KillReport {
    let now = now_ms();
    KillReport {
        phase: KillPhase::NotStarted,
        signals_sent: Vec::new(),
        started_at: now,
        killed_at: now,
        duration: std::time::Duration::ZERO,
        survivors: Vec::new(),
        cleanup: Vec::new(),
        message: "the run was queued: cancelled before it started, no process existed".into(),
    }
}
