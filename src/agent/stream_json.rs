//! Decoder for one line of the Claude Code CLI's `--output-format stream-json` output.
//!
//! Each stdout line is one JSON object with a `type`. The decoder keeps only what the supervisor
//! needs to tell progress from a hang and success from failure, and tolerates anything else:
//! a line that is not a JSON object is [`Event::NotJson`], an unknown `type` (or an unknown
//! `system` subtype) is [`Event::Other`], and a field of an unexpected type reads as absent.
//!
//! The shapes, as printed by Claude Code 2.1.x:
//! - `system`/`init`: start-up is done (`session_id`, `model`, `cwd`, `claude_code_version`,
//!   `permissionMode`, `mcp_servers` with their `status`).
//! - `system`/`api_retry`: the CLI retries the API (`attempt`, `max_retries`, `retry_delay_ms` as a
//!   float, `error_status` an HTTP status or null, `error` a short category).
//! - `assistant`: part of a model response; events of one response share `message.id`. The CLI
//!   also prints responses it made up itself with `message.model == "<synthetic>"` (e.g. the text
//!   of an API error), and subagent traffic with `parent_tool_use_id` set.
//! - `user`: tool results (and interruption notices) fed back to the model.
//! - `result`: the last event (`subtype`, `is_error`, `num_turns`, `total_cost_usd`, `duration_ms`,
//!   `result` text when there is one, `errors` on some failures, `session_id`).
use serde_json::{Map, Value};

use super::truncate_text;

/// The `message.model` the CLI uses for responses it produced itself instead of the API.
pub const SYNTHETIC_MODEL: &str = "<synthetic>";

/// Longest text kept from a failure detail inside an [`Outcome`] reason.
const REASON_DETAIL_CHARS: usize = 500;

/// One decoded stdout line.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `system`/`init`: the CLI finished starting up.
    Init(Init),
    /// `system`/`api_retry`: the CLI is retrying an API request.
    ApiRetry(ApiRetry),
    /// `assistant`: (part of) a model response.
    Assistant(Assistant),
    /// `user`: tool results or notices fed back to the model.
    User(User),
    /// `result`: the run's final summary.
    Result(ResultEvent),
    /// A JSON object of a type (or `system` subtype) this decoder does not know, e.g.
    /// `"stream_event"` or `"system/compact_boundary"`; `"(none)"` when there is no `type`.
    Other {
        kind: String,
        session_id: Option<String>,
    },
    /// A line that is not a JSON object.
    NotJson,
    /// An empty or all-whitespace line.
    Blank,
}

impl Event {
    /// The `session_id` the event carries, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Event::Init(e) => e.session_id.as_deref(),
            Event::ApiRetry(e) => e.session_id.as_deref(),
            Event::Assistant(e) => e.session_id.as_deref(),
            Event::User(e) => e.session_id.as_deref(),
            Event::Result(e) => e.session_id.as_deref(),
            Event::Other { session_id, .. } => session_id.as_deref(),
            Event::NotJson | Event::Blank => None,
        }
    }
}

/// `system`/`init`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Init {
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub cwd: Option<String>,
    pub claude_code_version: Option<String>,
    /// `permissionMode` (camel case in the stream).
    pub permission_mode: Option<String>,
    /// MCP servers and their status at start-up (`"pending"` ones may still be connecting).
    pub mcp_servers: Vec<McpServer>,
}

/// An entry of `init.mcp_servers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpServer {
    pub name: String,
    pub status: String,
}

/// `system`/`api_retry`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiRetry {
    /// 1-based number of this retry.
    pub attempt: Option<u32>,
    pub max_retries: Option<u32>,
    /// Delay before the retry, in milliseconds (a float in the stream, e.g. `561.37`).
    pub retry_delay_ms: Option<f64>,
    /// HTTP status of the failed request; absent (null) when there was no response at all.
    pub error_status: Option<i64>,
    /// Short error category, e.g. `"unknown"`, `"rate_limit"`.
    pub error: Option<String>,
    pub session_id: Option<String>,
}

