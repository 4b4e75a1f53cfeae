//! Conversions between the daemon's records and the API's messages.
use crate::proto;
use crate::run::{KillPhase, KillReport, RunRecord, RunStatus};
use crate::supervisor::RunEvent;

pub fn status_to_proto(s: RunStatus) -> proto::RunStatus {
    use proto::RunStatus as P;
    match s {
        RunStatus::Queued => P::Queued,
        RunStatus::Starting => P::Starting,
        RunStatus::Running => P::Running,
        RunStatus::Stopping => P::Stopping,
        RunStatus::Succeeded => P::Succeeded,
        RunStatus::Failed => P::Failed,
        RunStatus::Killed => P::Killed,
        RunStatus::Cancelled => P::Cancelled,
        RunStatus::TimedOut => P::TimedOut,
        RunStatus::Lost => P::Lost,
    }
}

/// The daemon's status for an API status; None for UNSPECIFIED or unknown numbers.
pub fn status_from_proto(n: i32) -> Option<RunStatus> {
    use proto::RunStatus as P;
    Some(match P::try_from(n).ok()? {
        P::Unspecified => return None,
        P::Queued => RunStatus::Queued,
        P::Starting => RunStatus::Starting,
        P::Running => RunStatus::Running,
        P::Stopping => RunStatus::Stopping,
        P::Succeeded => RunStatus::Succeeded,
        P::Failed => RunStatus::Failed,
        P::Killed => RunStatus::Killed,
        P::Cancelled => RunStatus::Cancelled,
        P::TimedOut => RunStatus::TimedOut,
        P::Lost => RunStatus::Lost,
    })
}

pub fn run_to_proto(r: &RunRecord) -> proto::Run {
    proto::Run {
        run_id: r.run_id.clone(),
        status: status_to_proto(r.status) as i32,
        argv: r.spec.argv.clone(),
        cwd: r.spec.cwd.to_string_lossy().into_owned(),
        labels: r.spec.labels.clone(),
        pid: r.pid,
        pgid: r.pgid,
        created_at: r.created_at,
        started_at: r.started_at,
        ended_at: r.ended_at,
        exit_code: r.exit_code,
        signal: r.signal.clone().unwrap_or_default(),
        error: r.error.clone(),
        attempt: r.attempt,
        restart_of: r.restart_of.clone(),
        last_heartbeat_at: r.last_heartbeat_at,
        containment: r.containment.clone(),
        stop_signals: r.spec.stop_signals.clone(),
        grace_ms: r.spec.grace.as_millis() as u64,
        env: r
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), redact(k, v)))
            .collect(),
        heartbeats: r.heartbeats,
        stdout_bytes: r.stdout_bytes,
        stderr_bytes: r.stderr_bytes,
        end_reason: r.end_reason.clone(),
        output_truncated: r.output_truncated,
        logs_missing: r.logs_missing,
        workflow: r
            .spec
            .agent
            .as_ref()
            .map(|a| a.workflow.clone())
            .unwrap_or_default(),
        agent: r
            .agent
            .as_ref()
            .map(|a| agent_to_proto(a, r.spec.agent.as_ref())),
        queue: r.spec.policy.queue.clone(),
        priority: r.spec.policy.priority,
        after: r.spec.policy.after.clone(),
        not_before: r.spec.policy.not_before,
        timeout_at: r.timeout_at,
        queued_at: r.queued_at,
        waiting_reason: r.waiting_reason.clone(),
        restart: r.spec.policy.restart.as_ref().map(restart_to_proto),
        idempotency_key: r.spec.policy.idempotency_key.clone(),
        timeout_ms: r.spec.policy.timeout_ms,
        queue_timeout_ms: r.spec.policy.queue_timeout_ms,
        owner: r.spec.owner.as_ref().map(|o| proto::RunOwner {
            kind: o.kind.clone(),
            uid: o.uid,
            name: o.name.clone(),
        }),
        usage: r.usage.as_ref().map(usage_to_proto),
    }
}

pub fn usage_to_proto(u: &crate::usage::Usage) -> proto::RunUsage {
    proto::RunUsage {
        cpu_user_ms: u.cpu_user_ms,
        cpu_system_ms: u.cpu_system_ms,
        memory_bytes: u.memory_bytes,
        memory_peak_bytes: u.memory_peak_bytes,
        processes: u.processes,
        processes_peak: u.processes_peak,
        io_read_bytes: u.io_read_bytes,
        io_write_bytes: u.io_write_bytes,
        source: u.source.clone(),
        unavailable: u.unavailable.clone(),
        sampled_at: u.sampled_at,
        oom_killed: u.oom_killed,
        pids_limit_hit: u.pids_limit_hit,
    }
}

