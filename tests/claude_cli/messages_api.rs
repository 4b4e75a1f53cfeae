//! A loopback stand-in for the Anthropic Messages API, for driving the real Claude Code CLI
//! (`ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`) without the internet.
//!
//! A minimal HTTP/1.1 server on tokio's `TcpListener` (keep-alive, `Content-Length` or chunked
//! request bodies). What the CLI asks, and what it gets:
//! - `HEAD /` (a connectivity probe before the first call): `200`, empty.
//! - `POST /v1/messages?beta=true` with `"stream": true`: an SSE stream (`message_start`,
//!   `content_block_start` / `_delta` / `_stop` per block, `message_delta` with the stop reason,
//!   `message_stop`); without `stream`, the same message as one JSON body.
//! - `POST /v1/messages/count_tokens`: a token count.
//! - Anything else: `404` with an Anthropic-style error body.
//!
//! The conversation is scripted from the last `user` message of each request: when it holds a
//! `tool_result`, the answer is a final text with `stop_reason: end_turn`; when its text holds the
//! marker `<<bash: COMMAND>>`, the answer is one message with a text block and a `tool_use` block
//! for the `Bash` tool running COMMAND (`stop_reason: tool_use`); when it holds
//! `<<mcp-kill: RUN_ID>>`, the same with a `tool_use` of the wf MCP server's
//! `mcp__wf__kill_workflow` for RUN_ID; otherwise a final text. Every
//! exchange is recorded, with the `X-Claude-Code-Session-Id` header, for the test to compare with
//! what the daemon reports.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where a prompt names the Bash command the stand-in asks the CLI to run.
pub const BASH_MARKER: &str = "<<bash:";
/// Where a prompt names the run the stand-in asks the CLI to kill through the wf MCP server.
pub const MCP_KILL_MARKER: &str = "<<mcp-kill:";
/// The tool the stand-in calls for [`MCP_KILL_MARKER`]: server `wf`, tool `kill_workflow`.
pub const MCP_KILL_TOOL: &str = "mcp__wf__kill_workflow";
const MARKER_END: &str = ">>";
/// The final text of every conversation.
pub const FINAL_TEXT: &str = "All done: the stand-in's final answer.";
/// Requests larger than this are refused (the CLI's first request is about 85 KB).
const MAX_REQUEST: usize = 16 << 20;

/// What the stand-in answered to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An assistant message with a text block and a `Bash` tool_use block.
    ToolUse {
        message_id: String,
        tool_use_id: String,
        command: String,
    },
    /// An assistant message with a text block and a `tool_use` block of an MCP tool.
    McpToolUse {
        message_id: String,
        tool_use_id: String,
        tool: String,
        input: Value,
    },
    /// An assistant message with one text block, `end_turn`.
    Text { message_id: String },
    /// A `count_tokens` answer.
    CountTokens,
    /// A probe answered with this status and no body.
    Empty(u16),
    /// An endpoint the stand-in does not serve.
    NotFound,
    /// A request it could not parse, with why.
    BadRequest(String),
}

impl Reply {
    /// The assistant message id, for the replies that are assistant turns.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            Reply::ToolUse { message_id, .. }
            | Reply::McpToolUse { message_id, .. }
            | Reply::Text { message_id } => Some(message_id),
            _ => None,
        }
    }
}

/// One request and the stand-in's answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    /// With the query, e.g. `/v1/messages?beta=true`.
    pub target: String,
    /// Names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    pub stream: bool,
    pub reply: Reply,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The Claude session the request belongs to (`X-Claude-Code-Session-Id`).
    pub fn session_id(&self) -> Option<&str> {
        self.header("x-claude-code-session-id")
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The request's `messages`, or none.
    pub fn messages(&self) -> &[Value] {
        self.body
            .as_ref()
            .and_then(|b| b.get("messages"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Whether this request was an assistant turn served.
    pub fn is_turn(&self) -> bool {
        self.reply.message_id().is_some()
    }
}

/// The running stand-in; it stops when dropped.
pub struct MessagesApi {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Exchange>>>,
    task: JoinHandle<()>,
}

impl Drop for MessagesApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MessagesApi {
    /// Listens on an ephemeral loopback port.
    pub async fn start() -> MessagesApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the Messages API stand-in");
        let addr = listener.local_addr().expect("its address");
        let log: Arc<Mutex<Vec<Exchange>>> = Arc::default();
        let state = Arc::new(Mutex::new(Counter::default()));
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (log, state) = (log.clone(), state.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve_connection(stream, log, state).await {
                            eprintln!("messages-api stand-in: connection ended: {e}");
                        }
                    });
                }
            })
        };
        MessagesApi { addr, log, task }
    }

    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every exchange so far, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().expect("stand-in log").clone()
    }

    /// The assistant turns served to `session`, in order.
    pub fn turns_of(&self, session: &str) -> Vec<Exchange> {
        self.exchanges()
            .into_iter()
            .filter(|e| e.is_turn() && e.session_id() == Some(session))
            .collect()
    }

    /// `METHOD PATH` of each distinct kind of request seen, with counts, for the report.
    pub fn summary(&self) -> String {
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for e in self.exchanges() {
            let stream = if e.stream { " (stream)" } else { "" };
            let key = format!("{} {}{stream}", e.method, e.target);
            match kinds.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => kinds.push((key, 1)),
            }
        }
        kinds
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Default)]
struct Counter {
    next: u32,
}

