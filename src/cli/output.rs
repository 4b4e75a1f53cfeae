//! Everything `wfctl` prints: enum names without their prefixes, human times, durations and sizes,
//! the run table and detail view (with a workflow run's agent progress), the kill report, watch
//! lines, the purge report, the audit table, the health report and alert view, the workflow table,
//! and the hand-written JSON form of the API messages (prost types do not derive serde). JSON uses the proto field names; enums are
//! short lowercase names; times are Unix milliseconds plus an `*_rfc3339` string (null for 0).
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};
pub use wf_supervisor::present::{
    agent_phase_name, command_line, fmt_ago, fmt_bytes, fmt_duration_ms, fmt_usd, health_name,
    one_line, shell_quote, short_name, status_name, truncate,
};
use wf_supervisor::proto::{
    AgentProgress, Alert, AuditRecord, GetHealthResponse, Health, KillPhase, KillResponse,
    LogChunk, LogStream, PurgeResponse, RestartResponse, Run, RunEvent, RunUsage, Workflow,
};

/// The status names `--status` accepts and tables print, in lifecycle order.
pub const STATUS_NAMES: [&str; 10] = [
    "queued",
    "starting",
    "running",
    "stopping",
    "succeeded",
    "failed",
    "killed",
    "cancelled",
    "timed_out",
    "lost",
];

/// The longest COMMAND shown in `ps` unless --no-trunc.
pub const COMMAND_WIDTH: usize = 60;

/// The longest MESSAGE shown in `audit` unless --no-trunc.
pub const MESSAGE_WIDTH: usize = 60;

/// The longest prompt or result text shown by `get` unless --no-trunc.
pub const TEXT_WIDTH: usize = 160;

/// Print to stdout with a trailing newline; errors (a closed pipe) go to the caller.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Print a JSON value: pretty for one response, one compact line for stream items.
pub fn print_json(value: &Value, compact: bool) -> anyhow::Result<()> {
    let text = if compact {
        serde_json::to_string(value)?
    } else {
        serde_json::to_string_pretty(value)?
    };
    print(&text)
}

// ---------------------------------------------------------------------------------------------
// Enum names

/// `term`, `kill`, `survivors`, `already_exited`.
pub fn phase_name(raw: i32) -> String {
    let full = KillPhase::try_from(raw).ok().map(|s| s.as_str_name());
    short_name(full, "KILL_PHASE_", raw)
}

/// `stdout` or `stderr`.
pub fn stream_name(raw: i32) -> String {
    let full = LogStream::try_from(raw).ok().map(|s| s.as_str_name());
    short_name(full, "LOG_STREAM_", raw)
}

// ---------------------------------------------------------------------------------------------
// Times, durations, sizes

/// A Unix-ms time as RFC 3339 UTC with milliseconds, or None for 0 ("not yet").
pub fn rfc3339(ms: i64) -> Option<String> {
    if ms <= 0 {
        return None;
    }
    let t = UNIX_EPOCH.checked_add(Duration::from_millis(ms.unsigned_abs()))?;
    Some(humantime::format_rfc3339_millis(t).to_string())
}

/// How long a run has run: from start to end, or to now while it is live; None before start.
pub fn run_duration_ms(run: &Run, now: i64) -> Option<u64> {
    if run.started_at <= 0 {
        return None;
    }
    let end = if run.ended_at > 0 { run.ended_at } else { now };
    Some(end.saturating_sub(run.started_at).max(0).unsigned_abs())
}

// ---------------------------------------------------------------------------------------------
// Commands and table cells

/// How the leader ended: `0`, `SIGKILL`, or `-`.
pub fn exit_cell(run: &Run) -> String {
    match run.exit_code {
        Some(code) => code.to_string(),
        None if !run.signal.is_empty() => run.signal.clone(),
        None => "-".to_string(),
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The HEALTH cell of `ps`: blank for a plain run, `-` for an agent whose health is not known yet.
pub fn health_cell(r: &Run) -> String {
    match &r.agent {
        None => String::new(),
        Some(a) if a.health == Health::Unspecified as i32 => "-".to_string(),
        Some(a) => health_name(a.health),
    }
}

/// The TURNS cell of `ps`: blank for a plain run.
pub fn turns_cell(r: &Run) -> String {
    r.agent
        .as_ref()
        .map(|a| a.turns.to_string())
        .unwrap_or_default()
}

/// The `ps` table; HEALTH and TURNS are blank for plain (non-workflow) runs.
/// CPU time used (user and system): `1.25s`, `-` without usage.
pub fn cpu_cell(r: &Run) -> String {
    match &r.usage {
        Some(u) => format!("{:.2}s", (u.cpu_user_ms + u.cpu_system_ms) as f64 / 1000.0),
        None => "-".to_string(),
    }
}

/// Memory in use while the run is live, its peak once it ended; `-` without usage.
pub fn mem_cell(r: &Run) -> String {
    match &r.usage {
        Some(u) if r.ended_at > 0 => fmt_bytes(u.memory_peak_bytes),
        Some(u) => fmt_bytes(u.memory_bytes),
        None => "-".to_string(),
    }
}

/// The usage part of the `get` view.
fn usage_lines(lines: &mut Vec<(&str, String)>, u: &RunUsage, now: i64) {
    lines.push((
        "cpu",
        format!(
            "{:.2}s (user {}, system {})",
            (u.cpu_user_ms + u.cpu_system_ms) as f64 / 1000.0,
            fmt_duration_ms(u.cpu_user_ms),
            fmt_duration_ms(u.cpu_system_ms)
        ),
    ));
    lines.push((
        "memory",
        format!(
            "{} now, peak {}",
            fmt_bytes(u.memory_bytes),
            fmt_bytes(u.memory_peak_bytes)
        ),
    ));
    lines.push((
        "processes",
        format!("{} now, peak {}", u.processes, u.processes_peak),
    ));
    if !u.unavailable.iter().any(|x| x == "io") {
        lines.push((
            "io",
            format!(
                "read {}, written {}",
                fmt_bytes(u.io_read_bytes),
                fmt_bytes(u.io_write_bytes)
            ),
        ));
    }
    let mut source = format!("{}, read {}", u.source, time_line(u.sampled_at, now));
    if !u.unavailable.is_empty() {
        source.push_str(&format!(
            "; not available here: {}",
            u.unavailable.join(", ")
        ));
    }
    lines.push(("usage from", source));
    if u.oom_killed {
        lines.push(("oom killed", "yes (memory.events oom_kill)".to_string()));
    }
    if u.pids_limit_hit {
        lines.push(("pids limit", "hit (pids.events max)".to_string()));
    }
}

pub fn runs_table(runs: &[Run], now: i64, no_trunc: bool) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let cmd = command_line(&r.argv);
            vec![
                r.run_id.clone(),
                status_name(r.status),
                if r.pid > 0 {
                    r.pid.to_string()
                } else {
                    "-".to_string()
                },
                if r.created_at > 0 {
                    fmt_duration_ms(now.saturating_sub(r.created_at).max(0).unsigned_abs())
                } else {
                    "-".to_string()
                },
                run_duration_ms(r, now)
                    .map(fmt_duration_ms)
                    .unwrap_or_else(|| "-".to_string()),
                exit_cell(r),
                or_dash(&r.queue),
                health_cell(r),
                turns_cell(r),
                cpu_cell(r),
                mem_cell(r),
                if no_trunc {
                    cmd
                } else {
                    truncate(&cmd, COMMAND_WIDTH)
                },
            ]
        })
        .collect();
    table(
        &[
            "RUN ID", "STATUS", "PID", "AGE", "DURATION", "EXIT", "QUEUE", "HEALTH", "TURNS",
            "CPU", "MEM", "COMMAND",
        ],
        &rows,
    )
}

fn time_line(at: i64, now: i64) -> String {
    match rfc3339(at) {
        Some(t) => format!("{t} ({})", fmt_ago(now, at)),
        None => "-".to_string(),
    }
}