pub fn restart_to_proto(p: &crate::schedule::RestartPolicy) -> proto::RestartPolicy {
    proto::RestartPolicy {
        on: p.on.iter().map(|o| o.as_str().to_string()).collect(),
        max_restarts: p.max_restarts,
        backoff_ms: p.backoff_ms,
        max_backoff_ms: p.max_backoff_ms,
        reset_after_ms: p.reset_after_ms,
    }
}

pub fn queue_to_proto(f: &crate::supervisor::QueueFigures) -> proto::QueueHealth {
    proto::QueueHealth {
        name: f.name.clone(),
        running: f.running as u32,
        queued: f.queued as u32,
        max_concurrent: f.max_concurrent as u32,
        max_queued: f.max_queued as u32,
        paused: f.paused,
        ended_last_hour: f.ended_last_hour.clone().into_iter().collect(),
        ended_last_day: f.ended_last_day.clone().into_iter().collect(),
        oldest_running_ms: f.oldest_running_ms,
        longest_queued_wait_ms: f.longest_queued_wait_ms,
        stuck: f.stuck as u32,
    }
}

/// A kill's answer, with whether its end is on record yet.
pub fn kill_outcome_to_proto(o: &crate::supervisor::KillOutcome) -> proto::KillResponse {
    proto::KillResponse {
        record_pending: o.record_pending.clone().unwrap_or_default(),
        ..kill_to_proto(&o.run, &o.report)
    }
}

pub fn kill_to_proto(run: &RunRecord, k: &KillReport) -> proto::KillResponse {
    proto::KillResponse {
        success: k.survivors.is_empty(),
        run_id: run.run_id.clone(),
        killed_at: k.killed_at,
        phase: match k.phase {
            KillPhase::Term => proto::KillPhase::Term,
            KillPhase::Kill => proto::KillPhase::Kill,
            KillPhase::Survivors => proto::KillPhase::Survivors,
            KillPhase::AlreadyExited => proto::KillPhase::AlreadyExited,
            // A queued run had no process: no phase of the kill ran.
            KillPhase::NotStarted => proto::KillPhase::Unspecified,
        } as i32,
        signals_sent: k.signals_sent.clone(),
        duration_ms: k.duration.as_millis() as u64,
        survivors: k.survivors.len() as u32,
        cleanup: k
            .cleanup
            .iter()
            .map(|c| proto::CleanupStep {
                step: c.step.to_string(),
                ok: c.ok,
                detail: c.detail.clone(),
            })
            .collect(),
        message: k.message.clone(),
        survivor_pids: k
            .survivors
            .iter()
            .map(|s| proto::Survivor {
                pid: s.pid,
                state: s.state.to_string(),
                comm: s.comm.clone(),
            })
            .collect(),
        run: Some(run_to_proto(run)),
        ..Default::default()
    }
}

pub fn event_to_proto(e: &RunEvent) -> proto::RunEvent {
    proto::RunEvent {
        run_id: e.run_id.clone(),
        at: e.at,
        kind: e.kind.to_string(),
        status: status_to_proto(e.status) as i32,
        message: e.message.clone(),
        run: match (&e.run, e.heartbeat) {
            (Some(r), _) => Some(run_to_proto(r)),
            // A heartbeat event carries a partial run: id, status and the heartbeat fields.
            (None, Some((at, count))) => Some(proto::Run {
                run_id: e.run_id.clone(),
                status: status_to_proto(e.status) as i32,
                last_heartbeat_at: at,
                heartbeats: count,
                ..Default::default()
            }),
            (None, None) => None,
        },
    }
}

pub fn audit_to_proto(a: &crate::store::AuditRecord) -> proto::AuditRecord {
    use crate::store::Caller;
    let (uid, gid, pid, peer) = match &a.caller {
        Caller::Unix { uid, gid, pid } => (Some(*uid), Some(*gid), *pid, String::new()),
        Caller::Tcp(addr) => (None, None, None, addr.to_string()),
        _ => (None, None, None, String::new()),
    };
    proto::AuditRecord {
        id: a.id,
        at: a.at,
        caller: a.caller.describe(),
        uid,
        gid,
        pid,
        peer,
        action: a.action.clone(),
        run_id: a.run_id.clone(),
        request: a.request.clone(),
        outcome: a.outcome.clone(),
        message: a.message.clone(),
        identity: a.identity.clone(),
        role: a.role.clone(),
    }
}

