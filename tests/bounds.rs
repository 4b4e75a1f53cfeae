//! Bounds on caller-controlled fields (issue: a Spawn with 20,000 labels was accepted and
//! stored with the run, and every List carried them since). A request past a bound is
//! INVALID_ARGUMENT naming the field and the limit, is audited as refused without its
//! over-long fields, and changes nothing: no run, no process, no state change of a live run.
mod common;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{KillRequest, ListAuditRequest, RunStatus, SpawnRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_a_bound_is_refused_and_changes_nothing() {
    let daemon = Daemon::start().await;
    let api = daemon.api();

    // 20,000 labels, as in the report.
    let labels = (0..20_000)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    let refused = api
        .try_spawn(SpawnRequest {
            argv: sh("echo spawned-past-a-bound; sleep 600"),
            labels,
            ..Default::default()
        })
        .await
        .expect_err("20,000 labels are refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("labels") && refused.message().contains("at most 64 labels"),
        "{}",
        refused.message()
    );

    // One label value too long; a prompt past the kernel's limit for one argument.
    let result = api
        .try_spawn(SpawnRequest {
            argv: sh("echo spawned-past-a-bound; sleep 600"),
            labels: [("team".to_string(), "x".repeat(257))].into(),
            ..Default::default()
        })
        .await;
    assert_code(result, Code::InvalidArgument, "a 257-byte label value");
    let result = api
        .try_spawn(SpawnRequest {
            workflow: "none".into(),
            prompt: "p".repeat(200 * 1024),
            ..Default::default()
        })
        .await;
    let st = result.expect_err("a 200 KiB prompt");
    assert!(
        st.code() == Code::InvalidArgument && st.message().contains("prompt"),
        "{st:?}"
    );

    // Past the server's message size: refused by the transport, the daemon serves on.
    let result = api
        .try_spawn(SpawnRequest {
            argv: vec!["x".repeat(100_000); 30],
            ..Default::default()
        })
        .await;
    let st = result.expect_err("a 3 MB request");
    assert!(
        st.code() == Code::OutOfRange && st.message().contains("2097152"),
        "{st:?}"
    );

    assert!(api.list().await.is_empty(), "no run was recorded");
    assert!(daemon.tagged_pids().is_empty(), "no process was started");
    let audit = api
        .audit_req(ListAuditRequest {
            ..Default::default()
        })
        .await;
    let spawns: Vec<_> = audit.iter().filter(|r| r.action == "spawn").collect();
    assert!(spawns.len() >= 3, "{audit:?}");
    for rec in &spawns {
        assert_eq!(rec.outcome, "refused", "{rec:?}");
        assert!(
            rec.request.len() < 200,
            "the record holds no over-long field: {rec:?}"
        );
    }

    // A live run is untouched by a Kill whose reason is past its bound.
    let run = api.spawn(&sh("sleep 600")).await;
    let run = api.wait_running(&run.run_id).await;
    let result = api
        .try_kill(KillRequest {
            run_id: run.run_id.clone(),
            reason: "r".repeat(2000),
            ..Default::default()
        })
        .await;
    let st = result.expect_err("a 2000-byte reason");
    assert!(
        st.code() == Code::InvalidArgument
            && st.message().contains("reason")
            && st.message().contains("1024"),
        "{st:?}"
    );
    let after = api.get(&run.run_id).await;
    assert_eq!(after.status(), RunStatus::Running, "{after:?}");
    assert!(procfs_alive(run.pid), "the run's leader lives on");

    let response = api.kill(&run.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&run.run_id, &[]).await;
}

fn procfs_alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}
