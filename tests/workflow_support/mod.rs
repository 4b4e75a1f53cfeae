//! Helpers for the workflow tests (`tests/workflows.rs`, `tests/stuck.rs`, `tests/critical.rs`),
//! on top of the harness in `tests/common`: the Claude stream-json fixtures and what they record,
//! read here independently of the daemon's codec; agent programs written as small shell scripts
//! that record the argv the daemon built for them; `[workflows.NAME]` config tables; Watch and
//! audit readers; and the `/proc` evidence that nothing of a run is left.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use wf_supervisor::proto::{AgentPhase, AgentProgress, AuditRecord, Run, RunEvent, SpawnRequest};

pub use crate::common::toml_str;
use crate::common::{self, Api, Daemon, TIMEOUT};

/// The fixture folder.
pub const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/claude-stream-json"
);

/// The path of fixture `name` (e.g. `success.jsonl`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The bytes of fixture `name`.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixture(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The session id of the `system`/`init` event of fixture `name`.
pub fn init_session(name: &str) -> String {
    facts(&fixture_bytes(name))
        .session_id
        .unwrap_or_else(|| panic!("{name} has no init session id"))
}

/// What a stream-json transcript records, counted by the rules of DESIGN.md invariant 4 and the
/// API: a turn is a distinct `message.id` of an `assistant` event that is neither a subagent's
/// (`parent_tool_use_id` set) nor made up by the CLI (`message.model == "<synthetic>"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub has_init: bool,
    /// From `system`/`init`.
    pub session_id: Option<String>,
    pub turns: u32,
    /// `system`/`api_retry` events.
    pub api_retries: u32,
    /// From the `result` event, if there is one.
    pub result: Option<ResultFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResultFacts {
    pub subtype: String,
    pub is_error: bool,
    pub num_turns: Option<u32>,
    pub cost_usd: Option<f64>,
}

/// Reads the transcript line by line; lines that are not JSON objects are skipped.
pub fn facts(text: &[u8]) -> Facts {
    let mut f = Facts {
        has_init: false,
        session_id: None,
        turns: 0,
        api_retries: 0,
        result: None,
    };
    let mut ids = HashSet::new();
    for line in text.split(|b| *b == b'\n') {
        let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        match (
            str_of(e.get("type")).as_deref(),
            str_of(e.get("subtype")).as_deref(),
        ) {
            (Some("system"), Some("init")) => {
                f.has_init = true;
                f.session_id = str_of(e.get("session_id"));
            }
            (Some("system"), Some("api_retry")) => f.api_retries += 1,
            (Some("assistant"), _) => {
                let subagent = e.get("parent_tool_use_id").is_some_and(|p| !p.is_null());
                let message = e.get("message");
                let synthetic =
                    str_of(message.and_then(|m| m.get("model"))).as_deref() == Some("<synthetic>");
                if let Some(id) = str_of(message.and_then(|m| m.get("id"))) {
                    if !subagent && !synthetic && ids.insert(id) {
                        f.turns += 1;
                    }
                }
            }
            (Some("result"), subtype) => {
                f.result = Some(ResultFacts {
                    subtype: subtype.unwrap_or_default().to_string(),
                    is_error: e.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    num_turns: e.get("num_turns").and_then(Value::as_u64).map(|n| n as u32),
                    cost_usd: e.get("total_cost_usd").and_then(Value::as_f64),
                })
            }
            _ => {}
        }
    }
    f
}

/// The phase a run that printed the transcript ends in.
pub fn expected_phase(f: &Facts) -> AgentPhase {
    if f.result.is_some() {
        AgentPhase::Finishing
    } else if f.turns > 0 {
        AgentPhase::Active
    } else if f.has_init {
        AgentPhase::Initializing
    } else {
        AgentPhase::Starting
    }
}

