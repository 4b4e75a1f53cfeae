//! The API side of the core's queue: one async method per request, each a message and a reply.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::run::output::OutputProgress;
use crate::run::{KillReport, RunRecord, RunStatus};
use crate::supervisor::{EndIntent, Msg, RunEvent};

/// Errors the API reports; `grpc::status` maps each to one gRPC code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("no run {0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A spawn as the API asks for it (validated by the core).
#[derive(Debug, Clone, Default)]
pub struct SpawnRequest {
    pub argv: Vec<String>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signals: Vec<String>,
    pub grace_ms: u64,
    /// For restarts: the run this one replaces and its attempt number.
    pub restart_of: Option<(String, u32)>,
    /// A workflow template to start instead of `argv`, with its prompt.
    pub workflow: String,
    pub prompt: String,
    pub overrides: Overrides,
    /// Resume this Claude session (`--resume`).
    pub resume_session: Option<String>,
    /// Who asked for the run; a restart keeps the old run's owner.
    pub owner: Option<crate::access::RunOwner>,
    /// The caller's audit record for this spawn, committed together with the run's start (so a
    /// started run costs one commit less). A refused or failed request is audited by the caller.
    pub audit: Option<crate::store::AuditRecord>,
    /// Queue and policy; an empty queue means the workflow's, else `default`.
    pub queue: String,
    pub priority: i32,
    pub after: Vec<String>,
    pub not_before: i64,
    pub timeout_ms: u64,
    pub queue_timeout_ms: u64,
    /// None: the workflow's policy (if any).
    pub restart: Option<crate::schedule::RestartPolicy>,
    pub idempotency_key: String,
    /// For restarts by policy: the new run's place in the backoff.
    pub policy_restarts: u32,
}

/// Per-spawn changes to a workflow template.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub model: Option<String>,
    pub max_turns: Option<u32>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Option<Vec<String>>,
    pub append_system_prompt: Option<String>,
}

/// What a kill did and the run as recorded afterwards.
#[derive(Debug, Clone)]
pub struct KillOutcome {
    pub report: KillReport,
    pub run: RunRecord,
    /// Why the run's end is not on record yet (the store could not write it; the daemon keeps it
    /// and writes it once the store accepts writes again). None: it is on record.
    pub record_pending: Option<String>,
}

/// What a cancel did: whether a process had to be ended (and the kill's report), and the run.
#[derive(Debug, Clone)]
pub struct CancelOutcome {
    pub killed: bool,
    pub report: Option<KillReport>,
    pub run: RunRecord,
    /// As in `KillOutcome`.
    pub record_pending: Option<String>,
}

/// Which runs a List, or a bulk Kill or Cancel, is about: every given part must match.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub labels: BTreeMap<String, String>,
    pub workflow: String,
    pub queue: String,
    pub statuses: Vec<RunStatus>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
            && self.workflow.is_empty()
            && self.queue.is_empty()
            && self.statuses.is_empty()
    }

    pub fn matches(&self, r: &RunRecord) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&r.status))
            && (self.queue.is_empty() || r.spec.policy.queue == self.queue)
            && (self.workflow.is_empty()
                || r.spec
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.workflow == self.workflow))
            && self
                .labels
                .iter()
                .all(|(k, v)| r.spec.labels.get(k) == Some(v))
    }
}

/// One queue's figures, as GetQueueHealth reports them.
#[derive(Debug, Clone, Default)]
pub struct QueueFigures {
    pub name: String,
    pub running: usize,
    pub queued: usize,
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub paused: bool,
    pub ended_last_hour: BTreeMap<String, u32>,
    pub ended_last_day: BTreeMap<String, u32>,
    pub oldest_running_ms: u64,
    pub longest_queued_wait_ms: u64,
    pub stuck: usize,
}

/// Where a run's logs are and how far they have been written.
#[derive(Debug, Clone)]
pub struct LogSource {
    pub dir: PathBuf,
    pub progress: watch::Receiver<OutputProgress>,
    /// The run has not started yet: no output, and none to follow until it starts.
    pub queued: bool,
}

