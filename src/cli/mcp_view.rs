//! What the MCP tools of `wfctl mcp` answer with: the JSON of each result and its JSON Schema, and
//! the pure decisions behind them (how much of a log is shown and what the note about the rest
//! says, which filters a listing applies, what a waiting caller is told as progress).
//!
//! Runs, kill reports, restarts and workflows are the same JSON that `wfctl --json` prints
//! (`output.rs`), so an orchestrating model and a script read one shape; a run also carries its
//! queue fields. Each result type is a JSON object (the MCP output schema must be one) whose
//! schema is written here by hand, naming the fields a model acts on; a unit test keeps every
//! named field present in what is sent.
use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{json, Value};
use wf_supervisor::proto::{
    CancelResponse, GetQueueHealthResponse, KillResponse, QueueHealth, RestartResponse, Run,
    RunStatus, Workflow,
};

use super::output;

/// The largest tail of one stream that `get_logs` returns, so that a tool result stays small.
pub const MAX_LOG_TAIL: u64 = 32 << 10;
/// The tail of each stream `get_logs` returns when none is asked for.
pub const DEFAULT_LOG_TAIL: u64 = 8 << 10;
/// The longest `wait_for_run` waits.
pub const MAX_WAIT_MS: u64 = 10 * 60_000;
/// How long `wait_for_run` waits when no timeout is given.
pub const DEFAULT_WAIT_MS: u64 = 2 * 60_000;
/// How many runs `list_runs` returns when no limit is given, and at most.
pub const DEFAULT_LIST_LIMIT: u32 = 20;
pub const MAX_LIST_LIMIT: u32 = 200;
/// How many of its newest runs `list_runs` searches itself when the daemon does not filter.
pub const LIST_SCAN: u32 = 1000;

// ---------------------------------------------------------------------------------------------
// JSON values with a hand-written schema

/// A newtype over a JSON object built by `output.rs` (or here), sent as is and described by the
/// hand-written schema given.
macro_rules! json_view {
    ($(#[$doc:meta])* $name:ident, $schema_name:literal, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub Value);

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($schema_name)
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

json_view!(
    /// A run as the daemon records it.
    RunView,
    "Run",
    run_schema()
);
json_view!(
    /// What a kill did.
    KillView,
    "KillReport",
    kill_schema()
);
json_view!(
    /// What a cancel did.
    CancelView,
    "CancelReport",
    cancel_schema()
);
json_view!(
    /// What a restart did.
    RestartView,
    "RestartReport",
    restart_schema()
);
json_view!(
    /// A workflow template.
    WorkflowView,
    "Workflow",
    workflow_schema()
);
json_view!(
    /// Per queue and in total: running, queued, limits, recent outcomes, alerts.
    QueueHealthView,
    "QueueHealth",
    queue_health_schema()
);

const STATUS_DOC: &str = "queued, starting, running and stopping are live; succeeded, failed, \
                          killed, cancelled, timed_out and lost are final";

fn run_schema() -> Schema {
    let mut schema = json_schema!({
        "type": "object",
        "description": "A run (the same JSON as `wfctl get --json`); times are Unix ms with an \
                        *_rfc3339 twin (null for not yet).",
        "properties": {
            "run_id": { "type": "string" },
            "status": { "type": "string", "enum": output::STATUS_NAMES, "description": STATUS_DOC },
            "workflow": { "type": "string", "description": "The workflow template, or empty for a plain command." },
            "argv": { "type": "array", "items": { "type": "string" } },
            "cwd": { "type": "string" },
            "labels": { "type": "object", "additionalProperties": { "type": "string" } },
            "queue": { "type": "string" },
            "priority": { "type": "integer" },
            "after": { "type": "array", "items": { "type": "string" } },
            "waiting_reason": { "type": "string", "description": "Why a queued run waits." }
        },
        "required": ["run_id", "status"]
    });
    let more = json!({
        "pid": { "type": "integer" },
        "created_at": { "type": "integer" },
        "started_at": { "type": "integer" },
        "ended_at": { "type": "integer" },
        "exit_code": { "type": ["integer", "null"] },
        "signal": { "type": "string" },
        "error": { "type": "string", "description": "Why the run failed or how it ended." },
        "end_reason": { "type": "string", "description": "Who ended it and why." },
        "attempt": { "type": "integer" },
        "restart_of": { "type": "string" },
        "stdout_bytes": { "type": "integer" },
        "stderr_bytes": { "type": "integer" }
    });
    let agent = json!({
        "type": ["object", "null"],
        "description": "What the agent of a workflow run is doing (null for a plain command).",
        "properties": {
            "phase": { "type": "string", "enum": ["unspecified", "starting", "initializing", "active", "finishing"] },
            "turns": { "type": "integer" },
            "cost_usd": { "type": ["number", "null"] },
            "health": { "type": "string", "enum": ["unspecified", "ok", "slow", "stuck"] },
            "health_reason": { "type": "string" },
            "current_tool": { "type": "string" },
            "session_id": { "type": "string" },
            "result_subtype": { "type": "string" },
            "result_is_error": { "type": ["boolean", "null"] },
            "result_text": { "type": "string" }
        }
    });
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        if let Value::Object(more) = more {
            props.extend(more);
        }
        props.insert("agent".into(), agent);
    }
    schema
}

fn kill_schema() -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "run_id": { "type": "string" },
            "success": { "type": "boolean", "description": "The run was seen empty: nothing of it is left." },
            "phase": {
                "type": "string",
                "enum": ["unspecified", "term", "kill", "survivors", "already_exited"],
                "description": "term: the stop signals sufficed; kill: SIGKILL was needed; survivors: something outlived SIGKILL; already_exited: the leader had exited and its leftovers were ended."
            },
            "signals_sent": { "type": "array", "items": { "type": "string" } },
            "duration_ms": { "type": "integer" },
            "survivors": { "type": "integer", "description": "Processes still alive at the end (0 on success)." },
            "survivor_pids": { "type": "array", "items": { "type": "object" } },
            "cleanup": { "type": "array", "items": { "type": "object" } },
            "message": { "type": "string" },
            "killed_at": { "type": "integer" },
            "run": { "description": "The run as recorded after the kill." }
        },
        "required": ["run_id", "success", "phase", "survivors"]
    })
}

