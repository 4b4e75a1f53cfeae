//! The audit trail (invariant 7): every mutating call, accepted or refused, is recorded durably
//! with the caller's identity as SO_PEERCRED reports it on the unix socket, and ListAudit returns
//! the records newest first, by run, since a time, up to a limit.
mod common;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{
    AuditRecord, ForceCompleteRequest, KillRequest, ListAuditRequest, Outcome, RunStatus,
};

/// The caller identity of this test process, as the daemon must see it.
fn assert_caller_is_me(record: &AuditRecord) {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let pid = std::process::id() as i32;
    assert_eq!(record.uid, Some(uid), "uid: {record:?}");
    assert_eq!(record.gid, Some(gid), "gid: {record:?}");
    assert_eq!(record.pid, Some(pid), "pid: {record:?}");
    assert_eq!(
        record.caller,
        format!("uid={uid} gid={gid} pid={pid}"),
        "caller: {record:?}"
    );
    assert!(record.peer.is_empty(), "peer: {record:?}");
    assert!(record.at > 0 && record.id > 0, "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_is_recorded_with_the_callers_credentials_and_a_refused_one_too() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api.spawn(&fake(&["--children", "1", "--hang"])).await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, false).await;
    let response = api
        .try_kill(KillRequest {
            run_id: run.run_id.clone(),
            reason: "audit test".into(),
            ..Default::default()
        })
        .await
        .expect("Kill");
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&run.run_id, &procs).await;

    let records = api.audit(&run.run_id).await;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, vec!["kill", "spawn"], "newest first: {records:?}");
    let kill = &records[0];
    assert_caller_is_me(kill);
    assert_eq!(kill.run_id, run.run_id);
    assert_eq!(kill.outcome, "ok", "{kill:?}");
    assert!(
        kill.request.contains("audit test"),
        "the record does not carry the request's reason: {kill:?}"
    );
    let spawn = &records[1];
    assert_caller_is_me(spawn);
    assert_eq!(spawn.outcome, "ok", "{spawn:?}");
    assert!(spawn.id < kill.id, "ids grow: {records:?}");

    // Refused: an unknown run, and a run that has ended already.
    let unknown = "run_000000000000";
    assert_code(
        api.try_kill(KillRequest {
            run_id: unknown.into(),
            reason: "no such run".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "Kill of an unknown run",
    );
    let records = api.audit(unknown).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].action, "kill");
    assert_eq!(records[0].outcome, "refused", "{:?}", records[0]);
    assert!(
        records[0].message.contains("NotFound"),
        "the refusal does not say why: {:?}",
        records[0]
    );
    assert_caller_is_me(&records[0]);

    assert_code(
        api.try_kill(KillRequest {
            run_id: run.run_id.clone(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "Kill of a finished run",
    );
    let records = api.audit(&run.run_id).await;
    assert_eq!(records[0].action, "kill", "{records:?}");
    assert_eq!(records[0].outcome, "refused", "{:?}", records[0]);
    assert!(
        records[0].message.contains("FailedPrecondition"),
        "{:?}",
        records[0]
    );
    daemon.assert_reaped(&procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutating_call_is_audited_and_list_audit_filters() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let first = api.spawn(&fake(&["--hang"])).await;
    let first = api.wait_running(&first.run_id).await;
    let restarted = api.try_restart(&first.run_id).await.expect("Restart");
    let second = restarted.run.expect("RestartResponse.run");
    let second = api.wait_running(&second.run_id).await;
    let completed = api
        .try_force_complete(ForceCompleteRequest {
            run_id: second.run_id.clone(),
            outcome: Outcome::Succeeded as i32,
            reason: "audit test".into(),
        })
        .await
        .expect("ForceComplete");
    assert_eq!(completed.status(), RunStatus::Succeeded, "{completed:?}");
    // Refused calls of each kind.
    assert_code(
        api.try_restart("run_000000000000").await,
        Code::NotFound,
        "Restart of an unknown run",
    );
    assert_code(
        api.try_force_complete(ForceCompleteRequest {
            run_id: second.run_id.clone(),
            outcome: Outcome::Failed as i32,
            reason: "again".into(),
        })
        .await,
        Code::FailedPrecondition,
        "ForceComplete of a finished run",
    );
    assert_code(
        api.try_spawn(wf_supervisor::proto::SpawnRequest::default())
            .await,
        Code::InvalidArgument,
        "Spawn with no argv",
    );

    let all = api.audit_req(ListAuditRequest::default()).await;
    let summary: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    for expected in [
        ("spawn", "ok"),
        ("restart", "ok"),
        ("force_complete", "ok"),
        ("restart", "refused"),
        ("force_complete", "refused"),
        ("spawn", "refused"),
    ] {
        assert!(
            summary.contains(&expected),
            "no {expected:?} record: {summary:?}"
        );
    }
    for record in all.iter().filter(|r| r.caller != "daemon") {
        assert_caller_is_me(record);
    }
    // Newest first, by id.
    assert!(
        all.windows(2).all(|w| w[0].id > w[1].id),
        "not newest first: {all:?}"
    );
    let restart = all
        .iter()
        .find(|r| r.action == "restart" && r.outcome == "ok")
        .expect("a restart record");
    assert_eq!(restart.run_id, first.run_id, "{restart:?}");
    assert!(
        restart.message.contains(&second.run_id),
        "the restart record does not name the new run: {restart:?}"
    );

    // limit, since, run_id.
    let two = api
        .audit_req(ListAuditRequest {
            limit: 2,
            ..Default::default()
        })
        .await;
    assert_eq!(two, all[..2].to_vec(), "limit 2");
    let since = all[2].at;
    let recent = api
        .audit_req(ListAuditRequest {
            since,
            ..Default::default()
        })
        .await;
    assert!(
        recent.iter().all(|r| r.at >= since) && recent.len() >= 3,
        "since {since}: {recent:?}"
    );
    let future = api
        .audit_req(ListAuditRequest {
            since: i64::MAX,
            ..Default::default()
        })
        .await;
    assert!(future.is_empty(), "records from the future: {future:?}");
    let of_second = api.audit(&second.run_id).await;
    assert!(
        of_second.iter().all(|r| r.run_id == second.run_id) && !of_second.is_empty(),
        "{of_second:?}"
    );

    for run in [&first, &second] {
        daemon.assert_run_gone(&run.run_id, &[]).await;
    }
}
