//! An MCP client of `wfctl mcp` for the tests: the real binary as a child process on a daemon's
//! socket, spoken to with the rmcp SDK's client over the child's stdin/stdout. The child's stderr
//! (the server's log) goes to a file the test can read; progress notifications are recorded.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam, Tool};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::Value;
use tokio::process::{Child, Command};

/// The client binary under test.
pub const WFCTL: &str = env!("CARGO_BIN_EXE_wfctl");

/// Records what the server notifies.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().expect("progress lock").push(params);
    }
}

/// A running `wfctl mcp` and a client session with it.
pub struct Mcp {
    pub child: Child,
    pub session: RunningService<RoleClient, Recorder>,
    pub recorder: Recorder,
    pub stderr: PathBuf,
}

impl Mcp {
    /// Starts `wfctl --socket SOCKET mcp`, its log at `log`, and initializes a session.
    pub async fn start(socket: &Path, log: &Path) -> Mcp {
        let mut cmd = Command::new(WFCTL);
        cmd.arg("--socket").arg(socket).arg("mcp");
        Mcp::start_command(cmd, log).await
    }

    /// Starts `cmd` (a `wfctl ... mcp`) with piped stdin/stdout and stderr to `log`.
    pub async fn start_command(mut cmd: Command, log: &Path) -> Mcp {
        let stderr = std::fs::File::create(log).expect("creating the MCP server's log");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env("WF_LOG", "info")
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("starting wfctl mcp");
        let stdout = child.stdout.take().expect("its stdout");
        let stdin = child.stdin.take().expect("its stdin");
        let recorder = Recorder::default();
        let session = recorder
            .clone()
            .serve((stdout, stdin))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "initializing an MCP session with wfctl mcp failed: {e}; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        Mcp {
            child,
            session,
            recorder,
            stderr: log.to_path_buf(),
        }
    }

    pub async fn tools(&self) -> Vec<Tool> {
        self.session
            .list_all_tools()
            .await
            .expect("tools/list answers")
    }

    /// Calls a tool; panics on a protocol error (a tool error is a result with isError).
    pub async fn call(&self, name: &str, args: Value) -> CallToolResult {
        call(&self.session, name, args).await
    }

    /// Calls a tool and insists that it succeeded; returns its structured content after checking
    /// that the text beside it is the same JSON.
    pub async fn ok(&self, name: &str, args: Value) -> Value {
        let result = self.call(name, args.clone()).await;
        structured_ok(name, &args, &result)
    }

    /// Calls a tool and insists on an isError result; returns its text.
    pub async fn error(&self, name: &str, args: Value) -> String {
        let result = self.call(name, args.clone()).await;
        assert_eq!(
            result.is_error,
            Some(true),
            "{name} {args} was expected to fail: {result:?}"
        );
        text(&result)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The progress notifications received so far.
    pub fn progress(&self) -> Vec<ProgressNotificationParam> {
        self.recorder
            .progress
            .lock()
            .expect("progress lock")
            .clone()
    }
}

pub async fn call(
    session: &RunningService<RoleClient, Recorder>,
    name: &str,
    args: Value,
) -> CallToolResult {
    let Value::Object(arguments) = args else {
        panic!("tool arguments must be an object: {args}");
    };
    session
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("tools/call {name} is a protocol error: {e}"))
}

/// The text blocks of a result, joined.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured content of a successful result, checked against its text twin.
pub fn structured_ok(name: &str, args: &Value, result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "{name} {args} failed: {}",
        text(result)
    );
    let structured = result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{name}: no structuredContent in {result:?}"));
    let from_text: Value = serde_json::from_str(&text(result))
        .unwrap_or_else(|e| panic!("{name}: the text is not JSON ({e}): {}", text(result)));
    assert_eq!(
        from_text, structured,
        "{name}: the text and the structured content differ"
    );
    structured
}
