//! `wfctl mcp`: an MCP server on stdin/stdout, so that an orchestrating agent (another Claude
//! Code session) spawns, watches, kills, restarts and completes workflow runs through tools.
//!
//! Theory of operation: one [`WfServer`] holds the daemon's address and a gRPC client, reached
//! exactly as every other wfctl subcommand reaches it (`connect.rs`: --socket, --addr and the
//! environment), so the daemon sees this process's own caller identity and applies its roles and
//! audit unchanged; the server adds no authority of its own. Each tool is one method with a typed
//! parameter struct whose doc comments are its schema, answering with a JSON object (the output
//! schema and `structuredContent`, the same JSON as text beside it) built in `mcp_view.rs`.
//!
//! Errors of the daemon (unknown run, already ended, permission denied, unimplemented) and bad
//! arguments the schema cannot express are tool results with `isError` and the daemon's own
//! message, never protocol errors and never a made-up success. A daemon that cannot be reached
//! is tried again at the next call and reported per call; every call has a deadline, so a daemon
//! that stops answering is reported too rather than waited on forever. The server ends when its
//! stdin closes, and a `wait_for_run` in progress ends with it.
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Args;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use wf_supervisor::proto::{
    CancelRequest, ForceCompleteRequest, GetQueueHealthRequest, GetRequest, KillRequest,
    ListRequest, ListWorkflowsRequest, LogStream, LogsRequest, Outcome, RestartRequest, Run,
    RunStatus, SpawnOverrides, SpawnRequest, WatchRequest,
};

use super::connect::{self, Target};
use super::mcp_view::{self as view, *};
use super::{code_words, Client};

/// The deadline of a call that only reads.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline of a call that changes something (a kill waits for its grace and verification).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How often `wait_for_run` looks at the run (a Watch event wakes it sooner).
const WAIT_POLL: Duration = Duration::from_secs(1);
/// The longest `wait_for_run` goes without a progress notification.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The reason recorded for a change the model gave no reason for.
const DEFAULT_REASON: &str = "requested over MCP (wfctl mcp)";

#[derive(Debug, Args)]
pub struct McpArgs {}

/// Serve MCP on stdin/stdout until stdin closes.
pub async fn run(
    target: Target,
    creds: connect::Credentials,
    _args: McpArgs,
) -> anyhow::Result<ExitCode> {
    init_logging();
    info!(daemon = %target, "serving MCP on stdio");
    let server = WfServer::new(target, creds);
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let stdin = EofSignal {
        inner: stdin,
        eof: server.client_gone.clone(),
    };
    let service = server
        .serve((stdin, stdout))
        .await
        .map_err(|e| anyhow::anyhow!("mcp: the client's initialization failed: {e}"))?;
    let reason = service.waiting().await;
    info!(?reason, "MCP session ended");
    Ok(ExitCode::SUCCESS)
}

/// Logs go to stderr (stdout is the protocol), which MCP clients keep; `WF_LOG` sets the filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,wfctl=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Standard input that says when it reached its end: the SDK gives handlers still running a few
/// seconds to answer after EOF, and a wait for a run would use them all; with this, it ends at
/// once.
struct EofSignal<R> {
    inner: R,
    eof: CancellationToken,
}

impl<R: AsyncRead + Unpin> AsyncRead for EofSignal<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            this.eof.cancel();
        }
        polled
    }
}

/// The daemon: where it is, and the client once a connection was made.
struct Daemon {
    target: Target,
    /// Token and TLS files, as wfctl's flags gave them.
    creds: connect::Credentials,
    client: tokio::sync::Mutex<Option<Client>>,
}

/// The MCP server: one per session.
#[derive(Clone)]
pub struct WfServer {
    daemon: Arc<Daemon>,
    /// Cancelled when stdin ends: the client is gone.
    client_gone: CancellationToken,
}

impl WfServer {
    pub fn new(target: Target, creds: connect::Credentials) -> WfServer {
        WfServer {
            daemon: Arc::new(Daemon {
                target,
                creds,
                client: tokio::sync::Mutex::new(None),
            }),
            client_gone: CancellationToken::new(),
        }
    }

