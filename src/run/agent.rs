//! What the daemon records of an agent run beyond its process: the workflow it came from (to
//! start it again, or resume it) and the progress observed on its stdout and heartbeat pipe.
use serde::{Deserialize, Serialize};

use crate::agent::claude::ClaudeTemplate;
use crate::agent::heartbeat::HeartbeatState;
use crate::agent::progress::Progress;
use crate::agent::stream_json::Outcome;

/// Why a workflow run whose agent exited 0 failed all the same: it never printed its `result`
/// (it crashed or was cut off before finishing, or is not the CLI it claims to be).
pub const NO_RESULT: &str = "the agent exited without a result";

/// A run started from a workflow template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub workflow: String,
    pub prompt: String,
    /// The template as resolved at spawn (config plus the spawn's overrides).
    pub template: ClaudeTemplate,
    /// Set when this run resumes an earlier session (`--resume`).
    pub resume_session: Option<String>,
}

/// Progress of an agent run, as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentState {
    /// STARTING, INITIALIZING, ACTIVE, FINISHING.
    pub phase: String,
    pub turns: u32,
    pub session_id: String,
    pub model: String,
    pub claude_code_version: String,
    pub current_tool: String,
    pub api_retries: u32,
    pub last_retry: String,
    pub last_event_at: i64,
    pub last_output_at: i64,
    pub cost_usd: Option<f64>,
    pub past_init: bool,
    pub pending_mcp_servers: Vec<String>,
    /// From the `result` event.
    pub result_subtype: String,
    pub result_is_error: Option<bool>,
    pub num_turns: Option<u32>,
    pub result_text: String,
    pub result_errors: Vec<String>,
    /// Set when the result says the run failed (even with exit code 0).
    pub failure: Option<String>,
    /// OK, SLOW or STUCK, and why.
    pub health: String,
    pub health_reason: String,
    /// The critical section the agent declared on its heartbeat pipe, if one is open.
    pub critical: Option<String>,
    pub heartbeat_message: String,
    pub heartbeat_progress: Option<f64>,
    pub malformed_heartbeats: u64,
    /// Token counts the `result` reports for the session.
    pub tokens: Option<crate::agent::stream_json::Tokens>,
}

impl AgentState {
    /// The stdout side of the state from the progress model.
    pub fn apply_progress(&mut self, p: &Progress) {
        self.phase = p.phase.as_str().to_ascii_uppercase();
        self.turns = p.turns;
        self.session_id = p.session_id.clone().unwrap_or_default();
        self.model = p.model.clone().unwrap_or_default();
        self.claude_code_version = p.claude_code_version.clone().unwrap_or_default();
        self.current_tool = p.current_tool.clone().unwrap_or_default();
        self.api_retries = p.api_retries;
        self.last_retry = p
            .last_retry
            .as_ref()
            .map(|r| {
                format!(
                    "attempt {}/{} in {} ms ({}{})",
                    r.attempt
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "?".into()),
                    r.max_retries
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "?".into()),
                    r.retry_delay_ms.map(|d| d.round() as i64).unwrap_or(0),
                    r.error.clone().unwrap_or_else(|| "error".into()),
                    r.error_status
                        .map(|s| format!(", HTTP {s}"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default();
        self.last_event_at = p.last_event_at.unwrap_or(0);
        self.last_output_at = p.last_output_at.unwrap_or(0);
        self.cost_usd = p.cost_usd;
        self.past_init = p.started_turns();
        self.pending_mcp_servers = p.pending_mcp_servers.clone();
        if let Some(r) = &p.result {
            self.result_subtype = r.subtype.clone();
            self.result_is_error = Some(r.is_error);
            self.num_turns = r.num_turns;
            self.tokens = r.tokens;
            self.result_text = r.text.clone().unwrap_or_default();
            self.result_errors = r.errors.clone();
            self.failure = match &r.outcome {
                Outcome::Succeeded => None,
                Outcome::Failed { reason, .. } => Some(reason.clone()),
            };
        }
    }

    /// Why the run failed when its leader exited on its own, by the agent's own account: its
    /// `result` said so (whatever the exit code), or it exited 0 without ever printing one.
    /// `None`: the exit code decides (0 is success). Argv runs have no agent state and keep
    /// exit-code semantics.
    pub fn failure_at_exit(&self, exited_zero: bool) -> Option<String> {
        match (&self.result_is_error, exited_zero) {
            (None, true) => Some(NO_RESULT.to_string()),
            (None, false) => None,
            (Some(_), _) => self.failure.clone(),
        }
    }

    /// The heartbeat side of the state.
    pub fn apply_heartbeats(&mut self, h: &HeartbeatState) {
        self.critical = h.critical.map(|c| c.as_str().to_string());
        self.heartbeat_message = h.last_message.clone().unwrap_or_default();
        self.heartbeat_progress = h.last_progress;
        self.malformed_heartbeats = h.malformed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_that_exits_zero_without_a_result_failed() {
        let none = AgentState::default();
        assert_eq!(none.failure_at_exit(true).as_deref(), Some(NO_RESULT));
        assert_eq!(none.failure_at_exit(false), None, "the exit code says it");

        let ok = AgentState {
            result_is_error: Some(false),
            ..AgentState::default()
        };
        assert_eq!(ok.failure_at_exit(true), None);
        let failed = AgentState {
            result_is_error: Some(true),
            failure: Some("error_max_turns".into()),
            ..AgentState::default()
        };
        assert_eq!(
            failed.failure_at_exit(true).as_deref(),
            Some("error_max_turns")
        );
        assert_eq!(
            failed.failure_at_exit(false).as_deref(),
            Some("error_max_turns")
        );
    }
}
