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
}

/// Where a run's logs are and how far they have been written.
#[derive(Debug, Clone)]
pub struct LogSource {
    pub dir: PathBuf,
    pub progress: watch::Receiver<OutputProgress>,
}

/// The spawn that restarts `old`, and a note saying how.
pub fn restart_request(old: &RunRecord, resume: bool) -> (SpawnRequest, String) {
    let spec = &old.spec;
    let mut req = SpawnRequest {
        argv: spec.argv.clone(),
        cwd: spec.cwd.display().to_string(),
        env: spec.env.clone(),
        labels: spec.labels.clone(),
        stop_signals: spec.stop_signals.clone(),
        grace_ms: spec.grace.as_millis() as u64,
        restart_of: Some((old.run_id.clone(), old.attempt + 1)),
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
        self.ask(|reply| Msg::Spawn { req, reply }).await?
    }

    pub async fn get(&self, run_id: &str) -> Result<RunRecord, ApiError> {
        let run_id = run_id.to_string();
        self.ask(|reply| Msg::Get { run_id, reply }).await?
    }

    pub async fn list(
        &self,
        statuses: Vec<RunStatus>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, ApiError> {
        self.ask(|reply| Msg::List {
            statuses,
            limit,
            reply,
        })
        .await
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

    /// (live runs, all runs).
    pub async fn counts(&self) -> Result<(usize, usize), ApiError> {
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