/// The `get` view: one `key: value` line per field worth reading; for a workflow run, its agent's
/// progress after the run's own fields. Prompt and result text are cut at [`TEXT_WIDTH`] unless
/// `no_trunc`, which shows them whole, line by line.
pub fn run_detail(r: &Run, now: i64, no_trunc: bool) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("run id", r.run_id.clone()),
        ("status", status_name(r.status)),
    ];
    if !r.workflow.is_empty() {
        lines.push(("workflow", r.workflow.clone()));
    }
    lines.extend([
        ("command", command_line(&r.argv)),
        (
            "cwd",
            if r.cwd.is_empty() {
                "-".into()
            } else {
                r.cwd.clone()
            },
        ),
    ]);
    let pid = if r.pid > 0 {
        let mut s = r.pid.to_string();
        if r.pgid > 0 {
            s.push_str(&format!(" (pgid {})", r.pgid));
        }
        s
    } else {
        "-".to_string()
    };
    lines.push(("pid", pid));
    if !r.containment.is_empty() {
        lines.push(("containment", r.containment.clone()));
    }
    lines.push(("created", time_line(r.created_at, now)));
    lines.push(("started", time_line(r.started_at, now)));
    lines.push(("ended", time_line(r.ended_at, now)));
    if let Some(d) = run_duration_ms(r, now) {
        lines.push(("duration", fmt_duration_ms(d)));
    }
    let exit = match r.exit_code {
        Some(code) => format!("code {code}"),
        None if !r.signal.is_empty() => format!("signal {}", r.signal),
        None => "-".to_string(),
    };
    lines.push(("exit", exit));
    if !r.error.is_empty() {
        lines.push(("error", r.error.clone()));
    }
    if !r.end_reason.is_empty() {
        lines.push(("end reason", r.end_reason.clone()));
    }
    let mut attempt = r.attempt.to_string();
    if !r.restart_of.is_empty() {
        attempt.push_str(&format!(" (restart of {})", r.restart_of));
    }
    lines.push(("attempt", attempt));
    let signals = if r.stop_signals.is_empty() {
        "-".to_string()
    } else {
        r.stop_signals.join(", ")
    };
    lines.push(("stop signals", signals));
    lines.push((
        "grace",
        if r.grace_ms > 0 {
            fmt_duration_ms(r.grace_ms)
        } else {
            "-".to_string()
        },
    ));
    let mut hb = r.heartbeats.to_string();
    if r.last_heartbeat_at > 0 {
        hb.push_str(&format!(", last {}", fmt_ago(now, r.last_heartbeat_at)));
    }
    lines.push(("heartbeats", hb));
    let mut output = format!(
        "stdout {}, stderr {}",
        fmt_bytes(r.stdout_bytes),
        fmt_bytes(r.stderr_bytes)
    );
    if r.output_truncated {
        output.push_str(" (truncated: over the cap, the oldest output was dropped)");
    }
    lines.push(("output", output));
    if r.logs_missing {
        lines.push((
            "logs",
            "missing (the log files were gone when the daemon started)".to_string(),
        ));
    }
    let kv = |m: &BTreeMap<String, String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    lines.push(("labels", kv(&r.labels)));
    lines.push(("env", kv(&r.env)));
    queue_lines(&mut lines, r, now);
    if let Some(u) = &r.usage {
        usage_lines(&mut lines, u, now);
    }
    if let Some(a) = &r.agent {
        agent_lines(&mut lines, a, now, no_trunc);
    }
    key_values(&lines)
}

/// The queue and policy part of the `get` view (only what is set).
fn queue_lines(lines: &mut Vec<(&str, String)>, r: &Run, now: i64) {
    if !r.queue.is_empty() {
        let mut q = r.queue.clone();
        if r.priority != 0 {
            q.push_str(&format!(", priority {}", r.priority));
        }
        lines.push(("queue", q));
    }
    if !r.waiting_reason.is_empty() {
        lines.push(("waiting", r.waiting_reason.clone()));
    }
    if r.queued_at > 0 {
        lines.push(("queued", time_line(r.queued_at, now)));
    }
    if !r.after.is_empty() {
        lines.push(("after", r.after.join(", ")));
    }
    if r.not_before > 0 {
        lines.push(("not before", time_line(r.not_before, now)));
    }
    if r.timeout_ms > 0 {
        let mut t = fmt_duration_ms(r.timeout_ms);
        if r.timeout_at > 0 {
            t.push_str(&format!(
                " (at {})",
                rfc3339(r.timeout_at).unwrap_or_default()
            ));
        }
        lines.push(("timeout", t));
    }
    if r.queue_timeout_ms > 0 {
        lines.push(("queue timeout", fmt_duration_ms(r.queue_timeout_ms)));
    }
    if let Some(p) = &r.restart {
        if !p.on.is_empty() {
            lines.push((
                "restart",
                format!(
                    "on {}, at most {} times, backoff {} (max {}), reset after {}",
                    p.on.join("/"),
                    p.max_restarts,
                    fmt_duration_ms(p.backoff_ms),
                    fmt_duration_ms(p.max_backoff_ms),
                    fmt_duration_ms(p.reset_after_ms)
                ),
            ));
        }
    }
    if !r.idempotency_key.is_empty() {
        lines.push(("idempotency key", r.idempotency_key.clone()));
    }
}