    /// The client, connecting first if no connection was made yet (the channel reconnects by
    /// itself after that).
    async fn client(&self) -> Result<Client, String> {
        let mut slot = self.daemon.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = connect::connect_with(&self.daemon.target, &self.daemon.creds)
            .await
            .map_err(|e| format!("{e:#}"))?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// One unary call with its deadline; a failure becomes `WHAT: <code in words>: <the daemon's
    /// message>`.
    async fn call<T, F, Fut>(&self, what: &str, timeout: Duration, f: F) -> Result<T, String>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client().await.map_err(|e| failed(what, e))?;
        match tokio::time::timeout(timeout, f(client)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(failed(what, self.status_text(&status))),
            Err(_) => {
                let after = if timeout > READ_TIMEOUT {
                    " (the daemon may still carry it out: get_run shows the outcome)"
                } else {
                    ""
                };
                Err(failed(
                    what,
                    format!(
                        "wf-supervisor at {} did not answer within {}{after}",
                        self.daemon.target,
                        super::output::fmt_duration_ms(timeout.as_millis() as u64)
                    ),
                ))
            }
        }
    }

    /// A gRPC status in words; a lost connection says where the daemon was expected.
    fn status_text(&self, status: &tonic::Status) -> String {
        let code = code_words(status.code());
        let message = status.message();
        match status.code() {
            tonic::Code::Unavailable => format!(
                "cannot reach wf-supervisor at {}: {code}: {message} (is the daemon running?)",
                self.daemon.target
            ),
            _ if message.is_empty() => code.to_string(),
            _ => format!("{code}: {message}"),
        }
    }

    /// Get, for the tool `what`.
    async fn get(&self, what: &str, run_id: &str) -> Result<Run, String> {
        let request = GetRequest {
            run_id: run_id.to_string(),
        };
        self.call(
            what,
            READ_TIMEOUT,
            |mut c| async move { c.get(request).await },
        )
        .await
    }

    async fn spawn(&self, what: &str, request: SpawnRequest) -> Result<Run, String> {
        let response = self
            .call(what, CHANGE_TIMEOUT, |mut c| async move {
                c.spawn(request).await
            })
            .await?;
        let run = response
            .run
            .ok_or_else(|| failed(what, "the daemon answered without a run".into()))?;
        // A program that cannot be started still gets a run record; the call did not do its job.
        if run.status == RunStatus::Failed as i32 {
            return Err(failed(what, failed_at_start(&run)));
        }
        Ok(run)
    }
}

/// Why a new run failed at start, naming it.
fn failed_at_start(run: &Run) -> String {
    let why = if run.error.is_empty() {
        "no reason given"
    } else {
        &run.error
    };
    format!("the new run {} failed to start: {why}", run.run_id)
}

/// `WHAT: WHY`, logged.
fn failed(what: &str, why: String) -> String {
    let message = format!("{what}: {why}");
    warn!(error = %message, "tool call failed");
    message
}

/// A run id as given, or the error naming the field.
fn run_id(tool: &str, id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() {
        return Err(format!("{tool}: run_id is empty (give a run id such as run_0123456789ab; list_runs shows them)"));
    }
    Ok(id.to_string())
}

fn reason_or_default(reason: Option<String>) -> String {
    reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| DEFAULT_REASON.to_string())
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// Per-spawn changes to the workflow template; what is left out keeps the template's value.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// The Claude model, e.g. "claude-sonnet-4-5".
    pub model: Option<String>,
    /// The most agent turns before the run stops.
    pub max_turns: Option<u32>,
    /// Claude Code's permission mode, e.g. "acceptEdits".
    pub permission_mode: Option<String>,
    /// Replace the template's allowed tools with exactly these.
    pub allowed_tools: Option<Vec<String>>,
    /// Text appended to the agent's system prompt.
    pub append_system_prompt: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpawnWorkflowParams {
    /// The workflow template to start (list_workflow_templates names them).
    pub workflow: String,
    /// The task for the agent (what `claude -p` gets).
    pub prompt: String,
    /// Working directory; it must lie under one of the workflow's allowed_cwds. Default: the
    /// workflow's cwd.
    pub cwd: Option<String>,
    /// Changes to the template for this run only.
    pub overrides: Option<Overrides>,
    /// Labels to find the run by later (list_runs filters on them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The queue to wait in for a slot. Default: the workflow's queue, else "default".
    pub queue: Option<String>,
    /// Higher starts first within the queue (default 0).
    pub priority: Option<i32>,
    /// Run ids that must all have SUCCEEDED before this run starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Wall-clock limit once running, in milliseconds: past it the run is ended as TIMED_OUT.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommandParams {
    /// The program and its arguments, e.g. ["make", "test"]; no shell is involved.
    pub argv: Vec<String>,
    /// Working directory. Default: the daemon's work folder.
    pub cwd: Option<String>,
    /// Extra environment variables for the command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels to find the run by later.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The queue to wait in for a slot. Default: "default".
    pub queue: Option<String>,
    /// Higher starts first within the queue (default 0).
    pub priority: Option<i32>,
    /// Run ids that must all have SUCCEEDED before this run starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Wall-clock limit once running, in milliseconds: past it the run is ended as TIMED_OUT.
    pub timeout_ms: Option<u64>,
}