/// Asserts that the daemon's view of an agent run agrees with what its transcript records,
/// except for the phase: tests check that with [`assert_phase`] at their very end, so that
/// a wrong phase does not hide what else they prove.
pub fn assert_progress(what: &str, agent: &AgentProgress, f: &Facts) {
    assert_eq!(agent.turns, f.turns, "{what}: turns; {agent:?}");
    assert_eq!(
        Some(agent.session_id.as_str()),
        f.session_id.as_deref(),
        "{what}: session_id; {agent:?}"
    );
    assert_eq!(
        agent.api_retries, f.api_retries,
        "{what}: api_retries; {agent:?}"
    );
    match &f.result {
        Some(r) => {
            assert_eq!(agent.result_subtype, r.subtype, "{what}: result_subtype");
            assert_eq!(
                agent.result_is_error,
                Some(r.is_error),
                "{what}: result_is_error"
            );
            assert_eq!(agent.num_turns, r.num_turns, "{what}: num_turns");
            match (agent.cost_usd, r.cost_usd) {
                (Some(got), Some(want)) => assert!(
                    (got - want).abs() < 1e-12,
                    "{what}: cost_usd {got} != {want}"
                ),
                (got, want) => assert_eq!(got, want, "{what}: cost_usd"),
            }
        }
        None => {
            assert!(
                agent.result_subtype.is_empty(),
                "{what}: no result: {agent:?}"
            );
            assert_eq!(agent.result_is_error, None, "{what}: no result: {agent:?}");
            assert_eq!(agent.cost_usd, None, "{what}: no result: {agent:?}");
        }
    }
}

/// Asserts the agent's phase as the API reports it.
pub fn assert_phase(what: &str, agent: &AgentProgress, phase: AgentPhase) {
    assert_eq!(agent.phase(), phase, "{what}: phase; {agent:?}");
}

/// Shell-quotes `s` in single quotes.
pub fn shq(s: impl AsRef<str>) -> String {
    format!("'{}'", s.as_ref().replace('\'', r"'\''"))
}

/// A `[workflows.NAME]` table with `program` and more `key = value` lines as given.
pub fn workflow_toml(name: &str, program: &Path, more: &str) -> String {
    format!(
        "[workflows.{name}]\nprogram = {}\n{more}\n\n",
        toml_str(program.display().to_string())
    )
}

