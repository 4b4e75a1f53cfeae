//! The real Claude Code CLI under the real daemon, talking to a loopback stand-in for the
//! Messages API (`ANTHROPIC_BASE_URL`, a dummy `ANTHROPIC_API_KEY`, a fresh `HOME`).
//!
//! Proves, from the CLI's real stream-json: turns are counted as the distinct assistant messages
//! the stand-in served, and the session id is the CLI's; a run whose Bash tool command sleeps (the
//! CLI starts each Bash command in a session of its own) is killed with nothing left and no
//! zombie; `Restart{resume}` continues the same session, and the resumed CLI sends the earlier
//! conversation back to the API; and the CLI as an orchestrator, with `wfctl mcp` as its MCP
//! server (`--mcp-config`), kills a runaway run through `mcp__wf__kill_workflow`: the run ends
//! KILLED with nothing left, the kill is audited as the CLI's user, and the kill report is what
//! the CLI sends back to the model.
//!
//! The CLI is found as `find_cli` says (`WF_TEST_CLAUDE_BIN`, `PATH`, npm locations); when it is
//! not installed each test prints `SKIP: ...` and passes. `.ci/run` installs it from npm.
//!
//! The daemon is the shared harness's (`tests/common`), started on a site whose folder also holds
//! the CLI's `HOME` and working directory.

mod common;
#[path = "claude_cli/find_cli.rs"]
mod find_cli;
#[path = "claude_cli/messages_api.rs"]
mod messages_api;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use wf_supervisor::proto::{
    AgentPhase, KillPhase, KillRequest, KillResponse, RestartRequest, Run, RunStatus, SpawnRequest,
};

use common::{
    cgroup_populated, comm, describe, is_terminal, pids_with_env, stat, toml_str, wait_for, Daemon,
    Options, Proc, Site, TIMEOUT,
};
use find_cli::{claude_or_skip, ClaudeCli};
use messages_api::{MessagesApi, Reply, FINAL_TEXT, MCP_KILL_MARKER, MCP_KILL_TOOL};

/// A generous deadline for a whole CLI run against the stand-in (it takes about a second).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The workflow every test spawns.
const WORKFLOW: &str = "cli";

/// One test's world: the CLI, the stand-in, a daemon whose `[workflows.cli]` points at both
/// (its `HOME` and working directory are folders in the daemon's own directory).
struct World {
    cli: ClaudeCli,
    api: MessagesApi,
    daemon: Daemon,
    home: PathBuf,
    work: PathBuf,
}

impl World {
    /// `None` (after printing why) when the CLI is not installed.
    async fn start(test: &str) -> Option<World> {
        let cli = claude_or_skip(test).await?;
        eprintln!(
            "{test}: Claude Code {} at {}",
            cli.version_line,
            cli.path.display()
        );
        let api = MessagesApi::start().await;
        let site = Site::new(Options::default()).expect("auto containment always has a site");
        let home = site.dir.path().join("home");
        let work = site.dir.path().join("work");
        std::fs::create_dir(&home).expect("creating HOME");
        std::fs::create_dir(&work).expect("creating the work dir");
        let workflow = format!(
            "[workflows.{WORKFLOW}]\n\
             program = {program}\n\
             allowed_tools = [\"Bash\"]\n\
             max_turns = 8\n\
             cwd = {cwd}\n\
             [workflows.{WORKFLOW}.env]\n\
             ANTHROPIC_BASE_URL = {base_url}\n\
             ANTHROPIC_API_KEY = \"sk-ant-test-dummy\"\n\
             HOME = {home}\n\
             CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = \"1\"\n\
             DISABLE_TELEMETRY = \"1\"\n\
             DISABLE_AUTOUPDATER = \"1\"\n\
             DISABLE_ERROR_REPORTING = \"1\"\n",
            program = toml_str(cli.path.display().to_string()),
            cwd = toml_str(work.display().to_string()),
            base_url = toml_str(api.base_url()),
            home = toml_str(home.display().to_string()),
        );
        site.add_config(&workflow);
        let daemon = Daemon::start_on(site).await;
        Some(World {
            cli,
            api,
            daemon,
            home,
            work,
        })
    }