/// `assistant`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assistant {
    /// `message.id`: one response, possibly split over several events.
    pub message_id: Option<String>,
    /// `message.model`; [`SYNTHETIC_MODEL`] for responses the CLI made up.
    pub model: Option<String>,
    /// Set when the event belongs to a subagent (the `Task` tool call that started it).
    pub parent_tool_use_id: Option<String>,
    pub session_id: Option<String>,
    /// Names of the `tool_use` blocks in `message.content`, in order.
    pub tool_uses: Vec<String>,
    /// Whether `message.content` has a `text` block.
    pub has_text: bool,
    /// `message.stop_reason`.
    pub stop_reason: Option<String>,
    /// The event's top-level `error` (e.g. `"server_error"` on a synthetic API-error response).
    pub error: Option<String>,
}

impl Assistant {
    /// A response the CLI produced itself rather than the model.
    pub fn is_synthetic(&self) -> bool {
        self.model.as_deref() == Some(SYNTHETIC_MODEL)
    }

    /// Traffic of a subagent rather than of the run's own conversation.
    pub fn is_subagent(&self) -> bool {
        self.parent_tool_use_id.is_some()
    }

    /// The tool this response calls last, if it calls one.
    pub fn last_tool(&self) -> Option<&str> {
        self.tool_uses.last().map(String::as_str)
    }
}

/// `user`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub parent_tool_use_id: Option<String>,
    pub session_id: Option<String>,
    /// Number of `tool_result` blocks.
    pub tool_results: u32,
    /// Number of `tool_result` blocks with `is_error: true`.
    pub tool_errors: u32,
    /// A text block says the request was interrupted (`[Request interrupted ...]`).
    pub interrupted: bool,
}

impl User {
    /// Traffic of a subagent rather than of the run's own conversation.
    pub fn is_subagent(&self) -> bool {
        self.parent_tool_use_id.is_some()
    }
}

/// `result`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultEvent {
    /// `success`, `error_max_turns`, `error_during_execution`, ... (`success` even on some
    /// failures: see [`ResultEvent::outcome`]).
    pub subtype: String,
    pub is_error: bool,
    /// Turns as the CLI counts them (not always the number of `assistant` responses printed).
    pub num_turns: Option<u32>,
    pub total_cost_usd: Option<f64>,
    pub duration_ms: Option<u64>,
    pub duration_api_ms: Option<u64>,
    /// Final text; absent on some error subtypes.
    pub result: Option<String>,
    /// Error lines, on some failures.
    pub errors: Vec<String>,
    pub session_id: Option<String>,
    pub stop_reason: Option<String>,
    /// Why the CLI's loop ended: `completed`, `max_turns`, `aborted_tools`, ...
    pub terminal_reason: Option<String>,
    pub api_error_status: Option<i64>,
    /// The token counts of the whole session (`usage`).
    pub tokens: Option<Tokens>,
}

/// Token counts of a `result`'s `usage` (each absent or not a count is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_creation_input: u64,
    pub cache_read_input: u64,
}

/// How a run's `result` says it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed { kind: FailureKind, reason: String },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded)
    }
}

/// The class of a failed `result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// `error_max_turns`.
    MaxTurns,
    /// `error_during_execution` (includes interruptions).
    DuringExecution,
    /// `error_max_budget_usd`.
    MaxBudget,
    /// `is_error: true` with subtype `success`: the error is in the result text (e.g. the API
    /// could not be reached).
    ErrorResult,
    /// Any other error subtype, as printed.
    Other(String),
}