/// Bytes read from a connection but not consumed yet.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more; `false` at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        if self.buf.len() > MAX_REQUEST {
            return Err(io::Error::other("request too large"));
        }
        Ok(n > 0)
    }

    /// Takes bytes up to and including `delim`; `None` at a clean EOF before any byte.
    async fn take_until(&mut self, delim: &[u8]) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = find(&self.buf, delim) {
                let rest = self.buf.split_off(i + delim.len());
                return Ok(Some(std::mem::replace(&mut self.buf, rest)));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    async fn take_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        if n > MAX_REQUEST {
            return Err(io::Error::other("request body too large"));
        }
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve_connection(
    stream: TcpStream,
    log: Arc<Mutex<Vec<Exchange>>>,
    state: Arc<Mutex<Counter>>,
) -> io::Result<()> {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let Some(head) = conn.take_until(b"\r\n\r\n").await? else {
            return Ok(());
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split_whitespace();
        let method = request_line.next().unwrap_or_default().to_string();
        let target = request_line.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let size_line = conn
                    .take_until(b"\r\n")
                    .await?
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                let size_text = String::from_utf8_lossy(&size_line);
                let size_text = size_text.trim().split(';').next().unwrap_or_default();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|e| io::Error::other(format!("bad chunk size: {e}")))?;
                if size == 0 {
                    // Trailers end with an empty line.
                    while conn.take_until(b"\r\n").await?.is_some_and(|l| l.len() > 2) {}
                    break;
                }
                body.extend(conn.take_exact(size).await?);
                conn.take_exact(2).await?;
            }
            body
        } else {
            let len = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            conn.take_exact(len).await?
        };
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (exchange, response) = answer(method, target, headers.clone(), &body, &state);
        log.lock().expect("stand-in log").push(exchange);
        conn.stream.write_all(&response).await?;
        conn.stream.flush().await?;
        if close {
            return Ok(());
        }
    }
}