    async fn spawn(&self, prompt: &str) -> Run {
        self.daemon
            .api()
            .try_spawn(SpawnRequest {
                workflow: WORKFLOW.to_string(),
                prompt: prompt.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("Spawn of workflow {WORKFLOW} failed: {s:?}"))
    }

    /// Waits for the run to end and insists that it SUCCEEDED, showing its output if not.
    async fn wait_succeeded(&self, run_id: &str) -> Run {
        let api = self.daemon.api();
        let run = api.wait_terminal(run_id, RUN_TIMEOUT).await;
        if run.status() != RunStatus::Succeeded {
            let (out, err) = api.output(run_id).await;
            panic!(
                "{run_id} ended {:?}, not SUCCEEDED: {run:?}\nstdout:\n{out}\nstderr:\n{err}\n\
                 the stand-in saw: {}",
                run.status(),
                self.api.summary()
            );
        }
        run
    }
}

/// What a run's stdout (the CLI's stream-json) says.
#[derive(Debug, Default)]
struct StreamJson {
    init_session: Option<String>,
    /// Top-level assistant events (not a subagent's), in order: one per content block.
    assistant_events: usize,
    /// Their distinct message ids, in order of first appearance.
    assistant_messages: Vec<String>,
    result: Option<Value>,
    version: Option<String>,
}

fn parse_stream_json(stdout: &str) -> StreamJson {
    let mut out = StreamJson::default();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        match (event["type"].as_str(), event["subtype"].as_str()) {
            (Some("system"), Some("init")) => {
                out.init_session = event["session_id"].as_str().map(str::to_string);
                out.version = event["claude_code_version"].as_str().map(str::to_string);
            }
            (Some("assistant"), _) if event["parent_tool_use_id"].is_null() => {
                out.assistant_events += 1;
                let id = event["message"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("an assistant event without message.id: {line}"))
                    .to_string();
                if !out.assistant_messages.contains(&id) {
                    out.assistant_messages.push(id);
                }
            }
            (Some("result"), _) => out.result = Some(event),
            _ => {}
        }
    }
    out
}

/// The message ids of the turns the stand-in served to `session`, from exchange `from` on.
fn served_ids(api: &MessagesApi, session: &str, from: usize) -> Vec<String> {
    api.exchanges()
        .into_iter()
        .skip(from)
        .filter(|e| e.is_turn() && e.session_id() == Some(session))
        .filter_map(|e| e.reply.message_id().map(str::to_string))
        .collect()
}

/// The text of a message's `content`, whether a string or blocks (tool results included).
fn content_text(message: &Value) -> String {
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("\n"),
            Value::Object(o) => ["text", "content"]
                .iter()
                .filter_map(|k| o.get(*k))
                .map(text)
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
    text(&message["content"])
}

/// Nothing carries the run's id any more.
fn assert_no_process_of(run_id: &str) {
    let left = pids_with_env(&format!("WF_RUN_ID={run_id}"));
    assert!(
        left.is_empty(),
        "processes of {run_id} still live: {}",
        describe(&left)
    );
}

