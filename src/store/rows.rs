//! Run records to and from table rows.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, Connection, Row};

use crate::run::{RunRecord, RunSpec, RunStatus};
use crate::schedule::{RunPolicy, DEFAULT_QUEUE};
use crate::store::{Alert, LoadedRun};

pub fn status_from_str(s: &str) -> Option<RunStatus> {
    Some(match s {
        "QUEUED" => RunStatus::Queued,
        "STARTING" => RunStatus::Starting,
        "RUNNING" => RunStatus::Running,
        "STOPPING" => RunStatus::Stopping,
        "SUCCEEDED" => RunStatus::Succeeded,
        "FAILED" => RunStatus::Failed,
        "KILLED" => RunStatus::Killed,
        "CANCELLED" => RunStatus::Cancelled,
        "TIMED_OUT" => RunStatus::TimedOut,
        "LOST" => RunStatus::Lost,
        _ => return None,
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub fn upsert_run(c: &Connection, seq: u64, r: &RunRecord) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO runs (run_id, seq, status, argv, cwd, env, labels, stop_signals,
            grace_ms, pid, pgid, created_at, started_at, ended_at, exit_code, signal, error, attempt,
            restart_of, last_heartbeat_at, heartbeats, containment, stdout_bytes, stderr_bytes,
            end_reason, output_truncated, logs_missing, agent_spec, agent_state, policy, queued_at,
            timeout_at, policy_restarts, restarted_as, owner, usage)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35,
            ?36)",
    )?
    .execute(params![
        r.run_id,
        seq as i64,
        r.status.as_str(),
        json(&r.spec.argv),
        r.spec.cwd.display().to_string(),
        json(&r.spec.env),
        json(&r.spec.labels),
        json(&r.spec.stop_signals),
        r.spec.grace.as_millis() as i64,
        r.pid,
        r.pgid,
        r.created_at,
        r.started_at,
        r.ended_at,
        r.exit_code,
        r.signal,
        r.error,
        r.attempt,
        r.restart_of,
        r.last_heartbeat_at,
        r.heartbeats as i64,
        r.containment,
        r.stdout_bytes as i64,
        r.stderr_bytes as i64,
        r.end_reason,
        r.output_truncated,
        r.logs_missing,
        r.spec.agent.as_ref().map(json).unwrap_or_default(),
        r.agent.as_ref().map(json).unwrap_or_default(),
        json(&r.spec.policy),
        r.queued_at,
        r.timeout_at,
        r.policy_restarts,
        r.restarted_as,
        r.spec.owner.as_ref().map(json).unwrap_or_default(),
        r.usage.as_ref().map(json).unwrap_or_default(),
    ])?;
    Ok(())
}

fn parse_json<T: serde::de::DeserializeOwned + Default>(s: String) -> T {
    serde_json::from_str(&s).unwrap_or_default()
}

fn parse_opt<T: serde::de::DeserializeOwned>(s: String) -> Option<T> {
    if s.is_empty() {
        return None;
    }
    serde_json::from_str(&s).ok()
}

/// A run's queue and policy; runs of daemons before the queue were in the default queue.
fn policy_of(text: String) -> RunPolicy {
    let mut p: RunPolicy = parse_opt(text).unwrap_or_default();
    if p.queue.is_empty() {
        p.queue = DEFAULT_QUEUE.to_string();
    }
    p
}

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<LoadedRun> {
    let status: String = row.get("status")?;
    let argv: Vec<String> = parse_json(row.get("argv")?);
    let env: BTreeMap<String, String> = parse_json(row.get("env")?);
    let labels: BTreeMap<String, String> = parse_json(row.get("labels")?);
    let stop_signals: Vec<String> = parse_json(row.get("stop_signals")?);
    let cwd: String = row.get("cwd")?;
    let grace_ms: i64 = row.get("grace_ms")?;
    let record = RunRecord {
        run_id: row.get("run_id")?,
        spec: std::sync::Arc::new(RunSpec {
            argv,
            cwd: PathBuf::from(cwd),
            env,
            labels,
            stop_signals,
            grace: Duration::from_millis(grace_ms.max(0) as u64),
            agent: parse_opt(row.get("agent_spec")?),
            policy: policy_of(row.get("policy")?),
            owner: parse_opt(row.get("owner")?),
        }),
        // An unknown status word can only come from a damaged row: treat the run as lost.
        status: status_from_str(&status).unwrap_or(RunStatus::Lost),
        pid: row.get("pid")?,
        pgid: row.get("pgid")?,
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        ended_at: row.get("ended_at")?,
        exit_code: row.get("exit_code")?,
        signal: row.get("signal")?,
        error: row.get("error")?,
        attempt: row.get("attempt")?,
        restart_of: row.get("restart_of")?,
        last_heartbeat_at: row.get("last_heartbeat_at")?,
        heartbeats: row.get::<_, i64>("heartbeats")? as u64,
        containment: row.get("containment")?,
        stdout_bytes: row.get::<_, i64>("stdout_bytes")? as u64,
        stderr_bytes: row.get::<_, i64>("stderr_bytes")? as u64,
        end_reason: row.get("end_reason")?,
        output_truncated: row.get("output_truncated")?,
        logs_missing: row.get("logs_missing")?,
        agent: parse_opt(row.get("agent_state")?),
        queued_at: row.get("queued_at")?,
        timeout_at: row.get("timeout_at")?,
        waiting_reason: String::new(),
        policy_restarts: row.get("policy_restarts")?,
        restarted_as: row.get("restarted_as")?,
        usage: parse_opt(row.get("usage")?),
    };
    Ok(LoadedRun {
        seq: row.get::<_, i64>("seq")? as u64,
        record,
    })
}

/// Every run, oldest first.
pub fn load_runs(c: &Connection) -> rusqlite::Result<Vec<LoadedRun>> {
    let mut st = c.prepare("SELECT * FROM runs ORDER BY seq")?;
    let rows = st.query_map([], run_from_row)?;
    rows.collect()
}

/// The columns [`alert_from_row`] reads, in its order.
pub const ALERT_COLUMNS: &str =
    "id, at, kind, message, acknowledged_at, acknowledged_by, resolved_at, dedup_key, labels, \
     last_seen";

pub fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: row.get(0)?,
        at: row.get(1)?,
        kind: row.get(2)?,
        message: row.get(3)?,
        acknowledged_at: row.get(4)?,
        acknowledged_by: row.get(5)?,
        resolved_at: row.get(6)?,
        dedup_key: row.get(7)?,
        labels: parse_json(row.get(8)?),
        last_seen: row.get(9)?,
    })
}
