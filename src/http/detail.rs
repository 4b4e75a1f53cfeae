//! The model of a run's page (`/runs/ID`): its fields, its agent progress, and the kill report
//! as the daemon keeps it (the audit records of the calls that ended or stopped the run: who,
//! when, which phase ended it and what cleanup said), as labelled lines. Pure, like `board`.
//! Env values are never shown (they may hold secrets), only their names.
use crate::proto::{AgentProgress, Run, RunUsage};
use crate::store::AuditRecord;

use super::board::{
    ago, bytes, command_line, duration, health_name, is_live, one_line, phase_name, status_name,
    usd,
};

/// The audit actions whose records make up a run's kill report.
pub const ENDING_ACTIONS: &[&str] = &["kill", "cancel", "force_complete", "restart", "purge"];

/// One labelled line.
pub type Line = (&'static str, String);

/// Everything a run's page shows but the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub run_id: String,
    /// `RUNNING`, `KILLED`, ...
    pub status: String,
    pub live: bool,
    pub stuck: bool,
    pub fields: Vec<Line>,
    /// Empty for runs that are not agent runs.
    pub agent: Vec<Line>,
    /// One line per call that ended (or tried to end) the run, oldest first.
    pub kill_report: Vec<String>,
}

fn time_line(at: i64, now: i64) -> String {
    match rfc3339(at) {
        None => "-".into(),
        Some(t) => format!("{t} ({})", ago(now, at)),
    }
}

/// A Unix-ms time as RFC 3339 UTC to the second; None for 0.
pub fn rfc3339(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let t =
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms.unsigned_abs()))?;
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// The page of `r` at `now`, with the audit records of its ending calls (any order).
pub fn detail(r: &Run, audit: &[AuditRecord], now: i64) -> Detail {
    let mut f: Vec<Line> = vec![("status", status_name(r.status))];
    if !r.workflow.is_empty() {
        f.push(("workflow", r.workflow.clone()));
    }
    f.push(("command", command_line(&r.argv)));
    f.push(("cwd", or_dash(&r.cwd)));
    if r.pid > 0 {
        f.push(("pid", format!("{} (pgid {})", r.pid, r.pgid)));
    }
    if !r.containment.is_empty() {
        f.push(("containment", r.containment.clone()));
    }
    if let Some(o) = &r.owner {
        let who = match (o.uid, o.name.is_empty()) {
            (Some(uid), true) => format!("{} uid {uid}", o.kind),
            (Some(uid), false) => format!("{} uid {uid} ({})", o.kind, o.name),
            (None, _) => format!("{} {}", o.kind, o.name),
        };
        f.push(("started by", who));
    }
    f.push(("created", time_line(r.created_at, now)));
    f.push(("started", time_line(r.started_at, now)));
    f.push(("ended", time_line(r.ended_at, now)));
    if r.started_at > 0 {
        let end = if r.ended_at > 0 { r.ended_at } else { now };
        f.push((
            "duration",
            duration(end.saturating_sub(r.started_at).max(0).unsigned_abs()),
        ));
    }
    let exit = match r.exit_code {
        Some(c) => format!("code {c}"),
        None if !r.signal.is_empty() => format!("signal {}", r.signal),
        None => "-".into(),
    };
    f.push(("exit", exit));
    if !r.error.is_empty() {
        f.push(("error", r.error.clone()));
    }
    if !r.end_reason.is_empty() {
        f.push(("end reason", r.end_reason.clone()));
    }
    let mut attempt = r.attempt.to_string();
    if !r.restart_of.is_empty() {
        attempt.push_str(&format!(" (restart of {})", r.restart_of));
    }
    f.push(("attempt", attempt));
    if !r.queue.is_empty() {
        let mut q = r.queue.clone();
        if r.priority != 0 {
            q.push_str(&format!(", priority {}", r.priority));
        }
        f.push(("queue", q));
    }
    if !r.waiting_reason.is_empty() {
        f.push(("waiting", r.waiting_reason.clone()));
    }
    if !r.after.is_empty() {
        f.push(("after", r.after.join(", ")));
    }
    let signals = if r.stop_signals.is_empty() {
        "-".to_string()
    } else {
        r.stop_signals.join(", ")
    };
    f.push((
        "stop signals",
        format!("{signals}, grace {}", duration(r.grace_ms)),
    ));
    let mut hb = r.heartbeats.to_string();
    if r.last_heartbeat_at > 0 {
        hb.push_str(&format!(", last {}", ago(now, r.last_heartbeat_at)));
    }
    f.push(("heartbeats", hb));
    let mut out = format!(
        "stdout {}, stderr {}",
        bytes(r.stdout_bytes),
        bytes(r.stderr_bytes)
    );
    if r.output_truncated {
        out.push_str(" (over the cap: the oldest output was dropped)");
    }
    f.push(("output", out));
    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    f.push(("labels", or_dash(&labels.join(" "))));
    let env: Vec<&str> = r.env.keys().map(String::as_str).collect();
    f.push(("env names", or_dash(&env.join(" "))));
    if let Some(u) = &r.usage {
        usage_lines(&mut f, u, is_live(r), now);
    }
    let agent = r
        .agent
        .as_ref()
        .map(|a| agent_lines(a, now))
        .unwrap_or_default();
    let mut ending: Vec<&AuditRecord> = audit
        .iter()
        .filter(|a| a.run_id == r.run_id && ENDING_ACTIONS.contains(&a.action.as_str()))
        .collect();
    ending.sort_by_key(|a| (a.at, a.id));
    let kill_report = ending
        .iter()
        .map(|a| {
            let who = if a.identity.is_empty() {
                a.caller.describe()
            } else {
                format!("{} [{}]", a.identity, a.caller.describe())
            };
            let mut s = format!(
                "{} {} by {who}: {}",
                rfc3339(a.at).unwrap_or_default(),
                a.action,
                a.outcome
            );
            if !a.message.is_empty() {
                s.push_str(" — ");
                s.push_str(&a.message);
            }
            s
        })
        .collect();
    Detail {
        run_id: r.run_id.clone(),
        status: status_name(r.status).to_uppercase(),
        live: is_live(r),
        stuck: super::board::is_stuck(r),
        fields: f.into_iter().map(|(k, v)| (k, one_line(&v))).collect(),
        agent,
        kill_report,
    }
}