/// (a) Turns counted from the CLI's real output, then (c) Restart{resume} of that run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_counts_turns_and_resume_continues_the_session() {
    let Some(w) = World::start("real_cli_counts_turns_and_resume_continues_the_session").await
    else {
        return;
    };

    // (a) Turn 1: a text block and a Bash tool_use; the tool runs; turn 2: the final text.
    let prompt = "Check the shell: <<bash: echo wf-cli-ok-$((6*7))>> and report.";
    let first = w.spawn(prompt).await;
    assert_eq!(first.workflow, WORKFLOW);
    let first = w.wait_succeeded(&first.run_id).await;
    let agent = first
        .agent
        .clone()
        .expect("a workflow run has agent progress");
    let (stdout, _) = w.daemon.api().output(&first.run_id).await;
    let stream = parse_stream_json(&stdout);
    let session = agent.session_id.clone();
    assert!(!session.is_empty(), "no session id: {agent:?}");
    assert_eq!(
        stream.init_session.as_deref(),
        Some(session.as_str()),
        "the init event's session"
    );
    let result = stream.result.clone().expect("a result event on stdout");
    assert_eq!(result["session_id"].as_str(), Some(session.as_str()));
    let served = served_ids(&w.api, &session, 0);
    assert_eq!(
        served.len(),
        2,
        "the stand-in serves a tool_use turn and a final turn; it saw {}",
        w.api.summary()
    );
    assert_eq!(
        stream.assistant_messages, served,
        "the CLI's assistant messages are the ones the stand-in served"
    );
    assert_eq!(
        agent.turns as usize,
        served.len(),
        "agent.turns counts distinct assistant messages ({} assistant events on stdout for {} \
         messages): {agent:?}",
        stream.assistant_events,
        served.len()
    );
    assert_eq!(
        agent.num_turns,
        result["num_turns"].as_u64().map(|n| n as u32),
        "num_turns from the result event"
    );
    assert_eq!(agent.result_subtype, "success");
    assert_eq!(
        agent.phase(),
        AgentPhase::Finishing,
        "the result arrived: {agent:?}"
    );
    assert_eq!(agent.result_is_error, Some(false));
    assert_eq!(agent.result_text, FINAL_TEXT);
    assert_eq!(agent.claude_code_version, w.cli.version());
    assert_eq!(stream.version.as_deref(), Some(w.cli.version()));
    // The Bash tool really ran, in the workflow's cwd with the workflow's HOME.
    let exchanges = w.api.exchanges();
    let tool_result = exchanges
        .iter()
        .filter(|e| e.session_id() == Some(session.as_str()))
        .flat_map(|e| e.messages().to_vec())
        .filter(|m| m["role"] == "user")
        .map(|m| content_text(&m))
        .find(|t| t.contains("wf-cli-ok-42"));
    assert!(
        tool_result.is_some(),
        "no tool_result with the Bash output went back to the API; requests: {}",
        w.api.summary()
    );
    let sessions_dir = w.home.join(".claude/projects");
    assert!(
        sessions_dir.is_dir(),
        "the CLI kept its session under the workflow's HOME ({})",
        sessions_dir.display()
    );
    assert_no_process_of(&first.run_id);
    eprintln!(
        "(a) {}: {} turns ({} assistant events), session {session}, cost {:?}; the stand-in saw: {}",
        first.run_id,
        agent.turns,
        stream.assistant_events,
        agent.cost_usd,
        w.api.summary()
    );

    // (c) Restart with resume: `--resume SESSION`, same cwd and HOME, the same session goes on.
    let before = w.api.exchanges().len();
    let response = w
        .daemon
        .api()
        .try_restart_req(RestartRequest {
            run_id: first.run_id.clone(),
            reason: "real-CLI test: resume".to_string(),
            resume: true,
        })
        .await
        .unwrap_or_else(|s| panic!("Restart {} failed: {s:?}", first.run_id));
    let second = response.run.clone().expect("RestartResponse without a run");
    assert_eq!(response.old_run_id, first.run_id);
    assert_eq!(second.restart_of, first.run_id);
    assert_eq!(second.attempt, 2);
    assert!(
        second
            .argv
            .windows(2)
            .any(|p| p[0] == "--resume" && p[1] == session),
        "the new argv resumes {session}: {:?} (note: {})",
        second.argv,
        response.note
    );
    assert_eq!(second.cwd, first.cwd, "resume runs in the same cwd");
    assert_eq!(second.cwd, w.work.display().to_string());
    let second = w.wait_succeeded(&second.run_id).await;
    let agent2 = second.agent.clone().expect("agent progress");
    assert_eq!(agent2.resume_session, session, "{agent2:?}");
    assert_eq!(
        agent2.session_id,
        session,
        "Claude Code {} keeps the session id on --resume",
        w.cli.version()
    );
    let resumed = served_ids(&w.api, &session, before);
    assert_eq!(
        resumed.len(),
        2,
        "the resumed run (same prompt) is served a tool_use turn and a final turn; the stand-in \
         saw {}",
        w.api.summary()
    );
    let (stdout2, _) = w.daemon.api().output(&second.run_id).await;
    let stream2 = parse_stream_json(&stdout2);
    assert_eq!(stream2.assistant_messages, resumed);
    assert_eq!(
        agent2.turns as usize,
        resumed.len(),
        "the resumed run counts its own turns: {agent2:?}"
    );
    // The resumed CLI sent the earlier conversation: run (a)'s tool_use and final answer.
    let first_tool_use = exchanges
        .iter()
        .find_map(|e| match &e.reply {
            Reply::ToolUse { tool_use_id, .. } if e.session_id() == Some(session.as_str()) => {
                Some(tool_use_id.clone())
            }
            _ => None,
        })
        .expect("run (a) was served a tool_use");
    let resumed_request = w
        .api
        .exchanges()
        .into_iter()
        .skip(before)
        .find(|e| e.is_turn())
        .expect("a request of the resumed run");
    let history = serde_json::to_string(resumed_request.messages()).expect("messages as JSON");
    assert!(
        history.contains(&first_tool_use) && history.contains(FINAL_TEXT),
        "the resumed request carries the earlier conversation ({first_tool_use}, the final \
         text): {} messages",
        resumed_request.messages().len()
    );
    assert_no_process_of(&second.run_id);
    eprintln!(
        "(c) {} resumed {session} (note: {}): {} turns, {} messages sent back",
        second.run_id,
        response.note,
        agent2.turns,
        resumed_request.messages().len()
    );
    assert!(
        w.daemon.zombies().is_empty(),
        "zombie children of the daemon: {}",
        describe(&w.daemon.zombies())
    );
}