fn cancel_schema() -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "run_id": { "type": "string" },
            "killed": { "type": "boolean", "description": "The run was live and its processes had to be ended." },
            "kill": { "description": "The kill report when killed, else null." },
            "run": { "description": "The run as recorded after the cancel." }
        },
        "required": ["run_id", "killed"]
    })
}

fn restart_schema() -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "old_run_id": { "type": "string" },
            "run": { "description": "The new run." },
            "note": { "type": "string", "description": "How the new run started (resumed which session, or fresh and why)." }
        },
        "required": ["old_run_id", "run", "note"]
    })
}

fn workflow_schema() -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "program": { "type": "string" },
            "model": { "type": "string" },
            "max_turns": { "type": "integer" },
            "permission_mode": { "type": "string" },
            "allowed_tools": { "type": "array", "items": { "type": "string" } },
            "cwd": { "type": "string", "description": "The default working directory (empty: the daemon's)." },
            "allowed_cwds": { "type": "array", "items": { "type": "string" }, "description": "A spawn's cwd must be under one of these (empty: any)." }
        },
        "required": ["name"]
    })
}

fn queue_health_schema() -> Schema {
    json_schema!({
        "type": "object",
        "properties": {
            "queues": { "type": "array", "items": { "type": "object" } },
            "total": { "type": "object" },
            "alerts": { "type": "array", "items": { "type": "object" } }
        },
        "required": ["queues", "total", "alerts"]
    })
}

// ---------------------------------------------------------------------------------------------
// Results

/// A run, with notes on any part of the request the daemon did not apply.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SpawnedRun {
    pub run: RunView,
    /// Parts of the request the daemon did not apply (empty when it applied all of them).
    pub warnings: Vec<String>,
}

/// One run.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OneRun {
    pub run: RunView,
}

/// Runs, newest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
    /// True when the limit was reached: older matching runs were not listed.
    pub limited: bool,
    /// What the listing could not cover; empty when it is complete.
    pub note: String,
}

