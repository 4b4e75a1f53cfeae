//! Restart and ForceComplete: a restart ends the old run and starts the same argv as a new run
//! linked to it (`restart_of`, `attempt`); ForceComplete force-kills a live run first, leaves
//! nothing of it, and records the operator's outcome.
mod common;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{ForceCompleteRequest, Outcome, RunStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_live_run_links_runs_and_starts_same_argv() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let argv = fake(&["--marker", "attempt", "--children", "2", "--hang"]);
    let old = api.spawn(&argv).await;
    let old = api.wait_running(&old.run_id).await;
    let old_procs = api.fake_agent_procs(&old, true, false).await;

    let response = api.try_restart(&old.run_id).await.expect("Restart");
    assert_eq!(response.old_run_id, old.run_id);
    let new = response.run.expect("RestartResponse.run");
    assert_ne!(new.run_id, old.run_id);
    assert_eq!(new.restart_of, old.run_id, "{new:?}");
    assert_eq!(new.attempt, old.attempt + 1, "{new:?}");
    assert_eq!(new.argv, argv);
    api.assert_audited(&old.run_id, "restart", "ok").await;

    // The old run was ended through the kill state machine.
    let old_after = api.wait_terminal(&old.run_id, TIMEOUT).await;
    assert_eq!(old_after.status(), RunStatus::Killed, "{old_after:?}");
    daemon.assert_run_gone(&old.run_id, &old_procs).await;

    // The new run really runs the same program.
    let new = api.wait_running(&new.run_id).await;
    api.wait_line(&new.run_id, "attempt").await;
    let new_procs = api.fake_agent_procs(&new, true, false).await;
    let response = api.kill(&new.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&new.run_id, &new_procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_finished_run_starts_next_attempt() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let argv = sh("echo once; exit 3");
    let first = api.spawn(&argv).await;
    let first = api.wait_terminal(&first.run_id, TIMEOUT).await;
    assert_eq!(first.status(), RunStatus::Failed, "{first:?}");

    // Each attempt is restarted only once it has ended on its own (restarting a live run would
    // kill it).
    let mut previous = first.clone();
    for n in 1..=2 {
        let response = api.try_restart(&previous.run_id).await.expect("Restart");
        assert_eq!(response.old_run_id, previous.run_id);
        let run = response.run.expect("RestartResponse.run");
        assert_eq!(run.restart_of, previous.run_id, "{run:?}");
        assert_eq!(run.attempt, first.attempt + n, "{run:?}");
        let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
        assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
        assert_eq!(run.exit_code, Some(3), "{run:?}");
        assert_eq!(run.argv, argv);
        assert_eq!(api.stdout(&run.run_id).await, "once\n");
        previous = run;
    }
    assert_eq!(
        api.get(&first.run_id).await.status(),
        RunStatus::Failed,
        "the old run keeps its status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_restarted_once() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let first = api.spawn(&sh("exit 3")).await;
    let first = api.wait_terminal(&first.run_id, TIMEOUT).await;
    let next = api.try_restart(&first.run_id).await.expect("Restart");
    let next = next.run.expect("RestartResponse.run");

    // A retried Restart of the same run starts nothing and points at the run that took over.
    let again = api.try_restart(&first.run_id).await;
    let status = again.expect_err("a second Restart of the same run");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(&next.run_id),
        "the refusal does not name the successor {}: {status:?}",
        next.run_id
    );
    assert_eq!(api.list().await.len(), 2, "{:#?}", api.list().await);
    api.assert_audited(&first.run_id, "restart", "refused")
        .await;

    // The successor itself can be restarted: attempt 3.
    api.wait_terminal(&next.run_id, TIMEOUT).await;
    let third = api
        .try_restart(&next.run_id)
        .await
        .expect("Restart of attempt 2");
    let third = third.run.expect("RestartResponse.run");
    assert_eq!(third.attempt, first.attempt + 2, "{third:?}");
    assert_eq!(third.restart_of, next.run_id, "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_restarts_of_a_live_run_start_one_successor() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let old = api.spawn(&fake(&["--children", "2", "--hang"])).await;
    let old = api.wait_running(&old.run_id).await;
    let old_procs = api.fake_agent_procs(&old, true, false).await;

    let calls: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            let id = old.run_id.clone();
            tokio::spawn(async move { api.try_restart(&id).await })
        })
        .collect();
    let mut started = Vec::new();
    for call in calls {
        match call.await.expect("a restart task") {
            Ok(r) => started.push(r.run.expect("RestartResponse.run")),
            Err(st) => assert_eq!(st.code(), Code::FailedPrecondition, "{st:?}"),
        }
    }
    assert_eq!(started.len(), 1, "successors started: {started:#?}");
    daemon.assert_run_gone(&old.run_id, &old_procs).await;
    let runs = api.list().await;
    assert_eq!(runs.len(), 2, "{runs:#?}");

    let next = api.wait_running(&started[0].run_id).await;
    let next_procs = api.fake_agent_procs(&next, true, false).await;
    let response = api.kill(&next.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&next.run_id, &next_procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_unknown_run_is_not_found() {
    let daemon = Daemon::start().await;
    assert_code(
        daemon.api().try_restart("run_000000000000").await,
        Code::NotFound,
        "restart of an unknown run",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_complete_kills_live_run_first_and_records_outcome() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    for (outcome, status) in [
        (Outcome::Failed, RunStatus::Failed),
        (Outcome::Succeeded, RunStatus::Succeeded),
    ] {
        // TERM is ignored everywhere: "force" must not wait for a grace.
        let run = api
            .spawn(&fake(&["--ignore-term", "--children", "3", "--hang"]))
            .await;
        let run = api.wait_running(&run.run_id).await;
        let procs = api.fake_agent_procs(&run, true, false).await;

        let reason = format!("operator says {outcome:?}");
        let done = api
            .try_force_complete(ForceCompleteRequest {
                run_id: run.run_id.clone(),
                outcome: outcome.into(),
                reason: reason.clone(),
            })
            .await
            .expect("ForceComplete");
        assert_eq!(done.run_id, run.run_id);
        assert_eq!(done.status(), status, "{done:?}");
        assert!(done.end_reason.contains(&reason), "end_reason: {done:?}");
        daemon.assert_run_gone(&run.run_id, &procs).await;
        assert_eq!(api.get(&run.run_id).await.status(), status);
        api.assert_audited(&run.run_id, "force_complete", "ok")
            .await;
    }
}

/// Terminal states are final: an operator cannot overwrite how a run ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_complete_of_finished_run_is_failed_precondition() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api.spawn(&sh("exit 4")).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed);
    let result = api
        .try_force_complete(ForceCompleteRequest {
            run_id: run.run_id.clone(),
            outcome: Outcome::Succeeded.into(),
            reason: "checked by hand".into(),
        })
        .await;
    assert_code(
        result,
        Code::FailedPrecondition,
        "force-complete of a finished run",
    );
    let after = api.get(&run.run_id).await;
    assert_eq!(after.status(), RunStatus::Failed, "{after:?}");
    assert_eq!(after.exit_code, Some(4), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_complete_of_unknown_run_is_not_found() {
    let daemon = Daemon::start().await;
    let result = daemon
        .api()
        .try_force_complete(ForceCompleteRequest {
            run_id: "run_000000000000".into(),
            outcome: Outcome::Failed.into(),
            reason: "test".into(),
        })
        .await;
    assert_code(result, Code::NotFound, "force-complete of an unknown run");
}