/// A run whose Bash tool is sleeping, seen through /proc.
struct Sleeping {
    run: Run,
    sleep_pid: i32,
    /// Every process that carried the run's id once the sleep was up.
    procs: Vec<Proc>,
    /// Those processes as they were then (`pid (comm) state`), for messages.
    described: String,
}

/// Spawns a run whose Bash tool runs `sleep 300` and waits until the sleep exists; checks that
/// it lives in a session (and process group) of its own, away from the run's leader.
async fn sleeping_run(w: &World) -> Sleeping {
    let run = w.spawn("Wait a while: <<bash: sleep 300>>").await;
    let entry = format!("WF_RUN_ID={}", run.run_id);
    let sleep_pid = wait_for(RUN_TIMEOUT, "the Bash tool's sleep 300", || async {
        let run = w.daemon.api().get(&run.run_id).await;
        assert!(
            !is_terminal(run.status()),
            "{} ended before its Bash tool started: {run:?}\nthe stand-in saw: {}",
            run.run_id,
            w.api.summary()
        );
        pids_with_env(&entry)
            .into_iter()
            .find(|&pid| comm(pid) == "sleep")
    })
    .await;
    let run = w.daemon.api().get(&run.run_id).await;
    assert_eq!(run.status(), RunStatus::Running, "{run:?}");
    let leader = stat(run.pid).expect("the run's leader is alive");
    let sleeper = stat(sleep_pid).expect("the sleep is alive");
    assert_ne!(
        sleeper.session, leader.session,
        "the CLI starts Bash commands in a session of their own (leader {} in session {}, \
         sleep {sleep_pid} in session {})",
        run.pid, leader.session, sleeper.session
    );
    assert_ne!(
        sleeper.pgid, run.pgid,
        "the sleep left the run's process group"
    );
    let pids = pids_with_env(&entry);
    let described = describe(&pids);
    let procs: Vec<Proc> = pids.into_iter().filter_map(Proc::capture).collect();
    assert!(procs.iter().any(|p| p.pid == run.pid));
    let agent = run.agent.clone().expect("agent progress");
    let served = served_ids(&w.api, &agent.session_id, 0);
    assert_eq!(served.len(), 1, "one tool_use turn: {}", w.api.summary());
    assert_eq!(agent.turns, 1, "{agent:?}");
    assert_eq!(agent.current_tool, "Bash", "{agent:?}");
    assert_eq!(agent.phase(), AgentPhase::Active, "{agent:?}");
    Sleeping {
        run,
        sleep_pid,
        procs,
        described,
    }
}