/// The end of a run's output.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Logs {
    pub run_id: String,
    /// The last bytes of stdout, as text (invalid UTF-8 replaced).
    pub stdout: String,
    /// The last bytes of stderr, as text.
    pub stderr: String,
    /// Bytes of stdout written before the part shown (not shown).
    pub stdout_omitted_bytes: u64,
    pub stderr_omitted_bytes: u64,
    /// What was cut and how to see more; empty when nothing was cut.
    pub note: String,
}

/// The run when the wait ended.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Waited {
    /// True when the run reached a final status; false when the timeout came first.
    pub ended: bool,
    pub waited_ms: u64,
    pub run: RunView,
}

/// The workflow templates the daemon's config defines.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowView>,
}

// ---------------------------------------------------------------------------------------------
// Conversions

/// A run as `wfctl --json` prints it, plus its queue fields where that lacks them.
pub fn run_view(r: &Run) -> RunView {
    let mut v = output::run_json(r);
    if let Value::Object(o) = &mut v {
        let queue = [
            ("queue", json!(r.queue)),
            ("priority", json!(r.priority)),
            ("after", json!(r.after)),
            ("waiting_reason", json!(r.waiting_reason)),
            ("timeout_ms", json!(r.timeout_ms)),
            ("queue_timeout_ms", json!(r.queue_timeout_ms)),
            ("not_before", json!(r.not_before)),
            ("timeout_at", json!(r.timeout_at)),
            ("queued_at", json!(r.queued_at)),
            ("idempotency_key", json!(r.idempotency_key)),
        ];
        for (k, val) in queue {
            o.entry(k).or_insert(val);
        }
    }
    RunView(v)
}

/// `v` with its `run` member (if an object) replaced by the run's view.
fn with_run(mut v: Value, run: &Option<Run>) -> Value {
    if let (Value::Object(o), Some(r)) = (&mut v, run) {
        o.insert("run".into(), run_view(r).0);
    }
    v
}

pub fn kill_view(k: &KillResponse) -> KillView {
    KillView(with_run(output::kill_json(k), &k.run))
}

