//! The progress model of one agent run, built from its stdout events.
//!
//! [`Progress::observe`] folds decoded [`Event`]s into what an operator wants to know: the phase
//! (starting, initializing, active, finishing), how many turns the model took, which tool runs now,
//! whether the CLI is retrying the API, what it cost and how it ended. [`StdoutTracker`] chains the
//! bounded [`LineSplitter`], the decoder and the model for the bytes of a run's stdout. Time is a
//! parameter (`now_ms`, Unix milliseconds), so the model is a pure function of its inputs.
//!
//! Phases, precisely: `Starting` until `system`/`init`; `Initializing` from `init` until the first
//! turn; `Active` from the first turn; `Finishing` once `result` arrived. The phase never goes back
//! (a turn without an `init` goes straight to `Active`; a `result` without a turn to `Finishing`).
//!
//! A turn is one distinct `message.id` of an `assistant` event of the run's own conversation:
//! events of subagents (`parent_tool_use_id` set) and responses the CLI made up
//! (`message.model == "<synthetic>"`) are activity but not turns. The CLI's own `num_turns` in the
//! `result` can differ from the turns seen (it counts differently); both are kept.
use std::collections::VecDeque;

use super::lines::{Line, LineSplitter};
use super::stream_json::{parse_line, ApiRetry, Event, Outcome, ResultEvent};
use super::truncate_text;

/// Default bound on one stdout line (1 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1024 * 1024;
/// Longest result text kept in the summary, in characters.
pub const RESULT_TEXT_CHARS: usize = 2000;
/// Most `errors` lines kept from a result.
const MAX_RESULT_ERRORS: usize = 16;
/// Message ids remembered to recognize repeated events of one response.
const RECENT_IDS: usize = 32;

/// Where a run is in its life, as seen from its stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Phase {
    /// No `system`/`init` yet.
    #[default]
    Starting,
    /// Initialized; waiting for the first turn.
    Initializing,
    /// At least one turn arrived.
    Active,
    /// The `result` arrived; the process should exit now.
    Finishing,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Initializing => "initializing",
            Phase::Active => "active",
            Phase::Finishing => "finishing",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the `result` event said, bounded for storage.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSummary {
    pub subtype: String,
    pub is_error: bool,
    /// Turns as the CLI counts them.
    pub num_turns: Option<u32>,
    pub duration_ms: Option<u64>,
    pub terminal_reason: Option<String>,
    /// Result text, at most [`RESULT_TEXT_CHARS`] characters.
    pub text: Option<String>,
    /// Error lines, at most 16, each at most [`RESULT_TEXT_CHARS`] characters.
    pub errors: Vec<String>,
    pub outcome: Outcome,
    pub tokens: Option<crate::agent::stream_json::Tokens>,
}

impl ResultSummary {
    fn from_event(r: &ResultEvent) -> Self {
        ResultSummary {
            subtype: r.subtype.clone(),
            is_error: r.is_error,
            num_turns: r.num_turns,
            tokens: r.tokens,
            duration_ms: r.duration_ms,
            terminal_reason: r.terminal_reason.clone(),
            text: r
                .result
                .as_deref()
                .map(|t| truncate_text(t, RESULT_TEXT_CHARS)),
            errors: r
                .errors
                .iter()
                .take(MAX_RESULT_ERRORS)
                .map(|e| truncate_text(e, RESULT_TEXT_CHARS))
                .collect(),
            outcome: r.outcome(),
        }
    }
}

/// The progress of one run. Fields are read freely; they change only through the `observe`
/// and `note_*` methods.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub phase: Phase,
    /// Distinct responses of the run's own conversation (not synthetic, not subagent).
    pub turns: u32,
    /// Latest session id printed by the run's own events (the one to `--resume`).
    pub session_id: Option<String>,
    /// Model of the latest real response, else the one `init` announced.
    pub model: Option<String>,
    pub cwd: Option<String>,
    pub claude_code_version: Option<String>,
    /// MCP servers `init` reported as still `pending`.
    pub pending_mcp_servers: Vec<String>,
    /// The tool the model called last and whose result has not come back yet.
    pub current_tool: Option<String>,
    /// `tool_use` blocks seen in the run's own responses.
    pub tool_calls: u64,
    /// `system`/`api_retry` events seen.
    pub api_retries: u32,
    pub last_retry: Option<ApiRetry>,
    pub last_retry_at: Option<i64>,
    /// Any stdout line (JSON or not, oversized included): liveness.
    pub first_output_at: Option<i64>,
    pub last_output_at: Option<i64>,
    /// Latest decoded JSON event.
    pub last_event_at: Option<i64>,
    pub init_at: Option<i64>,
    pub first_turn_at: Option<i64>,
    pub last_turn_at: Option<i64>,
    pub result_at: Option<i64>,
    /// `total_cost_usd` of the result.
    pub cost_usd: Option<f64>,
    pub result: Option<ResultSummary>,
    /// Lines that were not JSON objects (blank lines are not counted).
    pub non_json_lines: u64,
    /// Lines dropped for being over the line bound.
    pub oversized_lines: u64,
    /// JSON events of an unknown type or `system` subtype.
    pub unknown_events: u64,
    /// Responses with `model == "<synthetic>"`.
    pub synthetic_messages: u64,
    /// Events with `parent_tool_use_id` set.
    pub subagent_events: u64,
    recent_ids: VecDeque<String>,
}