/// Kills the sleeping run (`force`: straight to KILL) and proves that nothing of it is left: no
/// process carries its id, none of those seen exists in any state (the sleep included), the daemon
/// has no zombie child, its cgroup root is empty, and the kill is on the audit trail.
async fn kill_and_prove_nothing_left(w: &World, s: &Sleeping, force: bool) -> KillResponse {
    let run_id = &s.run.run_id;
    let api = w.daemon.api();
    let response = api
        .try_kill(KillRequest {
            run_id: run_id.clone(),
            force,
            reason: "real-CLI test: kill a sleeping Bash tool".to_string(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("Kill {run_id} failed: {s:?}"));
    let cleanup: Vec<String> = response
        .cleanup
        .iter()
        .map(|c| format!("{}={} ({})", c.step, c.ok, c.detail))
        .collect();
    eprintln!(
        "(b) {run_id} force={force}: phase {:?}, signals {:?}, {} ms, cleanup {cleanup:?}; \
         processes were {} (sleep {})",
        response.phase(),
        response.signals_sent,
        response.duration_ms,
        s.described,
        s.sleep_pid
    );
    assert!(response.success, "the kill failed: {response:?}");
    assert_eq!(response.survivors, 0, "{response:?}");
    assert!(response.survivor_pids.is_empty(), "{response:?}");
    let killed = response.run.clone().expect("the run after the kill");
    assert_eq!(killed.status(), RunStatus::Killed, "{killed:?}");
    assert!(!killed.end_reason.is_empty(), "{killed:?}");

    assert_no_process_of(run_id);
    wait_for(TIMEOUT, "every process of the run to be reaped", || async {
        (s.procs.iter().all(|p| !p.exists()) && w.daemon.zombies().is_empty()).then_some(())
    })
    .await;
    if let Some(root) = &w.daemon.cgroup_root {
        assert!(
            !cgroup_populated(root),
            "the daemon's cgroup root is still populated"
        );
    }
    let records = api.audit(run_id).await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "kill" && r.outcome == "ok"),
        "an audit record of the kill: {records:?}"
    );
    assert_eq!(api.get(run_id).await.status(), RunStatus::Killed);
    response
}

