//! Stuck rules (DESIGN.md invariant 4): a workflow run that gets no first turn within
//! `init_timeout`, or goes quiet (no stdout event, no heartbeat) for `idle_timeout` once past
//! initialization, is acted on by its rule's action: `kill` ends it TIMED_OUT with the rule named,
//! `restart` also starts a new linked run that resumes the session, `alert` only reports it.
//! Heartbeats on fd 3 keep a quiet run alive. The agents are shell scripts that replay parts of
//! the fixture transcripts and then go quiet; every test ends by proving through /proc that
//! nothing of its runs is left.
mod common;
mod workflow_support;

use wf_supervisor::proto::{AgentPhase, Health, RunStatus};

use common::{Daemon, Options, TIMEOUT};
use workflow_support::*;

async fn daemon_with(workflows: &str) -> Daemon {
    Daemon::start_with(Options {
        extra_toml: workflows.to_string(),
        ..Default::default()
    })
    .await
}

fn q(path: std::path::PathBuf) -> String {
    shq(path.display().to_string())
}

/// Only the `init` event of stuck_init.jsonl, then nothing for ten minutes: `init_timeout` (2 s,
/// action kill) ends the run TIMED_OUT, naming the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_timeout_kills_a_run_that_never_takes_a_turn() {
    let scripts = Scripts::new();
    let program = scripts.agent(
        "agent",
        &format!(
            "head -n 1 {}\nexec sleep 600",
            q(fixture("stuck_init.jsonl"))
        ),
    );
    let daemon = daemon_with(&workflow_toml(
        "stuck",
        &program,
        "init_timeout = \"2s\"\non_init_timeout = \"kill\"\nidle_timeout = \"off\"",
    ))
    .await;
    let api = daemon.api();
    let session = init_session("stuck_init.jsonl");

    let run = spawn_workflow(&api, "stuck", "build it", &[]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::TimedOut, "{run:?}");
    for text in [&run.error, &run.end_reason] {
        assert!(
            text.contains("init_timeout") && text.contains("no first turn"),
            "the reason names the rule: {text:?}"
        );
    }
    let a = agent(&run);
    assert_eq!((a.turns, a.session_id.as_str()), (0, session.as_str()));
    assert_eq!(a.health(), Health::Stuck, "{a:?}");
    assert!(a.health_reason.contains("init_timeout"), "{a:?}");
    assert!(
        a.health_reason.contains("issue-tracker"),
        "the reason names the MCP server init reported pending: {:?}",
        a.health_reason
    );
    let record = wait_audit(&api, &run.run_id, "stuck_kill").await;
    assert!(record.caller.contains("daemon"), "{record:?}");
    assert!(record.message.contains("init_timeout"), "{record:?}");
    assert!(
        restarts_of(&api, &run.run_id).await.is_empty(),
        "action kill starts nothing new"
    );
    assert_all_gone(&daemon, &[&run.run_id]).await;
    assert_phase("stuck run", agent(&run), AgentPhase::Initializing);
}

/// An agent that never prints a line nor writes a heartbeat: the init_timeout timer is armed at
/// start, not by the first event, so the silent stuck start is still ended TIMED_OUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_timeout_kills_an_agent_that_never_prints_anything() {
    let scripts = Scripts::new();
    let program = scripts.agent("agent", "exec sleep 600");
    let daemon = daemon_with(&workflow_toml(
        "silent",
        &program,
        "init_timeout = \"2s\"\non_init_timeout = \"kill\"\nidle_timeout = \"off\"",
    ))
    .await;
    let api = daemon.api();

    let run = spawn_workflow(&api, "silent", "build it", &[]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::TimedOut, "{run:?}");
    assert!(
        run.end_reason.contains("init_timeout"),
        "the reason names the rule: {:?}",
        run.end_reason
    );
    assert_eq!(agent(&run).turns, 0, "{run:?}");
    let record = wait_audit(&api, &run.run_id, "stuck_kill").await;
    assert!(record.message.contains("init_timeout"), "{record:?}");
    assert_all_gone(&daemon, &[&run.run_id]).await;
}