/// The spawn that restarts `old`, and a note saying how. This is the one place that copies an
/// old run's fields into its successor (by an operator's Restart, a stuck rule or the restart
/// policy): the same queue, priority, deadlines and restart policy; not its dependencies (they
/// were met) nor its idempotency key (that names the first run).
pub fn restart_request(old: &RunRecord, resume: bool) -> (SpawnRequest, String) {
    let spec = &old.spec;
    let p = &spec.policy;
    let mut req = SpawnRequest {
        argv: spec.argv.clone(),
        cwd: spec.cwd.display().to_string(),
        env: spec.env.clone(),
        labels: spec.labels.clone(),
        stop_signals: spec.stop_signals.clone(),
        grace_ms: spec.grace.as_millis() as u64,
        restart_of: Some((old.run_id.clone(), old.attempt + 1)),
        queue: p.queue.clone(),
        priority: p.priority,
        timeout_ms: p.timeout_ms,
        queue_timeout_ms: p.queue_timeout_ms,
        restart: p.restart.clone(),
        owner: spec.owner.clone(),
        ..SpawnRequest::default()
    };
    let Some(agent) = &spec.agent else {
        let note = if resume {
            "not a workflow run: started again with the same argv (nothing to resume)"
        } else {
            "started again with the same argv"
        };
        return (req, note.to_string());
    };
    // A workflow run starts again from its template; its argv is rebuilt.
    req.argv.clear();
    req.workflow = agent.workflow.clone();
    req.prompt = agent.prompt.clone();
    req.overrides = Overrides {
        model: agent.template.model.clone(),
        max_turns: agent.template.max_turns,
        permission_mode: agent.template.permission_mode.clone(),
        allowed_tools: Some(agent.template.allowed_tools.clone()),
        append_system_prompt: agent.template.append_system_prompt.clone(),
    };
    let session = old
        .agent
        .as_ref()
        .map(|a| a.session_id.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| agent.resume_session.clone());
    let note = match (resume, session) {
        (true, Some(s)) => {
            req.resume_session = Some(s.clone());
            format!("resuming session {s} in the same cwd and HOME")
        }
        (true, None) => {
            "the old run has no session id (it never got through start-up): started fresh with the same parameters".to_string()
        }
        (false, _) => "started fresh with the same parameters".to_string(),
    };
    (req, note)
}

/// A cloneable handle on the core.
#[derive(Clone)]
pub struct SupervisorHandle {
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) events: broadcast::Sender<RunEvent>,
}