/// The agent's part of the `get` view.
fn agent_lines(
    lines: &mut Vec<(&'static str, String)>,
    a: &AgentProgress,
    now: i64,
    no_trunc: bool,
) {
    lines.push(("phase", agent_phase_name(a.phase)));
    let health = match (
        a.health == Health::Unspecified as i32,
        a.health_reason.is_empty(),
    ) {
        (true, true) => "-".to_string(),
        (_, true) => health_name(a.health),
        (_, false) => format!("{}: {}", health_name(a.health), one_line(&a.health_reason)),
    };
    lines.push(("health", health));
    lines.push(("turns", a.turns.to_string()));
    lines.push(("session", or_dash(&a.session_id)));
    if !a.resume_session.is_empty() {
        lines.push(("resumed session", a.resume_session.clone()));
    }
    let mut model = or_dash(&a.model);
    if !a.claude_code_version.is_empty() {
        model.push_str(&format!(" (Claude Code {})", a.claude_code_version));
    }
    lines.push(("model", model));
    lines.push(("tool", or_dash(&a.current_tool)));
    lines.push(("critical", or_dash(&a.critical)));
    let heartbeat = match (a.heartbeat_progress, a.heartbeat_message.is_empty()) {
        (None, true) => "-".to_string(),
        (None, false) => one_line(&a.heartbeat_message),
        (Some(p), true) => fmt_progress(p),
        (Some(p), false) => format!("{} {}", fmt_progress(p), one_line(&a.heartbeat_message)),
    };
    lines.push(("progress", heartbeat));
    let mut retries = a.api_retries.to_string();
    if !a.last_retry.is_empty() {
        retries.push_str(&format!(", last: {}", one_line(&a.last_retry)));
    }
    lines.push(("api retries", retries));
    lines.push(("last event", time_line(a.last_event_at, now)));
    lines.push((
        "cost",
        a.cost_usd.map(fmt_usd).unwrap_or_else(|| "-".to_string()),
    ));
    if let (Some(i), Some(o)) = (a.input_tokens, a.output_tokens) {
        lines.push((
            "tokens",
            format!(
                "input {i}, output {o}, cache write {}, cache read {}",
                a.cache_creation_input_tokens.unwrap_or(0),
                a.cache_read_input_tokens.unwrap_or(0)
            ),
        ));
    }
    let mut result = Vec::new();
    if !a.result_subtype.is_empty() {
        result.push(a.result_subtype.clone());
    }
    if let Some(e) = a.result_is_error {
        result.push(format!("is_error: {e}"));
    }
    if let Some(n) = a.num_turns {
        result.push(format!("num_turns: {n}"));
    }
    lines.push((
        "result",
        if result.is_empty() {
            "-".to_string()
        } else {
            result.join(", ")
        },
    ));
    if !a.result_text.is_empty() {
        long_text(lines, "result text", &a.result_text, no_trunc);
    }
    for (i, e) in a.result_errors.iter().enumerate() {
        let e = one_line(e);
        let e = if no_trunc {
            e
        } else {
            truncate(&e, TEXT_WIDTH)
        };
        lines.push((if i == 0 { "result errors" } else { "" }, e));
    }
    if a.prompt.is_empty() {
        lines.push(("prompt", "-".to_string()));
    } else {
        long_text(lines, "prompt", &a.prompt, no_trunc);
    }
}

/// A long text in the `get` view: on one line cut at [`TEXT_WIDTH`], or whole, one line per line.
fn long_text(
    lines: &mut Vec<(&'static str, String)>,
    key: &'static str,
    text: &str,
    no_trunc: bool,
) {
    if !no_trunc {
        lines.push((key, truncate(&one_line(text.trim()), TEXT_WIDTH)));
        return;
    }
    for (i, line) in text.trim_end().lines().enumerate() {
        lines.push((if i == 0 { key } else { "" }, one_line(line)));
    }
}

/// A heartbeat's progress (0..1) as a percentage: `40%`.
pub fn fmt_progress(p: f64) -> String {
    format!("{:.0}%", p * 100.0)
}

/// A stuck rule's cell in the `workflows` table: `30m kill`, or `off`.
fn rule_cell(after_ms: u64, action: &str) -> String {
    if after_ms == 0 {
        return "off".to_string();
    }
    let mut s = fmt_duration_ms(after_ms);
    if !action.is_empty() {
        s.push(' ');
        s.push_str(action);
    }
    s
}

/// Where a workflow's runs start: the default cwd and the directories a cwd must be under.
fn cwd_rules_cell(w: &Workflow) -> String {
    let mut parts = Vec::new();
    if !w.cwd.is_empty() {
        parts.push(format!("default {}", w.cwd));
    }
    if !w.allowed_cwds.is_empty() {
        parts.push(format!("under {}", w.allowed_cwds.join(", ")));
    }
    if parts.is_empty() {
        "any".to_string()
    } else {
        parts.join("; ")
    }
}

/// The `workflows` table: program, model, stop signals and grace, the three stuck rules with their
/// actions, and the cwd rules.
pub fn workflows_table(workflows: &[Workflow]) -> String {
    let rows: Vec<Vec<String>> = workflows
        .iter()
        .map(|w| {
            let mut stop = if w.stop_signals.is_empty() {
                "-".to_string()
            } else {
                w.stop_signals.join(",")
            };
            if w.grace_ms > 0 {
                stop.push_str(&format!(" {}", fmt_duration_ms(w.grace_ms)));
            }
            vec![
                w.name.clone(),
                or_dash(&w.program),
                or_dash(&w.model),
                stop,
                rule_cell(w.init_timeout_ms, &w.on_init_timeout),
                rule_cell(w.idle_timeout_ms, &w.on_idle_timeout),
                rule_cell(w.max_runtime_ms, &w.on_max_runtime),
                cwd_rules_cell(w),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "PROGRAM", "MODEL", "STOP", "INIT", "IDLE", "MAX", "CWD",
        ],
        &rows,
    )
}

/// `key:` padded to one column, then the value.
fn key_values(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in lines {
        // An empty key continues the previous field on its own line.
        let key = if k.is_empty() {
            String::new()
        } else {
            format!("{k}:")
        };
        out.push_str(&format!("{key:<width$} {v}\n"));
    }
    out
}

/// The `kill` report: outcome, phase, signals, duration, survivors, cleanup, message.
pub fn kill_report(k: &KillResponse) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("run id", k.run_id.clone()),
        (
            "result",
            if k.success {
                "killed: nothing of the run remains".to_string()
            } else {
                "NOT COMPLETE: the run was not seen empty".to_string()
            },
        ),
        ("phase", phase_name(k.phase)),
        (
            "signals",
            if k.signals_sent.is_empty() {
                "none".to_string()
            } else {
                k.signals_sent.join(", ")
            },
        ),
        ("duration", fmt_duration_ms(k.duration_ms)),
    ];
    if let Some(t) = rfc3339(k.killed_at) {
        lines.push(("killed at", t));
    }
    let survivors = if k.survivors == 0 && k.survivor_pids.is_empty() {
        "none".to_string()
    } else {
        let listed: Vec<String> = k
            .survivor_pids
            .iter()
            .map(|s| {
                let comm = if s.comm.is_empty() {
                    String::new()
                } else {
                    format!(" {}", s.comm)
                };
                format!("pid {} (state {}{comm})", s.pid, s.state)
            })
            .collect();
        if listed.is_empty() {
            k.survivors.to_string()
        } else {
            format!("{}: {}", k.survivors, listed.join(", "))
        }
    };
    lines.push(("survivors", survivors));
    if k.cleanup.is_empty() {
        lines.push(("cleanup", "-".to_string()));
    }
    for (i, c) in k.cleanup.iter().enumerate() {
        let mut s = format!("{} {}", c.step, if c.ok { "ok" } else { "FAILED" });
        if !c.detail.is_empty() {
            s.push_str(&format!(": {}", c.detail));
        }
        lines.push((if i == 0 { "cleanup" } else { "" }, s));
    }
    if let Some(run) = &k.run {
        lines.push(("status", status_name(run.status)));
    }
    if !k.record_pending.is_empty() {
        lines.push(("record", format!("NOT YET ON RECORD: {}", k.record_pending)));
    }
    if !k.message.is_empty() {
        lines.push(("message", k.message.clone()));
    }
    key_values(&lines)
}

/// One `watch` line: time, run, kind, status, message.
pub fn event_line(e: &RunEvent) -> String {
    let at = rfc3339(e.at).unwrap_or_else(|| "-".to_string());
    let mut line = format!(
        "{at}  {}  {:<13}  {:<9}",
        e.run_id,
        e.kind,
        status_name(e.status)
    );
    if !e.message.is_empty() {
        line.push_str("  ");
        line.push_str(&e.message.replace('\n', " "));
    }
    line.trim_end().to_string()
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// The `purge` report: how many runs went, then their ids, one per line.
pub fn purge_report(p: &PurgeResponse) -> String {
    let mut out = format!("purged {} run(s)\n", p.purged);
    for id in &p.run_ids {
        out.push_str(id);
        out.push('\n');
    }
    out
}

/// The `audit` table, in the order given (the API's: newest first).
pub fn audit_table(records: &[AuditRecord], no_trunc: bool) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|a| {
            let message = one_line(&a.message);
            vec![
                rfc3339(a.at).unwrap_or_else(|| "-".to_string()),
                or_dash(&one_line(&a.caller)),
                or_dash(&a.action),
                or_dash(&a.run_id),
                or_dash(&a.outcome),
                if no_trunc {
                    message
                } else {
                    truncate(&message, MESSAGE_WIDTH)
                },
            ]
        })
        .collect();
    table(
        &["TIME", "CALLER", "ACTION", "RUN ID", "OUTCOME", "MESSAGE"],
        &rows,
    )
}

/// The `health` report: counts and containment, then a table of the unacknowledged alerts.
pub fn health_report(h: &GetHealthResponse) -> String {
    let alerts = if h.alerts.is_empty() {
        "none".to_string()
    } else {
        format!(
            "{} unacknowledged (wfctl ack ID once dealt with)",
            h.alerts.len()
        )
    };
    let mut lines = vec![
        ("live runs", h.live_runs.to_string()),
        ("queued runs", h.queued_runs.to_string()),
        ("total runs", h.total_runs.to_string()),
        ("containment", containment_line(h)),
    ];
    // A daemon from before the capacity fields sends none.
    if h.fd_limit > 0 {
        lines.push(("capacity", capacity_line(h)));
    }
    lines.push(("alerts", alerts));
    let mut out = key_values(&lines);
    if !h.alerts.is_empty() {
        let rows: Vec<Vec<String>> = h
            .alerts
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string(),
                    rfc3339(a.at).unwrap_or_else(|| "-".to_string()),
                    or_dash(&a.kind),
                    one_line(&a.message),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(&["ID", "TIME", "KIND", "MESSAGE"], &rows));
    }
    out
}

