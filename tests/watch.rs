//! Watch: every state change of a run reaches its watchers, in order — spawned, started,
//! stopping (with the kill's reason), ended with the terminal status — for a watch of one run and
//! for a watch of all runs.
mod common;

use common::*;
use tonic::Streaming;
use wf_supervisor::proto::{KillRequest, RunEvent, RunStatus};

/// Reads events of `run_id` until its "ended" event.
async fn events_until_ended(stream: &mut Streaming<RunEvent>, run_id: &str) -> Vec<RunEvent> {
    let mut events = Vec::new();
    let read = async {
        while let Some(event) = stream.message().await.expect("Watch stream") {
            if event.run_id != run_id {
                continue;
            }
            let ended = event.kind == "ended";
            events.push(event);
            if ended {
                break;
            }
        }
    };
    if tokio::time::timeout(TIMEOUT, read).await.is_err() {
        panic!("no \"ended\" event for {run_id} within {TIMEOUT:?}");
    }
    events
}

fn kinds(events: &[RunEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Asserts that `expected` occur in `events` in this order (other kinds may come between).
fn assert_in_order(events: &[RunEvent], expected: &[&str]) {
    let all = kinds(events);
    let mut rest = all.iter();
    for kind in expected {
        assert!(
            rest.any(|k| k == kind),
            "expected {expected:?} in order, got {all:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_of_one_run_sees_stopping_and_ended() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api.spawn(&fake(&["--children", "2", "--hang"])).await;
    let run = api.wait_running(&run.run_id).await;
    let mut stream = api.watch(&run.run_id).await;

    let response = api
        .try_kill(KillRequest {
            run_id: run.run_id.clone(),
            reason: "watch test".into(),
            ..Default::default()
        })
        .await
        .expect("Kill");
    assert!(response.success, "{response:?}");
    let events = events_until_ended(&mut stream, &run.run_id).await;
    assert_eq!(events[0].kind, "snapshot", "{:?}", kinds(&events));
    assert_in_order(&events, &["snapshot", "stopping", "ended"]);
    let stopping = events
        .iter()
        .find(|e| e.kind == "stopping")
        .expect("stopping");
    assert!(
        stopping.message.contains("watch test"),
        "stopping says why: {stopping:?}"
    );
    let ended = events.last().expect("ended");
    assert_eq!(ended.status(), RunStatus::Killed, "{ended:?}");
    assert_eq!(
        ended.run.as_ref().map(|r| r.status()),
        Some(RunStatus::Killed)
    );
    for pair in events.windows(2) {
        assert!(
            pair[0].at <= pair[1].at,
            "events out of time order: {events:?}"
        );
    }
    daemon.assert_run_gone(&run.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_of_all_runs_sees_a_run_from_spawn_to_end() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let mut stream = api.watch("").await;
    let run = api.spawn(&sh("exit 5")).await;
    let events = events_until_ended(&mut stream, &run.run_id).await;
    assert_in_order(&events, &["spawned", "started", "ended"]);
    let ended = events.last().expect("ended");
    assert_eq!(ended.status(), RunStatus::Failed, "{ended:?}");
    assert_eq!(ended.run.as_ref().and_then(|r| r.exit_code), Some(5));
}