/// A run status.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusName {
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

impl From<StatusName> for RunStatus {
    fn from(s: StatusName) -> RunStatus {
        match s {
            StatusName::Queued => RunStatus::Queued,
            StatusName::Starting => RunStatus::Starting,
            StatusName::Running => RunStatus::Running,
            StatusName::Stopping => RunStatus::Stopping,
            StatusName::Succeeded => RunStatus::Succeeded,
            StatusName::Failed => RunStatus::Failed,
            StatusName::Killed => RunStatus::Killed,
            StatusName::Cancelled => RunStatus::Cancelled,
            StatusName::TimedOut => RunStatus::TimedOut,
            StatusName::Lost => RunStatus::Lost,
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRunsParams {
    /// Only runs in one of these statuses (live: queued, starting, running, stopping).
    #[serde(default)]
    pub status: Vec<StatusName>,
    /// Only runs of this workflow template.
    pub workflow: Option<String>,
    /// Only runs carrying all of these labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only runs of this queue.
    pub queue: Option<String>,
    /// At most this many runs, newest first (default 20, at most 200).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunIdParams {
    /// The run id, e.g. run_0123456789ab.
    pub run_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetLogsParams {
    /// The run id.
    pub run_id: String,
    /// How many bytes of the end of each stream (stdout, stderr) to return: default 8192, at most
    /// 32768. The result says how much earlier output was left out.
    pub tail_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillParams {
    /// The run id.
    pub run_id: String,
    /// Straight to SIGKILL, without the stop signals and grace (for a run that ignores them).
    #[serde(default)]
    pub force: bool,
    /// Grace between the first stop signal and SIGKILL, in milliseconds. Default: the run's own.
    pub grace_ms: Option<u64>,
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The run id.
    pub run_id: String,
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartParams {
    /// The run id of the run to replace.
    pub run_id: String,
    /// For a workflow run: continue its Claude session (same cwd and HOME) instead of starting
    /// afresh.
    #[serde(default)]
    pub resume: bool,
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

/// How a force-completed run is recorded.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeName {
    Succeeded,
    Failed,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceCompleteParams {
    /// The run id.
    pub run_id: String,
    /// The status to record.
    pub outcome: OutcomeName,
    /// Why, for the audit trail.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The run id.
    pub run_id: String,
    /// How long to wait, in milliseconds: default 120000, at most 600000 (10 minutes). When it
    /// passes first, the result says ended: false; call again to keep waiting.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

// ---------------------------------------------------------------------------------------------
// Tools

#[tool_router]
impl WfServer {
    /// Start a Claude Code agent run from a workflow template of the daemon's config, with a
    /// prompt. Returns the new run at once (it runs, or waits in its queue); follow it with
    /// wait_for_run or get_run. Use list_workflow_templates to see the templates and the
    /// working directories they allow.
    #[tool(annotations(
        title = "Spawn a workflow run",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn spawn_workflow(
        &self,
        Parameters(p): Parameters<SpawnWorkflowParams>,
    ) -> Result<Json<SpawnedRun>, String> {
        let what = format!("spawn_workflow {}", p.workflow);
        if p.workflow.trim().is_empty() {
            return Err(format!(
                "{what}: workflow is empty (list_workflow_templates names them)"
            ));
        }
        if p.prompt.trim().is_empty() {
            return Err(format!("{what}: prompt is empty"));
        }
        let overrides = p.overrides.map(|o| SpawnOverrides {
            model: o.model,
            max_turns: o.max_turns,
            permission_mode: o.permission_mode,
            replace_allowed_tools: o.allowed_tools.is_some(),
            allowed_tools: o.allowed_tools.unwrap_or_default(),
            append_system_prompt: o.append_system_prompt,
        });
        let request = SpawnRequest {
            workflow: p.workflow.clone(),
            prompt: p.prompt,
            cwd: p.cwd.unwrap_or_default(),
            labels: p.labels,
            overrides,
            queue: p.queue.clone().unwrap_or_default(),
            priority: p.priority.unwrap_or(0),
            after: p.after.clone(),
            timeout_ms: p.timeout_ms.unwrap_or(0),
            ..Default::default()
        };
        let run = self.spawn(&what, request).await?;
        info!(run_id = %run.run_id, workflow = %p.workflow, "spawned");
        let warnings = spawn_warnings(p.queue.as_deref(), p.priority, &p.after, p.timeout_ms, &run);
        Ok(Json(SpawnedRun {
            run: run_view(&run),
            warnings,
        }))
    }

    /// Run a plain command (no agent) under the daemon's supervision: killable, logged and
    /// audited like a workflow run. The daemon refuses it unless the caller may run arbitrary
    /// commands. Prefer spawn_workflow for agent work.
    #[tool(annotations(
        title = "Run a command",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn run_command(
        &self,
        Parameters(p): Parameters<RunCommandParams>,
    ) -> Result<Json<SpawnedRun>, String> {
        let what = format!(
            "run_command {}",
            p.argv.first().map(String::as_str).unwrap_or("[]")
        );
        if p.argv.is_empty() || p.argv[0].is_empty() {
            return Err(format!(
                "{what}: argv is empty (give the program and its arguments)"
            ));
        }
        let request = SpawnRequest {
            argv: p.argv,
            cwd: p.cwd.unwrap_or_default(),
            env: p.env,
            labels: p.labels,
            queue: p.queue.clone().unwrap_or_default(),
            priority: p.priority.unwrap_or(0),
            after: p.after.clone(),
            timeout_ms: p.timeout_ms.unwrap_or(0),
            ..Default::default()
        };
        let run = self.spawn(&what, request).await?;
        info!(run_id = %run.run_id, "spawned a command");
        let warnings = spawn_warnings(p.queue.as_deref(), p.priority, &p.after, p.timeout_ms, &run);
        Ok(Json(SpawnedRun {
            run: run_view(&run),
            warnings,
        }))
    }

    /// List runs, newest first, optionally only those of some statuses, a workflow, a queue or
    /// with given labels. Each run has its status, agent phase, turns, cost and health.
    #[tool(annotations(title = "List runs", read_only_hint = true, open_world_hint = false))]
    async fn list_runs(
        &self,
        Parameters(p): Parameters<ListRunsParams>,
    ) -> Result<Json<RunList>, String> {
        let limit = p.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(format!(
                "list_runs: limit {limit} is out of range (1 to {MAX_LIST_LIMIT})"
            ));
        }
        let statuses: Vec<RunStatus> = p.status.iter().map(|s| (*s).into()).collect();
        let request = ListRequest {
            statuses: statuses.iter().map(|s| *s as i32).collect(),
            // One more than asked, to know whether there are more.
            limit: limit + 1,
            queue: p.queue.clone().unwrap_or_default(),
            workflow: p.workflow.clone().unwrap_or_default(),
            labels: p.labels.clone(),
            ..Default::default()
        };
        let matches = |r: &Run| {
            run_matches(
                r,
                &statuses,
                p.workflow.as_deref(),
                p.queue.as_deref(),
                &p.labels,
            )
        };
        let list = |request: ListRequest| {
            self.call("list_runs", READ_TIMEOUT, |mut c| async move {
                c.list(request).await
            })
        };
        let mut found = list(request.clone()).await?.runs;
        let mut note = String::new();
        if !found.iter().all(matches) {
            // This daemon does not apply some filter: search its newest runs here instead.
            found = list(ListRequest {
                limit: LIST_SCAN,
                ..request
            })
            .await?
            .runs;
            if found.len() >= LIST_SCAN as usize {
                note = format!(
                    "this daemon does not filter runs by workflow, queue or labels itself; only \
                     its newest {LIST_SCAN} runs were searched"
                );
            }
        }
        let mut runs: Vec<RunView> = found
            .iter()
            .filter(|r| matches(r))
            .take(limit as usize + 1)
            .map(run_view)
            .collect();
        let limited = runs.len() > limit as usize;
        runs.truncate(limit as usize);
        Ok(Json(RunList {
            runs,
            limited,
            note,
        }))
    }

    /// One run in full: status, command, times, exit, who ended it and why, and for a workflow
    /// run the agent's phase, turns, cost, health, session and final result.
    #[tool(annotations(title = "Get a run", read_only_hint = true, open_world_hint = false))]
    async fn get_run(
        &self,
        Parameters(p): Parameters<RunIdParams>,
    ) -> Result<Json<OneRun>, String> {
        let id = run_id("get_run", &p.run_id)?;
        let run = self.get(&format!("get_run {id}"), &id).await?;
        Ok(Json(OneRun {
            run: run_view(&run),
        }))
    }

    /// The end of a run's output (stdout and stderr, each capped at 32 KiB so the result stays
    /// small); the note says how much earlier output was left out.
    #[tool(annotations(
        title = "Get a run's output",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn get_logs(
        &self,
        Parameters(p): Parameters<GetLogsParams>,
    ) -> Result<Json<Logs>, String> {
        let id = run_id("get_logs", &p.run_id)?;
        let what = format!("get_logs {id}");
        let (tail, capped) = log_tail(p.tail_bytes);
        let request = LogsRequest {
            run_id: id.clone(),
            follow: false,
            tail_bytes: tail,
        };
        let mut stream = self
            .call(
                &what,
                READ_TIMEOUT,
                |mut c| async move { c.logs(request).await },
            )
            .await?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let read = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|s| failed(&what, self.status_text(&s)))?;
                let buf = if chunk.stream == LogStream::Stderr as i32 {
                    &mut err
                } else {
                    &mut out
                };
                buf.extend_from_slice(&chunk.data);
                let keep = last_bytes(buf, tail).len();
                let cut = buf.len() - keep;
                buf.drain(..cut);
            }
            Ok::<(), String>(())
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| failed(&what, "the daemon stopped sending the output".into()))??;
        // Written totals after reading: what was cut is at least this much.
        let run = self.get(&what, &id).await?;
        let shown = (out.len() as u64, err.len() as u64);
        let written = (run.stdout_bytes.max(shown.0), run.stderr_bytes.max(shown.1));
        Ok(Json(Logs {
            note: logs_note(tail, capped, shown, written, run.output_truncated),
            run_id: id,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            stdout_omitted_bytes: written.0 - shown.0,
            stderr_omitted_bytes: written.1 - shown.1,
        }))
    }

    /// End a live run now, with everything it started (children, setsid'd escapees): stop
    /// signals, grace, SIGKILL to the whole run, verification that nothing is left, cleanup. The
    /// run ends KILLED. Returns the kill report: phase, signals sent, survivors (0 when nothing
    /// is left) and cleanup steps. Use for a stuck or runaway run; a run that already ended is
    /// an error saying so.
    #[tool(annotations(
        title = "Kill a workflow run",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn kill_workflow(
        &self,
        Parameters(p): Parameters<KillParams>,
    ) -> Result<Json<KillView>, String> {
        let id = run_id("kill_workflow", &p.run_id)?;
        let what = format!("kill_workflow {id}");
        match (p.force, p.grace_ms) {
            (true, Some(_)) => {
                return Err(format!(
                    "{what}: force and grace_ms exclude each other (force skips the grace)"
                ))
            }
            (_, Some(0)) => {
                return Err(format!(
                    "{what}: grace_ms must be at least 1 (leave it out for the run's own grace)"
                ))
            }
            _ => {}
        }
        let request = KillRequest {
            run_id: id.clone(),
            force: p.force,
            grace_ms: p.grace_ms.unwrap_or(0),
            reason: reason_or_default(p.reason),
            ..Default::default()
        };
        // The kill answers after its grace: wait for that on top.
        let timeout = CHANGE_TIMEOUT + Duration::from_millis(request.grace_ms);
        let response = self
            .call(&what, timeout, |mut c| async move { c.kill(request).await })
            .await?;
        info!(run_id = %id, success = response.success, survivors = response.survivors, "killed");
        Ok(Json(kill_view(&response)))
    }

    /// Cancel a run: one still waiting in its queue is dropped before it starts; a live one is
    /// ended like kill_workflow but recorded CANCELLED. Returns what was done (with the kill
    /// report if processes had to be ended).
    #[tool(annotations(
        title = "Cancel a run",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn cancel_run(
        &self,
        Parameters(p): Parameters<CancelParams>,
    ) -> Result<Json<CancelView>, String> {
        let id = run_id("cancel_run", &p.run_id)?;
        let request = CancelRequest {
            run_id: id.clone(),
            reason: reason_or_default(p.reason),
            ..Default::default()
        };
        let response = self
            .call(
                &format!("cancel_run {id}"),
                CHANGE_TIMEOUT,
                |mut c| async move { c.cancel(request).await },
            )
            .await?;
        Ok(Json(cancel_view(&response)))
    }

    /// Replace a run with a new one of the same spec: the old run is ended first if still live.
    /// With resume, a workflow run continues its Claude session. A run is restarted at most
    /// once (restart the newest attempt). Returns the new run and a note on how it started.
    #[tool(annotations(
        title = "Restart a workflow run",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    async fn restart_workflow(
        &self,
        Parameters(p): Parameters<RestartParams>,
    ) -> Result<Json<RestartView>, String> {
        let id = run_id("restart_workflow", &p.run_id)?;
        let what = format!("restart_workflow {id}");
        let request = RestartRequest {
            run_id: id.clone(),
            reason: reason_or_default(p.reason),
            resume: p.resume,
        };
        let response = self
            .call(&what, CHANGE_TIMEOUT, |mut c| async move {
                c.restart(request).await
            })
            .await?;
        let Some(new) = &response.run else {
            return Err(failed(
                &what,
                "the daemon answered without a new run".into(),
            ));
        };
        if new.status == RunStatus::Failed as i32 {
            return Err(failed(&what, failed_at_start(new)));
        }
        info!(run_id = %id, new_run_id = %new.run_id, "restarted");
        Ok(Json(restart_view(&response)))
    }

    /// Record a run as succeeded or failed by your judgement (e.g. its work is done but it
    /// hangs); a live run is force-killed first. A run that already ended is an error saying so.
    #[tool(annotations(
        title = "Force-complete a workflow run",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn force_complete_workflow(
        &self,
        Parameters(p): Parameters<ForceCompleteParams>,
    ) -> Result<Json<OneRun>, String> {
        let id = run_id("force_complete_workflow", &p.run_id)?;
        let outcome = match p.outcome {
            OutcomeName::Succeeded => Outcome::Succeeded,
            OutcomeName::Failed => Outcome::Failed,
        };
        let request = ForceCompleteRequest {
            run_id: id.clone(),
            outcome: outcome as i32,
            reason: reason_or_default(p.reason),
        };
        let run = self
            .call(
                &format!("force_complete_workflow {id}"),
                CHANGE_TIMEOUT,
                |mut c| async move { c.force_complete(request).await },
            )
            .await?;
        Ok(Json(OneRun {
            run: run_view(&run),
        }))
    }

    /// Wait until a run ends (or the timeout, at most 10 minutes, passes), sending progress
    /// notifications with its status, agent phase, turns and cost meanwhile. Returns the run;
    /// ended: false means it is still going (call again). Cancelling the call stops the wait.
    #[tool(annotations(
        title = "Wait for a run",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn wait_for_run(
        &self,
        Parameters(p): Parameters<WaitParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<Waited>, String> {
        let id = run_id("wait_for_run", &p.run_id)?;
        let what = format!("wait_for_run {id}");
        let timeout_ms = p.timeout_ms.unwrap_or(DEFAULT_WAIT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_WAIT_MS {
            return Err(format!(
                "{what}: timeout_ms {timeout_ms} is out of range (1 to {MAX_WAIT_MS}, 10 minutes)"
            ));
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let token = ctx.meta.get_progress_token();
        // The client's cancellation of this call, or the client gone altogether.
        let ct = ctx.ct.clone();
        let gone = self.client_gone.clone();
        let stop = async move {
            tokio::select! {
                _ = ct.cancelled() => "cancelled by the client",
                _ = gone.cancelled() => "the client closed the connection",
            }
        };
        tokio::pin!(stop);
        let cancelled = |what: &str, why: &str| {
            info!(run_id = %id, "wait_for_run ended: {why}");
            format!("{what}: {why}")
        };
        // Watch events (state changes) wake the loop early; polling Get catches agent progress,
        // which is not an event.
        let watch_request = WatchRequest { run_id: id.clone() };
        let mut watch = tokio::select! {
            why = &mut stop => return Err(cancelled(&what, why)),
            w = self.call(&what, READ_TIMEOUT, |mut c| async move { c.watch(watch_request).await }) => Some(w?),
        };
        let mut last_message = String::new();
        let mut last_sent: Option<Instant> = None;
        let mut last_progress = 0f64;
        loop {
            let run = tokio::select! {
                why = &mut stop => return Err(cancelled(&what, why)),
                r = self.get(&what, &id) => r?,
            };
            let waited_ms = started.elapsed().as_millis() as u64;
            if is_final(run.status) {
                return Ok(Json(Waited {
                    ended: true,
                    waited_ms,
                    run: run_view(&run),
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Json(Waited {
                    ended: false,
                    waited_ms,
                    run: run_view(&run),
                }));
            }
            let message = progress_message(&run);
            let due = last_sent.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
            if let Some(token) = &token {
                if message != last_message || due {
                    // Progress must grow with each notification: seconds waited, over the timeout.
                    let progress = (waited_ms as f64 / 1000.0).max(last_progress + 0.001);
                    last_progress = progress;
                    let param = ProgressNotificationParam::new(token.clone(), progress)
                        .with_total(timeout_ms as f64 / 1000.0)
                        .with_message(message.clone());
                    if let Err(e) = ctx.peer.notify_progress(param).await {
                        warn!(run_id = %id, error = %e, "cannot send progress");
                    }
                    last_message = message;
                    last_sent = Some(Instant::now());
                }
            }
            let next_event = async {
                match watch.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                why = &mut stop => return Err(cancelled(&what, why)),
                _ = tokio::time::sleep_until(deadline) => {}
                _ = tokio::time::sleep(WAIT_POLL) => {}
                ev = next_event => {
                    // The stream ends when the run does (or the daemon goes): poll from now on.
                    if !matches!(ev, Some(Ok(_))) {
                        watch = None;
                    }
                }
            }
        }
    }

    /// Per queue and in total: running and queued runs, limits, paused queues, recent outcomes,
    /// the longest waits, stuck runs and the queue alerts. Use it to decide whether to spawn
    /// more work or where it would wait.
    #[tool(annotations(title = "Queue health", read_only_hint = true, open_world_hint = false))]
    async fn queue_health(
        &self,
        Parameters(_): Parameters<NoParams>,
    ) -> Result<Json<QueueHealthView>, String> {
        let response = self
            .call("queue_health", READ_TIMEOUT, |mut c| async move {
                c.get_queue_health(GetQueueHealthRequest {}).await
            })
            .await?;
        Ok(Json(queue_health_view(&response)))
    }

    /// The workflow templates the daemon's config defines: their names (for spawn_workflow),
    /// model, turns, allowed tools and working directories, stop signals and stuck rules.
    #[tool(annotations(
        title = "List workflow templates",
        read_only_hint = true,
        open_world_hint = false
    ))]
    async fn list_workflow_templates(
        &self,
        Parameters(_): Parameters<NoParams>,
    ) -> Result<Json<WorkflowList>, String> {
        let response = self
            .call(
                "list_workflow_templates",
                READ_TIMEOUT,
                |mut c| async move { c.list_workflows(ListWorkflowsRequest {}).await },
            )
            .await?;
        Ok(Json(WorkflowList {
            workflows: response.workflows.iter().map(view::workflow_view).collect(),
        }))
    }
}

#[tool_handler]
impl ServerHandler for WfServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "wf-supervisor",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Supervise agent workflow runs on this host through the wf-supervisor daemon. \
                 Start work with spawn_workflow (templates: list_workflow_templates) or \
                 run_command; follow it with wait_for_run, get_run, get_logs and list_runs; end \
                 a stuck or runaway run with kill_workflow (or cancel_run), replace it with \
                 restart_workflow, or record its outcome with force_complete_workflow. Every \
                 action is checked against your user's role and audited as your user.",
            )
    }
}