impl Progress {
    pub fn new() -> Self {
        Progress::default()
    }

    /// Fold one decoded stdout line into the model.
    pub fn observe(&mut self, event: &Event, now_ms: i64) {
        self.note_output(now_ms);
        match event {
            Event::Blank => return,
            Event::NotJson => {
                self.non_json_lines += 1;
                return;
            }
            _ => {}
        }
        self.last_event_at = Some(now_ms);
        match event {
            Event::Init(init) => {
                self.advance(Phase::Initializing);
                self.init_at = Some(now_ms);
                set_if_some(&mut self.session_id, &init.session_id);
                set_if_some(&mut self.model, &init.model);
                set_if_some(&mut self.cwd, &init.cwd);
                set_if_some(&mut self.claude_code_version, &init.claude_code_version);
                self.pending_mcp_servers = init
                    .mcp_servers
                    .iter()
                    .filter(|s| s.status == "pending")
                    .map(|s| s.name.clone())
                    .collect();
            }
            Event::ApiRetry(retry) => {
                self.api_retries = self.api_retries.saturating_add(1);
                self.last_retry = Some(retry.clone());
                self.last_retry_at = Some(now_ms);
                set_if_some(&mut self.session_id, &retry.session_id);
            }
            Event::Assistant(a) => {
                if a.is_subagent() {
                    self.subagent_events += 1;
                    return;
                }
                set_if_some(&mut self.session_id, &a.session_id);
                if a.is_synthetic() {
                    self.synthetic_messages += 1;
                    return;
                }
                let new_turn = match &a.message_id {
                    Some(id) => self.remember(id),
                    None => true,
                };
                if new_turn {
                    self.turns = self.turns.saturating_add(1);
                    self.first_turn_at.get_or_insert(now_ms);
                    self.last_turn_at = Some(now_ms);
                    self.advance(Phase::Active);
                }
                set_if_some(&mut self.model, &a.model);
                self.tool_calls += a.tool_uses.len() as u64;
                if let Some(tool) = a.last_tool() {
                    self.current_tool = Some(tool.to_string());
                } else if new_turn {
                    self.current_tool = None;
                }
            }
            Event::User(u) => {
                if u.is_subagent() {
                    self.subagent_events += 1;
                    return;
                }
                set_if_some(&mut self.session_id, &u.session_id);
                if u.tool_results > 0 || u.interrupted {
                    self.current_tool = None;
                }
            }
            Event::Result(r) => {
                self.advance(Phase::Finishing);
                self.result_at = Some(now_ms);
                set_if_some(&mut self.session_id, &r.session_id);
                self.cost_usd = r.total_cost_usd.or(self.cost_usd);
                self.current_tool = None;
                self.result = Some(ResultSummary::from_event(r));
            }
            Event::Other { .. } => {
                self.unknown_events += 1;
            }
            Event::NotJson | Event::Blank => {}
        }
    }

    /// Something arrived on stdout (any line, or part of an oversized one).
    pub fn note_output(&mut self, now_ms: i64) {
        self.first_output_at.get_or_insert(now_ms);
        self.last_output_at = Some(now_ms);
    }

    /// A stdout line was dropped for being over the bound.
    pub fn note_oversized(&mut self, now_ms: i64) {
        self.oversized_lines += 1;
        self.note_output(now_ms);
    }

    /// How the run ended according to its `result`; `None` before the result. A result with
    /// `is_error` is a failure even when the process exits with status 0.
    pub fn final_outcome(&self) -> Option<Outcome> {
        self.result.as_ref().map(|r| r.outcome.clone())
    }

