//! Purge: finished runs and their log folders are removed, one by id or all of one terminal
//! status past an age; a live run only with force, which kills it first; there is no
//! purge-everything. The audit records of purged runs are kept.
mod common;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{PurgeRequest, Run, RunStatus};

/// Waits until the wall clock has passed the run's end, so that "ended before now" holds.
async fn wait_past_end(run: &Run) {
    wait_until(TIMEOUT, "the clock passes the run's end", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        now > run.ended_at
    })
    .await;
}

async fn assert_purged(daemon: &Daemon, run_id: &str) {
    assert_code(
        daemon.api().try_get(run_id).await,
        Code::NotFound,
        &format!("Get {run_id} after its purge"),
    );
    assert!(
        !daemon.run_dir(run_id).exists(),
        "the log folder of {run_id} is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_id_and_by_status_removes_runs_and_logs_but_keeps_the_audit() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let one = api.spawn(&fake(&["--marker", "one"])).await;
    let two = api.spawn(&fake(&["--marker", "two"])).await;
    let failed = api
        .spawn(&fake(&["--marker", "three", "--exit", "4"]))
        .await;
    let one = api.wait_terminal(&one.run_id, TIMEOUT).await;
    let two = api.wait_terminal(&two.run_id, TIMEOUT).await;
    let failed = api.wait_terminal(&failed.run_id, TIMEOUT).await;
    assert_eq!(one.status(), RunStatus::Succeeded, "{one:?}");
    assert_eq!(two.status(), RunStatus::Succeeded, "{two:?}");
    assert_eq!(failed.status(), RunStatus::Failed, "{failed:?}");
    for run in [&one, &two, &failed] {
        assert!(daemon.run_dir(&run.run_id).is_dir(), "no log folder");
    }

    // By id.
    let response = api
        .try_purge(PurgeRequest {
            run_id: one.run_id.clone(),
            reason: "by id".into(),
            ..Default::default()
        })
        .await
        .expect("Purge by id");
    assert_eq!(response.purged, 1, "{response:?}");
    assert_eq!(response.run_ids, vec![one.run_id.clone()], "{response:?}");
    assert_purged(&daemon, &one.run_id).await;
    assert_code(
        api.try_purge(PurgeRequest {
            run_id: one.run_id.clone(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "Purge of a purged run",
    );

    // By status, with an age nothing has reached: nothing goes.
    wait_past_end(&two).await;
    let response = api
        .try_purge(PurgeRequest {
            status: RunStatus::Succeeded as i32,
            older_than_ms: 3_600_000,
            ..Default::default()
        })
        .await
        .expect("Purge by status, one hour old");
    assert_eq!(response.purged, 0, "{response:?}");
    assert!(response.run_ids.is_empty(), "{response:?}");
    assert_eq!(api.get(&two.run_id).await.status(), RunStatus::Succeeded);
    assert!(daemon.run_dir(&two.run_id).is_dir());

    // By status, any age: every SUCCEEDED run goes, and nothing else.
    let response = api
        .try_purge(PurgeRequest {
            status: RunStatus::Succeeded as i32,
            older_than_ms: 0,
            ..Default::default()
        })
        .await
        .expect("Purge by status, any age");
    assert_eq!(response.purged, 1, "{response:?}");
    assert_eq!(response.run_ids, vec![two.run_id.clone()], "{response:?}");
    assert_purged(&daemon, &two.run_id).await;
    assert_eq!(api.get(&failed.run_id).await.status(), RunStatus::Failed);
    assert!(daemon.run_dir(&failed.run_id).is_dir());

    // The audit trail of purged runs is kept.
    for run in [&one, &two] {
        let records = api.audit(&run.run_id).await;
        assert!(
            records
                .iter()
                .any(|r| r.action == "spawn" && r.outcome == "ok"),
            "the spawn record of purged {} is gone: {records:?}",
            run.run_id
        );
    }
    let records = api.audit(&one.run_id).await;
    let purges: Vec<_> = records.iter().filter(|r| r.action == "purge").collect();
    assert_eq!(
        purges
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        vec!["refused", "ok"],
        "purge records of {} (newest first): {records:?}",
        one.run_id
    );
    let all = api.audit("").await;
    let by_status: Vec<_> = all
        .iter()
        .filter(|r| r.action == "purge" && r.run_id.is_empty())
        .collect();
    assert_eq!(by_status.len(), 2, "purge-by-status records: {all:?}");
    assert!(
        by_status[0].message.contains(&two.run_id),
        "the purge record does not name what it purged: {:?}",
        by_status[0]
    );

    for run in [&one, &two, &failed] {
        wait_no_env(&run.run_id).await;
    }
    daemon.assert_reaped(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_of_a_live_run_is_refused_unless_forced() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api
        .spawn(&fake(&["--children", "2", "--escape-setsid", "--hang"]))
        .await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, true).await;

    let refused = api
        .try_purge(PurgeRequest {
            run_id: run.run_id.clone(),
            reason: "not without force".into(),
            ..Default::default()
        })
        .await;
    assert_code(refused, Code::FailedPrecondition, "Purge of a live run");
    assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Running);
    assert!(
        procs.iter().all(Proc::is_live),
        "a refused purge hurt the run"
    );
    assert!(daemon.run_dir(&run.run_id).is_dir());

    let response = api
        .try_purge(PurgeRequest {
            run_id: run.run_id.clone(),
            force: true,
            reason: "forced".into(),
            ..Default::default()
        })
        .await
        .expect("forced Purge of a live run");
    assert_eq!(response.purged, 1, "{response:?}");
    assert_eq!(response.run_ids, vec![run.run_id.clone()], "{response:?}");
    daemon.assert_run_gone(&run.run_id, &procs).await;
    assert_purged(&daemon, &run.run_id).await;
    if let Some(root) = &daemon.cgroup_root {
        assert!(
            !root.join(&run.run_id).exists(),
            "the cgroup of the purged run is still there"
        );
    }

    let records = api.audit(&run.run_id).await;
    let actions: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert!(
        actions.contains(&("spawn", "ok")),
        "audit of {}: {actions:?}",
        run.run_id
    );
    let purges: Vec<&str> = records
        .iter()
        .filter(|r| r.action == "purge")
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(
        purges,
        vec!["ok", "refused"],
        "audit of {}: {records:?}",
        run.run_id
    );
    let health = api.health().await;
    assert_eq!(health.live_runs, 0, "{health:?}");
    assert_eq!(health.total_runs, 0, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_without_a_finished_status_or_an_id_is_invalid() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api.spawn(&fake(&["--hang"])).await;
    let run = api.wait_running(&run.run_id).await;

    let none = api.try_purge(PurgeRequest::default()).await;
    match &none {
        Err(s) => assert!(
            s.code() == Code::InvalidArgument && s.message().contains("status"),
            "Purge with neither id nor status: {s:?}"
        ),
        Ok(r) => panic!("Purge with neither id nor status purged {r:?}"),
    }
    for live in [RunStatus::Running, RunStatus::Queued, RunStatus::Stopping] {
        let result = api
            .try_purge(PurgeRequest {
                status: live as i32,
                ..Default::default()
            })
            .await;
        assert_code(result, Code::InvalidArgument, &format!("Purge of {live:?}"));
    }
    let result = api
        .try_purge(PurgeRequest {
            status: 99,
            ..Default::default()
        })
        .await;
    assert_code(result, Code::InvalidArgument, "Purge of status 99");
    assert_code(
        api.try_purge(PurgeRequest {
            run_id: "run_000000000000".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "Purge of an unknown run",
    );
    // Nothing was touched, and every refusal is on the record.
    assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Running);
    let refused = api
        .audit("")
        .await
        .into_iter()
        .filter(|r| r.action == "purge" && r.outcome == "refused")
        .count();
    assert_eq!(refused, 6, "refused purge records");

    let response = api.kill(&run.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&run.run_id, &[]).await;
}