/// "cgroup (clone3)": how runs are contained and how leaders enter their cgroups.
fn containment_line(h: &GetHealthResponse) -> String {
    let line = if h.cgroup_entry.is_empty() {
        or_dash(&h.containment)
    } else {
        format!(
            "{} (entered by {})",
            or_dash(&h.containment),
            h.cgroup_entry
        )
    };
    if h.memory_controller.is_empty() {
        line
    } else {
        format!("{line}; memory controller {}", h.memory_controller)
    }
}

/// How many more runs the host allows, and which limit says so.
fn capacity_line(h: &GetHealthResponse) -> String {
    let pids = match (h.pids_max, h.runs_left_by_pids) {
        (Some(max), Some(left)) => format!("pids.max {max}: {left}"),
        _ => "pids.max: no limit".to_string(),
    };
    format!(
        "{} more runs (open files {}/{}: {}; {}; runs.max_live_runs: {})",
        h.runs_left, h.fds_open, h.fd_limit, h.runs_left_by_fds, pids, h.runs_left_by_max_live_runs
    )
}

/// One alert (the `ack` answer): what was raised when, and who acknowledged it when.
pub fn alert_detail(a: &Alert, now: i64) -> String {
    key_values(&[
        ("alert id", a.id.to_string()),
        ("raised", time_line(a.at, now)),
        ("kind", or_dash(&a.kind)),
        ("message", or_dash(&one_line(&a.message))),
        ("acknowledged", time_line(a.acknowledged_at, now)),
        ("by", or_dash(&one_line(&a.acknowledged_by))),
    ])
}

// ---------------------------------------------------------------------------------------------
// JSON

fn time_fields(obj: &mut Map<String, Value>, key: &str, ms: i64) {
    obj.insert(key.to_string(), json!(ms));
    obj.insert(format!("{key}_rfc3339"), json!(rfc3339(ms)));
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// A Run as JSON.
pub fn run_json(r: &Run) -> Value {
    let mut o = Map::new();
    o.insert("run_id".into(), json!(r.run_id));
    o.insert("status".into(), json!(status_name(r.status)));
    o.insert("argv".into(), json!(r.argv));
    o.insert("cwd".into(), json!(r.cwd));
    o.insert("labels".into(), string_map(&r.labels));
    o.insert("pid".into(), json!(r.pid));
    o.insert("pgid".into(), json!(r.pgid));
    time_fields(&mut o, "created_at", r.created_at);
    time_fields(&mut o, "started_at", r.started_at);
    time_fields(&mut o, "ended_at", r.ended_at);
    o.insert("exit_code".into(), json!(r.exit_code));
    o.insert("signal".into(), json!(r.signal));
    o.insert("error".into(), json!(r.error));
    o.insert("attempt".into(), json!(r.attempt));
    o.insert("restart_of".into(), json!(r.restart_of));
    time_fields(&mut o, "last_heartbeat_at", r.last_heartbeat_at);
    o.insert("containment".into(), json!(r.containment));
    o.insert("stop_signals".into(), json!(r.stop_signals));
    o.insert("grace_ms".into(), json!(r.grace_ms));
    o.insert("env".into(), string_map(&r.env));
    o.insert("heartbeats".into(), json!(r.heartbeats));
    o.insert("stdout_bytes".into(), json!(r.stdout_bytes));
    o.insert("stderr_bytes".into(), json!(r.stderr_bytes));
    o.insert("end_reason".into(), json!(r.end_reason));
    o.insert("output_truncated".into(), json!(r.output_truncated));
    o.insert("logs_missing".into(), json!(r.logs_missing));
    o.insert("workflow".into(), json!(r.workflow));
    o.insert("queue".into(), json!(r.queue));
    o.insert("priority".into(), json!(r.priority));
    o.insert("after".into(), json!(r.after));
    time_fields(&mut o, "not_before", r.not_before);
    time_fields(&mut o, "queued_at", r.queued_at);
    time_fields(&mut o, "timeout_at", r.timeout_at);
    o.insert("waiting_reason".into(), json!(r.waiting_reason));
    o.insert("timeout_ms".into(), json!(r.timeout_ms));
    o.insert("queue_timeout_ms".into(), json!(r.queue_timeout_ms));
    o.insert(
        "restart".into(),
        r.restart
            .as_ref()
            .map(|p| {
                json!({"on": p.on, "max_restarts": p.max_restarts, "backoff_ms": p.backoff_ms,
                    "max_backoff_ms": p.max_backoff_ms, "reset_after_ms": p.reset_after_ms})
            })
            .unwrap_or(Value::Null),
    );
    o.insert("idempotency_key".into(), json!(r.idempotency_key));
    o.insert(
        "agent".into(),
        r.agent.as_ref().map(agent_json).unwrap_or(Value::Null),
    );
    o.insert(
        "usage".into(),
        r.usage.as_ref().map(usage_json).unwrap_or(Value::Null),
    );
    Value::Object(o)
}

/// A run's usage as JSON (every field).
pub fn usage_json(u: &RunUsage) -> Value {
    json!({
        "cpu_user_ms": u.cpu_user_ms,
        "cpu_system_ms": u.cpu_system_ms,
        "memory_bytes": u.memory_bytes,
        "memory_peak_bytes": u.memory_peak_bytes,
        "processes": u.processes,
        "processes_peak": u.processes_peak,
        "io_read_bytes": u.io_read_bytes,
        "io_write_bytes": u.io_write_bytes,
        "source": u.source,
        "unavailable": u.unavailable,
        "sampled_at": u.sampled_at,
        "sampled_at_rfc3339": rfc3339(u.sampled_at),
        "oom_killed": u.oom_killed,
        "pids_limit_hit": u.pids_limit_hit,
    })
}

/// A workflow run's AgentProgress as JSON (every field; unset optionals are null).
pub fn agent_json(a: &AgentProgress) -> Value {
    let mut o = Map::new();
    o.insert("phase".into(), json!(agent_phase_name(a.phase)));
    o.insert("turns".into(), json!(a.turns));
    o.insert("session_id".into(), json!(a.session_id));
    o.insert("model".into(), json!(a.model));
    o.insert("claude_code_version".into(), json!(a.claude_code_version));
    o.insert("current_tool".into(), json!(a.current_tool));
    o.insert("api_retries".into(), json!(a.api_retries));
    o.insert("last_retry".into(), json!(a.last_retry));
    time_fields(&mut o, "last_event_at", a.last_event_at);
    o.insert("cost_usd".into(), json!(a.cost_usd));
    o.insert("input_tokens".into(), json!(a.input_tokens));
    o.insert("output_tokens".into(), json!(a.output_tokens));
    o.insert(
        "cache_creation_input_tokens".into(),
        json!(a.cache_creation_input_tokens),
    );
    o.insert(
        "cache_read_input_tokens".into(),
        json!(a.cache_read_input_tokens),
    );
    o.insert("result_subtype".into(), json!(a.result_subtype));
    o.insert("result_is_error".into(), json!(a.result_is_error));
    o.insert("num_turns".into(), json!(a.num_turns));
    o.insert("result_text".into(), json!(a.result_text));
    o.insert("result_errors".into(), json!(a.result_errors));
    o.insert("health".into(), json!(health_name(a.health)));
    o.insert("health_reason".into(), json!(a.health_reason));
    o.insert("critical".into(), json!(a.critical));
    o.insert("prompt".into(), json!(a.prompt));
    o.insert("resume_session".into(), json!(a.resume_session));
    o.insert("heartbeat_message".into(), json!(a.heartbeat_message));
    o.insert("heartbeat_progress".into(), json!(a.heartbeat_progress));
    Value::Object(o)
}

/// A Workflow template as JSON.
pub fn workflow_json(w: &Workflow) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(w.name));
    o.insert("program".into(), json!(w.program));
    o.insert("model".into(), json!(w.model));
    o.insert("max_turns".into(), json!(w.max_turns));
    o.insert("permission_mode".into(), json!(w.permission_mode));
    o.insert("allowed_tools".into(), json!(w.allowed_tools));
    o.insert(
        "has_append_system_prompt".into(),
        json!(w.has_append_system_prompt),
    );
    o.insert("stop_signals".into(), json!(w.stop_signals));
    o.insert("grace_ms".into(), json!(w.grace_ms));
    o.insert("init_timeout_ms".into(), json!(w.init_timeout_ms));
    o.insert("idle_timeout_ms".into(), json!(w.idle_timeout_ms));
    o.insert("max_runtime_ms".into(), json!(w.max_runtime_ms));
    o.insert("on_init_timeout".into(), json!(w.on_init_timeout));
    o.insert("on_idle_timeout".into(), json!(w.on_idle_timeout));
    o.insert("on_max_runtime".into(), json!(w.on_max_runtime));
    o.insert("cwd".into(), json!(w.cwd));
    o.insert("allowed_cwds".into(), json!(w.allowed_cwds));
    Value::Object(o)
}

