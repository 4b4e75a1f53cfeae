//! Watch: every state change of a run reaches its watchers, in order — spawned, started,
//! stopping (with the kill's reason), ended with the terminal status — for a watch of one run and
//! for a watch of all runs.
mod common;

use common::*;
use tonic::Streaming;
use wf_supervisor::proto::{KillRequest, RunEvent, RunStatus, WatchRequest};

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

/// A watcher that stops reading while its runs heartbeat gets, once it reads again, each run's
/// newest count after at most what was already in flight to it, not a replay of every
/// heartbeat it missed; it misses no state change and is never told it lagged. The client
/// advertises a 16 KiB HTTP/2 window, so at most that much can be on its way when it resumes;
/// the runs produce ten times as many events meanwhile (about a hundred a second each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_catches_up_with_the_newest_heartbeats() {
    const WINDOW: u32 = 16 * 1024;
    const RUNS: usize = 4;
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let mut watcher = daemon.client_with_window(WINDOW).await;
    let mut stream = watcher
        .watch(WatchRequest {
            run_id: String::new(),
        })
        .await
        .expect("Watch")
        .into_inner();
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let argv = fake(&["--heartbeats", "1000000", "--heartbeat-interval-ms", "1"]);
        runs.push(api.spawn(&argv).await.run_id);
    }
    let mut all = Vec::new();
    // Until every run has heartbeated where the watcher saw it.
    let mut beating = std::collections::HashSet::new();
    while beating.len() < RUNS {
        let ev = next(&mut stream, &mut all).await;
        if ev.kind == "heartbeat" {
            beating.insert(ev.run_id);
        }
    }

    // Stop reading; then learn each run's count now.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let mut now = std::collections::HashMap::new();
    for id in &runs {
        now.insert(id.clone(), api.get(id).await.heartbeats);
    }
    // The smallest heartbeat event the daemon can send (a run id, its kind, a partial run) is
    // over 40 bytes with its framing, so the window holds fewer than WINDOW / 40 of them.
    let bound = WINDOW as usize / 40 + 64;
    let mut read = 0;
    while !now.is_empty() {
        let ev = next(&mut stream, &mut all).await;
        read += 1;
        if let (Some(r), "heartbeat") = (&ev.run, ev.kind.as_str()) {
            if now.get(&ev.run_id).is_some_and(|&n| r.heartbeats >= n) {
                now.remove(&ev.run_id);
            }
        }
        assert!(
            read <= bound,
            "after {read} events the watcher still had not caught up with {now:?}"
        );
    }

    for id in &runs {
        assert!(api.kill(id).await.success);
    }
    let mut ended = std::collections::HashSet::new();
    while ended.len() < RUNS {
        let ev = next(&mut stream, &mut all).await;
        if ev.kind == "ended" {
            ended.insert(ev.run_id);
        }
    }
    for id in &runs {
        let mine: Vec<&RunEvent> = all.iter().filter(|e| &e.run_id == id).collect();
        let kinds: Vec<&str> = mine.iter().map(|e| e.kind.as_str()).collect();
        let state: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| *k != "heartbeat")
            .collect();
        assert_eq!(state, ["spawned", "started", "stopping", "ended"], "{id}");
        let beats: Vec<u64> = mine
            .iter()
            .filter(|e| e.kind == "heartbeat")
            .filter_map(|e| e.run.as_ref().map(|r| r.heartbeats))
            .collect();
        assert!(
            beats.windows(2).all(|w| w[0] < w[1]),
            "{id}: heartbeat counts go up: {beats:?}"
        );
    }
    let total_beats = all.iter().filter(|e| e.kind == "heartbeat").count();
    eprintln!(
        "{} events, {total_beats} heartbeats, {} read after the pause until caught up",
        all.len(),
        read
    );
}

/// The next event, kept in `all`; never a "lagged" one.
async fn next(stream: &mut Streaming<RunEvent>, all: &mut Vec<RunEvent>) -> RunEvent {
    let ev = tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .expect("a Watch event in time")
        .expect("Watch stream")
        .expect("the stream goes on");
    assert_ne!(ev.kind, "lagged", "{ev:?}");
    all.push(ev.clone());
    ev
}
