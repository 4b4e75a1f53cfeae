//! Durability (invariant 5, "nothing is lost"): what one daemon recorded is what the next one on
//! the same state dir reports. Runs come back with the same status, exit code and times, their
//! logs with the same output, and their audit records unchanged, whether the daemon was stopped
//! cleanly (SIGTERM) or crashed (SIGKILL) right after it answered.
mod common;

use std::collections::BTreeMap;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{
    AuditRecord, KillPhase, ListAuditRequest, ListRequest, PurgeRequest, Run, RunStatus,
};

/// Everything a client can read about one run.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    run: Run,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    audit: Vec<AuditRecord>,
}

async fn look(api: &Api, run_id: &str) -> Seen {
    let (stdout, stderr) = api.logs(run_id, 1 << 20).await;
    Seen {
        run: api.get(run_id).await,
        stdout,
        stderr,
        audit: api.audit(run_id).await,
    }
}

fn by_id(records: &[AuditRecord]) -> BTreeMap<i64, AuditRecord> {
    records.iter().map(|r| (r.id, r.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_logs_and_audit_survive_a_clean_restart() {
    let mut site = Site::new(Options {
        grace_ms: 2000,
        ..Default::default()
    })
    .expect("a site");
    let api = site.start().await;

    let ok = api
        .spawn(&fake(&["--marker", "ok-out", "--exit", "0"]))
        .await;
    let failed = api
        .spawn(&sh("echo failed-out; echo failed-err >&2; exit 7"))
        .await;
    let killed = api
        .spawn(&fake(&[
            "--marker",
            "killed-out",
            "--children",
            "2",
            "--hang",
        ]))
        .await;
    let live = api
        .spawn(&fake(&[
            "--marker",
            "live-out",
            "--children",
            "1",
            "--hang",
        ]))
        .await;
    let killed = api.wait_status(&killed.run_id, RunStatus::Running).await;
    let live = api.wait_status(&live.run_id, RunStatus::Running).await;
    let killed_procs = api.fake_agent_procs(&killed, true, false).await;
    let live_procs = api.fake_agent_procs(&live, true, false).await;

    let response = api.kill(&killed.run_id).await;
    assert!(response.success, "kill: {response:?}");
    assert_eq!(response.phase(), KillPhase::Term, "kill: {response:?}");
    let ok_run = api.wait_terminal(&ok.run_id, TIMEOUT).await;
    assert_eq!(ok_run.status(), RunStatus::Succeeded, "{ok_run:?}");
    assert_eq!(ok_run.exit_code, Some(0), "{ok_run:?}");
    let failed_run = api.wait_terminal(&failed.run_id, TIMEOUT).await;
    assert_eq!(failed_run.status(), RunStatus::Failed, "{failed_run:?}");
    assert_eq!(failed_run.exit_code, Some(7), "{failed_run:?}");
    let killed_run = api.get(&killed.run_id).await;
    assert_eq!(killed_run.status(), RunStatus::Killed, "{killed_run:?}");

    let finished = [&ok.run_id, &failed.run_id, &killed.run_id];
    let mut before = BTreeMap::new();
    for id in finished {
        before.insert(id.clone(), look(&api, id).await);
    }
    let live_before = look(&api, &live.run_id).await;
    let list_before = api.list().await;
    let all_audit_before = api.audit("").await;
    assert_eq!(
        list_before.len(),
        4,
        "List before the restart: {list_before:?}"
    );
    assert!(
        String::from_utf8_lossy(&before[&failed.run_id].stderr).contains("failed-err"),
        "stderr of {}: {:?}",
        failed.run_id,
        before[&failed.run_id]
    );
    for (id, seen) in &before {
        let actions: Vec<&str> = seen.audit.iter().map(|r| r.action.as_str()).collect();
        assert!(
            actions.contains(&"spawn"),
            "{id} has no spawn audit record: {:?}",
            seen.audit
        );
    }

    // A clean stop: SIGTERM ends the live run through the kill state machine, then the daemon
    // exits 0 with nothing of any run left.
    site.stop().await;
    assert_nothing_left(&killed.run_id, &killed_procs);
    assert_nothing_left(&live.run_id, &live_procs);

    let api = site.start().await;
    for (id, seen) in &before {
        let after = look(&api, id).await;
        assert_eq!(after.run, seen.run, "Get {id} after the restart");
        assert_eq!(
            after.stdout, seen.stdout,
            "stdout of {id} after the restart"
        );
        assert_eq!(
            after.stderr, seen.stderr,
            "stderr of {id} after the restart"
        );
        assert_eq!(after.audit, seen.audit, "ListAudit {id} after the restart");
    }
    assert!(
        String::from_utf8_lossy(&before[&ok.run_id].stdout).contains("ok-out"),
        "stdout of {}",
        ok.run_id
    );

    // The run that was live at the stop was ended by it, and that was recorded too.
    let live_after = look(&api, &live.run_id).await;
    assert_eq!(
        live_after.run.status(),
        RunStatus::Killed,
        "the run live at SIGTERM: {:?}",
        live_after.run
    );
    assert!(live_after.run.ended_at > 0, "{:?}", live_after.run);
    assert!(
        !live_after.run.logs_missing,
        "logs_missing: {:?}",
        live_after.run
    );
    assert_eq!(live_after.run.argv, live_before.run.argv);
    assert_eq!(live_after.run.created_at, live_before.run.created_at);
    assert_eq!(live_after.run.pid, live_before.run.pid);
    assert!(
        String::from_utf8_lossy(&live_after.stdout).contains("live-out"),
        "stdout of {}: {:?}",
        live.run_id,
        String::from_utf8_lossy(&live_after.stdout)
    );
    let audit_before = by_id(&live_before.audit);
    let audit_after = by_id(&live_after.audit);
    for (rid, record) in &audit_before {
        assert_eq!(
            audit_after.get(rid),
            Some(record),
            "audit record {rid} of {} after the restart",
            live.run_id
        );
    }

    // List: the same runs in the same order, the finished ones with the same statuses.
    let list_after = api.list().await;
    let ids = |runs: &[Run]| runs.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&list_after),
        ids(&list_before),
        "List after the restart"
    );
    for run in &list_after {
        let expected = if run.run_id == live.run_id {
            RunStatus::Killed
        } else {
            before[&run.run_id].run.status()
        };
        assert_eq!(run.status(), expected, "List: {run:?}");
        if run.run_id != live.run_id {
            assert_eq!(
                run.exit_code, before[&run.run_id].run.exit_code,
                "List: {run:?}"
            );
        }
    }
    let failed_only = api
        .list_req(ListRequest {
            statuses: vec![RunStatus::Failed as i32],
            limit: 0,
            ..Default::default()
        })
        .await;
    assert_eq!(
        ids(&failed_only),
        vec![failed.run_id.clone()],
        "List FAILED"
    );

    // The whole audit trail of the first daemon is still there, record for record.
    let all_after = by_id(&api.audit("").await);
    for record in &all_audit_before {
        assert_eq!(
            all_after.get(&record.id),
            Some(record),
            "audit record {} after the restart",
            record.id
        );
    }

    for id in [&ok.run_id, &failed.run_id, &killed.run_id, &live.run_id] {
        assert_nothing_left(id, &[]);
    }
    site.assert_reaped(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_a_crash_right_after_the_answer() {
    let mut site = Site::new(Options {
        grace_ms: 1000,
        ..Default::default()
    })
    .expect("a site");
    let api = site.start().await;

    // A finished run to purge, a run to kill, a run left live.
    let purged = api.spawn(&fake(&["--exit", "0"])).await;
    let purged_run = api.wait_terminal(&purged.run_id, TIMEOUT).await;
    assert_eq!(purged_run.status(), RunStatus::Succeeded, "{purged_run:?}");
    let killed = api.spawn(&fake(&["--children", "1", "--hang"])).await;
    let live = api.spawn(&fake(&["--children", "1", "--hang"])).await;
    let killed = api.wait_status(&killed.run_id, RunStatus::Running).await;
    let live = api.wait_status(&live.run_id, RunStatus::Running).await;
    let killed_procs = api.fake_agent_procs(&killed, true, false).await;
    let live_procs = api.fake_agent_procs(&live, true, false).await;

    let response = api.kill(&killed.run_id).await;
    assert!(response.success, "kill: {response:?}");
    let killed_recorded = response.run.clone().expect("KillResponse.run");
    let purge = api
        .try_purge(PurgeRequest {
            run_id: purged.run_id.clone(),
            reason: "durability test".into(),
            ..Default::default()
        })
        .await
        .expect("Purge");
    assert_eq!(purge.run_ids, vec![purged.run_id.clone()], "{purge:?}");
    let audit_before = api.audit("").await;

    // Crash at once: every answer above must already be on disk.
    site.crash();
    assert_nothing_left(&killed.run_id, &killed_procs);
    let api = site.start().await;

    let killed_after = api.get(&killed.run_id).await;
    assert_eq!(
        killed_after.status(),
        RunStatus::Killed,
        "a kill acknowledged before the crash: {killed_after:?}"
    );
    assert_eq!(killed_after.ended_at, killed_recorded.ended_at);
    assert_eq!(killed_after.end_reason, killed_recorded.end_reason);
    match api.try_get(&purged.run_id).await {
        Err(s) => assert_eq!(s.code(), Code::NotFound, "Get purged run: {s:?}"),
        Ok(run) => panic!("a purge acknowledged before the crash was undone: {run:?}"),
    }
    assert!(
        !site.run_dir(&purged.run_id).exists(),
        "the purged run's log folder is back"
    );
    // The live run's spawn was acknowledged, so the run is there; the crash left it LOST.
    let live_after = api.get(&live.run_id).await;
    assert_eq!(live_after.status(), RunStatus::Lost, "{live_after:?}");
    assert_nothing_left(&live.run_id, &live_procs);
    assert_nothing_left(&purged.run_id, &[]);

    let after = by_id(
        &api.audit_req(ListAuditRequest {
            limit: 10_000,
            ..Default::default()
        })
        .await,
    );
    for record in &audit_before {
        assert_eq!(
            after.get(&record.id),
            Some(record),
            "audit record {} after the crash",
            record.id
        );
    }
    let purge_records: Vec<&AuditRecord> = audit_before
        .iter()
        .filter(|r| r.action == "purge" && r.outcome == "ok")
        .collect();
    assert_eq!(purge_records.len(), 1, "{audit_before:?}");
    site.assert_reaped(&[]).await;
}