/// (b) A run whose Bash tool sleeps in a session of its own: Kill leaves nothing behind, both
/// when the CLI gets its stop signal (it ends its Bash tool itself) and when it gets only KILL
/// (then the Bash tool's session is ended by the daemon alone, through the run's cgroup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_kill_ends_the_bash_tool_in_its_own_session() {
    let Some(w) = World::start("real_cli_kill_ends_the_bash_tool_in_its_own_session").await else {
        return;
    };

    // Graceful: the workflow's stop signals (INT, then TERM) and grace.
    let graceful = sleeping_run(&w).await;
    let response = kill_and_prove_nothing_left(&w, &graceful, false).await;
    assert!(
        matches!(response.phase(), KillPhase::Term | KillPhase::Kill),
        "{response:?}"
    );
    assert_eq!(
        response.signals_sent.first().map(String::as_str),
        Some("SIGINT"),
        "the workflow's first stop signal: {response:?}"
    );

    // Forced: KILL only, so the CLI cannot end its Bash tool; the setsid'd bash and its sleep
    // are left to the daemon.
    let forced = sleeping_run(&w).await;
    let response = kill_and_prove_nothing_left(&w, &forced, true).await;
    assert_eq!(response.phase(), KillPhase::Kill, "{response:?}");
    assert_eq!(response.signals_sent, ["SIGKILL"], "{response:?}");
    let agent = w
        .daemon
        .api()
        .get(&forced.run.run_id)
        .await
        .agent
        .expect("agent progress");
    assert!(
        agent.result_subtype.is_empty(),
        "a CLI killed outright reports no result: {agent:?}"
    );
}

/// The client binary, which the CLI starts as its MCP server.
const WFCTL: &str = env!("CARGO_BIN_EXE_wfctl");

