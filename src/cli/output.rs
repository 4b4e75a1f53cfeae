//! Everything `wfctl` prints: enum names without their prefixes, human times, durations and sizes,
//! the run table and detail view, the kill report, watch lines, and the hand-written JSON form of
//! the API messages (prost types do not derive serde). JSON uses the proto field names; enums are
//! short lowercase names; times are Unix milliseconds plus an `*_rfc3339` string (null for 0).
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use wf_supervisor::proto::{
    KillPhase, KillResponse, LogChunk, LogStream, Run, RunEvent, RunStatus,
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

/// Lowercase name of a prost enum value after its prefix, or `unknown(N)` for a value this client
/// does not know.
fn short_name(full: Option<&'static str>, prefix: &str, raw: i32) -> String {
    match full {
        Some(name) => name
            .strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase(),
        None => format!("unknown({raw})"),
    }
}

/// `running`, `timed_out`, ...
pub fn status_name(raw: i32) -> String {
    let full = RunStatus::try_from(raw).ok().map(|s| s.as_str_name());
    short_name(full, "RUN_STATUS_", raw)
}

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

/// A duration in at most two units: `850ms`, `4.2s`, `42s`, `5m 3s`, `2h 5m`, `3d 4h`.
pub fn fmt_duration_ms(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    if ms < S {
        format!("{ms}ms")
    } else if ms < 10 * S && ms % S >= 100 {
        format!("{}.{}s", ms / S, (ms % S) / 100)
    } else if ms < M {
        format!("{}s", ms / S)
    } else if ms < H {
        two_units(ms / M, "m", (ms % M) / S, "s")
    } else if ms < D {
        two_units(ms / H, "h", (ms % H) / M, "m")
    } else {
        two_units(ms / D, "d", (ms % D) / H, "h")
    }
}

fn two_units(a: u64, ua: &str, b: u64, ub: &str) -> String {
    if b == 0 {
        format!("{a}{ua}")
    } else {
        format!("{a}{ua} {b}{ub}")
    }
}

/// How long ago `at` was, seen at `now`: `5m ago`, `just now`; `-` for 0.
pub fn fmt_ago(now: i64, at: i64) -> String {
    if at <= 0 {
        return "-".to_string();
    }
    let diff = now.saturating_sub(at);
    if diff < 1000 {
        "just now".to_string()
    } else {
        format!("{} ago", fmt_duration_ms(diff.unsigned_abs()))
    }
}

/// How long a run has run: from start to end, or to now while it is live; None before start.
pub fn run_duration_ms(run: &Run, now: i64) -> Option<u64> {
    if run.started_at <= 0 {
        return None;
    }
    let end = if run.ended_at > 0 { run.ended_at } else { now };
    Some(end.saturating_sub(run.started_at).max(0).unsigned_abs())
}

/// A byte count for people: `512 B`, `1.5 KiB`, `64.0 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

// ---------------------------------------------------------------------------------------------
// Commands and table cells

/// One argument as a shell would need it: bare when safe, else single-quoted; control characters
/// are escaped so a table row stays one line.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
    let body = if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    };
    if body.chars().any(char::is_control) {
        body.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        body
    }
}

/// The argv as one shell-like line.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` characters, the last one an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

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

/// The `ps` table.
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
            "RUN ID", "STATUS", "PID", "AGE", "DURATION", "EXIT", "COMMAND",
        ],
        &rows,
    )
}

fn sorted(map: &HashMap<String, String>) -> BTreeMap<&String, &String> {
    map.iter().collect()
}

fn time_line(at: i64, now: i64) -> String {
    match rfc3339(at) {
        Some(t) => format!("{t} ({})", fmt_ago(now, at)),
        None => "-".to_string(),
    }
}

/// The `get` view: one `key: value` line per field worth reading.
pub fn run_detail(r: &Run, now: i64) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("run id", r.run_id.clone()),
        ("status", status_name(r.status)),
        ("command", command_line(&r.argv)),
        (
            "cwd",
            if r.cwd.is_empty() {
                "-".into()
            } else {
                r.cwd.clone()
            },
        ),
    ];
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
    lines.push((
        "output",
        format!(
            "stdout {}, stderr {}",
            fmt_bytes(r.stdout_bytes),
            fmt_bytes(r.stderr_bytes)
        ),
    ));
    let kv = |m: &HashMap<String, String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            sorted(m)
                .into_iter()
                .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    lines.push(("labels", kv(&r.labels)));
    lines.push(("env", kv(&r.env)));
    key_values(&lines)
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

// ---------------------------------------------------------------------------------------------
// JSON

fn time_fields(obj: &mut Map<String, Value>, key: &str, ms: i64) {
    obj.insert(key.to_string(), json!(ms));
    obj.insert(format!("{key}_rfc3339"), json!(rfc3339(ms)));
}

fn string_map(m: &HashMap<String, String>) -> Value {
    Value::Object(
        sorted(m)
            .into_iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect(),
    )
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

/// The response of Spawn or Restart as JSON (`old_run_id` only for Restart).
pub fn spawned_json(old_run_id: Option<&str>, run: &Option<Run>) -> Value {
    let mut o = Map::new();
    if let Some(old) = old_run_id {
        o.insert("old_run_id".into(), json!(old));
    }
    o.insert("run".into(), opt_run_json(run));
    Value::Object(o)
}

/// A LogChunk as JSON: the bytes as (lossy) UTF-8 text and exactly as base64.
pub fn chunk_json(c: &LogChunk) -> Value {
    json!({
        "stream": stream_name(c.stream),
        "data": String::from_utf8_lossy(&c.data),
        "data_base64": base64(&c.data),
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
    use wf_supervisor::proto::{CleanupStep, Survivor};

    fn sample_run() -> Run {
        Run {
            run_id: "run_0123456789ab".into(),
            status: RunStatus::Killed as i32,
            argv: vec!["sh".into(), "-c".into(), "sleep 30; echo it's done".into()],
            cwd: "/tmp".into(),
            labels: HashMap::from([("team".into(), "infra".into())]),
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