fn usage_lines(f: &mut Vec<Line>, u: &RunUsage, live: bool, now: i64) {
    if u.sampled_at <= 0 {
        return;
    }
    f.push((
        "cpu",
        format!(
            "{} (user {}, system {})",
            duration(u.cpu_user_ms.saturating_add(u.cpu_system_ms)),
            duration(u.cpu_user_ms),
            duration(u.cpu_system_ms)
        ),
    ));
    let mem = if live {
        format!(
            "{} (peak {})",
            bytes(u.memory_bytes),
            bytes(u.memory_peak_bytes)
        )
    } else {
        format!("peak {}", bytes(u.memory_peak_bytes))
    };
    f.push(("memory", mem));
    f.push((
        "processes",
        format!("{} (peak {})", u.processes, u.processes_peak),
    ));
    let mut notes = Vec::new();
    if u.oom_killed {
        notes.push("OOM killer ended a process");
    }
    if u.pids_limit_hit {
        notes.push("hit pids.max");
    }
    let mut from = format!("{}, read {}", or_dash(&u.source), ago(now, u.sampled_at));
    if !notes.is_empty() {
        from.push_str(&format!("; {}", notes.join(", ")));
    }
    f.push(("usage from", from));
}

fn agent_lines(a: &AgentProgress, now: i64) -> Vec<Line> {
    let mut l: Vec<Line> = vec![("phase", phase_name(a.phase))];
    let health = match a.health_reason.is_empty() {
        true => health_name(a.health),
        false => format!("{}: {}", health_name(a.health), a.health_reason),
    };
    l.push(("health", health));
    l.push(("turns", a.turns.to_string()));
    l.push(("cost", a.cost_usd.map(usd).unwrap_or_else(|| "-".into())));
    let mut model = or_dash(&a.model);
    if !a.claude_code_version.is_empty() {
        model.push_str(&format!(" (Claude Code {})", a.claude_code_version));
    }
    l.push(("model", model));
    l.push(("session", or_dash(&a.session_id)));
    l.push(("tool", or_dash(&a.current_tool)));
    l.push(("critical", or_dash(&a.critical)));
    let progress = match (a.heartbeat_progress, a.heartbeat_message.is_empty()) {
        (None, _) => or_dash(&a.heartbeat_message),
        (Some(p), true) => format!("{:.0}%", p * 100.0),
        (Some(p), false) => format!("{:.0}% {}", p * 100.0, a.heartbeat_message),
    };
    l.push(("progress", progress));
    let mut retries = a.api_retries.to_string();
    if !a.last_retry.is_empty() {
        retries.push_str(&format!(", last: {}", a.last_retry));
    }
    l.push(("api retries", retries));
    l.push(("last event", time_line(a.last_event_at, now)));
    if let (Some(i), Some(o)) = (a.input_tokens, a.output_tokens) {
        l.push(("tokens", format!("input {i}, output {o}")));
    }
    if !a.result_subtype.is_empty() {
        let mut r = a.result_subtype.clone();
        if a.result_is_error == Some(true) {
            r.push_str(" (error)");
        }
        if let Some(n) = a.num_turns {
            r.push_str(&format!(", {n} turns"));
        }
        l.push(("result", r));
    }
    if !a.result_text.is_empty() {
        l.push(("result text", super::board::clip(&a.result_text, 2000)));
    }
    if !a.prompt.is_empty() {
        l.push(("prompt", super::board::clip(&a.prompt, 2000)));
    }
    l.into_iter().map(|(k, v)| (k, one_line(&v))).collect()
}