fn opt_run_json(r: &Option<Run>) -> Value {
    r.as_ref().map(run_json).unwrap_or(Value::Null)
}

/// A KillResponse as JSON.
pub fn kill_json(k: &KillResponse) -> Value {
    let mut o = Map::new();
    o.insert("success".into(), json!(k.success));
    o.insert("run_id".into(), json!(k.run_id));
    time_fields(&mut o, "killed_at", k.killed_at);
    o.insert("phase".into(), json!(phase_name(k.phase)));
    o.insert("signals_sent".into(), json!(k.signals_sent));
    o.insert("duration_ms".into(), json!(k.duration_ms));
    o.insert("survivors".into(), json!(k.survivors));
    o.insert(
        "cleanup".into(),
        Value::Array(
            k.cleanup
                .iter()
                .map(|c| json!({"step": c.step, "ok": c.ok, "detail": c.detail}))
                .collect(),
        ),
    );
    o.insert("message".into(), json!(k.message));
    o.insert(
        "survivor_pids".into(),
        Value::Array(
            k.survivor_pids
                .iter()
                .map(|s| json!({"pid": s.pid, "state": s.state, "comm": s.comm}))
                .collect(),
        ),
    );
    o.insert("run".into(), opt_run_json(&k.run));
    Value::Object(o)
}

/// A RunEvent as JSON.
pub fn event_json(e: &RunEvent) -> Value {
    let mut o = Map::new();
    o.insert("run_id".into(), json!(e.run_id));
    time_fields(&mut o, "at", e.at);
    o.insert("kind".into(), json!(e.kind));
    o.insert("status".into(), json!(status_name(e.status)));
    o.insert("message".into(), json!(e.message));
    o.insert("run".into(), opt_run_json(&e.run));
    Value::Object(o)
}

/// The response of Spawn as JSON.
pub fn spawned_json(run: &Option<Run>) -> Value {
    json!({"run": opt_run_json(run)})
}

/// The response of Restart as JSON: the old run's id, the new run, and how it started.
pub fn restart_json(r: &RestartResponse) -> Value {
    json!({
        "old_run_id": r.old_run_id,
        "run": opt_run_json(&r.run),
        "note": r.note,
    })
}

/// A LogChunk as JSON: the bytes as (lossy) UTF-8 text and exactly as base64.
pub fn chunk_json(c: &LogChunk) -> Value {
    json!({
        "stream": stream_name(c.stream),
        "data": String::from_utf8_lossy(&c.data),
        "data_base64": base64(&c.data),
    })
}

/// A PurgeResponse as JSON.
pub fn purge_json(p: &PurgeResponse) -> Value {
    json!({"purged": p.purged, "run_ids": p.run_ids})
}

/// An AuditRecord as JSON; `request` is the parsed JSON the daemon recorded, or the raw text if it
/// does not parse.
pub fn audit_json(a: &AuditRecord) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(a.id));
    time_fields(&mut o, "at", a.at);
    o.insert("caller".into(), json!(a.caller));
    o.insert("uid".into(), json!(a.uid));
    o.insert("gid".into(), json!(a.gid));
    o.insert("pid".into(), json!(a.pid));
    o.insert("peer".into(), json!(a.peer));
    o.insert("action".into(), json!(a.action));
    o.insert("run_id".into(), json!(a.run_id));
    let request = serde_json::from_str::<Value>(&a.request).unwrap_or_else(|_| json!(a.request));
    o.insert("request".into(), request);
    o.insert("outcome".into(), json!(a.outcome));
    o.insert("message".into(), json!(a.message));
    Value::Object(o)
}

/// An Alert as JSON.
pub fn alert_json(a: &Alert) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(a.id));
    time_fields(&mut o, "at", a.at);
    o.insert("kind".into(), json!(a.kind));
    o.insert("message".into(), json!(a.message));
    time_fields(&mut o, "acknowledged_at", a.acknowledged_at);
    o.insert("acknowledged_by".into(), json!(a.acknowledged_by));
    time_fields(&mut o, "resolved_at", a.resolved_at);
    o.insert("dedup_key".into(), json!(a.dedup_key));
    o.insert("labels".into(), string_map(&a.labels));
    Value::Object(o)
}

/// A GetHealthResponse as JSON.
pub fn health_json(h: &GetHealthResponse) -> Value {
    json!({
        "live_runs": h.live_runs,
        "queued_runs": h.queued_runs,
        "total_runs": h.total_runs,
        "containment": h.containment,
        "cgroup_entry": h.cgroup_entry,
        "memory_controller": h.memory_controller,
        "capacity": {
            "fd_limit": h.fd_limit,
            "fds_open": h.fds_open,
            "fds_per_run": h.fds_per_run,
            "runs_left_by_fds": h.runs_left_by_fds,
            "pids_max": h.pids_max,
            "runs_left_by_pids": h.runs_left_by_pids,
            "runs_left_by_max_live_runs": h.runs_left_by_max_live_runs,
            "runs_left": h.runs_left,
        },
        "alerts": h.alerts.iter().map(alert_json).collect::<Vec<_>>(),
    })
}