/// The same stuck start with action `restart`: the run ends TIMED_OUT and a new run, linked to
/// it (restart_of, attempt 2), starts with `--resume <the session id from init>`; this one
/// replays success.jsonl and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_timeout_restart_resumes_the_session_in_a_linked_run() {
    let scripts = Scripts::new();
    let program = scripts.agent(
        "agent",
        &format!(
            "case \" $* \" in\n  *' --resume '*) exec cat {} ;;\nesac\n\
             head -n 1 {}\nexec sleep 600",
            q(fixture("success.jsonl")),
            q(fixture("stuck_init.jsonl"))
        ),
    );
    let daemon = daemon_with(&workflow_toml(
        "stuck",
        &program,
        "init_timeout = \"2s\"\non_init_timeout = \"restart\"\nidle_timeout = \"off\"",
    ))
    .await;
    let api = daemon.api();
    let session = init_session("stuck_init.jsonl");

    let old = spawn_workflow(&api, "stuck", "build it", &[]).await;
    assert_eq!(
        scripts.wait_args(&old.run_id).await,
        claude_prefix("build it")
    );
    let old = api.wait_terminal(&old.run_id, TIMEOUT).await;
    assert_eq!(old.status(), RunStatus::TimedOut, "{old:?}");
    assert!(old.error.contains("init_timeout"), "{:?}", old.error);
    assert_eq!(agent(&old).session_id, session);

    let new = wait_restart_of(&api, &old.run_id).await;
    assert_eq!(new.attempt, 2, "{new:?}");
    assert_eq!(new.workflow, "stuck");
    let mut want = claude_prefix("build it");
    want.extend(["--resume".to_string(), session.clone()]);
    assert_eq!(scripts.wait_args(&new.run_id).await, want);
    let new = api.wait_terminal(&new.run_id, TIMEOUT).await;
    assert_eq!(new.status(), RunStatus::Succeeded, "{new:?}");
    assert_eq!(agent(&new).resume_session, session);
    assert_progress(
        "restarted run",
        agent(&new),
        &facts(&fixture_bytes("success.jsonl")),
    );

    wait_audit(&api, &old.run_id, "stuck_restart").await;
    let by_policy = wait_audit(&api, &old.run_id, "restart_by_policy").await;
    assert!(
        by_policy.message.contains(&new.run_id) && by_policy.message.contains(&session),
        "{by_policy:?}"
    );
    assert!(
        restarts_of(&api, &new.run_id).await.is_empty(),
        "the restarted run succeeded; nothing restarts it"
    );
    assert_all_gone(&daemon, &[&old.run_id, &new.run_id]).await;
    assert_phase("stuck run", agent(&old), AgentPhase::Initializing);
    assert_phase("restarted run", agent(&new), AgentPhase::Finishing);
}

/// The first four events of success.jsonl (init and two turns), then quiet: with `init_timeout`
/// long, the run is past initialization and `idle_timeout` (2 s) ends it TIMED_OUT, naming the
/// rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_kills_a_run_that_goes_quiet_after_two_turns() {
    let scripts = Scripts::new();
    let program = scripts.agent(
        "agent",
        &format!("head -n 4 {}\nexec sleep 600", q(fixture("success.jsonl"))),
    );
    let daemon = daemon_with(&workflow_toml(
        "quiet",
        &program,
        "init_timeout = \"10m\"\nidle_timeout = \"2s\"\non_idle_timeout = \"kill\"",
    ))
    .await;
    let api = daemon.api();

    let run = spawn_workflow(&api, "quiet", "build it", &[]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::TimedOut, "{run:?}");
    for text in [&run.error, &run.end_reason] {
        assert!(
            text.contains("idle_timeout") && !text.contains("init_timeout"),
            "the reason names the idle rule: {text:?}"
        );
    }
    let a = agent(&run);
    assert_eq!(a.turns, 2, "{a:?}");
    assert_eq!(a.health(), Health::Stuck, "{a:?}");
    assert_eq!(run.heartbeats, 0);
    wait_audit(&api, &run.run_id, "stuck_kill").await;
    assert_all_gone(&daemon, &[&run.run_id]).await;
    assert_phase("quiet run", agent(&run), AgentPhase::Active);
}

/// The same quiet stretch, but the agent writes a heartbeat on fd 3 every 300 ms for about six
/// seconds (twice `idle_timeout`, 3 s here) before it finishes its transcript: the run is not
/// stuck and SUCCEEDS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_quiet_run_alive() {
    let scripts = Scripts::new();
    let success = q(fixture("success.jsonl"));
    let program = scripts.agent(
        "agent",
        &format!(
            "head -n 4 {success}\n\
             i=0\n\
             while [ $i -lt 20 ]; do\n\
               echo '{{\"message\":\"still working\",\"progress\":'$i'}}' >&3\n\
               sleep 0.3\n\
               i=$((i + 1))\n\
             done\n\
             tail -n +5 {success}\n\
             exit 0"
        ),
    );
    let daemon = daemon_with(&workflow_toml(
        "quiet",
        &program,
        "init_timeout = \"10m\"\nidle_timeout = \"3s\"\non_idle_timeout = \"kill\"",
    ))
    .await;
    let api = daemon.api();

    let run = spawn_workflow(&api, "quiet", "build it", &[]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert!(run.end_reason.is_empty() && run.error.is_empty(), "{run:?}");
    assert!(run.heartbeats > 0, "{run:?}");
    assert!(run.last_heartbeat_at > 0, "{run:?}");
    let a = agent(&run);
    assert_ne!(a.health(), Health::Stuck, "{a:?}");
    assert_eq!(a.heartbeat_message, "still working");
    assert_progress("heartbeat run", a, &facts(&fixture_bytes("success.jsonl")));
    let actions: Vec<String> = audit(&api, &run.run_id)
        .await
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert!(
        !actions.iter().any(|a| a.starts_with("stuck")),
        "no stuck rule acted: {actions:?}"
    );
    assert_all_gone(&daemon, &[&run.run_id]).await;
    assert_phase("heartbeat run", agent(&run), AgentPhase::Finishing);
}

