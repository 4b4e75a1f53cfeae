//! [`Api`]: a client of a site's daemon over its unix socket, with the calls and waits the tests
//! share.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Uri};
use tonic::{Status, Streaming};
use wf_supervisor::proto::supervisor_client::SupervisorClient;
use wf_supervisor::proto::{
    AckAlertRequest, Alert, AuditRecord, ForceCompleteRequest, GetHealthRequest, GetHealthResponse,
    GetRequest, KillRequest, KillResponse, ListAuditRequest, ListRequest, LogStream, LogsRequest,
    PurgeRequest, PurgeResponse, RestartRequest, RestartResponse, Run, RunEvent, RunStatus,
    SpawnRequest, WatchRequest,
};

use super::{is_terminal, wait_for, Proc, TIMEOUT};

/// What a channel connects through: a new connection to the unix socket at `socket` each time.
pub(super) fn unix_connector(
    socket: &Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send,
> + Clone
       + Send
       + 'static {
    let path = socket.to_path_buf();
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    })
}

/// A client of the daemon of one site; cheap to clone and `'static`, for use from spawned tasks.
/// Every run it spawns is tagged and remembered for the site's cleanup.
#[derive(Clone)]
pub struct Api {
    pub client: SupervisorClient<Channel>,
    tag: String,
    runs: Arc<Mutex<BTreeSet<String>>>,
}

impl Api {
    pub(super) fn new(
        client: SupervisorClient<Channel>,
        tag: String,
        runs: Arc<Mutex<BTreeSet<String>>>,
    ) -> Api {
        Api { client, tag, runs }
    }

    fn remember(&self, run: &Run) {
        self.runs
            .lock()
            .expect("runs lock")
            .insert(run.run_id.clone());
    }

    /// Spawns with the request as given (plus the cleanup tag).
    pub async fn try_spawn(&self, mut request: SpawnRequest) -> Result<Run, Status> {
        request
            .env
            .insert("WF_TEST_TAG".to_string(), self.tag.clone());
        let run = self
            .client
            .clone()
            .spawn(request)
            .await?
            .into_inner()
            .run
            .ok_or_else(|| Status::internal("SpawnResponse without a run"))?;
        self.remember(&run);
        Ok(run)
    }

    /// Spawns `argv`; panics on error.
    pub async fn spawn(&self, argv: &[String]) -> Run {
        self.spawn_req(SpawnRequest {
            argv: argv.to_vec(),
            ..Default::default()
        })
        .await
    }

    /// Spawns; panics on error.
    pub async fn spawn_req(&self, request: SpawnRequest) -> Run {
        let argv = request.argv.clone();
        self.try_spawn(request)
            .await
            .unwrap_or_else(|s| panic!("Spawn {argv:?} failed: {s:?}"))
    }

    pub async fn try_get(&self, run_id: &str) -> Result<Run, Status> {
        Ok(self
            .client
            .clone()
            .get(GetRequest {
                run_id: run_id.to_string(),
            })
            .await?
            .into_inner())
    }

    pub async fn get(&self, run_id: &str) -> Run {
        self.try_get(run_id)
            .await
            .unwrap_or_else(|s| panic!("Get {run_id} failed: {s:?}"))
    }

    /// Every run, newest first.
    pub async fn list(&self) -> Vec<Run> {
        self.list_req(ListRequest::default()).await
    }

    pub async fn list_req(&self, request: ListRequest) -> Vec<Run> {
        self.client
            .clone()
            .list(request)
            .await
            .unwrap_or_else(|s| panic!("List failed: {s:?}"))
            .into_inner()
            .runs
    }

    /// Waits until the run reaches a terminal status.
    pub async fn wait_terminal(&self, run_id: &str, timeout: Duration) -> Run {
        wait_for(timeout, &format!("{run_id} to end"), || async {
            let run = self.get(run_id).await;
            is_terminal(run.status()).then_some(run)
        })
        .await
    }

    /// Waits until the run has the status `status`; panics when it ends first (unless
    /// `status` is the end it was waited for).
    pub async fn wait_status(&self, run_id: &str, status: RunStatus) -> Run {
        wait_for(TIMEOUT, &format!("{run_id} to be {status:?}"), || async {
            let run = self.get(run_id).await;
            assert!(
                !is_terminal(run.status()) || is_terminal(status),
                "{run_id} ended before it was seen {status:?}: {run:?}"
            );
            (run.status() == status).then_some(run)
        })
        .await
    }

    /// Waits until the run is RUNNING.
    pub async fn wait_running(&self, run_id: &str) -> Run {
        self.wait_status(run_id, RunStatus::Running).await
    }

    pub async fn try_kill(&self, request: KillRequest) -> Result<KillResponse, Status> {
        Ok(self.client.clone().kill(request).await?.into_inner())
    }