impl SupervisorHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ApiError::Unavailable("the daemon is shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Unavailable("the daemon is shutting down".into()))
    }

    pub async fn spawn(&self, req: SpawnRequest) -> Result<RunRecord, ApiError> {
        let req = Box::new(req);
        self.ask(|reply| Msg::Spawn { req, reply }).await?
    }

    pub async fn get(&self, run_id: &str) -> Result<RunRecord, ApiError> {
        let run_id = run_id.to_string();
        self.ask(|reply| Msg::Get { run_id, reply }).await?
    }

    /// Runs matching `filter`, newest first.
    pub async fn list(&self, filter: Selector, limit: usize) -> Result<Vec<RunRecord>, ApiError> {
        Ok(self.list_page(filter, limit, None).await?.0)
    }

    /// One page of the runs matching `filter`, newest first: at most `size` (0: all), after
    /// the page that `after` ended (a cursor from an earlier page), and the cursor of the next
    /// page when more match. Runs spawned meanwhile never shift the pages (they are newer).
    pub async fn list_page(
        &self,
        filter: Selector,
        size: usize,
        after: Option<u64>,
    ) -> Result<(Vec<RunRecord>, Option<u64>), ApiError> {
        self.ask(|reply| Msg::List {
            filter,
            limit: size,
            before: after,
            reply,
        })
        .await
    }

    /// Cancel a queued or live run.
    pub async fn cancel(&self, run_id: &str, reason: &str) -> Result<CancelOutcome, ApiError> {
        let run_id = run_id.to_string();
        let reason = reason.to_string();
        self.ask(|reply| Msg::Cancel {
            run_id,
            reason,
            reply,
        })
        .await?
    }

    /// Pause or resume a queue, or set its limit until the next reload.
    pub async fn update_queue(
        &self,
        queue: &str,
        paused: Option<bool>,
        max_concurrent: Option<usize>,
    ) -> Result<QueueFigures, ApiError> {
        let queue = queue.to_string();
        self.ask(|reply| Msg::UpdateQueue {
            queue,
            paused,
            max_concurrent,
            reply,
        })
        .await?
    }

    /// Figures of every configured queue.
    pub async fn queue_health(&self) -> Result<Vec<QueueFigures>, ApiError> {
        self.ask(|reply| Msg::QueueHealth { reply }).await
    }

    pub async fn kill(
        &self,
        run_id: &str,
        force: bool,
        grace: Option<Duration>,
        reason: &str,
    ) -> Result<KillOutcome, ApiError> {
        let run_id = run_id.to_string();
        let intent = EndIntent::Kill {
            reason: reason.to_string(),
        };
        self.ask(|reply| Msg::Kill {
            run_id,
            force,
            grace,
            intent,
            reply,
        })
        .await?
    }

    /// Force-kill a live run and record `outcome` (SUCCEEDED or FAILED) as its status.
    pub async fn force_complete(
        &self,
        run_id: &str,
        outcome: RunStatus,
        reason: &str,
    ) -> Result<RunRecord, ApiError> {
        let run_id = run_id.to_string();
        let intent = EndIntent::Complete {
            outcome,
            reason: reason.to_string(),
        };
        self.ask(|reply| Msg::Kill {
            run_id,
            force: true,
            grace: None,
            intent,
            reply,
        })
        .await?
        .map(|o| o.run)
    }

    /// End the old run if it is live (graceful kill), then start its spec again, linked to it.
    /// With `resume`, a workflow run with a session id continues that session (`--resume`, same
    /// cwd and HOME); the note says whether it did.
    pub async fn restart(
        &self,
        run_id: &str,
        reason: &str,
        resume: bool,
    ) -> Result<(RunRecord, String), ApiError> {
        let old = self.get(run_id).await?;
        if !old.status.is_terminal() {
            let why = if reason.is_empty() {
                "restart".to_string()
            } else {
                format!("restart: {reason}")
            };
            match self.kill(run_id, false, None, &why).await {
                Ok(_) | Err(ApiError::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let old = self.get(run_id).await?;
        let (req, note) = restart_request(&old, resume);
        Ok((self.spawn(req).await?, note))
    }

    pub async fn logs(&self, run_id: &str) -> Result<LogSource, ApiError> {
        let run_id = run_id.to_string();
        self.ask(|reply| Msg::Logs { run_id, reply }).await?
    }

    /// Remove one finished run and its logs; a live one only with `force`, which kills it first.
    pub async fn purge_run(
        &self,
        run_id: &str,
        force: bool,
        reason: &str,
    ) -> Result<Vec<String>, ApiError> {
        let run = self.get(run_id).await?;
        if !run.status.is_terminal() {
            if !force {
                return Err(ApiError::FailedPrecondition(format!(
                    "run {run_id} is {}: kill it first, or purge with force",
                    run.status.as_str()
                )));
            }
            let why = if reason.is_empty() {
                "purge".to_string()
            } else {
                format!("purge: {reason}")
            };
            match self.kill(run_id, true, None, &why).await {
                Ok(_) | Err(ApiError::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let run_id = Some(run_id.to_string());
        self.ask(|reply| Msg::Purge {
            run_id,
            status: None,
            ended_before: i64::MAX,
            reply,
        })
        .await?
    }

    /// Remove every finished run of `status` that ended before `ended_before` (Unix ms).
    pub async fn purge_where(
        &self,
        status: RunStatus,
        ended_before: i64,
    ) -> Result<Vec<String>, ApiError> {
        self.ask(|reply| Msg::Purge {
            run_id: None,
            status: Some(status),
            ended_before,
            reply,
        })
        .await?
    }

    /// (live runs, all runs, queued runs).
    pub async fn counts(&self) -> Result<(usize, usize, usize), ApiError> {
        self.ask(|reply| Msg::Counts { reply }).await
    }

    pub async fn workflows(&self) -> Result<Vec<crate::config::Workflow>, ApiError> {
        self.ask(|reply| Msg::Workflows { reply }).await
    }

    /// Apply a re-read config; returns the keys that changed but need a restart to apply.
    pub async fn reload(&self, config: crate::config::Config) -> Result<Vec<String>, ApiError> {
        let config = Box::new(config);
        self.ask(|reply| Msg::Reload { config, reply }).await
    }

    /// Test-only fault switch: wedge the core task.
    pub async fn wedge(&self) {
        let _ = self.tx.send(Msg::Wedge).await;
    }

    /// Every state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.events.subscribe()
    }

    /// End every live run through the kill state machine; returns when all have ended.
    pub async fn shutdown(&self) -> Result<(), ApiError> {
        self.ask(|reply| Msg::Shutdown { reply }).await
    }
}