/// Action `alert`: the rule fires, the run is reported (Watch event `stuck_alert`, audit record
/// `stuck_alert`, health STUCK) but left alone; it finishes on its own and SUCCEEDS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_reports_a_stuck_run_and_leaves_it_alone() {
    let scripts = Scripts::new();
    let success = q(fixture("success.jsonl"));
    let d = scripts.q();
    let program = scripts.agent(
        "agent",
        &format!(
            "head -n 1 {success}\n\
             while [ ! -e {d}/go ]; do sleep 0.05; done\n\
             tail -n +2 {success}\n\
             exit 0"
        ),
    );
    let daemon = daemon_with(&workflow_toml(
        "watched",
        &program,
        "init_timeout = \"1s\"\non_init_timeout = \"alert\"\nidle_timeout = \"off\"",
    ))
    .await;
    let api = daemon.api();
    let events = Events::watch_all(&api).await;

    let run = spawn_workflow(&api, "watched", "build it", &[]).await;
    let alert = events.wait_kind(&run.run_id, "stuck_alert").await;
    assert!(alert.message.contains("init_timeout"), "{alert:?}");
    let record = wait_audit(&api, &run.run_id, "stuck_alert").await;
    assert!(record.message.contains("init_timeout"), "{record:?}");
    let live = api.get(&run.run_id).await;
    assert_eq!(live.status(), RunStatus::Running, "left alone: {live:?}");
    assert_eq!(agent(&live).health(), Health::Stuck, "{live:?}");
    assert!(agent(&live).health_reason.contains("init_timeout"));
    // It is an alert of the one model: in GetHealth while it fires, with its key and labels.
    let key = format!("stuck:{}:init_timeout", run.run_id);
    let health = common::wait_for(TIMEOUT, "the stuck alert in GetHealth", || async {
        let h = api.health().await;
        h.alerts.iter().any(|a| a.dedup_key == key).then_some(h)
    })
    .await;
    let a = health
        .alerts
        .iter()
        .find(|a| a.dedup_key == key)
        .expect("alert");
    assert_eq!(a.kind, "stuck_run", "{a:?}");
    assert_eq!(a.labels.get("run_id"), Some(&run.run_id), "{a:?}");
    assert_eq!(
        a.labels.get("workflow").map(String::as_str),
        Some("watched")
    );

    scripts.touch("go");
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert!(run.end_reason.is_empty(), "{run:?}");
    // The run came back to life: the alert resolved itself.
    common::wait_for(TIMEOUT, "the stuck alert to resolve", || async {
        let q = api
            .client
            .clone()
            .get_queue_health(wf_supervisor::proto::GetQueueHealthRequest {})
            .await
            .expect("GetQueueHealth")
            .into_inner();
        q.alerts
            .iter()
            .any(|a| a.dedup_key == key && a.resolved_at > 0)
            .then_some(())
    })
    .await;
    assert!(!api.health().await.alerts.iter().any(|a| a.dedup_key == key));
    assert_progress(
        "alerted run",
        agent(&run),
        &facts(&fixture_bytes("success.jsonl")),
    );
    let alerts = events
        .of(&run.run_id)
        .into_iter()
        .filter(|e| e.kind == "stuck_alert")
        .count();
    assert_eq!(alerts, 1, "one alert per rule and run");
    assert!(
        events.of(&run.run_id).iter().all(|e| e.kind != "stuck"),
        "no stuck action"
    );
    assert!(restarts_of(&api, &run.run_id).await.is_empty());
    assert_all_gone(&daemon, &[&run.run_id]).await;
    assert_phase("alerted run", agent(&live), AgentPhase::Initializing);
    assert_phase("alerted run", agent(&run), AgentPhase::Finishing);
}