pub fn alert_to_proto(a: &crate::store::Alert) -> proto::Alert {
    proto::Alert {
        id: a.id,
        at: a.at,
        kind: a.kind.clone(),
        message: a.message.clone(),
        acknowledged_at: a.acknowledged_at,
        acknowledged_by: a.acknowledged_by.clone(),
        resolved_at: a.resolved_at,
        dedup_key: a.dedup_key.clone(),
        labels: a.labels.clone().into_iter().collect(),
    }
}

fn agent_to_proto(
    a: &crate::run::agent::AgentState,
    spec: Option<&crate::run::agent::AgentSpec>,
) -> proto::AgentProgress {
    proto::AgentProgress {
        phase: match a.phase.to_ascii_uppercase().as_str() {
            "STARTING" => proto::AgentPhase::Starting,
            "INITIALIZING" => proto::AgentPhase::Initializing,
            "ACTIVE" => proto::AgentPhase::Active,
            "FINISHING" => proto::AgentPhase::Finishing,
            _ => proto::AgentPhase::Unspecified,
        } as i32,
        turns: a.turns,
        session_id: a.session_id.clone(),
        model: a.model.clone(),
        claude_code_version: a.claude_code_version.clone(),
        current_tool: a.current_tool.clone(),
        api_retries: a.api_retries,
        last_retry: a.last_retry.clone(),
        last_event_at: a.last_event_at,
        cost_usd: a.cost_usd,
        input_tokens: a.tokens.map(|t| t.input),
        output_tokens: a.tokens.map(|t| t.output),
        cache_creation_input_tokens: a.tokens.map(|t| t.cache_creation_input),
        cache_read_input_tokens: a.tokens.map(|t| t.cache_read_input),
        result_subtype: a.result_subtype.clone(),
        result_is_error: a.result_is_error,
        num_turns: a.num_turns,
        result_text: a.result_text.clone(),
        result_errors: a.result_errors.clone(),
        health: match a.health.as_str() {
            "OK" => proto::Health::Ok,
            "SLOW" => proto::Health::Slow,
            "STUCK" => proto::Health::Stuck,
            _ => proto::Health::Unspecified,
        } as i32,
        health_reason: a.health_reason.clone(),
        critical: a.critical.clone().unwrap_or_default(),
        prompt: spec.map(|s| s.prompt.clone()).unwrap_or_default(),
        resume_session: spec
            .and_then(|s| s.resume_session.clone())
            .unwrap_or_default(),
        heartbeat_message: a.heartbeat_message.clone(),
        heartbeat_progress: a.heartbeat_progress,
    }
}

pub fn workflow_to_proto(w: &crate::config::Workflow) -> proto::Workflow {
    let ms =
        |r: Option<crate::agent::health::Rule>| r.map(|r| r.after.as_millis() as u64).unwrap_or(0);
    let act = |r: Option<crate::agent::health::Rule>| {
        r.map(|r| r.action.as_str().to_string()).unwrap_or_default()
    };
    proto::Workflow {
        name: w.name.clone(),
        program: w.template.program.clone(),
        model: w.template.model.clone().unwrap_or_default(),
        max_turns: w.template.max_turns.unwrap_or(0),
        permission_mode: w.template.permission_mode.clone().unwrap_or_default(),
        allowed_tools: w.template.allowed_tools.clone(),
        has_append_system_prompt: w.template.append_system_prompt.is_some(),
        stop_signals: w.stop_signals.clone(),
        grace_ms: w.grace.as_millis() as u64,
        init_timeout_ms: ms(w.rules.init_timeout),
        idle_timeout_ms: ms(w.rules.idle_timeout),
        max_runtime_ms: ms(w.rules.max_runtime),
        on_init_timeout: act(w.rules.init_timeout),
        on_idle_timeout: act(w.rules.idle_timeout),
        on_max_runtime: act(w.rules.max_runtime),
        cwd: w
            .cwd
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        allowed_cwds: w
            .allowed_cwds
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}

/// Values of variables whose names say they hold secrets are not shown over the API.
pub fn redact(key: &str, value: &str) -> String {
    let k = key.to_ascii_uppercase();
    let secret = [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "AUTH",
    ]
    .iter()
    .any(|w| k.contains(w));
    if secret && !value.is_empty() {
        "<redacted>".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_values_are_redacted() {
        assert_eq!(redact("ANTHROPIC_API_KEY", "sk-ant-123"), "<redacted>");
        assert_eq!(redact("github_token", "ghp_x"), "<redacted>");
        assert_eq!(redact("RUST_LOG", "debug"), "debug");
        assert_eq!(redact("API_KEY", ""), "");
    }
}
