//! Kill: the bounded state machine (stop signals -> grace -> KILL -> verify -> cleanup -> KILLED)
//! ends whole process trees, escalates when TERM is ignored, answers concurrent kills with one
//! outcome, and refuses kills of finished or unknown runs with the right status codes.
mod common;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{KillPhase, KillRequest, KillResponse, Run, RunStatus, SpawnRequest};

/// Checks what every successful kill response must say, and that the kill is on record.
async fn assert_killed(
    api: &Api,
    response: &KillResponse,
    run: &Run,
    phase: KillPhase,
    signals: &[&str],
) {
    assert!(response.success, "kill did not succeed: {response:?}");
    assert_eq!(response.run_id, run.run_id);
    assert_eq!(response.phase(), phase, "phase: {response:?}");
    assert_eq!(response.signals_sent, signals, "signals_sent: {response:?}");
    assert_eq!(response.survivors, 0, "survivors: {response:?}");
    assert!(
        response.survivor_pids.is_empty(),
        "survivor_pids: {response:?}"
    );
    let recorded = response.run.as_ref().expect("KillResponse.run");
    assert_eq!(
        recorded.status(),
        RunStatus::Killed,
        "recorded run: {recorded:?}"
    );
    assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Killed);
    api.assert_audited(&run.run_id, "kill", "ok").await;
}

/// Spawns the fake agent with `args` (and a grace of `grace_ms`, 0 for the daemon's default),
/// waits until it runs, and captures its leader and the children it reports.
async fn spawn_tree(api: &Api, args: &[&str], grace_ms: u64) -> (Run, Vec<Proc>) {
    let run = api
        .spawn_req(SpawnRequest {
            argv: fake(args),
            grace_ms,
            ..Default::default()
        })
        .await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, false).await;
    (run, procs)
}

