//! What the agent is doing, from what it prints: codecs and models, no I/O.
//!
//! This module keeps invariant 4 of the design, *progress is observed, not assumed*. It owns the
//! bounded line splitter for the agent's pipes ([`lines`]), the decoder of the Claude Code CLI's
//! `stream-json` stdout ([`stream_json`]), the progress model built from those events
//! ([`progress`]), the heartbeat protocol of fd 3 with its critical sections ([`heartbeat`]), the
//! stuck rules that tell slow from stuck and say when to look again ([`health`]), and the Claude
//! argv builder ([`claude`]).
//!
//! Everything here is a pure function or a plain struct of its inputs: the run task reads the
//! pipes and passes the bytes in with the time they arrived (`now_ms`, Unix milliseconds), then
//! asks for the phase, the outcome, the health and the next deadline. Nothing here blocks, spawns,
//! or reads a clock, so it is all unit-tested without processes. Memory is bounded whatever the
//! agent prints: lines are cut at a configured length, texts kept for reports are truncated.
pub mod claude;
pub mod health;
pub mod heartbeat;
pub mod lines;
pub mod progress;
pub mod stream_json;

pub use claude::{build_argv, ClaudeTemplate, TemplateError};
pub use health::{assess, next_deadline, Action, Health, HealthInput, Rule, RuleKind, StuckRules};
pub use heartbeat::{
    parse_heartbeat, CriticalSection, Heartbeat, HeartbeatState, HeartbeatTracker,
};
pub use lines::LineSplitter;
pub use progress::{Phase, Progress, ResultSummary, StdoutTracker};
pub use stream_json::{parse_line, Event, FailureKind, Outcome};

/// `text` cut to at most `max_chars` characters, with `…` appended when something was cut.
pub(crate) fn truncate_text(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((cut, _)) => {
            let mut s = String::with_capacity(cut + 3);
            s.push_str(&text[..cut]);
            s.push('…');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncate_text;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_text("abc", 3), "abc");
        assert_eq!(truncate_text("abcd", 3), "abc…");
        assert_eq!(truncate_text("ééé", 2), "éé…");
        assert_eq!(truncate_text("", 0), "");
        assert_eq!(truncate_text("x", 0), "…");
    }
}