/// Standard base64 with padding (RFC 4648), for raw log bytes in JSON.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wf_supervisor::proto::{AgentPhase, CleanupStep, RunStatus, Survivor};

    fn sample_run() -> Run {
        Run {
            run_id: "run_0123456789ab".into(),
            status: RunStatus::Killed as i32,
            argv: vec!["sh".into(), "-c".into(), "sleep 30; echo it's done".into()],
            cwd: "/tmp".into(),
            labels: BTreeMap::from([("team".into(), "infra".into())]),
            pid: 4242,
            pgid: 4242,
            created_at: 1_700_000_000_000,
            started_at: 1_700_000_000_500,
            ended_at: 1_700_000_065_500,
            exit_code: None,
            signal: "SIGTERM".into(),
            attempt: 1,
            containment: "process-group".into(),
            stop_signals: vec!["SIGTERM".into()],
            grace_ms: 5000,
            end_reason: "operator: done".into(),
            ..Default::default()
        }
    }

    #[test]
    fn enum_names_lose_their_prefix() {
        assert_eq!(status_name(RunStatus::Running as i32), "running");
        assert_eq!(status_name(RunStatus::TimedOut as i32), "timed_out");
        assert_eq!(status_name(99), "unknown(99)");
        assert_eq!(
            phase_name(KillPhase::AlreadyExited as i32),
            "already_exited"
        );
        assert_eq!(stream_name(LogStream::Stderr as i32), "stderr");
        for (i, name) in STATUS_NAMES.iter().enumerate() {
            assert_eq!(status_name(i as i32 + 1), *name);
        }
    }

    #[test]
    fn durations_use_at_most_two_units() {
        assert_eq!(fmt_duration_ms(0), "0ms");
        assert_eq!(fmt_duration_ms(850), "850ms");
        assert_eq!(fmt_duration_ms(4_250), "4.2s");
        assert_eq!(fmt_duration_ms(3_050), "3s");
        assert_eq!(fmt_duration_ms(42_000), "42s");
        assert_eq!(fmt_duration_ms(303_000), "5m 3s");
        assert_eq!(fmt_duration_ms(300_000), "5m");
        assert_eq!(fmt_duration_ms(2 * 3_600_000 + 5 * 60_000 + 7_000), "2h 5m");
        assert_eq!(fmt_duration_ms(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(fmt_ago(10_000, 0), "-");
        assert_eq!(fmt_ago(10_000, 9_500), "just now");
        assert_eq!(fmt_ago(70_000, 10_000), "1m ago");
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(rfc3339(0), None);
        assert_eq!(
            rfc3339(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(64 << 20), "64.0 MiB");
    }

    #[test]
    fn commands_are_quoted_and_truncated() {
        let argv: Vec<String> = vec!["sh".into(), "-c".into(), "echo it's".into(), "a\nb".into()];
        assert_eq!(command_line(&argv), r"sh -c 'echo it'\''s' 'a\nb'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn the_table_aligns_columns() {
        let now = 1_700_000_100_000;
        let text = runs_table(&[sample_run()], now, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("RUN ID            STATUS  PID   AGE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("run_0123456789ab  killed  4242  1m 40s"),
            "{text}"
        );
        assert!(lines[1].contains("1m 5s"), "{text}");
        assert!(lines[1].contains("SIGTERM"), "{text}");
        let col = lines[0].find("COMMAND").expect("column");
        assert_eq!(&lines[1][col..], r"sh -c 'sleep 30; echo it'\''s done'");
    }

    #[test]
    fn run_json_has_short_enums_and_both_time_forms() {
        let v = run_json(&sample_run());
        assert_eq!(v["status"], "killed");
        assert_eq!(v["created_at"], 1_700_000_000_000i64);
        assert_eq!(v["created_at_rfc3339"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["last_heartbeat_at"], 0);
        assert_eq!(v["last_heartbeat_at_rfc3339"], Value::Null);
        assert_eq!(v["exit_code"], Value::Null);
        assert_eq!(v["labels"]["team"], "infra");
        assert_eq!(v["argv"][2], "sleep 30; echo it's done");
        let mut r = sample_run();
        r.exit_code = Some(0);
        assert_eq!(run_json(&r)["exit_code"], 0);
    }

    #[test]
    fn kill_json_and_report() {
        let k = KillResponse {
            success: false,
            run_id: "run_0123456789ab".into(),
            killed_at: 0,
            phase: KillPhase::Survivors as i32,
            signals_sent: vec!["SIGTERM".into(), "SIGKILL".into()],
            duration_ms: 15_000,
            survivors: 1,
            cleanup: vec![CleanupStep {
                step: "cgroup".into(),
                ok: false,
                detail: "busy".into(),
            }],
            message: "1 process survived KILL".into(),
            survivor_pids: vec![Survivor {
                pid: 77,
                state: "D".into(),
                comm: "fuse".into(),
            }],
            run: Some(sample_run()),
            ..Default::default()
        };
        let v = kill_json(&k);
        assert_eq!(v["phase"], "survivors");
        assert_eq!(v["killed_at_rfc3339"], Value::Null);
        assert_eq!(v["survivor_pids"][0]["state"], "D");
        assert_eq!(v["cleanup"][0]["ok"], false);
        assert_eq!(v["run"]["status"], "killed");
        let text = kill_report(&k);
        assert!(text.contains("phase:     survivors"), "{text}");
        assert!(text.contains("signals:   SIGTERM, SIGKILL"), "{text}");
        assert!(text.contains("1: pid 77 (state D fuse)"), "{text}");
        assert!(text.contains("cleanup:   cgroup FAILED: busy\n"), "{text}");
    }

    #[test]
    fn events_as_lines_and_json() {
        let e = RunEvent {
            run_id: "run_0123456789ab".into(),
            at: 1_700_000_000_000,
            kind: "started".into(),
            status: RunStatus::Running as i32,
            message: "pid 4242".into(),
            run: None,
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.000Z  run_0123456789ab  started        running    pid 4242"
        );
        let v = event_json(&e);
        assert_eq!(v["kind"], "started");
        assert_eq!(v["status"], "running");
        assert_eq!(v["at_rfc3339"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["run"], Value::Null);
    }

    #[test]
    fn purge_report_and_json() {
        let p = PurgeResponse {
            purged: 2,
            run_ids: vec!["run_0123456789ab".into(), "run_ba9876543210".into()],
        };
        assert_eq!(
            purge_report(&p),
            "purged 2 run(s)\nrun_0123456789ab\nrun_ba9876543210\n"
        );
        assert_eq!(purge_report(&PurgeResponse::default()), "purged 0 run(s)\n");
        let v = purge_json(&p);
        assert_eq!(v["purged"], 2);
        assert_eq!(v["run_ids"][1], "run_ba9876543210");
    }

    fn sample_record() -> AuditRecord {
        AuditRecord {
            id: 7,
            at: 1_700_000_000_000,
            caller: "uid=1000 gid=1000 pid=4242".into(),
            uid: Some(1000),
            gid: Some(1000),
            pid: Some(4242),
            peer: String::new(),
            action: "kill".into(),
            run_id: "run_0123456789ab".into(),
            request: r#"{"force":true,"reason":"stuck"}"#.into(),
            outcome: "ok".into(),
            message: format!("killed\n{}", "x".repeat(80)),
            ..Default::default()
        }
    }

    #[test]
    fn the_audit_table_keeps_rows_on_one_line() {
        let mut daemon = sample_record();
        daemon.caller = "daemon".into();
        daemon.action = "recover".into();
        daemon.run_id = String::new();
        daemon.message = String::new();
        let text = audit_table(&[sample_record(), daemon.clone()], false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("TIME                      CALLER                      ACTION"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("2023-11-14T22:13:20.000Z  uid=1000"),
            "{text}"
        );
        let col = lines[0].find("MESSAGE").expect("column");
        let message = &lines[1][col..];
        assert!(message.starts_with("killed xxx"), "{text}");
        assert_eq!(message.chars().count(), MESSAGE_WIDTH, "{text}");
        assert!(message.ends_with('…'), "{text}");
        assert!(lines[2].contains("recover  -"), "{text}");
        let whole = audit_table(&[sample_record()], true);
        assert!(whole.trim_end().ends_with(&"x".repeat(80)), "{whole}");
    }

    #[test]
    fn audit_json_parses_the_request() {
        let v = audit_json(&sample_record());
        assert_eq!(v["request"]["force"], true);
        assert_eq!(v["at_rfc3339"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["message"], format!("killed\n{}", "x".repeat(80)));
        let mut r = sample_record();
        r.request = "not json".into();
        r.uid = None;
        let v = audit_json(&r);
        assert_eq!(v["request"], "not json");
        assert_eq!(v["uid"], Value::Null);
    }

    #[test]
    fn health_and_alerts() {
        let alert = Alert {
            id: 3,
            at: 1_700_000_000_000,
            kind: "store_quarantined".into(),
            message: "store was corrupt;\nmoved aside".into(),
            acknowledged_at: 0,
            acknowledged_by: String::new(),
            ..Default::default()
        };
        let mut h = GetHealthResponse {
            live_runs: 1,
            total_runs: 4,
            containment: "cgroup".into(),
            alerts: vec![],
            ..Default::default()
        };
        let text = health_report(&h);
        assert_eq!(
            text,
            "live runs:   1\nqueued runs: 0\ntotal runs:  4\ncontainment: cgroup\nalerts:      none\n"
        );
        let with_capacity = GetHealthResponse {
            cgroup_entry: "clone3".into(),
            memory_controller: "cgroup v2".into(),
            fd_limit: 524288,
            fds_open: 40,
            fds_per_run: 8,
            runs_left_by_fds: 65523,
            pids_max: Some(1000),
            runs_left_by_pids: Some(900),
            runs_left_by_max_live_runs: 4095,
            runs_left: 900,
            ..h.clone()
        };
        let text = health_report(&with_capacity);
        assert!(
            text.contains("containment: cgroup (entered by clone3); memory controller cgroup v2\n")
                && text.contains(
                    "capacity:    900 more runs (open files 40/524288: 65523; pids.max 1000: 900; \
                     runs.max_live_runs: 4095)\n"
                ),
            "{text}"
        );
        let v = health_json(&with_capacity);
        assert_eq!(v["capacity"]["runs_left"], 900);
        assert_eq!(v["cgroup_entry"], "clone3");
        assert_eq!(v["memory_controller"], "cgroup v2");
        h.alerts.push(alert.clone());
        let text = health_report(&h);
        assert!(text.contains("alerts:      1 unacknowledged"), "{text}");
        assert!(
            text.ends_with(
                "3   2023-11-14T22:13:20.000Z  store_quarantined  store was corrupt; moved aside\n"
            ),
            "{text}"
        );
        let v = health_json(&h);
        assert_eq!(v["alerts"][0]["kind"], "store_quarantined");
        assert_eq!(v["alerts"][0]["acknowledged_at_rfc3339"], Value::Null);
        assert_eq!(v["live_runs"], 1);
        let mut acked = alert;
        acked.acknowledged_at = 1_700_000_060_000;
        acked.acknowledged_by = "uid=1000 gid=1000 pid=99: restored".into();
        let text = alert_detail(&acked, 1_700_000_120_000);
        assert!(
            text.contains("acknowledged: 2023-11-14T22:14:20.000Z (1m ago)"),
            "{text}"
        );
        assert!(
            text.contains("by:           uid=1000 gid=1000 pid=99: restored"),
            "{text}"
        );
        assert_eq!(alert_json(&acked)["acknowledged_at"], 1_700_000_060_000i64);
    }

    fn sample_agent() -> AgentProgress {
        AgentProgress {
            phase: AgentPhase::Active as i32,
            turns: 7,
            session_id: "3f2a-session".into(),
            model: "claude-sonnet-4-5".into(),
            claude_code_version: "2.0.1".into(),
            current_tool: "Bash".into(),
            api_retries: 2,
            last_retry: "attempt 2/10 in 1000 ms (overloaded, HTTP 529)".into(),
            last_event_at: 1_700_000_090_000,
            cost_usd: Some(0.01234),
            result_subtype: String::new(),
            result_is_error: None,
            num_turns: None,
            result_text: String::new(),
            result_errors: vec![],
            health: Health::Stuck as i32,
            health_reason: "idle_timeout: no heartbeat or output for 10m".into(),
            critical: "git".into(),
            prompt: format!("fix the tests\n{}", "p".repeat(300)),
            resume_session: "1e0b-old".into(),
            heartbeat_message: "running tests".into(),
            heartbeat_progress: Some(0.4),
            input_tokens: Some(1200),
            output_tokens: Some(340),
            cache_creation_input_tokens: Some(15000),
            cache_read_input_tokens: None,
        }
    }

    fn sample_workflow_run() -> Run {
        Run {
            run_id: "run_feedfacecafe".into(),
            status: RunStatus::Running as i32,
            argv: vec![
                "/usr/local/bin/claude".into(),
                "-p".into(),
                "fix the tests".into(),
                "--output-format".into(),
                "stream-json".into(),
            ],
            pid: 5151,
            created_at: 1_700_000_000_000,
            started_at: 1_700_000_000_100,
            workflow: "builder".into(),
            agent: Some(sample_agent()),
            output_truncated: true,
            logs_missing: true,
            ..Default::default()
        }
    }

    #[test]
    fn agent_enum_names_lose_their_prefix() {
        assert_eq!(agent_phase_name(AgentPhase::Starting as i32), "starting");
        assert_eq!(
            agent_phase_name(AgentPhase::Initializing as i32),
            "initializing"
        );
        assert_eq!(agent_phase_name(AgentPhase::Active as i32), "active");
        assert_eq!(agent_phase_name(AgentPhase::Finishing as i32), "finishing");
        assert_eq!(agent_phase_name(42), "unknown(42)");
        assert_eq!(health_name(Health::Ok as i32), "ok");
        assert_eq!(health_name(Health::Slow as i32), "slow");
        assert_eq!(health_name(Health::Stuck as i32), "stuck");
    }

    #[test]
    fn run_json_carries_the_workflow_and_every_agent_field() {
        let v = run_json(&sample_workflow_run());
        assert_eq!(v["workflow"], "builder");
        assert_eq!(v["output_truncated"], true);
        assert_eq!(v["logs_missing"], true);
        let a = &v["agent"];
        assert_eq!(a["phase"], "active");
        assert_eq!(a["health"], "stuck");
        assert_eq!(
            a["health_reason"],
            "idle_timeout: no heartbeat or output for 10m"
        );
        assert_eq!(a["turns"], 7);
        assert_eq!(a["session_id"], "3f2a-session");
        assert_eq!(a["model"], "claude-sonnet-4-5");
        assert_eq!(a["claude_code_version"], "2.0.1");
        assert_eq!(a["current_tool"], "Bash");
        assert_eq!(a["api_retries"], 2);
        assert_eq!(
            a["last_retry"],
            "attempt 2/10 in 1000 ms (overloaded, HTTP 529)"
        );
        assert_eq!(a["last_event_at"], 1_700_000_090_000i64);
        assert_eq!(a["last_event_at_rfc3339"], "2023-11-14T22:14:50.000Z");
        assert_eq!(a["cost_usd"], 0.01234);
        assert_eq!(a["result_subtype"], "");
        assert_eq!(a["result_is_error"], Value::Null);
        assert_eq!(a["num_turns"], Value::Null);
        assert_eq!(a["result_text"], "");
        assert_eq!(a["result_errors"], json!([]));
        assert_eq!(a["critical"], "git");
        assert!(a["prompt"].as_str().unwrap().starts_with("fix the tests\n"));
        assert_eq!(a["resume_session"], "1e0b-old");
        assert_eq!(a["heartbeat_message"], "running tests");
        assert_eq!(a["heartbeat_progress"], 0.4);
        assert_eq!(a["input_tokens"], 1200);
        assert_eq!(a["cache_read_input_tokens"], Value::Null);
        assert_eq!(
            a.as_object().unwrap().len(),
            27,
            "every AgentProgress field: {a}"
        );
        let mut done = sample_agent();
        done.phase = AgentPhase::Finishing as i32;
        done.health = Health::Ok as i32;
        done.result_subtype = "success".into();
        done.result_is_error = Some(false);
        done.num_turns = Some(7);
        done.cost_usd = None;
        done.heartbeat_progress = None;
        let a = agent_json(&done);
        assert_eq!(a["phase"], "finishing");
        assert_eq!(a["health"], "ok");
        assert_eq!(a["result_is_error"], false);
        assert_eq!(a["num_turns"], 7);
        assert_eq!(a["cost_usd"], Value::Null);
        assert_eq!(a["heartbeat_progress"], Value::Null);
        // A plain run: no workflow, agent null.
        let v = run_json(&sample_run());
        assert_eq!(v["workflow"], "");
        assert_eq!(v["agent"], Value::Null);
        assert_eq!(v["output_truncated"], false);
        assert_eq!(v["logs_missing"], false);
    }

    #[test]
    fn ps_shows_health_and_turns_only_for_workflow_runs() {
        let now = 1_700_000_100_000;
        let mut fresh = sample_workflow_run();
        fresh.run_id = "run_000000000001".into();
        fresh.agent = Some(AgentProgress::default());
        let text = runs_table(&[sample_workflow_run(), sample_run(), fresh], now, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let health = lines[0].find("HEALTH").expect("HEALTH");
        let turns = lines[0].find("TURNS").expect("TURNS");
        let cpu = lines[0].find("CPU").expect("CPU");
        let command = lines[0].find("COMMAND").expect("COMMAND");
        assert!(health < turns && turns < cpu && cpu < command, "{text}");
        assert_eq!(lines[1][health..turns].trim_end(), "stuck", "{text}");
        assert_eq!(lines[1][turns..cpu].trim_end(), "7", "{text}");
        assert!(
            lines[1][command..].starts_with("/usr/local/bin/claude -p"),
            "{text}"
        );
        assert_eq!(lines[2][health..cpu].trim(), "", "plain run: {text}");
        assert_eq!(&lines[2][command..], r"sh -c 'sleep 30; echo it'\''s done'");
        assert_eq!(lines[3][health..turns].trim_end(), "-", "{text}");
        assert_eq!(lines[3][turns..cpu].trim_end(), "0", "{text}");
    }

    #[test]
    fn ps_and_get_show_usage() {
        let now = 1_700_000_100_000;
        let usage = RunUsage {
            cpu_user_ms: 1200,
            cpu_system_ms: 50,
            memory_bytes: 100 << 20,
            memory_peak_bytes: 150 << 20,
            processes: 2,
            processes_peak: 3,
            source: "cgroup".into(),
            unavailable: vec!["io".into()],
            sampled_at: now - 1000,
            ..Default::default()
        };
        let mut live = sample_run();
        live.ended_at = 0;
        live.usage = Some(usage.clone());
        let mut ended = sample_run();
        ended.ended_at = now - 500;
        ended.usage = Some(RunUsage {
            oom_killed: true,
            ..usage
        });
        let text = runs_table(&[live.clone(), ended.clone(), sample_run()], now, false);
        let lines: Vec<&str> = text.lines().collect();
        let cpu = lines[0].find("CPU").expect("CPU");
        let mem = lines[0].find("MEM").expect("MEM");
        let command = lines[0].find("COMMAND").expect("COMMAND");
        assert_eq!(lines[1][cpu..mem].trim_end(), "1.25s", "{text}");
        assert_eq!(
            lines[1][mem..command].trim_end(),
            "100.0 MiB",
            "now: {text}"
        );
        assert_eq!(
            lines[2][mem..command].trim_end(),
            "150.0 MiB",
            "peak: {text}"
        );
        assert_eq!(
            lines[3][cpu..command]
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["-", "-"]
        );
        let detail = run_detail(&ended, now, false);
        let lines: Vec<String> = detail
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        for want in [
            "cpu: 1.25s (user 1.2s, system 50ms)",
            "memory: 100.0 MiB now, peak 150.0 MiB",
            "processes: 2 now, peak 3",
            "oom killed: yes (memory.events oom_kill)",
        ] {
            assert!(lines.iter().any(|l| l == want), "{want:?} in\n{detail}");
        }
        assert!(detail.contains("not available here: io\n"), "{detail}");
        assert!(!detail.contains("\nio:"), "{detail}");
        assert_eq!(run_json(&ended)["usage"]["memory_peak_bytes"], 150 << 20);
        assert_eq!(run_json(&sample_run())["usage"], Value::Null);
    }

    #[test]
    fn get_shows_the_agent() {
        let now = 1_700_000_100_000;
        let text = run_detail(&sample_workflow_run(), now, false);
        for want in [
            "workflow:        builder\n",
            "phase:           active\n",
            "health:          stuck: idle_timeout: no heartbeat or output for 10m\n",
            "turns:           7\n",
            "session:         3f2a-session\n",
            "resumed session: 1e0b-old\n",
            "model:           claude-sonnet-4-5 (Claude Code 2.0.1)\n",
            "tool:            Bash\n",
            "critical:        git\n",
            "progress:        40% running tests\n",
            "api retries:     2, last: attempt 2/10 in 1000 ms (overloaded, HTTP 529)\n",
            "last event:      2023-11-14T22:14:50.000Z (10s ago)\n",
            "cost:            $0.0123\n",
            "result:          -\n",
            "(truncated: over the cap, the oldest output was dropped)\n",
            "logs:            missing",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        let prompt = text
            .lines()
            .find(|l| l.starts_with("prompt:"))
            .expect("prompt");
        let prompt = prompt["prompt:".len()..].trim_start();
        assert!(prompt.starts_with("fix the tests ppp"), "{prompt}");
        assert_eq!(prompt.chars().count(), TEXT_WIDTH, "{prompt}");
        assert!(prompt.ends_with('…'));
        // Whole, one line per line.
        let whole = run_detail(&sample_workflow_run(), now, true);
        assert!(
            whole.contains("prompt:          fix the tests\n"),
            "{whole}"
        );
        assert!(whole.contains(&format!("                 {}\n", "p".repeat(300))));
        // A finished run's result.
        let mut r = sample_workflow_run();
        let a = r.agent.as_mut().unwrap();
        a.result_subtype = "error_max_turns".into();
        a.result_is_error = Some(true);
        a.num_turns = Some(50);
        a.result_text = "ran out\nof turns".into();
        a.result_errors = vec!["max turns reached".into(), "second".into()];
        a.resume_session.clear();
        let text = run_detail(&r, now, false);
        assert!(
            text.contains("result:        error_max_turns, is_error: true, num_turns: 50\n"),
            "{text}"
        );
        assert!(text.contains("result text:   ran out of turns\n"), "{text}");
        assert!(
            text.contains("result errors: max turns reached\n               second\n"),
            "{text}"
        );
        assert!(!text.contains("resumed session"), "{text}");
        // A plain run shows none of it.
        let plain = run_detail(&sample_run(), now, false);
        for absent in ["workflow:", "phase:", "health:", "logs:", "truncated"] {
            assert!(!plain.contains(absent), "{absent} in\n{plain}");
        }
    }

    fn sample_workflow() -> Workflow {
        Workflow {
            name: "builder".into(),
            program: "/usr/local/bin/claude".into(),
            model: "claude-sonnet-4-5".into(),
            max_turns: 50,
            permission_mode: "acceptEdits".into(),
            allowed_tools: vec!["Read".into(), "Edit".into()],
            has_append_system_prompt: true,
            stop_signals: vec!["SIGINT".into(), "SIGTERM".into()],
            grace_ms: 10_000,
            init_timeout_ms: 30 * 60_000,
            idle_timeout_ms: 10 * 60_000,
            max_runtime_ms: 0,
            on_init_timeout: "kill".into(),
            on_idle_timeout: "restart".into(),
            on_max_runtime: String::new(),
            cwd: String::new(),
            allowed_cwds: vec!["/srv/agent-jobs".into()],
        }
    }

    #[test]
    fn the_workflow_table_and_json() {
        let mut other = sample_workflow();
        other.name = "reviewer".into();
        other.model = String::new();
        other.cwd = "/srv/review".into();
        other.allowed_cwds.clear();
        let text = workflows_table(&[sample_workflow(), other]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("NAME      PROGRAM                MODEL              STOP"),
            "{text}"
        );
        assert!(
            lines[1]
                .ends_with("SIGINT,SIGTERM 10s  30m kill  10m restart  off  under /srv/agent-jobs"),
            "{text}"
        );
        assert!(lines[2].contains("  -  "), "no model: {text}");
        assert!(lines[2].ends_with("off  default /srv/review"), "{text}");
        let mut any = sample_workflow();
        any.allowed_cwds.clear();
        assert_eq!(cwd_rules_cell(&any), "any");
        any.cwd = "/a".into();
        any.allowed_cwds = vec!["/a".into(), "/b".into()];
        assert_eq!(cwd_rules_cell(&any), "default /a; under /a, /b");
        let v = workflow_json(&sample_workflow());
        assert_eq!(v["name"], "builder");
        assert_eq!(v["init_timeout_ms"], 1_800_000);
        assert_eq!(v["on_idle_timeout"], "restart");
        assert_eq!(v["allowed_tools"][1], "Edit");
        assert_eq!(v["allowed_cwds"][0], "/srv/agent-jobs");
        assert_eq!(v["has_append_system_prompt"], true);
        assert_eq!(v.as_object().unwrap().len(), 17);
    }

    #[test]
    fn restart_json_has_the_note() {
        let r = RestartResponse {
            old_run_id: "run_0123456789ab".into(),
            run: Some(sample_workflow_run()),
            note: "resumed session 3f2a-session".into(),
        };
        let v = restart_json(&r);
        assert_eq!(v["old_run_id"], "run_0123456789ab");
        assert_eq!(v["note"], "resumed session 3f2a-session");
        assert_eq!(v["run"]["agent"]["phase"], "active");
        assert_eq!(spawned_json(&None), json!({"run": null}));
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let c = LogChunk {
            stream: LogStream::Stdout as i32,
            data: vec![b'h', b'i', 0xff],
        };
        let v = chunk_json(&c);
        assert_eq!(v["stream"], "stdout");
        assert_eq!(v["data"], "hi\u{fffd}");
        assert_eq!(v["data_base64"], "aGn/");
    }
}
