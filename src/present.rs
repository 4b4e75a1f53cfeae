//! How runs are told to people, shared by `wfctl` (its tables and `top`) and the status page:
//! enum names without their prefixes, durations, ages, sizes, costs, command lines and clipped
//! text. Pure functions of the API's own types, so every client says the same things.
use crate::proto::{AgentPhase, Health, RunStatus};

/// Lowercase name of a prost enum value after its prefix, or `unknown(N)` for a value this build
/// does not know.
pub fn short_name(full: Option<&str>, prefix: &str, raw: i32) -> String {
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

/// `starting`, `initializing`, `active`, `finishing`.
pub fn agent_phase_name(raw: i32) -> String {
    let full = AgentPhase::try_from(raw).ok().map(|s| s.as_str_name());
    short_name(full, "AGENT_PHASE_", raw)
}

/// `ok`, `slow`, `stuck`.
pub fn health_name(raw: i32) -> String {
    let full = Health::try_from(raw).ok().map(|s| s.as_str_name());
    short_name(full, "HEALTH_", raw)
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

/// A cost in US dollars: `$0.0123`.
pub fn fmt_usd(c: f64) -> String {
    format!("${c:.4}")
}

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

/// Text on one line: every control character (newline, tab, ...) becomes a space.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
