//! The gRPC API: `wf.supervisor.v1.Supervisor`. Handlers check the request's shape, turn it into
//! a message for the core through `SupervisorHandle`, and convert the answer; errors become
//! statuses in `status.rs` only.
mod convert;
mod logs;
mod status;

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::proto;
use crate::proto::supervisor_server::Supervisor;
use crate::run::RunStatus;
use crate::supervisor::{ApiError, SpawnRequest, SupervisorHandle};

pub use convert::{run_to_proto, status_from_proto, status_to_proto};

/// The service; cheap to clone.
#[derive(Clone)]
pub struct SupervisorService {
    handle: SupervisorHandle,
    /// Fired at shutdown so that endless streams (Watch, Logs --follow) end.
    shutdown: CancellationToken,
}

impl SupervisorService {
    pub fn new(handle: SupervisorHandle, shutdown: CancellationToken) -> Self {
        SupervisorService { handle, shutdown }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn need_run_id(run_id: &str) -> Result<(), Status> {
    if run_id.is_empty() {
        return Err(ApiError::invalid("run_id", "is required").into());
    }
    Ok(())
}

#[tonic::async_trait]
impl Supervisor for SupervisorService {
    async fn spawn(
        &self,
        request: Request<proto::SpawnRequest>,
    ) -> Result<Response<proto::SpawnResponse>, Status> {
        let r = request.into_inner();
        let run = self
            .handle
            .spawn(SpawnRequest {
                argv: r.argv,
                cwd: r.cwd,
                env: r.env.into_iter().collect(),
                labels: r.labels.into_iter().collect(),
                stop_signals: r.stop_signals,
                grace_ms: r.grace_ms,
                restart_of: None,
            })
            .await?;
        Ok(Response::new(proto::SpawnResponse {
            run: Some(run_to_proto(&run)),
        }))
    }

    async fn get(&self, request: Request<proto::GetRequest>) -> Result<Response<proto::Run>, Status> {
        let r = request.into_inner();
        need_run_id(&r.run_id)?;
        let run = self.handle.get(&r.run_id).await?;
        Ok(Response::new(run_to_proto(&run)))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        let r = request.into_inner();
        let mut statuses = Vec::new();
        for (i, s) in r.statuses.iter().enumerate() {
            match status_from_proto(*s) {
                Some(st) => statuses.push(st),
                None => {
                    return Err(ApiError::invalid(
                        "statuses",
                        format!("statuses[{i}] = {s} is not a run status"),
                    )
                    .into())
                }
            }
        }
        let runs = self.handle.list(statuses, r.limit as usize).await?;
        Ok(Response::new(proto::ListResponse {
            runs: runs.iter().map(run_to_proto).collect(),
        }))
    }

    async fn kill(
        &self,
        request: Request<proto::KillRequest>,
    ) -> Result<Response<proto::KillResponse>, Status> {
        let r = request.into_inner();
        need_run_id(&r.run_id)?;
        if r.grace_ms > 3_600_000 {
            return Err(ApiError::invalid("grace_ms", "is over the limit of 3600000 (one hour)").into());
        }
        let grace = (r.grace_ms > 0).then(|| Duration::from_millis(r.grace_ms));
        let out = self.handle.kill(&r.run_id, r.force, grace, &r.reason).await?;
        Ok(Response::new(convert::kill_to_proto(&out.run, &out.report)))
    }

    async fn restart(
        &self,
        request: Request<proto::RestartRequest>,
    ) -> Result<Response<proto::RestartResponse>, Status> {
        let r = request.into_inner();
        need_run_id(&r.run_id)?;
        let run = self.handle.restart(&r.run_id, &r.reason).await?;
        Ok(Response::new(proto::RestartResponse {
            old_run_id: r.run_id,
            run: Some(run_to_proto(&run)),
        }))
    }

    async fn force_complete(
        &self,
        request: Request<proto::ForceCompleteRequest>,
    ) -> Result<Response<proto::Run>, Status> {
        let r = request.into_inner();
        need_run_id(&r.run_id)?;
        let outcome = match proto::Outcome::try_from(r.outcome) {
            Ok(proto::Outcome::Succeeded) => RunStatus::Succeeded,
            Ok(proto::Outcome::Failed) => RunStatus::Failed,
            _ => {
                return Err(ApiError::invalid(
                    "outcome",
                    "must be OUTCOME_SUCCEEDED or OUTCOME_FAILED",
                )
                .into())
            }
        };
        let run = self.handle.force_complete(&r.run_id, outcome, &r.reason).await?;
        Ok(Response::new(run_to_proto(&run)))
    }

    type WatchStream = BoxStream<proto::RunEvent>;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        // Subscribe first, then look the run up, so no change falls between the two.
        let mut events = self.handle.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let only = if r.run_id.is_empty() {
            None
        } else {
            let run = self.handle.get(&r.run_id).await?;
            let first = proto::RunEvent {
                run_id: run.run_id.clone(),
                at: crate::time::now_ms(),
                kind: "snapshot".into(),
                status: status_to_proto(run.status) as i32,
                message: String::new(),
                run: Some(run_to_proto(&run)),
            };
            let terminal = run.status.is_terminal();
            let _ = tx.send(Ok(first)).await;
            if terminal {
                return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
            }
            Some(run.run_id)
        };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tx.closed() => break,
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(ev) => {
                        if only.as_deref().is_some_and(|id| id != ev.run_id) {
                            continue;
                        }
                        let done = only.is_some() && ev.run.status.is_terminal();
                        if tx.send(Ok(convert::event_to_proto(&ev))).await.is_err() || done {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a Watch stream fell behind; events were skipped");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type LogsStream = BoxStream<proto::LogChunk>;

    async fn logs(
        &self,
        request: Request<proto::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let r = request.into_inner();
        need_run_id(&r.run_id)?;
        let source = self.handle.logs(&r.run_id).await?;
        let tail = if r.tail_bytes == 0 { 64 * 1024 } else { r.tail_bytes };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(logs::stream_logs(source, tail, r.follow, tx, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