#[cfg(test)]
mod tests {
    use super::super::board::tests::{run, NOW};
    use super::*;
    use crate::proto::RunStatus;
    use crate::store::Caller;

    #[test]
    fn the_kill_report_is_the_run_s_ending_calls_in_order() {
        let mut r = run("run_aaaabbbbcccc", RunStatus::Killed, 60);
        r.ended_at = NOW - 1000;
        r.signal = "SIGKILL".into();
        r.env.insert("API_KEY".into(), "sk-secret-value".into());
        let kill = AuditRecord {
            at: NOW - 2000,
            ..AuditRecord::new(
                Caller::Tcp("127.0.0.1:5000".parse().expect("addr")),
                "kill",
                "run_aaaabbbbcccc",
                serde_json::json!({}),
            )
            .by("token ci", "operator")
            .outcome("ok", "Kill: killed: nothing of the run remains")
        };
        let other = AuditRecord::new(
            Caller::Daemon,
            "spawn",
            "run_aaaabbbbcccc",
            serde_json::json!({}),
        );
        let d = detail(&r, &[other, kill], NOW);
        assert_eq!(d.status, "KILLED");
        assert!(!d.live);
        assert_eq!(d.kill_report.len(), 1, "{:?}", d.kill_report);
        assert!(
            d.kill_report[0].ends_with(
                "kill by token ci [tcp 127.0.0.1:5000]: ok — Kill: killed: nothing of the run remains"
            ),
            "{}",
            d.kill_report[0]
        );
        assert!(d.fields.contains(&("exit", "signal SIGKILL".into())));
        assert!(d.fields.contains(&("env names", "API_KEY".into())));
        assert!(
            !format!("{d:?}").contains("sk-secret-value"),
            "an env value is shown"
        );
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(rfc3339(NOW).as_deref(), Some("2026-12-01T15:00:00Z"));
        assert_eq!(rfc3339(0), None);
    }
}