pub fn cancel_view(c: &CancelResponse) -> CancelView {
    let kill = if c.killed {
        c.kill
            .as_ref()
            .map(|k| kill_view(k).0)
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    CancelView(json!({
        "run_id": c.run_id,
        "killed": c.killed,
        "kill": kill,
        "run": c.run.as_ref().map(|r| run_view(r).0).unwrap_or(Value::Null),
    }))
}

pub fn restart_view(r: &RestartResponse) -> RestartView {
    RestartView(with_run(output::restart_json(r), &r.run))
}

pub fn workflow_view(w: &Workflow) -> WorkflowView {
    WorkflowView(output::workflow_json(w))
}

fn counts(m: &BTreeMap<String, u32>) -> Value {
    json!(m)
}

fn queue_json(q: &QueueHealth) -> Value {
    json!({
        "name": q.name,
        "running": q.running,
        "queued": q.queued,
        "max_concurrent": q.max_concurrent,
        "max_queued": q.max_queued,
        "paused": q.paused,
        "ended_last_hour": counts(&q.ended_last_hour),
        "ended_last_day": counts(&q.ended_last_day),
        "oldest_running_ms": q.oldest_running_ms,
        "longest_queued_wait_ms": q.longest_queued_wait_ms,
        "stuck": q.stuck,
    })
}

pub fn queue_health_view(h: &GetQueueHealthResponse) -> QueueHealthView {
    let mut alerts = Vec::new();
    for a in &h.alerts {
        let mut v = output::alert_json(a);
        if let Value::Object(o) = &mut v {
            o.entry("resolved_at").or_insert(json!(a.resolved_at));
            o.entry("dedup_key").or_insert(json!(a.dedup_key));
            o.entry("labels").or_insert(json!(a.labels));
        }
        alerts.push(v);
    }
    QueueHealthView(json!({
        "queues": h.queues.iter().map(queue_json).collect::<Vec<_>>(),
        "total": h.total.as_ref().map(queue_json).unwrap_or_else(|| json!({})),
        "alerts": alerts,
    }))
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// Whether a run passes the filters of `list_runs` (all given parts must match). The daemon is
/// asked to filter too; checking here as well keeps the answer right from a daemon that does not.
pub fn run_matches(
    r: &Run,
    statuses: &[RunStatus],
    workflow: Option<&str>,
    queue: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> bool {
    (statuses.is_empty() || statuses.iter().any(|s| *s as i32 == r.status))
        && workflow.is_none_or(|w| r.workflow == w)
        && queue.is_none_or(|q| r.queue == q)
        && labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
}

/// The tail asked of each stream: the default when none, never more than the cap. The second
/// value says whether the ask was lowered to the cap.
pub fn log_tail(asked: Option<u64>) -> (u64, bool) {
    match asked {
        None | Some(0) => (DEFAULT_LOG_TAIL, false),
        Some(n) if n > MAX_LOG_TAIL => (MAX_LOG_TAIL, true),
        Some(n) => (n, false),
    }
}

/// The note of a `get_logs` result: for each stream with earlier output not shown, how much was
/// shown of how much; and whether the ask was capped. Empty when nothing was cut.
pub fn logs_note(
    tail: u64,
    capped: bool,
    shown: (u64, u64),
    written: (u64, u64),
    truncated_on_disk: bool,
) -> String {
    let mut parts = Vec::new();
    for (name, shown, written) in [
        ("stdout", shown.0, written.0),
        ("stderr", shown.1, written.1),
    ] {
        if written > shown {
            parts.push(format!(
                "{name}: the last {} of {} shown, {} earlier cut",
                output::fmt_bytes(shown),
                output::fmt_bytes(written),
                output::fmt_bytes(written - shown)
            ));
        }
    }
    if capped {
        parts.push(format!(
            "tail_bytes was lowered to the cap of {} per stream",
            output::fmt_bytes(MAX_LOG_TAIL)
        ));
    }
    if parts.is_empty() {
        return String::new();
    }
    if truncated_on_disk {
        parts.push("the oldest output is no longer kept (over the daemon's output cap)".into());
    }
    let more = if tail < MAX_LOG_TAIL {
        format!(
            "; ask a larger tail_bytes (up to {}) or run `wfctl logs`",
            MAX_LOG_TAIL
        )
    } else {
        "; `wfctl logs RUN_ID` prints all of it".to_string()
    };
    format!("{}{more}", parts.join("; "))
}

/// Bytes after the last `tail`: the whole slice when shorter.
pub fn last_bytes(data: &[u8], tail: u64) -> &[u8] {
    let keep = usize::try_from(tail).unwrap_or(usize::MAX).min(data.len());
    &data[data.len() - keep..]
}

/// What a waiting caller is told about a run: its status, and for an agent run its phase,
/// turns, cost and health, e.g. `run_x running: active, 3 turns, $0.0781, health ok`.
pub fn progress_message(r: &Run) -> String {
    let status = output::status_name(r.status);
    let Some(a) = &r.agent else {
        return format!("{} {status}", r.run_id);
    };
    let mut parts = vec![
        output::agent_phase_name(a.phase),
        format!("{} turn{}", a.turns, if a.turns == 1 { "" } else { "s" }),
    ];
    match a.cost_usd {
        Some(c) => parts.push(output::fmt_usd(c)),
        None => parts.push("cost unknown yet".into()),
    }
    parts.push(format!("health {}", output::health_name(a.health)));
    if !a.current_tool.is_empty() {
        parts.push(format!("tool {}", a.current_tool));
    }
    format!("{} {status}: {}", r.run_id, parts.join(", "))
}

/// Whether a status is final.
pub fn is_final(raw: i32) -> bool {
    matches!(
        RunStatus::try_from(raw),
        Ok(RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::Killed
            | RunStatus::Cancelled
            | RunStatus::TimedOut
            | RunStatus::Lost)
    )
}

/// The parts of a spawn request a daemon did not apply, read from the run it returned (a daemon
/// without queues ignores those fields; the run exists, so this is said, not failed).
pub fn spawn_warnings(
    queue: Option<&str>,
    priority: Option<i32>,
    after: &[String],
    timeout_ms: Option<u64>,
    run: &Run,
) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(q) = queue.filter(|q| !q.is_empty()) {
        if run.queue != q {
            w.push(format!(
                "queue {q:?} was not applied (the run's queue is {:?}): this daemon may not have queues yet",
                run.queue
            ));
        }
    }
    if let Some(p) = priority.filter(|p| *p != 0) {
        if run.priority != p {
            w.push(format!(
                "priority {p} was not applied (the run's priority is {})",
                run.priority
            ));
        }
    }
    if !after.is_empty() && run.after != after {
        w.push(format!(
            "after {after:?} was not applied: the run does not wait for those runs"
        ));
    }
    if let Some(t) = timeout_ms.filter(|t| *t > 0) {
        if run.timeout_ms != t {
            w.push(format!(
                "timeout_ms {t} was not applied: the run has no such time limit"
            ));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use wf_supervisor::proto::{AgentPhase, AgentProgress, CleanupStep, Health, KillPhase};

    fn run() -> Run {
        Run {
            run_id: "run_0123456789ab".into(),
            status: RunStatus::Running as i32,
            argv: vec!["claude".into()],
            workflow: "builder".into(),
            labels: [("team".to_string(), "infra".to_string())].into(),
            queue: "heavy".into(),
            agent: Some(AgentProgress {
                phase: AgentPhase::Active as i32,
                turns: 3,
                cost_usd: Some(0.0781245),
                health: Health::Ok as i32,
                current_tool: "Bash".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Every property a schema names is in the JSON sent (so the schema never promises a field
    /// that is not there).
    fn assert_schema_matches(schema: Schema, v: &Value) {
        let s = schema.as_value();
        assert_eq!(s["type"], "object");
        let props = s["properties"].as_object().expect("properties");
        for k in props.keys() {
            assert!(v.get(k).is_some(), "{k} is in the schema but not in {v}");
        }
        for k in s["required"].as_array().into_iter().flatten() {
            assert!(props.contains_key(k.as_str().unwrap()), "required {k}");
        }
        if let (Some(agent), Some(a)) = (props.get("agent"), v.get("agent")) {
            if a.is_object() {
                for k in agent["properties"].as_object().unwrap().keys() {
                    assert!(a.get(k).is_some(), "agent.{k} is in the schema, not in {a}");
                }
            }
        }
    }

    #[test]
    fn schemas_name_only_fields_that_are_sent() {
        let r = run();
        assert_schema_matches(run_schema(), &run_view(&r).0);
        let k = KillResponse {
            success: true,
            run_id: r.run_id.clone(),
            phase: KillPhase::Kill as i32,
            signals_sent: vec!["SIGTERM".into(), "SIGKILL".into()],
            cleanup: vec![CleanupStep {
                step: "cgroup".into(),
                ok: true,
                detail: String::new(),
            }],
            run: Some(r.clone()),
            ..Default::default()
        };
        let kv = kill_view(&k).0;
        assert_schema_matches(kill_schema(), &kv);
        assert_eq!(kv["phase"], "kill");
        assert_eq!(kv["survivors"], 0);
        assert_eq!(kv["run"]["queue"], "heavy", "the run carries its queue");
        let c = CancelResponse {
            run_id: r.run_id.clone(),
            killed: true,
            kill: Some(k),
            run: Some(r.clone()),
            results: vec![],
            record_pending: String::new(),
        };
        let cv = cancel_view(&c).0;
        assert_schema_matches(cancel_schema(), &cv);
        assert_eq!(cv["kill"]["phase"], "kill");
        let rv = restart_view(&RestartResponse {
            old_run_id: "run_old".into(),
            run: Some(r),
            note: "fresh".into(),
        })
        .0;
        assert_schema_matches(restart_schema(), &rv);
        assert_eq!(rv["run"]["queue"], "heavy");
        let w = Workflow {
            name: "builder".into(),
            ..Default::default()
        };
        assert_schema_matches(workflow_schema(), &workflow_view(&w).0);
        let q = GetQueueHealthResponse {
            queues: vec![QueueHealth {
                name: "heavy".into(),
                running: 2,
                ended_last_hour: [("SUCCEEDED".to_string(), 4)].into(),
                ..Default::default()
            }],
            total: None,
            alerts: vec![],
        };
        let qv = queue_health_view(&q).0;
        assert_schema_matches(queue_health_schema(), &qv);
        assert_eq!(qv["queues"][0]["ended_last_hour"]["SUCCEEDED"], 4);
    }

    #[test]
    fn a_plain_run_has_no_agent() {
        let mut r = run();
        r.agent = None;
        assert_schema_matches(run_schema(), &run_view(&r).0);
        assert_eq!(progress_message(&r), "run_0123456789ab running");
    }

    #[test]
    fn filters_all_must_match() {
        let r = run();
        let none = BTreeMap::new();
        assert!(run_matches(&r, &[], None, None, &none));
        assert!(run_matches(
            &r,
            &[RunStatus::Queued, RunStatus::Running],
            Some("builder"),
            Some("heavy"),
            &[("team".to_string(), "infra".to_string())].into()
        ));
        assert!(!run_matches(&r, &[RunStatus::Failed], None, None, &none));
        assert!(!run_matches(&r, &[], Some("reviewer"), None, &none));
        assert!(!run_matches(&r, &[], None, Some("default"), &none));
        assert!(!run_matches(
            &r,
            &[],
            None,
            None,
            &[("team".to_string(), "web".to_string())].into()
        ));
    }

    #[test]
    fn the_log_tail_is_capped_and_the_cut_is_said() {
        assert_eq!(log_tail(None), (DEFAULT_LOG_TAIL, false));
        assert_eq!(log_tail(Some(0)), (DEFAULT_LOG_TAIL, false));
        assert_eq!(log_tail(Some(100)), (100, false));
        assert_eq!(log_tail(Some(MAX_LOG_TAIL)), (MAX_LOG_TAIL, false));
        assert_eq!(log_tail(Some(1 << 30)), (MAX_LOG_TAIL, true));

        assert_eq!(logs_note(100, false, (10, 0), (10, 0), false), "");
        let note = logs_note(100, false, (100, 0), (5000, 0), false);
        assert!(
            note.starts_with("stdout: the last 100 B of 4.9 KiB shown, 4.8 KiB earlier cut"),
            "{note}"
        );
        assert!(note.contains("larger tail_bytes"), "{note}");
        let note = logs_note(MAX_LOG_TAIL, true, (MAX_LOG_TAIL, 5), (1 << 20, 9), true);
        assert!(
            note.contains("stdout: the last 32.0 KiB of 1.0 MiB"),
            "{note}"
        );
        assert!(note.contains("stderr: the last 5 B of 9 B"), "{note}");
        assert!(note.contains("lowered to the cap of 32.0 KiB"), "{note}");
        assert!(note.contains("no longer kept"), "{note}");
        assert!(
            note.ends_with("`wfctl logs RUN_ID` prints all of it"),
            "{note}"
        );

        assert_eq!(last_bytes(b"abcdef", 2), b"ef");
        assert_eq!(last_bytes(b"ab", 10), b"ab");
    }

    #[test]
    fn progress_says_phase_turns_and_cost() {
        let mut r = run();
        assert_eq!(
            progress_message(&r),
            "run_0123456789ab running: active, 3 turns, $0.0781, health ok, tool Bash"
        );
        let a = r.agent.as_mut().unwrap();
        a.turns = 1;
        a.cost_usd = None;
        a.current_tool.clear();
        assert_eq!(
            progress_message(&r),
            "run_0123456789ab running: active, 1 turn, cost unknown yet, health ok"
        );
    }

    #[test]
    fn unapplied_spawn_fields_are_warned_about() {
        let r = Run::default();
        let w = spawn_warnings(Some("heavy"), Some(5), &["run_a".into()], Some(1000), &r);
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[0].starts_with("queue \"heavy\" was not applied"), "{w:?}");
        let applied = Run {
            queue: "heavy".into(),
            priority: 5,
            after: vec!["run_a".into()],
            timeout_ms: 1000,
            ..Default::default()
        };
        assert!(spawn_warnings(
            Some("heavy"),
            Some(5),
            &["run_a".into()],
            Some(1000),
            &applied
        )
        .is_empty());
        assert!(spawn_warnings(None, None, &[], None, &r).is_empty());
    }

    #[test]
    fn final_statuses() {
        assert!(is_final(RunStatus::Killed as i32));
        assert!(is_final(RunStatus::Lost as i32));
        assert!(!is_final(RunStatus::Stopping as i32));
        assert!(!is_final(RunStatus::Queued as i32));
        assert!(!is_final(99));
    }
}