/// A folder of agent programs and what they recorded. The daemon runs them with a clean
/// environment, so every path a script needs is written into it.
pub struct Scripts {
    pub dir: TempDir,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            dir: tempfile::Builder::new()
                .prefix("wf-agents-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The folder, shell-quoted.
    pub fn q(&self) -> String {
        shq(self.dir.path().display().to_string())
    }

    /// Writes a plain file.
    pub fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Writes an executable `/bin/sh` agent named `name` whose first act is to record its argv,
    /// one item a line, in `args.$WF_RUN_ID` (written to a temporary name and renamed, so a
    /// reader never sees half of it); then `body` runs.
    pub fn agent(&self, name: &str, body: &str) -> PathBuf {
        let d = self.q();
        let text = format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$@\" > {d}/args.$WF_RUN_ID.tmp\n\
             mv {d}/args.$WF_RUN_ID.tmp {d}/args.$WF_RUN_ID\n\
             {body}\n"
        );
        let path = self.write(name, text.as_bytes());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// The argv (program excluded) that run `run_id` recorded, if it got that far.
    pub fn args(&self, run_id: &str) -> Option<Vec<String>> {
        let text = fs::read_to_string(self.path(&format!("args.{run_id}"))).ok()?;
        Some(text.lines().map(str::to_string).collect())
    }

    /// Waits for the argv run `run_id` records.
    pub async fn wait_args(&self, run_id: &str) -> Vec<String> {
        common::wait_for(TIMEOUT, &format!("{run_id} to record its argv"), || async {
            self.args(run_id)
        })
        .await
    }

    /// Creates the (empty) file `name`: a go signal for a script that waits for it.
    pub fn touch(&self, name: &str) {
        self.write(name, b"");
    }
}

/// The argv prefix every workflow run gets: `-p PROMPT --output-format stream-json --verbose`.
pub fn claude_prefix(prompt: &str) -> Vec<String> {
    ["-p", prompt, "--output-format", "stream-json", "--verbose"]
        .map(String::from)
        .to_vec()
}

/// A spawn of `workflow` with `prompt` and extra environment.
pub fn workflow_request(workflow: &str, prompt: &str, env: &[(&str, &str)]) -> SpawnRequest {
    SpawnRequest {
        workflow: workflow.to_string(),
        prompt: prompt.to_string(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// Spawns a workflow run; panics on error.
pub async fn spawn_workflow(api: &Api, workflow: &str, prompt: &str, env: &[(&str, &str)]) -> Run {
    api.try_spawn(workflow_request(workflow, prompt, env))
        .await
        .unwrap_or_else(|s| panic!("Spawn of workflow {workflow} failed: {s:?}"))
}

/// Runs whose `restart_of` is `run_id`.
pub async fn restarts_of(api: &Api, run_id: &str) -> Vec<Run> {
    api.list()
        .await
        .into_iter()
        .filter(|r| r.restart_of == run_id)
        .collect()
}

/// Waits for the one run that restarts `run_id`.
pub async fn wait_restart_of(api: &Api, run_id: &str) -> Run {
    common::wait_for(TIMEOUT, &format!("a run restarting {run_id}"), || async {
        let mut runs = restarts_of(api, run_id).await;
        assert!(
            runs.len() <= 1,
            "more than one restart of {run_id}: {runs:?}"
        );
        runs.pop()
    })
    .await
}

/// The audit records of one run, oldest first.
pub async fn audit(api: &Api, run_id: &str) -> Vec<AuditRecord> {
    let mut records = api.audit(run_id).await;
    records.sort_by_key(|r| r.id);
    records
}

/// Waits for an audit record of `run_id` with `action`.
pub async fn wait_audit(api: &Api, run_id: &str, action: &str) -> AuditRecord {
    common::wait_for(
        TIMEOUT,
        &format!("an audit record {action:?} of {run_id}"),
        || async {
            audit(api, run_id)
                .await
                .into_iter()
                .find(|r| r.action == action)
        },
    )
    .await
}

/// Every event of every run, collected from one Watch opened before the test spawns anything.
pub struct Events {
    seen: Arc<Mutex<Vec<RunEvent>>>,
    task: JoinHandle<()>,
}

impl Events {
    /// Opens the Watch; once this returns, the daemon has subscribed it.
    pub async fn watch_all(api: &Api) -> Events {
        let mut stream = api.watch("").await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok(Some(event)) = stream.message().await {
                sink.lock().expect("events lock").push(event);
            }
        });
        Events { seen, task }
    }

    /// The events of `run_id` so far.
    pub fn of(&self, run_id: &str) -> Vec<RunEvent> {
        self.seen
            .lock()
            .expect("events lock")
            .iter()
            .filter(|e| e.run_id == run_id)
            .cloned()
            .collect()
    }

    /// Waits for an event of `run_id` of `kind`.
    pub async fn wait_kind(&self, run_id: &str, kind: &str) -> RunEvent {
        common::wait_for(
            TIMEOUT,
            &format!("a Watch event {kind:?} of {run_id}"),
            || async { self.of(run_id).into_iter().find(|e| e.kind == kind) },
        )
        .await
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the run shows `cond` on Get.
pub async fn wait_run(api: &Api, run_id: &str, what: &str, cond: impl Fn(&Run) -> bool) -> Run {
    common::wait_for(TIMEOUT, &format!("{run_id}: {what}"), || async {
        let run = api.get(run_id).await;
        cond(&run).then_some(run)
    })
    .await
}

/// The run's agent progress; panics when it has none.
pub fn agent(run: &Run) -> &AgentProgress {
    run.agent
        .as_ref()
        .unwrap_or_else(|| panic!("{} has no agent progress: {run:?}", run.run_id))
}

/// Proves through /proc that nothing of each run is left (no process carries its WF_RUN_ID)
/// and that the daemon has no zombie children.
pub async fn assert_all_gone(daemon: &Daemon, run_ids: &[&str]) {
    for id in run_ids {
        common::wait_no_env(id).await;
        daemon.assert_run_gone(id, &[]).await;
    }
    daemon.assert_reaped(&[]).await;
}