impl ResultEvent {
    /// Classify the result: `is_error` first (the subtype says `success` on some failures), then
    /// the subtype (an `error*` subtype fails even without `is_error`).
    pub fn outcome(&self) -> Outcome {
        let error_subtype = self.subtype.starts_with("error");
        if !self.is_error && !error_subtype {
            return Outcome::Succeeded;
        }
        let (kind, label) = match self.subtype.as_str() {
            "error_max_turns" => (FailureKind::MaxTurns, "turn limit reached"),
            "error_during_execution" => (FailureKind::DuringExecution, "error during execution"),
            "error_max_budget_usd" => (FailureKind::MaxBudget, "budget limit reached"),
            _ if !error_subtype => (FailureKind::ErrorResult, "agent reported an error"),
            s => (FailureKind::Other(s.to_string()), "agent failed"),
        };
        let mut reason = format!("{label} (result subtype {}", self.subtype_or_none());
        if self.is_error {
            reason.push_str(", is_error");
        }
        if let Some(t) = &self.terminal_reason {
            reason.push_str(&format!(", terminal_reason {t}"));
        }
        reason.push(')');
        if let Some(detail) = self.detail() {
            reason.push_str(": ");
            reason.push_str(&truncate_text(&detail, REASON_DETAIL_CHARS));
        }
        Outcome::Failed { kind, reason }
    }

    fn subtype_or_none(&self) -> &str {
        if self.subtype.is_empty() {
            "(none)"
        } else {
            &self.subtype
        }
    }