    /// Turns as the CLI reported them in the result, else as seen so far.
    pub fn reported_turns(&self) -> u32 {
        self.result
            .as_ref()
            .and_then(|r| r.num_turns)
            .unwrap_or(self.turns)
    }

    /// Whether the run is past initialization: a turn or the result arrived.
    pub fn started_turns(&self) -> bool {
        self.phase >= Phase::Active
    }

    fn advance(&mut self, to: Phase) {
        if to > self.phase {
            self.phase = to;
        }
    }

    /// Remember a message id; true when it was not among the recent ones.
    fn remember(&mut self, id: &str) -> bool {
        if self.recent_ids.iter().any(|seen| seen == id) {
            return false;
        }
        if self.recent_ids.len() >= RECENT_IDS {
            self.recent_ids.pop_front();
        }
        self.recent_ids.push_back(id.to_string());
        true
    }
}

fn set_if_some(slot: &mut Option<String>, value: &Option<String>) {
    if let Some(v) = value {
        *slot = Some(v.clone());
    }
}

/// A run's stdout, from bytes to progress: bounded lines, decoded events, the model.
#[derive(Debug)]
pub struct StdoutTracker {
    splitter: LineSplitter,
    progress: Progress,
}

impl Default for StdoutTracker {
    fn default() -> Self {
        StdoutTracker::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl StdoutTracker {
    pub fn new(max_line_bytes: usize) -> Self {
        StdoutTracker {
            splitter: LineSplitter::new(max_line_bytes),
            progress: Progress::new(),
        }
    }

    /// Feed bytes read from stdout at `now_ms`; returns how many lines they completed (oversized
    /// ones included).
    pub fn feed(&mut self, data: &[u8], now_ms: i64) -> usize {
        if data.is_empty() {
            return 0;
        }
        // Bytes of a long line still count as liveness before the line ends.
        self.progress.note_output(now_ms);
        let progress = &mut self.progress;
        let mut lines = 0;
        self.splitter.push_each(data, |line| {
            lines += 1;
            match line {
                Line::Complete(l) => progress.observe(&parse_line(l), now_ms),
                Line::Oversized => progress.note_oversized(now_ms),
            }
        });
        lines
    }

    /// End of stdout: decode a trailing line without a newline.
    pub fn finish(&mut self, now_ms: i64) {
        if let Some(line) = self.splitter.finish() {
            self.progress.observe(&parse_line(&line), now_ms);
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn splitter(&self) -> &LineSplitter {
        &self.splitter
    }

    pub fn into_progress(self) -> Progress {
        self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::stream_json::FailureKind;

    const SUCCESS: &str = include_str!("../../tests/fixtures/claude-stream-json/success.jsonl");
    const MAX_TURNS: &str = include_str!("../../tests/fixtures/claude-stream-json/max_turns.jsonl");
    const API_UNREACHABLE: &str =
        include_str!("../../tests/fixtures/claude-stream-json/api_unreachable.jsonl");
    const INTERRUPTED: &str =
        include_str!("../../tests/fixtures/claude-stream-json/interrupted_sigint.jsonl");
    const STUCK_INIT: &str =
        include_str!("../../tests/fixtures/claude-stream-json/stuck_init.jsonl");

    /// Feed `data` in chunks of `chunk` bytes, one millisecond apart, checking the memory bound.
    fn replay(data: &[u8], chunk: usize, max_line: usize) -> StdoutTracker {
        let mut t = StdoutTracker::new(max_line);
        let mut now = 1_000;
        for c in data.chunks(chunk.max(1)) {
            t.feed(c, now);
            assert!(t.splitter().buffered() <= max_line);
            assert!(t.splitter().buffer_capacity() <= max_line);
            now += 1;
        }
        t.finish(now);
        t
    }

    fn replay_all(data: &[u8], check: impl Fn(&Progress)) {
        for chunk in [1, 7, 64, 4096, data.len()] {
            let t = replay(data, chunk, DEFAULT_MAX_LINE_BYTES);
            check(t.progress());
        }
    }

    fn assert_fails(p: &Progress, want: FailureKind) {
        match p.final_outcome() {
            Some(Outcome::Failed { kind, .. }) => assert_eq!(kind, want),
            other => panic!("expected failure {want:?}, got {other:?}"),
        }
    }

    fn check_success(p: &Progress) {
        assert_eq!(p.phase, Phase::Finishing);
        assert_eq!(p.turns, 4);
        assert_eq!(p.reported_turns(), 4);
        assert_eq!(
            p.session_id.as_deref(),
            Some("4c1f9a7e-2b6d-4e83-9a15-7d0c3e8b5f21")
        );
        assert_eq!(p.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(p.cwd.as_deref(), Some("/srv/agent-jobs/ledger-service"));
        assert_eq!(p.claude_code_version.as_deref(), Some("2.1.197"));
        assert_eq!(p.cost_usd, Some(0.0781245));
        assert_eq!(p.final_outcome(), Some(Outcome::Succeeded));
        assert_eq!(p.api_retries, 0);
        assert_eq!(p.tool_calls, 3);
        assert_eq!(p.current_tool, None);
        let summary = p.result.as_ref().map(|r| r.text.clone());
        assert_eq!(
            summary,
            Some(Some(
                "Removed the unused `std::fmt` import in core/src/entry.rs; `cargo check` is \
                 clean and all 37 tests pass."
                    .to_string()
            ))
        );
        assert!(p.init_at.is_some() && p.first_turn_at.is_some() && p.result_at.is_some());
    }

    #[test]
    fn success_fixture() {
        replay_all(SUCCESS.as_bytes(), |p| {
            check_success(p);
            assert_eq!(p.non_json_lines, 0);
            assert_eq!(p.unknown_events, 0);
            assert_eq!(p.oversized_lines, 0);
            assert_eq!(p.synthetic_messages, 0);
            assert_eq!(p.subagent_events, 0);
        });
    }

    #[test]
    fn max_turns_fixture() {
        replay_all(MAX_TURNS.as_bytes(), |p| {
            assert_eq!(p.phase, Phase::Finishing);
            assert_eq!(p.turns, 2);
            // The CLI counts 3 while printing 2 responses.
            assert_eq!(p.reported_turns(), 3);
            assert_eq!(
                p.session_id.as_deref(),
                Some("9e2d4b6f-1a3c-4f85-8b07-c6d2e9f1a4b3")
            );
            assert_eq!(p.cost_usd, Some(0.0613482));
            assert_eq!(p.api_retries, 0);
            assert_fails(p, FailureKind::MaxTurns);
            let r = p
                .result
                .as_ref()
                .map(|r| (r.text.clone(), r.errors.clone()));
            assert_eq!(
                r,
                Some((
                    None,
                    vec!["Reached maximum number of turns (2)".to_string()]
                ))
            );
        });
    }

    #[test]
    fn api_unreachable_fixture() {
        replay_all(API_UNREACHABLE.as_bytes(), |p| {
            assert_eq!(p.phase, Phase::Finishing);
            // The only response is synthetic: no turn, though the CLI reports num_turns 1.
            assert_eq!(p.turns, 0);
            assert_eq!(p.reported_turns(), 1);
            assert_eq!(p.first_turn_at, None);
            assert_eq!(p.synthetic_messages, 1);
            assert_eq!(p.api_retries, 2);
            let retry = p
                .last_retry
                .as_ref()
                .map(|r| (r.attempt, r.max_retries, r.retry_delay_ms));
            assert_eq!(retry, Some((Some(2), Some(2), Some(1094.82))));
            assert_eq!(p.cost_usd, Some(0.0));
            assert_eq!(
                p.session_id.as_deref(),
                Some("d4f6b8a0-e2a3-4b4c-8d5e-f6a7b8c9d0e1")
            );
            // subtype "success" but is_error: a failure.
            assert_fails(p, FailureKind::ErrorResult);
            // The synthetic message does not replace the model announced at init.
            assert_eq!(p.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        });
    }

    #[test]
    fn interrupted_fixture() {
        replay_all(INTERRUPTED.as_bytes(), |p| {
            assert_eq!(p.phase, Phase::Finishing);
            assert_eq!(p.turns, 1);
            assert_eq!(p.reported_turns(), 3);
            assert_eq!(p.cost_usd, Some(0.0538));
            assert_eq!(
                p.session_id.as_deref(),
                Some("e5a7c9b1-f3b4-4c5d-9e6f-a7b8c9d0e1f2")
            );
            assert_eq!(p.current_tool, None);
            assert_fails(p, FailureKind::DuringExecution);
        });
    }

    #[test]
    fn stuck_init_fixture() {
        replay_all(STUCK_INIT.as_bytes(), |p| {
            assert_eq!(p.phase, Phase::Initializing);
            assert_eq!(p.turns, 0);
            assert_eq!(p.final_outcome(), None);
            assert_eq!(p.cost_usd, None);
            assert_eq!(p.pending_mcp_servers, vec!["issue-tracker".to_string()]);
            assert_eq!(
                p.session_id.as_deref(),
                Some("c3e5a7b9-d1f2-4a3b-9c4d-e5f6a7b8c9d0")
            );
        });
    }

    #[test]
    fn phases_step_by_step() {
        let mut t = StdoutTracker::default();
        let lines: Vec<&str> = INTERRUPTED.lines().collect();
        assert_eq!(t.progress().phase, Phase::Starting);
        t.feed(b"Loading...\n", 1);
        assert_eq!(t.progress().phase, Phase::Starting);
        assert_eq!(t.progress().non_json_lines, 1);
        t.feed(format!("{}\n", lines[0]).as_bytes(), 2);
        assert_eq!(t.progress().phase, Phase::Initializing);
        t.feed(format!("{}\n", lines[1]).as_bytes(), 3);
        assert_eq!(t.progress().phase, Phase::Active);
        assert_eq!(t.progress().current_tool.as_deref(), Some("Bash"));
        assert_eq!(t.progress().first_turn_at, Some(3));
        t.feed(format!("{}\n", lines[2]).as_bytes(), 4);
        assert_eq!(t.progress().current_tool, None);
        assert_eq!(t.progress().final_outcome(), None);
        // The result without its newline: decoded at EOF.
        t.feed(lines[4].as_bytes(), 5);
        assert_eq!(t.progress().phase, Phase::Active);
        t.finish(6);
        assert_eq!(t.progress().phase, Phase::Finishing);
        assert_eq!(t.progress().result_at, Some(6));
        assert_eq!(t.progress().last_event_at, Some(6));
    }

    #[test]
    fn garbage_interleaved_changes_nothing_but_counters() {
        let mut data = Vec::new();
        for (i, line) in SUCCESS.lines().enumerate() {
            data.extend_from_slice(b"npm WARN something\r\n\n");
            data.extend_from_slice(br#"{"type":"stream_event","event":{}}"#);
            data.extend_from_slice(b"\n{\"type\":\"assistant\",\"message\":{\"id\":\"x");
            data.extend_from_slice(b"\n[1,2,3]\n");
            data.extend_from_slice(line.as_bytes());
            data.extend_from_slice(if i % 2 == 0 { b"\r\n" } else { b"\n" });
        }
        let lines = SUCCESS.lines().count() as u64;
        for chunk in [1, 7, data.len()] {
            let t = replay(&data, chunk, DEFAULT_MAX_LINE_BYTES);
            let p = t.progress();
            check_success(p);
            // Per fixture line: the warning, the truncated JSON and the array.
            assert_eq!(p.non_json_lines, 3 * lines);
            assert_eq!(p.unknown_events, lines);
        }
    }

    #[test]
    fn ten_megabyte_line_is_counted_and_skipped() {
        let mut data = Vec::new();
        let mut fixture = SUCCESS.lines();
        for line in fixture.by_ref().take(3) {
            data.extend_from_slice(line.as_bytes());
            data.push(b'\n');
        }
        // A huge tool result: 10 MiB on one line.
        data.extend_from_slice(
            br#"{"type":"user","message":{"content":[{"type":"tool_result","content":""#,
        );
        data.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
        data.extend_from_slice(b"\"}]}}\n");
        for line in fixture {
            data.extend_from_slice(line.as_bytes());
            data.push(b'\n');
        }
        for chunk in [7, 65536, data.len()] {
            let t = replay(&data, chunk, DEFAULT_MAX_LINE_BYTES);
            check_success(t.progress());
            assert_eq!(t.progress().oversized_lines, 1);
            assert_eq!(t.splitter().oversized(), 1);
            assert!(t.splitter().buffer_capacity() <= DEFAULT_MAX_LINE_BYTES);
        }
    }

    #[test]
    fn duplicate_message_ids_are_one_turn() {
        let mut p = Progress::new();
        let text = |id: &str| {
            parse_line(
                format!(
                    r#"{{"type":"assistant","message":{{"id":"{id}","model":"m","content":[{{"type":"text","text":"x"}}]}},"parent_tool_use_id":null,"session_id":"s"}}"#
                )
                .as_bytes(),
            )
        };
        let tool = |id: &str, name: &str| {
            parse_line(
                format!(
                    r#"{{"type":"assistant","message":{{"id":"{id}","model":"m","content":[{{"type":"tool_use","name":"{name}","id":"t","input":{{}}}}]}},"session_id":"s"}}"#
                )
                .as_bytes(),
            )
        };
        p.observe(&text("m1"), 1);
        p.observe(&tool("m1", "Read"), 2);
        p.observe(&tool("m1", "Edit"), 3);
        assert_eq!(p.turns, 1);
        assert_eq!(p.tool_calls, 2);
        assert_eq!(p.current_tool.as_deref(), Some("Edit"));
        p.observe(&text("m2"), 4);
        assert_eq!(p.turns, 2);
        assert_eq!(p.current_tool, None);
        // A late repeat of an older id within the remembered window is no new turn.
        p.observe(&text("m1"), 5);
        assert_eq!(p.turns, 2);
        // An id outside the window counts again: the memory is bounded.
        for i in 0..RECENT_IDS {
            p.observe(&text(&format!("n{i}")), 6);
        }
        assert_eq!(p.turns, 2 + RECENT_IDS as u32);
        assert!(p.recent_ids.len() <= RECENT_IDS);
        p.observe(&text("m1"), 7);
        assert_eq!(p.turns, 3 + RECENT_IDS as u32);
    }

    #[test]
    fn synthetic_and_subagent_events_are_not_turns() {
        let mut p = Progress::new();
        let ev = |json: &str| parse_line(json.as_bytes());
        p.observe(
            &ev(r#"{"type":"system","subtype":"init","session_id":"main","model":"opus"}"#),
            1,
        );
        p.observe(
            &ev(r#"{"type":"assistant","message":{"id":"sub1","model":"haiku","content":[{"type":"tool_use","name":"Grep"}]},"parent_tool_use_id":"toolu_task","session_id":"main"}"#),
            2,
        );
        p.observe(
            &ev(r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"x"}]},"parent_tool_use_id":"toolu_task","session_id":"main"}"#),
            3,
        );
        p.observe(
            &ev(r#"{"type":"assistant","message":{"id":"syn","model":"<synthetic>","content":[{"type":"text","text":"API Error"}]},"parent_tool_use_id":null,"session_id":"main"}"#),
            4,
        );
        assert_eq!(p.turns, 0);
        assert_eq!(p.phase, Phase::Initializing);
        assert_eq!(p.subagent_events, 2);
        assert_eq!(p.synthetic_messages, 1);
        assert_eq!(p.current_tool, None);
        assert_eq!(p.model.as_deref(), Some("opus"));
        assert_eq!(p.last_event_at, Some(4));
        p.observe(
            &ev(r#"{"type":"assistant","message":{"id":"real","model":"opus","content":[{"type":"tool_use","name":"Task"}]},"session_id":"main"}"#),
            5,
        );
        assert_eq!(p.turns, 1);
        assert_eq!(p.phase, Phase::Active);
        assert_eq!(p.current_tool.as_deref(), Some("Task"));
        // Subagent traffic while the Task tool runs leaves the current tool alone.
        p.observe(
            &ev(r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"x"}]},"parent_tool_use_id":"toolu_task","session_id":"main"}"#),
            6,
        );
        assert_eq!(p.current_tool.as_deref(), Some("Task"));
    }

    #[test]
    fn result_text_is_truncated() {
        let long = "é".repeat(5000);
        let line = format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"result":"{long}","total_cost_usd":1.5}}"#
        );
        let mut p = Progress::new();
        p.observe(&parse_line(line.as_bytes()), 1);
        let text = p
            .result
            .as_ref()
            .and_then(|r| r.text.clone())
            .unwrap_or_default();
        assert!(text.chars().count() <= RESULT_TEXT_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(p.cost_usd, Some(1.5));
        assert_eq!(p.phase, Phase::Finishing);
        assert_eq!(p.reported_turns(), 0);
    }

    #[test]
    fn phase_never_goes_back() {
        let mut p = Progress::new();
        p.observe(&parse_line(br#"{"type":"result","subtype":"success"}"#), 1);
        p.observe(&parse_line(br#"{"type":"system","subtype":"init"}"#), 2);
        p.observe(
            &parse_line(br#"{"type":"assistant","message":{"id":"a","content":[]}}"#),
            3,
        );
        assert_eq!(p.phase, Phase::Finishing);
        assert_eq!(p.turns, 1);
    }
}