/// Kills the run gracefully, checks the response as [`assert_killed`] does, and proves that
/// nothing of the run, `procs` included, is left.
async fn kill_leaves_nothing(
    daemon: &Daemon,
    run: &Run,
    procs: &[Proc],
    phase: KillPhase,
    signals: &[&str],
) {
    let api = daemon.api();
    let response = api.kill(&run.run_id).await;
    assert_killed(&api, &response, run, phase, signals).await;
    daemon.assert_run_gone(&run.run_id, procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_kill_ends_leader_and_ten_children_with_term() {
    let daemon = Daemon::start().await;
    let (run, procs) = spawn_tree(&daemon.api(), &["--children", "10", "--hang"], 0).await;
    assert_eq!(procs.len(), 11);

    kill_leaves_nothing(&daemon, &run, &procs, KillPhase::Term, &["SIGTERM"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_kill_ends_shell_with_ten_background_sleeps() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn(&sh(
            "for i in $(seq 10); do sleep 1000 & done; echo started; wait",
        ))
        .await;
    api.wait_line(&run.run_id, "started").await;
    let entry = format!("WF_RUN_ID={}", run.run_id);
    wait_until(TIMEOUT, "the shell and its 10 sleeps run", || {
        pids_with_env(&entry).len() == 11
    })
    .await;
    let procs: Vec<Proc> = pids_with_env(&entry)
        .into_iter()
        .filter_map(Proc::capture)
        .collect();
    assert_eq!(procs.len(), 11);

    kill_leaves_nothing(&daemon, &run, &procs, KillPhase::Term, &["SIGTERM"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_escalates_to_kill_when_every_process_ignores_term() {
    let daemon = Daemon::start().await;
    let (run, procs) = spawn_tree(
        &daemon.api(),
        &["--ignore-term", "--children", "10", "--hang"],
        500,
    )
    .await;
    assert_eq!(run.grace_ms, 500);
    assert_eq!(procs.len(), 11);

    let signals = ["SIGTERM", "SIGKILL"];
    kill_leaves_nothing(&daemon, &run, &procs, KillPhase::Kill, &signals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_escalates_when_leader_dies_on_term_but_children_ignore_it() {
    let daemon = Daemon::start().await;
    let args = ["--die-on-term", "--children", "3", "--hang"];
    let (run, procs) = spawn_tree(&daemon.api(), &args, 500).await;

    let signals = ["SIGTERM", "SIGKILL"];
    kill_leaves_nothing(&daemon, &run, &procs, KillPhase::Kill, &signals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_kill_sends_only_kill() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let (run, procs) = spawn_tree(&api, &["--children", "2", "--hang"], 0).await;

    let response = api
        .try_kill(KillRequest {
            run_id: run.run_id.clone(),
            force: true,
            reason: "integration test: force".into(),
            ..Default::default()
        })
        .await
        .expect("forced Kill");
    assert_killed(&api, &response, &run, KillPhase::Kill, &["SIGKILL"]).await;
    daemon.assert_run_gone(&run.run_id, &procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_finished_run_is_failed_precondition() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api.spawn(&fake(&["--exit", "0"])).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");

    let result = api
        .try_kill(KillRequest {
            run_id: run.run_id.clone(),
            ..Default::default()
        })
        .await;
    assert_code(result, Code::FailedPrecondition, "kill of a finished run");
    assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Succeeded);
    api.assert_audited(&run.run_id, "kill", "refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_of_unknown_run_is_not_found() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let result = api
        .try_kill(KillRequest {
            run_id: "run_000000000000".into(),
            ..Default::default()
        })
        .await;
    assert_code(result, Code::NotFound, "kill of an unknown run");
}

/// Two kills of one run, sent together while the run sits in its grace period, get one outcome,
/// and the run receives its stop signal once. The shell prints a line for every TERM it gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_kills_of_one_run_share_one_outcome() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn_req(SpawnRequest {
            argv: sh("trap 'echo got-term' TERM; echo ready; while :; do sleep 0.05; done"),
            grace_ms: 1500,
            ..Default::default()
        })
        .await;
    api.wait_line(&run.run_id, "ready").await;

    let kill = || {
        api.try_kill(KillRequest {
            run_id: run.run_id.clone(),
            reason: "integration test: concurrent".into(),
            ..Default::default()
        })
    };
    let (first, second) = tokio::join!(kill(), kill());
    let first = first.expect("first Kill");
    let second = second.expect("second Kill");
    assert_killed(&api, &first, &run, KillPhase::Kill, &["SIGTERM", "SIGKILL"]).await;
    assert_eq!(first.phase, second.phase, "{first:?}\n{second:?}");
    assert_eq!(first.signals_sent, second.signals_sent);
    assert_eq!(first.success, second.success);
    assert_eq!(first.survivors, second.survivors);

    let terms = api
        .stdout(&run.run_id)
        .await
        .lines()
        .filter(|l| *l == "got-term")
        .count();
    assert_eq!(
        terms, 1,
        "the shell saw TERM {terms} times (when each_stop_signal_reaches_each_process_once \
         fails too, one kill alone delivers twice)"
    );
    daemon.assert_run_gone(&run.run_id, &[]).await;
}

/// Each stop signal reaches each process of the run once, whatever the containment: an agent
/// that treats a second INT as "quit now" must not get one it was never sent. Six runs, each a
/// shell that records every INT and TERM it receives, are killed together with stop signals INT
/// then TERM. (Two deliveries close together can merge into one, so a single run could hide a
/// double delivery; six make that unlikely.)
async fn each_stop_signal_reaches_each_process_once(containment: Containment) {
    let Some(daemon) = Daemon::try_start_in(containment).await else {
        return;
    };
    let api = daemon.api();
    let script = "trap 'echo got-INT' INT; trap 'echo got-TERM' TERM; echo ready; \
                  while :; do sleep 0.05; done";
    let mut runs = Vec::new();
    for _ in 0..6 {
        let run = api
            .spawn_req(SpawnRequest {
                argv: sh(script),
                stop_signals: vec!["INT".into(), "TERM".into()],
                grace_ms: 800,
                ..Default::default()
            })
            .await;
        api.wait_line(&run.run_id, "ready").await;
        runs.push(run);
    }
    let kills = runs.iter().map(|run| {
        let api = api.clone();
        let run_id = run.run_id.clone();
        async move { api.kill(&run_id).await }
    });
    let responses = futures::future::join_all(kills).await;

    let mut counts = Vec::new();
    for (run, response) in runs.iter().zip(&responses) {
        assert_killed(
            &api,
            response,
            run,
            KillPhase::Kill,
            &["SIGINT", "SIGTERM", "SIGKILL"],
        )
        .await;
        let out = api.stdout(&run.run_id).await;
        let count = |line: &str| out.lines().filter(|l| *l == line).count();
        counts.push((count("got-INT"), count("got-TERM")));
        daemon.assert_run_gone(&run.run_id, &[]).await;
    }
    assert!(
        counts.iter().all(|c| *c == (1, 1)),
        "(INTs, TERMs) each shell received: {counts:?} (containment {})",
        runs[0].containment
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stop_signal_reaches_each_process_once_with_cgroups() {
    each_stop_signal_reaches_each_process_once(Containment::Cgroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stop_signal_reaches_each_process_once_without_cgroups() {
    each_stop_signal_reaches_each_process_once(Containment::ProcessGroup).await;
}

/// A kill sent right after Spawn returns, while the leader may still be starting its children,
/// still ends everything the run ever started.
async fn kill_right_after_spawn_leaves_nothing(containment: Containment) {
    let Some(daemon) = Daemon::try_start_in(containment).await else {
        return;
    };
    let api = daemon.api();
    for args in [
        &["--children", "5", "--hang"][..],
        &[
            "--ignore-term",
            "--children",
            "5",
            "--escape-setsid",
            "--hang",
        ][..],
    ] {
        let run = api
            .spawn_req(SpawnRequest {
                argv: fake(args),
                grace_ms: 300,
                ..Default::default()
            })
            .await;
        let response = api.kill(&run.run_id).await;
        assert!(response.success, "{response:?}");
        assert_eq!(response.survivors, 0, "{response:?}");
        assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Killed);
        daemon.assert_run_gone(&run.run_id, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_spawn_leaves_nothing_with_cgroups() {
    kill_right_after_spawn_leaves_nothing(Containment::Cgroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_spawn_leaves_nothing_without_cgroups() {
    kill_right_after_spawn_leaves_nothing(Containment::ProcessGroup).await;
}