/// The reply to one request, as an exchange record and the response bytes.
fn answer(
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: &[u8],
    state: &Mutex<Counter>,
) -> (Exchange, Vec<u8>) {
    let path = target.split('?').next().unwrap_or_default().to_string();
    let json_body: Option<Value> = (!body.is_empty())
        .then(|| serde_json::from_slice(body).ok())
        .flatten();
    let stream = json_body
        .as_ref()
        .and_then(|b| b.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut exchange = Exchange {
        method: method.clone(),
        target,
        headers,
        body: json_body.clone(),
        stream,
        reply: Reply::NotFound,
    };
    let response = match (method.as_str(), path.as_str()) {
        ("HEAD", _) | ("GET", "/") => {
            exchange.reply = Reply::Empty(200);
            http_response(200, "text/plain", b"")
        }
        ("POST", "/v1/messages/count_tokens") => {
            exchange.reply = Reply::CountTokens;
            let text = json_body
                .as_ref()
                .map(|b| b.to_string())
                .unwrap_or_default();
            let body = json!({ "input_tokens": 1 + text.len() / 4 });
            http_response(200, "application/json", body.to_string().as_bytes())
        }
        ("POST", "/v1/messages") => match &json_body {
            None => {
                let why = "the body is not JSON".to_string();
                exchange.reply = Reply::BadRequest(why.clone());
                error_response(400, "invalid_request_error", &why)
            }
            Some(request) => {
                let n = {
                    let mut s = state.lock().expect("stand-in state");
                    s.next += 1;
                    s.next
                };
                let (reply, message) = script(request, n);
                exchange.reply = reply;
                if stream {
                    http_response(200, "text/event-stream", &sse(&message))
                } else {
                    http_response(200, "application/json", message.to_string().as_bytes())
                }
            }
        },
        _ => error_response(
            404,
            "not_found_error",
            &format!("{method} {path} is not served"),
        ),
    };
    (exchange, response)
}

/// The scripted assistant message for `request`, the `n`th turn served.
fn script(request: &Value, n: u32) -> (Reply, Value) {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-stand-in");
    let message_id = format!("msg_wftest{n:04}");
    let last_user = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        });
    let content = last_user.and_then(|m| m.get("content"));
    let blocks: Vec<&Value> = match content {
        Some(Value::Array(blocks)) => blocks.iter().collect(),
        Some(v) => vec![v],
        None => Vec::new(),
    };
    let answers_a_tool = blocks
        .iter()
        .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
    let text: String = blocks
        .iter()
        .filter_map(|b| b.as_str().or_else(|| b.get("text").and_then(Value::as_str)))
        .collect::<Vec<_>>()
        .join("\n");
    let marked = |marker: &str| {
        (!answers_a_tool)
            .then(|| {
                let start = text.rfind(marker)? + marker.len();
                let len = text[start..].find(MARKER_END)?;
                Some(text[start..start + len].trim().to_string())
            })
            .flatten()
    };
    let command = marked(BASH_MARKER);
    let kill = marked(MCP_KILL_MARKER);
    let usage = json!({
        "input_tokens": 12,
        "output_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0
    });
    if let (None, Some(run_id)) = (&command, kill) {
        let tool_use_id = format!("toolu_wftest{n:04}");
        let input =
            json!({ "run_id": run_id, "reason": "stuck: the stand-in's orchestrator ends it" });
        let message = json!({
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [
                { "type": "text", "text": "That run is stuck; I will kill it with the wf server." },
                { "type": "tool_use", "id": tool_use_id, "name": MCP_KILL_TOOL, "input": input }
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": usage
        });
        return (
            Reply::McpToolUse {
                message_id,
                tool_use_id,
                tool: MCP_KILL_TOOL.to_string(),
                input,
            },
            message,
        );
    }
    match command {
        Some(command) => {
            let tool_use_id = format!("toolu_wftest{n:04}");
            let message = json!({
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [
                    { "type": "text", "text": "I will run that with the Bash tool." },
                    {
                        "type": "tool_use",
                        "id": tool_use_id,
                        "name": "Bash",
                        "input": { "command": command, "description": "Run the requested command" }
                    }
                ],
                "stop_reason": "tool_use",
                "stop_sequence": null,
                "usage": usage
            });
            (
                Reply::ToolUse {
                    message_id,
                    tool_use_id,
                    command,
                },
                message,
            )
        }
        None => {
            let message = json!({
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{ "type": "text", "text": FINAL_TEXT }],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": usage
            });
            (Reply::Text { message_id }, message)
        }
    }
}

/// The SSE body that streams `message` the way the Messages API does.
fn sse(message: &Value) -> Vec<u8> {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    };
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    event(
        "message_start",
        json!({ "type": "message_start", "message": start }),
    );
    event("ping", json!({ "type": "ping" }));
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let (empty, delta) = match block["type"].as_str() {
            Some("tool_use") => {
                let mut empty = block.clone();
                empty["input"] = json!({});
                let delta = json!({
                    "type": "input_json_delta",
                    "partial_json": block["input"].to_string()
                });
                (empty, delta)
            }
            _ => (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta", "text": block["text"] }),
            ),
        };
        event(
            "content_block_start",
            json!({ "type": "content_block_start", "index": index, "content_block": empty }),
        );
        event(
            "content_block_delta",
            json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
        event(
            "content_block_stop",
            json!({ "type": "content_block_stop", "index": index }),
        );
    }
    event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": { "stop_reason": message["stop_reason"], "stop_sequence": null },
            "usage": { "output_tokens": message["usage"]["output_tokens"] }
        }),
    );
    event("message_stop", json!({ "type": "message_stop" }));
    out.into_bytes()
}

fn error_response(status: u16, kind: &str, message: &str) -> Vec<u8> {
    let body = json!({ "type": "error", "error": { "type": kind, "message": message } });
    http_response(status, "application/json", body.to_string().as_bytes())
}

fn http_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\n\
         request-id: req_wftest\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