    /// Graceful kill with the run's own grace.
    pub async fn kill(&self, run_id: &str) -> KillResponse {
        self.try_kill(KillRequest {
            run_id: run_id.to_string(),
            reason: "integration test".to_string(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("Kill {run_id} failed: {s:?}"))
    }

    /// Restarts (without resume) with the harness's reason.
    pub async fn try_restart(&self, run_id: &str) -> Result<RestartResponse, Status> {
        self.try_restart_req(RestartRequest {
            run_id: run_id.to_string(),
            reason: "integration test".to_string(),
            ..Default::default()
        })
        .await
    }

    /// Restarts with the request as given; the new run is remembered for cleanup.
    pub async fn try_restart_req(
        &self,
        request: RestartRequest,
    ) -> Result<RestartResponse, Status> {
        let response = self.client.clone().restart(request).await?.into_inner();
        if let Some(run) = &response.run {
            self.remember(run);
        }
        Ok(response)
    }

    pub async fn try_force_complete(&self, request: ForceCompleteRequest) -> Result<Run, Status> {
        Ok(self
            .client
            .clone()
            .force_complete(request)
            .await?
            .into_inner())
    }

    pub async fn try_purge(&self, request: PurgeRequest) -> Result<PurgeResponse, Status> {
        Ok(self.client.clone().purge(request).await?.into_inner())
    }

    /// The audit records of one run (all records for ""), newest first.
    pub async fn audit(&self, run_id: &str) -> Vec<AuditRecord> {
        self.audit_req(ListAuditRequest {
            run_id: run_id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn audit_req(&self, request: ListAuditRequest) -> Vec<AuditRecord> {
        let run_id = request.run_id.clone();
        self.client
            .clone()
            .list_audit(request)
            .await
            .unwrap_or_else(|s| panic!("ListAudit {run_id:?} failed: {s:?}"))
            .into_inner()
            .records
    }

    /// Asserts that the trail holds a record of `action` on the run with `outcome` ("ok",
    /// "refused", "failed") made by this test process's user over the unix socket.
    pub async fn assert_audited(&self, run_id: &str, action: &str, outcome: &str) {
        let records = self.audit(run_id).await;
        let uid = nix::unistd::geteuid().as_raw();
        assert!(
            records.iter().any(|r| r.action == action
                && r.outcome == outcome
                && r.run_id == run_id
                && r.uid == Some(uid)),
            "no audit record {action}/{outcome} by uid {uid} for {run_id}: {records:#?}"
        );
    }

    pub async fn health(&self) -> GetHealthResponse {
        self.client
            .clone()
            .get_health(GetHealthRequest {})
            .await
            .unwrap_or_else(|s| panic!("GetHealth failed: {s:?}"))
            .into_inner()
    }

    pub async fn try_ack_alert(&self, id: i64, note: &str) -> Result<Alert, Status> {
        Ok(self
            .client
            .clone()
            .ack_alert(AckAlertRequest {
                id,
                note: note.to_string(),
            })
            .await?
            .into_inner())
    }

    /// A Watch of one run (of every run for ""); once this returns, the daemon has subscribed it.
    pub async fn watch(&self, run_id: &str) -> Streaming<RunEvent> {
        self.client
            .clone()
            .watch(WatchRequest {
                run_id: run_id.to_string(),
            })
            .await
            .unwrap_or_else(|s| panic!("Watch {run_id:?} failed: {s:?}"))
            .into_inner()
    }

    /// The last `tail_bytes` of stdout and of stderr (Logs without follow).
    pub async fn logs(&self, run_id: &str, tail_bytes: u64) -> (Vec<u8>, Vec<u8>) {
        let mut stream = self
            .client
            .clone()
            .logs(LogsRequest {
                run_id: run_id.to_string(),
                follow: false,
                tail_bytes,
            })
            .await
            .unwrap_or_else(|s| panic!("Logs {run_id} failed: {s:?}"))
            .into_inner();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(chunk) = stream
            .message()
            .await
            .unwrap_or_else(|s| panic!("Logs {run_id} stream failed: {s:?}"))
        {
            match chunk.stream() {
                LogStream::Stdout => out.extend_from_slice(&chunk.data),
                LogStream::Stderr => err.extend_from_slice(&chunk.data),
                LogStream::Unspecified => panic!("a log chunk without a stream"),
            }
        }
        (out, err)
    }

    /// Stdout and stderr as text (the last MiB of each).
    pub async fn output(&self, run_id: &str) -> (String, String) {
        let (out, err) = self.logs(run_id, 1 << 20).await;
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    /// Stdout as text (the last MiB).
    pub async fn stdout(&self, run_id: &str) -> String {
        self.output(run_id).await.0
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it.
    pub async fn wait_line(&self, run_id: &str, prefix: &str) -> String {
        wait_for(
            TIMEOUT,
            &format!("a line {prefix:?} on the stdout of {run_id}"),
            || async {
                let out = self.stdout(run_id).await;
                out.lines()
                    .find_map(|l| l.strip_prefix(prefix))
                    .map(str::to_string)
            },
        )
        .await
    }

    /// Waits for the fake agent's `children:` and/or `escapee:` lines and captures the reported
    /// processes, together with the run's leader, while they are alive.
    pub async fn fake_agent_procs(&self, run: &Run, children: bool, escapee: bool) -> Vec<Proc> {
        let mut pids = vec![run.pid];
        if children {
            let line = self.wait_line(&run.run_id, "children: ").await;
            pids.extend(
                line.split_whitespace()
                    .map(|p| p.parse::<i32>().expect("a pid")),
            );
        }
        if escapee {
            let line = self.wait_line(&run.run_id, "escapee: ").await;
            pids.push(line.trim().parse().expect("a pid"));
        }
        pids.into_iter()
            .map(|pid| {
                let proc = Proc::capture(pid)
                    .unwrap_or_else(|| panic!("process {pid} of {} is not alive", run.run_id));
                assert!(
                    proc.is_live(),
                    "process {pid} of {} is not alive: {proc:?}",
                    run.run_id
                );
                proc
            })
            .collect()
    }
}