/// The processes whose command line (arguments separated by NUL) holds `needle`, other than this
/// test.
fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// (d) The CLI as an orchestrator: headless, with `wfctl mcp` as its only MCP server and only
/// `mcp__wf__kill_workflow` allowed, told (by the stand-in's tool_use) to kill a runaway run: a
/// TERM-ignoring tree with a setsid'd escapee.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cli_kills_a_runaway_run_through_the_mcp_server() {
    let test = "real_cli_kills_a_runaway_run_through_the_mcp_server";
    let Some(cli) = claude_or_skip(test).await else {
        return;
    };
    eprintln!(
        "{test}: Claude Code {} at {}",
        cli.version_line,
        cli.path.display()
    );
    let api = MessagesApi::start().await;
    let daemon = common::Daemon::start_with(Options {
        grace_ms: 500,
        ..Default::default()
    })
    .await;
    let client = daemon.api();
    let victim = client
        .spawn(&common::fake(&[
            "--ignore-term",
            "--children",
            "2",
            "--escape-setsid",
            "--hang",
        ]))
        .await;
    let victim = client.wait_running(&victim.run_id).await;
    let procs = client.fake_agent_procs(&victim, true, true).await;
    let run_id = victim.run_id.clone();

    let home = daemon.dir.path().join("orchestrator-home");
    let work = daemon.dir.path().join("orchestrator-work");
    std::fs::create_dir(&home).expect("creating HOME");
    std::fs::create_dir(&work).expect("creating the work dir");
    let mcp_config = daemon.dir.path().join("mcp.json");
    let config = serde_json::json!({
        "mcpServers": {
            "wf": {
                "type": "stdio",
                "command": WFCTL,
                "args": ["--socket", daemon.socket.display().to_string(), "mcp"],
                "env": { "WF_LOG": "info" }
            }
        }
    });
    std::fs::write(&mcp_config, config.to_string()).expect("writing the MCP config");
    let prompt = format!("Run {run_id} is stuck. End it: {MCP_KILL_MARKER} {run_id}>>");
    let mut cmd = tokio::process::Command::new(&cli.path);
    cmd.arg("-p")
        .arg(&prompt)
        .args(["--output-format", "stream-json", "--verbose"])
        .arg("--mcp-config")
        .arg(&mcp_config)
        .arg("--strict-mcp-config")
        .args(["--allowedTools", MCP_KILL_TOOL])
        .args(["--max-turns", "4"])
        .current_dir(&work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", api.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test-dummy")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the CLI did not finish within {RUN_TIMEOUT:?}; the stand-in saw: {}",
                api.summary()
            )
        })
        .expect("running the CLI");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stream = parse_stream_json(&stdout);
    assert!(
        out.status.success(),
        "the CLI exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}\nthe stand-in saw: {}",
        out.status,
        api.summary()
    );

    // The CLI loaded the wf server's tools and offered them to the model.
    let exchanges = api.exchanges();
    let first_turn = exchanges
        .iter()
        .find(|e| e.is_turn())
        .unwrap_or_else(|| panic!("no turn was served: {}", api.summary()));
    let offered: Vec<String> = first_turn
        .body
        .as_ref()
        .and_then(|b| b["tools"].as_array())
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        offered.iter().any(|n| n == MCP_KILL_TOOL),
        "the CLI offers {MCP_KILL_TOOL}: {offered:?}\nstderr:\n{stderr}"
    );
    // The stand-in asked for the kill, and the tool_result the CLI sent back is the kill report.
    let tool_use_id = exchanges
        .iter()
        .find_map(|e| match &e.reply {
            Reply::McpToolUse { tool_use_id, .. } => Some(tool_use_id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the stand-in never asked for the kill: {}", api.summary()));
    let tool_result = exchanges
        .iter()
        .flat_map(|e| e.messages().to_vec())
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array().cloned())
        .flatten()
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == tool_use_id.as_str())
        .unwrap_or_else(|| {
            panic!("no tool_result for {tool_use_id} went back to the API\nstdout:\n{stdout}")
        });
    assert_ne!(
        tool_result["is_error"], true,
        "the kill failed: {tool_result}"
    );
    let result_text = content_text(&serde_json::json!({ "content": tool_result["content"] }));
    let report: Value = serde_json::from_str(result_text.trim()).unwrap_or_else(|e| {
        panic!("the tool_result is not the kill report's JSON ({e}): {result_text}")
    });
    assert_eq!(report["run_id"], run_id.as_str(), "{report}");
    assert_eq!(report["success"], true, "{report}");
    assert_eq!(
        report["phase"], "kill",
        "TERM is ignored, so SIGKILL: {report}"
    );
    assert_eq!(report["survivors"], 0, "{report}");
    assert_eq!(report["run"]["status"], "killed", "{report}");
    let result = stream.result.clone().expect("a result event on stdout");
    assert_eq!(result["subtype"], "success", "{result}");
    assert_eq!(result["result"], FINAL_TEXT, "{result}");

    // The victim: KILLED, nothing left; the kill on record as the CLI's user.
    let killed = client.get(&run_id).await;
    assert_eq!(killed.status(), RunStatus::Killed, "{killed:?}");
    assert!(
        killed.end_reason.contains("stand-in's orchestrator"),
        "{killed:?}"
    );
    daemon.assert_run_gone(&run_id, &procs).await;
    assert_no_process_of(&run_id);
    if let Some(root) = &daemon.cgroup_root {
        assert!(
            !cgroup_populated(root),
            "the daemon's cgroup root is still populated"
        );
    }
    let uid = nix::unistd::geteuid().as_raw();
    let records = client.audit(&run_id).await;
    let kill = records
        .iter()
        .find(|r| r.action == "kill" && r.outcome == "ok")
        .unwrap_or_else(|| panic!("no audit record of the kill: {records:#?}"));
    assert_eq!(
        kill.uid,
        Some(uid),
        "the kill is the CLI's user's: {kill:?}"
    );
    assert_ne!(
        kill.pid,
        Some(std::process::id() as i32),
        "the caller was the CLI's MCP server, not the test: {kill:?}"
    );
    // The CLI closed its MCP server on exit.
    let server_args = format!("{}\0mcp", daemon.socket.display());
    wait_for(TIMEOUT, "wfctl mcp to exit with the CLI", || async {
        pids_with_cmdline(&server_args).is_empty().then_some(())
    })
    .await;
    eprintln!(
        "(d) {run_id} killed through {MCP_KILL_TOOL}: phase {}, signals {}, {} ms; audit caller {}; \
         the stand-in saw: {}",
        report["phase"],
        report["signals_sent"],
        report["duration_ms"],
        kill.caller,
        api.summary()
    );
}