    /// The most telling text about a failure: the `errors` lines, else the result text.
    fn detail(&self) -> Option<String> {
        if !self.errors.is_empty() {
            return Some(self.errors.join("; "));
        }
        self.result
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// Decode one stdout line (without its newline).
pub fn parse_line(line: &[u8]) -> Event {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return Event::Blank;
    }
    if trimmed[0] != b'{' {
        return Event::NotJson;
    }
    match serde_json::from_slice::<Value>(trimmed) {
        Ok(Value::Object(obj)) => decode(&obj),
        _ => Event::NotJson,
    }
}

fn decode(obj: &Map<String, Value>) -> Event {
    let session_id = string(obj, "session_id");
    match str_of(obj, "type") {
        Some("system") => match str_of(obj, "subtype") {
            Some("init") => Event::Init(Init {
                session_id,
                model: string(obj, "model"),
                cwd: string(obj, "cwd"),
                claude_code_version: string(obj, "claude_code_version"),
                permission_mode: string(obj, "permissionMode"),
                mcp_servers: mcp_servers(obj),
            }),
            Some("api_retry") => Event::ApiRetry(ApiRetry {
                attempt: uint32(obj, "attempt"),
                max_retries: uint32(obj, "max_retries"),
                retry_delay_ms: obj.get("retry_delay_ms").and_then(Value::as_f64),
                error_status: obj.get("error_status").and_then(Value::as_i64),
                error: string(obj, "error"),
                session_id,
            }),
            other => Event::Other {
                kind: format!("system/{}", other.unwrap_or("(none)")),
                session_id,
            },
        },
        Some("assistant") => {
            let message = obj.get("message").and_then(Value::as_object);
            let mut a = Assistant {
                message_id: message.and_then(|m| string(m, "id")),
                model: message.and_then(|m| string(m, "model")),
                parent_tool_use_id: string(obj, "parent_tool_use_id"),
                session_id,
                stop_reason: message.and_then(|m| string(m, "stop_reason")),
                error: string(obj, "error"),
                ..Assistant::default()
            };
            for block in content_blocks(message) {
                match str_of(block, "type") {
                    Some("tool_use") => {
                        a.tool_uses
                            .push(string(block, "name").unwrap_or_else(|| "(unnamed)".into()));
                    }
                    Some("text") => a.has_text = true,
                    _ => {}
                }
            }
            Event::Assistant(a)
        }
        Some("user") => {
            let message = obj.get("message").and_then(Value::as_object);
            let mut u = User {
                parent_tool_use_id: string(obj, "parent_tool_use_id"),
                session_id,
                ..User::default()
            };
            for block in content_blocks(message) {
                match str_of(block, "type") {
                    Some("tool_result") => {
                        u.tool_results = u.tool_results.saturating_add(1);
                        if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                            u.tool_errors = u.tool_errors.saturating_add(1);
                        }
                    }
                    Some("text")
                        if str_of(block, "text")
                            .is_some_and(|t| t.starts_with("[Request interrupted")) =>
                    {
                        u.interrupted = true;
                    }
                    _ => {}
                }
            }
            Event::User(u)
        }
        Some("result") => Event::Result(ResultEvent {
            subtype: string(obj, "subtype").unwrap_or_default(),
            is_error: obj
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            num_turns: uint32(obj, "num_turns"),
            total_cost_usd: obj.get("total_cost_usd").and_then(Value::as_f64),
            duration_ms: obj.get("duration_ms").and_then(Value::as_u64),
            duration_api_ms: obj.get("duration_api_ms").and_then(Value::as_u64),
            result: string(obj, "result"),
            errors: obj
                .get("errors")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|e| match e {
                            Value::String(s) => Some(s.clone()),
                            Value::Null => None,
                            other => Some(other.to_string()),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            session_id,
            stop_reason: string(obj, "stop_reason"),
            terminal_reason: string(obj, "terminal_reason"),
            api_error_status: obj.get("api_error_status").and_then(Value::as_i64),
            tokens: obj.get("usage").and_then(Value::as_object).map(|u| {
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                Tokens {
                    input: n("input_tokens"),
                    output: n("output_tokens"),
                    cache_creation_input: n("cache_creation_input_tokens"),
                    cache_read_input: n("cache_read_input_tokens"),
                }
            }),
        }),
        other => Event::Other {
            kind: other.unwrap_or("(none)").to_string(),
            session_id,
        },
    }
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn string(obj: &Map<String, Value>, key: &str) -> Option<String> {
    str_of(obj, key).map(str::to_string)
}

fn uint32(obj: &Map<String, Value>, key: &str) -> Option<u32> {
    obj.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn content_blocks(
    message: Option<&Map<String, Value>>,
) -> impl Iterator<Item = &Map<String, Value>> {
    message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn mcp_servers(obj: &Map<String, Value>) -> Vec<McpServer> {
    obj.get("mcp_servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|s| McpServer {
            name: string(s, "name").unwrap_or_default(),
            status: string(s, "status").unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = include_str!("../../tests/fixtures/claude-stream-json/success.jsonl");
    const MAX_TURNS: &str = include_str!("../../tests/fixtures/claude-stream-json/max_turns.jsonl");
    const API_UNREACHABLE: &str =
        include_str!("../../tests/fixtures/claude-stream-json/api_unreachable.jsonl");
    const INTERRUPTED: &str =
        include_str!("../../tests/fixtures/claude-stream-json/interrupted_sigint.jsonl");
    const STUCK_INIT: &str =
        include_str!("../../tests/fixtures/claude-stream-json/stuck_init.jsonl");

    fn events(fixture: &str) -> Vec<Event> {
        fixture.lines().map(|l| parse_line(l.as_bytes())).collect()
    }

    fn result_of(fixture: &str) -> ResultEvent {
        match events(fixture).pop() {
            Some(Event::Result(r)) => r,
            other => panic!("last event is not a result: {other:?}"),
        }
    }

    #[test]
    fn init_fields() {
        let ev = events(SUCCESS);
        let Event::Init(init) = &ev[0] else {
            panic!("first event is {:?}", ev[0]);
        };
        assert_eq!(
            init.session_id.as_deref(),
            Some("4c1f9a7e-2b6d-4e83-9a15-7d0c3e8b5f21")
        );
        assert_eq!(init.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(init.cwd.as_deref(), Some("/srv/agent-jobs/ledger-service"));
        assert_eq!(init.claude_code_version.as_deref(), Some("2.1.197"));
        assert_eq!(init.permission_mode.as_deref(), Some("acceptEdits"));
        assert!(init.mcp_servers.is_empty());
    }

    #[test]
    fn stuck_init_lists_a_pending_mcp_server() {
        let ev = events(STUCK_INIT);
        assert_eq!(ev.len(), 1);
        let Event::Init(init) = &ev[0] else {
            panic!("not init: {:?}", ev[0]);
        };
        assert_eq!(
            init.mcp_servers,
            vec![McpServer {
                name: "issue-tracker".into(),
                status: "pending".into()
            }]
        );
    }

    #[test]
    fn success_fixture_decodes() {
        let ev = events(SUCCESS);
        let tools: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Assistant(a) => Some(a.tool_uses.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            tools,
            vec![
                vec!["Bash".to_string()],
                vec!["Bash".to_string()],
                vec!["Bash".to_string()],
                vec![]
            ]
        );
        let users = ev.iter().filter(|e| matches!(e, Event::User(_))).count();
        assert_eq!(users, 3);
        let r = result_of(SUCCESS);
        assert_eq!(r.subtype, "success");
        assert!(!r.is_error);
        assert_eq!(r.num_turns, Some(4));
        assert_eq!(r.total_cost_usd, Some(0.0781245));
        assert_eq!(r.duration_ms, Some(31874));
        assert_eq!(
            r.tokens,
            Some(Tokens {
                input: 24,
                output: 611,
                cache_creation_input: 15515,
                cache_read_input: 43804
            })
        );
        assert_eq!(r.terminal_reason.as_deref(), Some("completed"));
        assert!(r.result.as_deref().is_some_and(|t| t.contains("37 tests")));
        assert_eq!(r.outcome(), Outcome::Succeeded);
    }

    #[test]
    fn max_turns_fixture_fails_with_max_turns() {
        let r = result_of(MAX_TURNS);
        assert_eq!(r.num_turns, Some(3));
        assert_eq!(r.result, None);
        assert_eq!(
            r.errors,
            vec!["Reached maximum number of turns (2)".to_string()]
        );
        match r.outcome() {
            Outcome::Failed { kind, reason } => {
                assert_eq!(kind, FailureKind::MaxTurns);
                assert_eq!(
                    reason,
                    "turn limit reached (result subtype error_max_turns, is_error, \
                     terminal_reason max_turns): Reached maximum number of turns (2)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn api_unreachable_is_a_failure_despite_subtype_success() {
        let ev = events(API_UNREACHABLE);
        let retries: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::ApiRetry(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(retries.len(), 2);
        assert_eq!(retries[0].attempt, Some(1));
        assert_eq!(retries[0].max_retries, Some(2));
        assert_eq!(retries[0].retry_delay_ms, Some(561.37));
        assert_eq!(retries[0].error_status, None);
        assert_eq!(retries[0].error.as_deref(), Some("unknown"));
        assert_eq!(retries[1].attempt, Some(2));
        assert_eq!(retries[1].retry_delay_ms, Some(1094.82));

        let Event::Assistant(a) = &ev[3] else {
            panic!("{:?}", ev[3]);
        };
        assert!(a.is_synthetic());
        assert!(!a.is_subagent());
        assert_eq!(a.error.as_deref(), Some("server_error"));

        let r = result_of(API_UNREACHABLE);
        assert_eq!(r.subtype, "success");
        assert!(r.is_error);
        assert_eq!(r.num_turns, Some(1));
        assert_eq!(r.total_cost_usd, Some(0.0));
        match r.outcome() {
            Outcome::Failed { kind, reason } => {
                assert_eq!(kind, FailureKind::ErrorResult);
                assert!(reason.starts_with("agent reported an error (result subtype success"));
                assert!(reason.ends_with("API Error: Unable to connect to API (ConnectionRefused)"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn interrupted_fixture() {
        let ev = events(INTERRUPTED);
        let users: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::User(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(users.len(), 2);
        assert_eq!((users[0].tool_results, users[0].tool_errors), (1, 1));
        assert!(!users[0].interrupted);
        assert!(users[1].interrupted);
        let r = result_of(INTERRUPTED);
        assert_eq!(r.result, None);
        assert_eq!(r.total_cost_usd, Some(0.0538));
        match r.outcome() {
            Outcome::Failed { kind, reason } => {
                assert_eq!(kind, FailureKind::DuringExecution);
                assert!(reason.contains("terminal_reason aborted_tools"), "{reason}");
                assert!(reason.contains("[ede_diagnostic]"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_fixture_line_is_a_known_event() {
        for f in [SUCCESS, MAX_TURNS, API_UNREACHABLE, INTERRUPTED, STUCK_INIT] {
            for e in events(f) {
                assert!(
                    !matches!(e, Event::Other { .. } | Event::NotJson | Event::Blank),
                    "{e:?}"
                );
                assert!(e.session_id().is_some());
            }
        }
    }

    #[test]
    fn tolerates_garbage() {
        assert_eq!(parse_line(b""), Event::Blank);
        assert_eq!(parse_line(b"  \t"), Event::Blank);
        assert_eq!(parse_line(b"npm WARN deprecated"), Event::NotJson);
        assert_eq!(parse_line(b"{\"type\":\"assistant\""), Event::NotJson);
        assert_eq!(parse_line(b"[1,2]"), Event::NotJson);
        assert_eq!(parse_line(b"42"), Event::NotJson);
        assert_eq!(parse_line(b"{\xff\xfe}"), Event::NotJson);
        assert_eq!(
            parse_line(b"{\"type\":\"stream_event\",\"session_id\":\"s\"}"),
            Event::Other {
                kind: "stream_event".into(),
                session_id: Some("s".into())
            }
        );
        assert_eq!(
            parse_line(b"{\"type\":\"system\",\"subtype\":\"compact_boundary\"}"),
            Event::Other {
                kind: "system/compact_boundary".into(),
                session_id: None
            }
        );
        assert_eq!(
            parse_line(b"{\"no_type\":1}"),
            Event::Other {
                kind: "(none)".into(),
                session_id: None
            }
        );
    }

    #[test]
    fn wrong_field_types_read_as_absent() {
        let e = parse_line(
            br#"{"type":"assistant","message":{"id":7,"model":null,"content":"hi"},"session_id":["x"]}"#,
        );
        let Event::Assistant(a) = e else {
            panic!("{e:?}");
        };
        assert_eq!(a.message_id, None);
        assert_eq!(a.session_id, None);
        assert!(a.tool_uses.is_empty());
        let e = parse_line(br#"{"type":"result","is_error":"yes","num_turns":-1}"#);
        let Event::Result(r) = e else {
            panic!("{e:?}");
        };
        assert!(!r.is_error);
        assert_eq!(r.num_turns, None);
        // Neither is_error nor an error subtype: nothing says it failed.
        assert_eq!(r.outcome(), Outcome::Succeeded);
    }

    #[test]
    fn error_subtype_without_is_error_still_fails() {
        let e = parse_line(br#"{"type":"result","subtype":"error_max_budget_usd"}"#);
        let Event::Result(r) = e else {
            panic!("{e:?}");
        };
        assert!(matches!(
            r.outcome(),
            Outcome::Failed {
                kind: FailureKind::MaxBudget,
                ..
            }
        ));
        let e = parse_line(br#"{"type":"result","subtype":"error_something_new","is_error":true}"#);
        let Event::Result(r) = e else {
            panic!("{e:?}");
        };
        assert_eq!(
            r.outcome(),
            Outcome::Failed {
                kind: FailureKind::Other("error_something_new".into()),
                reason: "agent failed (result subtype error_something_new, is_error)".into()
            }
        );
    }

    #[test]
    fn subagent_events_are_marked() {
        let e = parse_line(
            br#"{"type":"assistant","message":{"id":"m1","model":"claude-haiku","content":[{"type":"tool_use","name":"Grep","id":"t"}]},"parent_tool_use_id":"toolu_parent","session_id":"s"}"#,
        );
        let Event::Assistant(a) = e else {
            panic!("{e:?}");
        };
        assert!(a.is_subagent());
        assert_eq!(a.last_tool(), Some("Grep"));
    }
}
