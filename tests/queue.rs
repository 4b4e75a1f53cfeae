//! The work queue and run policy with the real daemon and real processes: concurrency limits
//! (sampled through /proc), start order, cancel, deadlines, dependencies, restarts with backoff,
//! durability across a SIGKILL of the daemon, idempotent spawns, queue control and its alerts,
//! and bulk kills by selector. Every agent appends its run id to a marker file when it starts,
//! so "never started" and "started exactly once" are read from that file.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{
    CancelRequest, CancelResponse, GetQueueHealthRequest, GetQueueHealthResponse, KillRequest,
    ListRequest, LogsRequest, RestartPolicy, Run, RunStatus, Selector, SpawnRequest,
    UpdateQueueRequest,
};

/// A test's marker file and the env var that tags its agents for /proc sampling.
struct Work {
    dir: PathBuf,
    tag: String,
}

impl Work {
    fn new(site: &Site) -> Work {
        Work {
            dir: site.dir.path().to_path_buf(),
            tag: unique("qtest"),
        }
    }

    fn markers(&self) -> PathBuf {
        self.dir.join("markers")
    }

    fn gate(&self, name: &str) -> PathBuf {
        self.dir.join(format!("gate-{name}"))
    }

    fn open_gate(&self, name: &str) {
        std::fs::write(self.gate(name), b"").expect("opening a gate");
    }

    /// An agent that records its start, waits until the gate `gate` exists (if given), sleeps
    /// `sleep` seconds and exits with `code`.
    fn agent(&self, gate: Option<&str>, sleep: &str, code: i32) -> Vec<String> {
        let wait = gate
            .map(|g| {
                format!(
                    "while [ ! -e '{}' ]; do sleep 0.02; done; ",
                    self.gate(g).display()
                )
            })
            .unwrap_or_default();
        sh(&format!(
            "echo \"$WF_RUN_ID\" >> '{}'; {wait}sleep {sleep}; exit {code}",
            self.markers().display()
        ))
    }

    fn req(&self, argv: Vec<String>, queue: &str) -> SpawnRequest {
        let mut env = BTreeMap::new();
        env.insert("WF_QTEST".to_string(), self.tag.clone());
        SpawnRequest {
            argv,
            queue: queue.to_string(),
            env,
            ..Default::default()
        }
    }

    /// Run ids in the marker file, in the order they started.
    fn started(&self) -> Vec<String> {
        std::fs::read_to_string(self.markers())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The runs with a live process of this test right now, from /proc.
    fn live_runs(&self) -> BTreeSet<String> {
        pids_with_env(&format!("WF_QTEST={}", self.tag))
            .into_iter()
            .filter(|pid| stat(*pid).is_some_and(|s| s.state != 'Z'))
            .filter_map(run_id_of)
            .collect()
    }
}

fn run_id_of(pid: i32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"WF_RUN_ID="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Samples the live runs of `work` every few ms until stopped; returns the most seen at once.
fn sample_concurrency(work: &Work) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let (dir, tag) = (work.dir.clone(), work.tag.clone());
    let s = stop.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let w = Work { dir, tag };
        while !s.load(Ordering::Relaxed) {
            let n = w.live_runs().len();
            most.fetch_max(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        most.load(Ordering::Relaxed)
    });
    (stop, handle)
}

async fn cancel(api: &Api, request: CancelRequest) -> Result<CancelResponse, tonic::Status> {
    Ok(api.client.clone().cancel(request).await?.into_inner())
}

async fn queue_health(api: &Api) -> GetQueueHealthResponse {
    api.client
        .clone()
        .get_queue_health(GetQueueHealthRequest {})
        .await
        .expect("GetQueueHealth")
        .into_inner()
}

async fn update_queue(
    api: &Api,
    queue: &str,
    paused: Option<bool>,
    max: Option<u32>,
) -> wf_supervisor::proto::QueueHealth {
    api.client
        .clone()
        .update_queue(UpdateQueueRequest {
            queue: queue.into(),
            paused,
            max_concurrent: max,
        })
        .await
        .expect("UpdateQueue")
        .into_inner()
}

async fn wait_all(api: &Api, runs: &[Run]) -> Vec<Run> {
    let mut out = Vec::new();
    for r in runs {
        out.push(api.wait_terminal(&r.run_id, TIMEOUT).await);
    }
    out
}

/// The runs that restarted `run_id` (restart_of), from List.
async fn successors(api: &Api, run_id: &str) -> Vec<Run> {
    api.list()
        .await
        .into_iter()
        .filter(|r| r.restart_of == run_id)
        .collect()
}

fn site_with(queues: &str) -> Site {
    Site::new(Options {
        containment: Containment::ProcessGroup,
        grace_ms: 1000,
        extra_toml: queues.to_string(),
        ..Default::default()
    })
    .expect("a process-group site")
}

// 1. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_holds_and_runs_start_by_priority_then_age() {
    let mut site = site_with("[queues.pair]\nmax_concurrent = 2\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let (stop, sampler) = sample_concurrency(&work);
    let mut events = api.watch("").await;
    // Two runs hold both slots until the gate opens; eight more wait with mixed priorities.
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = api
            .spawn_req(work.req(work.agent(Some("go"), "0", 0), "pair"))
            .await;
        runs.push(run);
    }
    for r in &runs {
        api.wait_running(&r.run_id).await;
    }
    let priorities = [0, 5, 0, 9, 5, 0, 9, 1];
    for p in priorities {
        let mut req = work.req(work.agent(None, "0.1", 0), "pair");
        req.priority = p;
        let run = api.spawn_req(req).await;
        assert_eq!(run.status(), RunStatus::Queued, "{run:?}");
        assert_eq!(
            run.waiting_reason, "queue pair full: 2/2 running",
            "{run:?}"
        );
        assert_eq!(run.priority, p);
        runs.push(run);
    }
    assert_eq!(work.started().len(), 2, "only the two holders started");
    work.open_gate("go");
    let ended = wait_all(&api, &runs).await;
    stop.store(true, Ordering::Relaxed);
    let most = sampler.await.expect("sampler");
    for r in &ended {
        assert_eq!(r.status(), RunStatus::Succeeded, "{r:?}");
    }
    assert!(most <= 2, "{most} runs of queue pair were alive at once");
    assert!(most >= 1, "the sampler never saw a run");
    // Each started exactly once.
    let started = work.started();
    assert_eq!(started.len(), 10, "{started:?}");
    assert_eq!(
        started.iter().collect::<BTreeSet<_>>().len(),
        10,
        "{started:?}"
    );
    // The core's start order (its "dequeued" events): priority first, then age.
    let mut expected: Vec<(i32, usize)> = priorities
        .iter()
        .enumerate()
        .map(|(i, p)| (-p, i))
        .collect();
    expected.sort();
    let expected: Vec<String> = expected
        .into_iter()
        .map(|(_, i)| runs[2 + i].run_id.clone())
        .collect();
    let mut order = Vec::new();
    while order.len() < expected.len() {
        let ev = tokio::time::timeout(TIMEOUT, events.message())
            .await
            .expect("a Watch event in time")
            .expect("the Watch stream")
            .expect("an event");
        if ev.kind == "dequeued" {
            order.push(ev.run_id);
        }
    }
    assert_eq!(order, expected);
    for r in &ended {
        site.assert_run_gone(&r.run_id, &[]).await;
    }
}

// 2. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_queued_runs_at_once_and_live_trees_gracefully() {
    let mut site = site_with("[queues.one]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let mut holder = work.req(
        fake(&["--children", "3", "--escape-setsid", "--hang"]),
        "one",
    );
    holder.labels.insert("role".into(), "holder".into());
    let holder = api.spawn_req(holder).await;
    let holder = api.wait_running(&holder.run_id).await;
    let procs = api.fake_agent_procs(&holder, true, true).await;
    let waiting = api
        .spawn_req(work.req(work.agent(None, "0", 0), "one"))
        .await;
    assert_eq!(waiting.status(), RunStatus::Queued);

    let answer = cancel(
        &api,
        CancelRequest {
            run_id: waiting.run_id.clone(),
            reason: "not needed".into(),
            ..Default::default()
        },
    )
    .await
    .expect("Cancel of a queued run");
    assert!(!answer.killed, "{answer:?}");
    let run = answer.run.expect("run");
    assert_eq!(run.status(), RunStatus::Cancelled, "{run:?}");
    assert_eq!(run.started_at, 0, "{run:?}");
    assert_eq!(run.end_reason, "cancelled: not needed", "{run:?}");
    api.assert_audited(&waiting.run_id, "cancel", "ok").await;
    assert_code(
        cancel(
            &api,
            CancelRequest {
                run_id: waiting.run_id.clone(),
                ..Default::default()
            },
        )
        .await,
        Code::FailedPrecondition,
        "cancel of a finished run",
    );

    // A Kill of a queued run cancels it too.
    let behind = api
        .spawn_req(work.req(work.agent(None, "0", 0), "one"))
        .await;
    let killed = api.kill(&behind.run_id).await;
    let run = killed.run.expect("run");
    assert_eq!(run.status(), RunStatus::Cancelled, "{run:?}");
    assert!(run.end_reason.contains("cancelled by a kill"), "{run:?}");

    // The live tree: ended through the kill state machine, CANCELLED, nothing left.
    let answer = cancel(
        &api,
        CancelRequest {
            run_id: holder.run_id.clone(),
            reason: "incident 7".into(),
            ..Default::default()
        },
    )
    .await
    .expect("Cancel of a live run");
    assert!(answer.killed, "{answer:?}");
    assert!(
        answer.kill.as_ref().is_some_and(|k| k.success),
        "{answer:?}"
    );
    let run = answer.run.expect("run");
    assert_eq!(run.status(), RunStatus::Cancelled, "{run:?}");
    site.assert_run_gone(&holder.run_id, &procs).await;
    api.assert_audited(&holder.run_id, "cancel", "ok").await;
    // The slot is free and nothing was waiting: the cancelled runs never ran.
    assert!(work.started().is_empty(), "{:?}", work.started());
    assert_eq!(
        api.get(&waiting.run_id).await.status(),
        RunStatus::Cancelled
    );
    assert_eq!(api.get(&behind.run_id).await.status(), RunStatus::Cancelled);
    assert!(site.zombies().is_empty(), "zombies: {:?}", site.zombies());
}

// 3. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_end_running_runs_timed_out_and_queued_runs_cancelled() {
    let mut site = site_with("[queues.one]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let mut req = work.req(fake(&["--children", "2", "--hang"]), "one");
    req.timeout_ms = 800;
    let run = api.spawn_req(req).await;
    let run = api.wait_running(&run.run_id).await;
    assert!(run.timeout_at >= run.started_at + 800, "{run:?}");
    let procs = api.fake_agent_procs(&run, true, false).await;
    // Behind it, a run that may wait only a little.
    let mut req = work.req(work.agent(None, "0", 0), "one");
    req.queue_timeout_ms = 300;
    let impatient = api.spawn_req(req).await;
    assert_eq!(impatient.status(), RunStatus::Queued);
    let impatient = api.wait_terminal(&impatient.run_id, TIMEOUT).await;
    assert_eq!(impatient.status(), RunStatus::Cancelled, "{impatient:?}");
    assert_eq!(impatient.started_at, 0, "{impatient:?}");
    assert!(
        impatient.end_reason.contains("queue_timeout")
            && impatient.end_reason.contains("never started"),
        "{impatient:?}"
    );
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::TimedOut, "{run:?}");
    assert!(run.end_reason.contains("timeout_ms"), "{run:?}");
    site.assert_run_gone(&run.run_id, &procs).await;
    assert!(work.started().is_empty(), "{:?}", work.started());
}

// 4. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_waits_for_success_and_cancels_on_failure() {
    let mut site = site_with("");
    let api = site.start().await;
    let work = Work::new(&site);
    // A fails: B never runs.
    let a = api
        .spawn_req(work.req(work.agent(Some("a"), "0", 3), ""))
        .await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.after = vec![a.run_id.clone()];
    let b = api.spawn_req(req).await;
    assert_eq!(b.status(), RunStatus::Queued);
    assert_eq!(b.waiting_reason, format!("waiting for {}", a.run_id));
    assert_eq!(b.after, vec![a.run_id.clone()]);
    work.open_gate("a");
    let b = api.wait_terminal(&b.run_id, TIMEOUT).await;
    assert_eq!(b.status(), RunStatus::Cancelled, "{b:?}");
    assert!(
        b.end_reason.contains(&a.run_id) && b.end_reason.contains("FAILED"),
        "{b:?}"
    );
    assert_eq!(work.started(), vec![a.run_id.clone()]);

    // A chain of three that succeeds runs in order.
    let first = api
        .spawn_req(work.req(work.agent(Some("chain"), "0", 0), ""))
        .await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.after = vec![first.run_id.clone()];
    let second = api.spawn_req(req).await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.after = vec![second.run_id.clone()];
    let third = api.spawn_req(req).await;
    assert_eq!(
        third.waiting_reason,
        format!("waiting for {}", second.run_id)
    );
    work.open_gate("chain");
    for r in wait_all(&api, &[first.clone(), second.clone(), third.clone()]).await {
        assert_eq!(r.status(), RunStatus::Succeeded, "{r:?}");
    }
    assert_eq!(
        work.started()[1..],
        [first.run_id, second.run_id, third.run_id.clone()]
    );
    // A dependency that already failed cancels a new spawn at once.
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.after = vec![a.run_id.clone()];
    let late = api.spawn_req(req).await;
    assert_eq!(late.status(), RunStatus::Cancelled, "{late:?}");
    // Unknown dependencies are bad input.
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.after = vec!["run_000000000000".into()];
    let err = api.try_spawn(req).await.expect_err("unknown after");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("after"), "{err:?}");
}

// 5. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_backs_off_gives_up_and_never_follows_an_operator() {
    let mut site = site_with("");
    let api = site.start().await;
    let work = Work::new(&site);
    let mut req = work.req(work.agent(None, "0", 1), "");
    req.labels.insert("chain".into(), "flaky".into());
    req.restart = Some(RestartPolicy {
        on: vec!["failed".into()],
        max_restarts: 3,
        backoff_ms: 200,
        max_backoff_ms: 10_000,
        reset_after_ms: 600_000,
    });
    let first = api.spawn_req(req).await;
    // Follow the chain: 1 run and 3 restarts, the last gives up.
    let mut chain = vec![api.wait_terminal(&first.run_id, TIMEOUT).await];
    for _ in 0..3 {
        let prev = chain.last().expect("a run").clone();
        let next = wait_for(TIMEOUT, "the restart", || async {
            successors(&api, &prev.run_id).await.pop()
        })
        .await;
        let next = api.wait_terminal(&next.run_id, TIMEOUT).await;
        chain.push(next);
    }
    let mut delays = Vec::new();
    for pair in chain.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        assert_eq!(old.status(), RunStatus::Failed, "{old:?}");
        assert_eq!(new.attempt, old.attempt + 1, "{new:?}");
        assert_eq!(new.labels.get("chain").map(String::as_str), Some("flaky"));
        assert!(new.started_at >= new.not_before, "started early: {new:?}");
        delays.push(new.not_before - old.ended_at);
    }
    // Backoff 200 ms, then 400, then 800: each gap is its step (computed as the run ended).
    for (i, d) in delays.iter().enumerate() {
        let step = 200i64 << i;
        assert!(*d >= step && *d < step * 2, "gap {i} is {d} ms: {delays:?}");
    }
    let last = chain.last().expect("last");
    assert_eq!(last.status(), RunStatus::Failed);
    assert!(
        last.end_reason.contains("gave up after 3 restarts"),
        "{last:?}"
    );
    assert!(successors(&api, &last.run_id).await.is_empty());
    let health = api.health().await;
    assert!(
        health
            .alerts
            .iter()
            .any(|a| a.kind == "restart_gave_up" && a.message.contains(&last.run_id)),
        "{health:?}"
    );
    assert_eq!(work.started().len(), 4);

    // An operator's kill is never retried.
    let mut req = work.req(fake(&["--hang"]), "");
    req.restart = Some(RestartPolicy {
        on: vec!["failed".into(), "timed_out".into(), "lost".into()],
        backoff_ms: 100,
        ..Default::default()
    });
    let hung = api.spawn_req(req).await;
    api.wait_running(&hung.run_id).await;
    let k = api.kill(&hung.run_id).await;
    assert_eq!(k.run.expect("run").status(), RunStatus::Killed);
    assert!(successors(&api, &hung.run_id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_lost_in_a_crash_is_restarted_once_at_the_next_start() {
    let mut site = site_with("");
    let api = site.start().await;
    let work = Work::new(&site);
    let mut req = work.req(work.agent(Some("never"), "0", 0), "");
    req.restart = Some(RestartPolicy {
        on: vec!["lost".into()],
        backoff_ms: 100,
        ..Default::default()
    });
    let run = api.spawn_req(req).await;
    api.wait_running(&run.run_id).await;
    wait_until(TIMEOUT, "the run's marker", || {
        work.started().contains(&run.run_id)
    })
    .await;
    wait_until(TIMEOUT, "RUNNING on record", || {
        site.stored_status(&run.run_id).as_deref() == Some("RUNNING")
    })
    .await;
    site.crash();
    let api = site.start().await;
    let old = api.get(&run.run_id).await;
    assert_eq!(old.status(), RunStatus::Lost, "{old:?}");
    let next = wait_for(TIMEOUT, "the restart of the lost run", || async {
        successors(&api, &run.run_id).await.pop()
    })
    .await;
    assert_eq!(next.attempt, 2);
    api.wait_running(&next.run_id).await;
    wait_until(TIMEOUT, "the successor's marker", || {
        work.started().contains(&next.run_id)
    })
    .await;
    // Crash again: the first run has its successor on record and is not restarted again.
    wait_until(TIMEOUT, "the successor RUNNING on record", || {
        site.stored_status(&next.run_id).as_deref() == Some("RUNNING")
    })
    .await;
    site.crash();
    let api = site.start().await;
    let again = successors(&api, &run.run_id).await;
    assert_eq!(again.len(), 1, "{again:?}");
    let started = work.started();
    assert_eq!(
        count_by(started.iter().cloned()).get(&run.run_id).copied(),
        Some(1)
    );
    assert_eq!(
        count_by(started.iter().cloned()).get(&next.run_id).copied(),
        Some(1)
    );
    // End the chain: cancel whatever is queued or live.
    for r in api.list().await {
        if !is_terminal(r.status()) {
            let _ = cancel(
                &api,
                CancelRequest {
                    run_id: r.run_id.clone(),
                    ..Default::default()
                },
            )
            .await;
            site.assert_run_gone(&r.run_id, &[]).await;
        }
    }
}

// 6. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_survive_a_daemon_sigkill_and_run_once_in_order() {
    let mut site = site_with("[queues.one]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let holder = api.spawn_req(work.req(fake(&["--hang"]), "one")).await;
    let other = api.spawn_req(work.req(fake(&["--hang"]), "")).await;
    let mut queued = Vec::new();
    for p in [0, 0, 3, 0, 3] {
        let mut req = work.req(work.agent(None, "0", 0), "one");
        req.priority = p;
        queued.push(api.spawn_req(req).await);
    }
    for r in [&holder, &other] {
        api.wait_running(&r.run_id).await;
        wait_until(TIMEOUT, "RUNNING on record", || {
            site.stored_status(&r.run_id).as_deref() == Some("RUNNING")
        })
        .await;
    }
    for r in &queued {
        assert_eq!(site.stored_status(&r.run_id).as_deref(), Some("QUEUED"));
    }
    site.crash();
    let api = site.start().await;
    for r in [&holder, &other] {
        assert_eq!(api.get(&r.run_id).await.status(), RunStatus::Lost);
    }
    for r in wait_all(&api, &queued).await {
        assert_eq!(r.status(), RunStatus::Succeeded, "{r:?}");
    }
    let order: Vec<String> = [2, 4, 0, 1, 3]
        .iter()
        .map(|i| queued[*i].run_id.clone())
        .collect();
    assert_eq!(work.started(), order, "each once, priority then age");
    for r in [&holder, &other] {
        site.assert_run_gone(&r.run_id, &[]).await;
    }
}

// 7. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_spawns_with_one_idempotency_key_make_one_run() {
    let mut site = site_with("");
    let api = site.start().await;
    let work = Work::new(&site);
    let key = unique("task-4711");
    let mut calls = Vec::new();
    for _ in 0..20 {
        let api = api.clone();
        let mut req = work.req(work.agent(Some("idem"), "0", 0), "");
        req.idempotency_key = key.clone();
        calls.push(tokio::spawn(async move { api.spawn_req(req).await }));
    }
    let mut ids = BTreeSet::new();
    for c in calls {
        ids.insert(c.await.expect("spawn task").run_id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids.into_iter().next().expect("one id");
    let with_key: Vec<Run> = api
        .list()
        .await
        .into_iter()
        .filter(|r| r.idempotency_key == key)
        .collect();
    assert_eq!(with_key.len(), 1, "{with_key:?}");
    work.open_gate("idem");
    api.wait_terminal(&id, TIMEOUT).await;
    site.stop().await;
    let api = site.start().await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.idempotency_key = key.clone();
    let again = api.spawn_req(req).await;
    assert_eq!(again.run_id, id);
    assert_eq!(again.status(), RunStatus::Succeeded);
    assert_eq!(work.started(), vec![id]);
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.idempotency_key = "k".repeat(201);
    let err = api.try_spawn(req).await.expect_err("a long key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("idempotency_key"), "{err:?}");
}

// 8. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_live_limits_figures_and_alerts_that_resolve() {
    let mut site = site_with(
        "[queues.work]\nmax_concurrent = 1\nalert_queue_depth = 1\nalert_queue_wait = \"1s\"\n",
    );
    let api = site.start().await;
    let work = Work::new(&site);
    let q = update_queue(&api, "work", Some(true), None).await;
    assert!(q.paused, "{q:?}");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = api
            .spawn_req(work.req(work.agent(Some("w"), "0", 0), "work"))
            .await;
        assert_eq!(run.waiting_reason, "queue work is paused", "{run:?}");
        runs.push(run);
    }
    let alerts_firing = |h: &GetQueueHealthResponse, kind: &str| {
        h.alerts
            .iter()
            .any(|a| a.kind == kind && a.resolved_at == 0 && a.dedup_key == format!("{kind}:work"))
    };
    // Two waiting is deeper than 1; after a second the wait alert fires too (a timer, no poll).
    let h = wait_for(TIMEOUT, "both queue alerts to fire", || async {
        let h = queue_health(&api).await;
        (alerts_firing(&h, "queue_depth") && alerts_firing(&h, "queue_wait")).then_some(h)
    })
    .await;
    let fig = h.queues.iter().find(|q| q.name == "work").expect("work");
    assert_eq!(
        (fig.queued, fig.running, fig.paused),
        (2, 0, true),
        "{fig:?}"
    );
    assert!(fig.longest_queued_wait_ms >= 1000, "{fig:?}");
    assert_eq!(h.total.as_ref().expect("total").queued, 2);
    let health = api.health().await;
    assert_eq!(health.queued_runs, 2);
    assert!(
        health.alerts.iter().any(|a| a.kind == "queue_depth"),
        "{health:?}"
    );
    assert!(work.started().is_empty());
    // Resume: one starts (the limit is 1), the other waits for the slot.
    update_queue(&api, "work", Some(false), None).await;
    let first = api.wait_running(&runs[0].run_id).await;
    assert_eq!(first.queue, "work");
    assert_eq!(
        api.get(&runs[1].run_id).await.waiting_reason,
        "queue work full: 1/1 running"
    );
    // A live limit change lets the second start.
    let q = update_queue(&api, "work", None, Some(2)).await;
    assert_eq!(q.max_concurrent, 2);
    api.wait_running(&runs[1].run_id).await;
    work.open_gate("w");
    wait_all(&api, &runs).await;
    let h = wait_for(TIMEOUT, "both queue alerts to resolve", || async {
        let h = queue_health(&api).await;
        let resolved = |kind: &str| {
            h.alerts.iter().any(|a| {
                a.kind == kind && a.resolved_at > 0 && a.dedup_key == format!("{kind}:work")
            })
        };
        (resolved("queue_depth") && resolved("queue_wait") && !alerts_firing(&h, "queue_depth"))
            .then_some(h)
    })
    .await;
    let fig = h.queues.iter().find(|q| q.name == "work").expect("work");
    assert_eq!(
        fig.ended_last_hour.get("SUCCEEDED").copied(),
        Some(2),
        "{fig:?}"
    );
    let health = api.health().await;
    assert!(
        !health.alerts.iter().any(|a| a.kind.starts_with("queue_")),
        "resolved alerts are not open: {health:?}"
    );
    // Bad input changes nothing.
    let err = api
        .client
        .clone()
        .update_queue(UpdateQueueRequest {
            queue: "nope".into(),
            paused: Some(true),
            max_concurrent: None,
        })
        .await
        .expect_err("unknown queue");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("default") && err.message().contains("work"),
        "{err:?}"
    );
}

/// A pause is on record before UpdateQueue answers, so it outlives the daemon (a SIGKILL and a
/// clean stop alike): the queue starts nothing after the restart until it is resumed, and the
/// resume is on record too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_stays_paused_across_a_restart_until_resumed() {
    let mut site = site_with("[queues.work]\nmax_concurrent = 2\n");
    let api = site.start().await;
    let work = Work::new(&site);
    assert!(update_queue(&api, "work", Some(true), None).await.paused);
    let held = api
        .spawn_req(work.req(work.agent(None, "0", 0), "work"))
        .await;
    assert_eq!(held.waiting_reason, "queue work is paused", "{held:?}");
    site.crash();
    let api = site.start().await;
    let h = queue_health(&api).await;
    let fig = h.queues.iter().find(|q| q.name == "work").expect("work");
    assert!(fig.paused, "still paused after the restart: {fig:?}");
    assert_eq!(fig.queued, 1, "{fig:?}");
    let run = api.get(&held.run_id).await;
    assert_eq!(run.status(), RunStatus::Queued, "{run:?}");
    assert_eq!(run.waiting_reason, "queue work is paused", "{run:?}");
    // A run of another queue still starts and ends: the daemon dispatched, and held this one.
    let other = api.spawn_req(work.req(work.agent(None, "0", 0), "")).await;
    api.wait_terminal(&other.run_id, TIMEOUT).await;
    assert_eq!(work.started(), vec![other.run_id.clone()]);
    assert_eq!(api.get(&held.run_id).await.status(), RunStatus::Queued);
    assert!(!update_queue(&api, "work", Some(false), None).await.paused);
    let done = api.wait_terminal(&held.run_id, TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:?}");
    // The resume is on record as well: after a clean stop the queue runs what it is given.
    site.stop().await;
    let api = site.start().await;
    let h = queue_health(&api).await;
    let fig = h.queues.iter().find(|q| q.name == "work").expect("work");
    assert!(!fig.paused, "resumed before the restart: {fig:?}");
    let next = api
        .spawn_req(work.req(work.agent(None, "0", 0), "work"))
        .await;
    let next = api.wait_terminal(&next.run_id, TIMEOUT).await;
    assert_eq!(next.status(), RunStatus::Succeeded, "{next:?}");
    assert_eq!(
        work.started(),
        vec![other.run_id, held.run_id, next.run_id.clone()]
    );
}

/// `wfctl logs -f` of a queued run waits for it to start and then follows it to its end; of a
/// queued run that is cancelled instead, it ends with nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_the_logs_of_a_queued_run_waits_for_its_start() {
    let mut site = site_with("[queues.one]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let holder = api
        .spawn_req(work.req(work.agent(Some("h"), "0", 0), "one"))
        .await;
    let follow = |run_id: String| {
        let mut client = api.client.clone();
        tokio::spawn(async move {
            let mut stream = client
                .logs(LogsRequest {
                    run_id,
                    follow: true,
                    tail_bytes: 0,
                })
                .await
                .expect("Logs")
                .into_inner();
            let mut out = Vec::new();
            while let Some(chunk) = stream.message().await.expect("the Logs stream") {
                out.extend_from_slice(&chunk.data);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let queued = api
        .spawn_req(work.req(sh("sleep 0.2; echo first; sleep 0.2; echo second"), "one"))
        .await;
    let dropped = api.spawn_req(work.req(sh("echo never"), "one")).await;
    assert_eq!(queued.status(), RunStatus::Queued);
    let (logs, dropped_logs) = (
        follow(queued.run_id.clone()),
        follow(dropped.run_id.clone()),
    );
    api.wait_running(&holder.run_id).await;
    // Both follows are still open while their runs wait.
    tokio::task::yield_now().await;
    assert!(!logs.is_finished() && !dropped_logs.is_finished());
    cancel(
        &api,
        CancelRequest {
            run_id: dropped.run_id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("Cancel");
    let none = tokio::time::timeout(TIMEOUT, dropped_logs)
        .await
        .expect("the follow of a cancelled queued run ends")
        .expect("the follow task");
    assert_eq!(none, "");
    work.open_gate("h");
    let text = tokio::time::timeout(TIMEOUT, logs)
        .await
        .expect("the follow ends with the run")
        .expect("the follow task");
    assert_eq!(text, "first\nsecond\n");
    let r = api.get(&queued.run_id).await;
    assert_eq!(r.status(), RunStatus::Succeeded, "{r:?}");
}

/// List pages: newest first, each page bounded, the token leads to the rest, runs spawned
/// between pages do not shift them, and bad paging input is refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_through_the_queued_runs() {
    let mut site = site_with("[queues.held]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    update_queue(&api, "held", Some(true), None).await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(api.spawn_req(work.req(sh("true"), "held")).await.run_id);
    }
    ids.reverse(); // newest first
    let page = |token: String| {
        let mut client = api.client.clone();
        async move {
            client
                .list(ListRequest {
                    queue: "held".into(),
                    page_size: 3,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = page(String::new()).await.expect("page 1");
    assert_eq!(
        first.runs.iter().map(|r| &r.run_id).collect::<Vec<_>>(),
        ids[..3].iter().collect::<Vec<_>>()
    );
    assert!(!first.next_page_token.is_empty());
    assert_eq!(first.runs[0].waiting_reason, "queue held is paused");
    // A run spawned between pages is newer than every page: the next pages do not shift.
    let newer = api.spawn_req(work.req(sh("true"), "held")).await;
    let second = page(first.next_page_token.clone()).await.expect("page 2");
    let third = page(second.next_page_token.clone()).await.expect("page 3");
    let rest: Vec<String> = second
        .runs
        .iter()
        .chain(&third.runs)
        .map(|r| r.run_id.clone())
        .collect();
    assert_eq!(rest, ids[3..].to_vec());
    assert!(third.next_page_token.is_empty(), "{third:?}");
    // Unpaged, every run in one answer, as before paging existed.
    let all = api
        .client
        .clone()
        .list(ListRequest {
            queue: "held".into(),
            ..Default::default()
        })
        .await
        .expect("List")
        .into_inner();
    assert_eq!(all.runs.len(), 8);
    assert_eq!(all.runs[0].run_id, newer.run_id);
    assert!(all.next_page_token.is_empty());
    // Bad input names its field.
    for (req, field) in [
        (
            ListRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListRequest {
                page_size: 10,
                limit: 5,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListRequest {
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListRequest {
                page_size: 10,
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ] {
        let err = api.client.clone().list(req).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with(field), "{err:?}");
    }
}

// 9. ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_kill_by_selector_kills_exactly_the_matching_runs() {
    let mut site = site_with("");
    let api = site.start().await;
    let work = Work::new(&site);
    let mut by_team: HashMap<&str, Vec<Run>> = HashMap::new();
    for team in ["a", "a", "a", "b", "b"] {
        let mut req = work.req(fake(&["--children", "1", "--hang"]), "");
        req.labels.insert("team".into(), team.into());
        let run = api.spawn_req(req).await;
        by_team.entry(team).or_default().push(run);
    }
    for r in by_team.values().flatten() {
        api.wait_running(&r.run_id).await;
    }
    let selector = Selector {
        labels: [("team".to_string(), "a".to_string())].into(),
        statuses: vec![RunStatus::Running as i32],
        ..Default::default()
    };
    let dry = api
        .try_kill(KillRequest {
            selector: Some(selector.clone()),
            dry_run: true,
            ..Default::default()
        })
        .await
        .expect("dry run");
    let listed: BTreeSet<String> = dry
        .results
        .iter()
        .filter_map(|r| r.run.as_ref().map(|r| r.run_id.clone()))
        .collect();
    let team_a: BTreeSet<String> = by_team["a"].iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(listed, team_a);
    for r in by_team.values().flatten() {
        assert_eq!(api.get(&r.run_id).await.status(), RunStatus::Running);
    }
    let done = api
        .try_kill(KillRequest {
            selector: Some(selector),
            reason: "incident 9".into(),
            ..Default::default()
        })
        .await
        .expect("bulk kill");
    assert!(done.success, "{done:?}");
    assert_eq!(done.results.len(), 3, "{done:?}");
    for r in &by_team["a"] {
        let run = api.get(&r.run_id).await;
        assert_eq!(run.status(), RunStatus::Killed, "{run:?}");
        site.assert_run_gone(&r.run_id, &[]).await;
        api.assert_audited(&r.run_id, "kill", "ok").await;
    }
    for r in &by_team["b"] {
        assert_eq!(api.get(&r.run_id).await.status(), RunStatus::Running);
    }
    // Cancel by selector ends the others; an empty selector is refused.
    assert_code(
        cancel(
            &api,
            CancelRequest {
                selector: Some(Selector::default()),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "an empty selector",
    );
    let c = cancel(
        &api,
        CancelRequest {
            selector: Some(Selector {
                labels: [("team".to_string(), "b".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("bulk cancel");
    assert_eq!(c.results.len(), 2, "{c:?}");
    for r in &by_team["b"] {
        assert_eq!(api.get(&r.run_id).await.status(), RunStatus::Cancelled);
        site.assert_run_gone(&r.run_id, &[]).await;
    }
    let listed = api
        .list_req(ListRequest {
            labels: [("team".to_string(), "b".to_string())].into(),
            ..Default::default()
        })
        .await;
    assert_eq!(listed.len(), 2);
}

// Bad input -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_policy_input_is_refused_naming_the_field() {
    let mut site = site_with("[queues.tiny]\nmax_concurrent = 1\nmax_queued = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let check = |req: SpawnRequest, field: &'static str| {
        let api = api.clone();
        async move {
            let err = api.try_spawn(req).await.expect_err(field);
            assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
            assert!(err.message().contains(field), "{field}: {err:?}");
            err
        }
    };
    let err = check(work.req(work.agent(None, "0", 0), "nope"), "queue").await;
    assert!(err.message().contains("default, tiny"), "{err:?}");
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.timeout_ms = 31 * 24 * 3600 * 1000;
    check(req, "timeout_ms").await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.queue_timeout_ms = 31 * 24 * 3600 * 1000;
    check(req, "queue_timeout_ms").await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.not_before = -5;
    check(req, "not_before").await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.restart = Some(RestartPolicy {
        on: vec!["sometimes".into()],
        ..Default::default()
    });
    check(req, "restart.on").await;
    // A full queue: one runs, one waits, the next is refused naming max_queued.
    let holder = api.spawn_req(work.req(fake(&["--hang"]), "tiny")).await;
    api.wait_running(&holder.run_id).await;
    let waiting = api
        .spawn_req(work.req(work.agent(None, "0", 0), "tiny"))
        .await;
    assert_eq!(waiting.status(), RunStatus::Queued);
    let err = api
        .try_spawn(work.req(work.agent(None, "0", 0), "tiny"))
        .await
        .expect_err("a full queue");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("tiny") && err.message().contains("max_queued"),
        "{err:?}"
    );
    assert_eq!(api.list().await.len(), 2, "the refused spawn left no run");
    for r in [&waiting, &holder] {
        cancel(
            &api,
            CancelRequest {
                run_id: r.run_id.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("cancel");
        site.assert_run_gone(&r.run_id, &[]).await;
    }
    assert!(work.started().is_empty());
}

// wfctl ---------------------------------------------------------------------------------------

/// Runs wfctl against the site's socket; (exit code, stdout, stderr).
fn wfctl(site: &Site, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfctl"))
        .arg("--socket")
        .arg(&site.socket)
        .args(args)
        .output()
        .expect("running wfctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wfctl_queues_cancels_kills_by_selector_and_waits() {
    let mut site = site_with("[queues.one]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let tag = format!("WF_TEST_TAG={}", unique("wfctl"));
    let spawn = |extra: &[&str], script: &str| {
        let mut args = vec!["spawn", "-e", &tag, "--label", "team=cli"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
        let (code, out, err) = wfctl(&site, &args);
        assert_eq!(code, 0, "spawn {extra:?}: {err}");
        out.trim().to_string()
    };
    let gate = work.gate("cli");
    let hold = format!("while [ ! -e '{}' ]; do sleep 0.02; done", gate.display());
    let first = spawn(&["--queue", "one"], &hold);
    api.wait_running(&first).await;
    let second = spawn(
        &["--queue", "one", "--priority", "2", "--timeout", "1h"],
        "exit 3",
    );
    let run = api.get(&second).await;
    assert_eq!(run.status(), RunStatus::Queued);
    assert_eq!((run.priority, run.timeout_ms), (2, 3_600_000));
    // ps shows the QUEUE column and filters by queue and label.
    let (code, out, _) = wfctl(&site, &["ps", "--queue", "one", "--label", "team=cli"]);
    assert_eq!(code, 0);
    assert!(
        out.lines().next().is_some_and(|h| h.contains("QUEUE")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    // queue: the table; pause and resume.
    let (code, out, _) = wfctl(&site, &["queue", "pause", "one"]);
    assert_eq!(code, 0);
    assert!(out.contains("yes"), "{out}");
    let (code, out, _) = wfctl(&site, &["queue"]);
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.starts_with("one")).expect("row one");
    assert!(row.contains("yes"), "{out}");
    wfctl(&site, &["queue", "resume", "one"]);
    // A bulk kill is a dry run without --yes.
    let (code, out, _) = wfctl(&site, &["kill", "--selector", "team=cli,status=running"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("would kill 1 run(s)") && out.contains(&first),
        "{out}"
    );
    assert_eq!(api.get(&first).await.status(), RunStatus::Running);
    // wait: exit 5 on timeout, then the code of the first failure.
    let (code, _, err) = wfctl(&site, &["wait", &first, "--timeout", "200ms"]);
    assert_eq!(code, 5, "{err}");
    std::fs::write(&gate, b"").expect("gate");
    let (code, out, err) = wfctl(&site, &["wait", &first, &second, "--timeout", "60s"]);
    assert_eq!(code, 10, "{out}{err}");
    assert!(out.contains(&format!("{first} succeeded")), "{out}");
    assert!(out.contains(&format!("{second} failed")), "{out}");
    // cancel: one queued run, then bulk with --yes.
    let third = spawn(&["--queue", "one", "--not-before", "+1h"], "exit 0");
    let (code, out, _) = wfctl(&site, &["cancel", &third, "--reason", "later"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("cancelled") && out.contains("no process ever existed"),
        "{out}"
    );
    let fourth = spawn(&["--queue", "one", "--not-before", "+1h"], "exit 0");
    let (code, out, _) = wfctl(&site, &["cancel", "--selector", "team=cli", "--yes"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("cancelled 1 run(s)") && out.contains(&fourth),
        "{out}"
    );
    let (code, _, _) = wfctl(&site, &["wait", &fourth]);
    assert_eq!(code, 12);
    let (code, _, err) = wfctl(&site, &["cancel", "--selector", "nonsense"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_restarted_by_policy_is_followed_to_its_successor() {
    let mut site = site_with("");
    let api = site.start().await;
    let work = Work::new(&site);
    // Fails the first time, succeeds the second.
    let flag = site.dir.path().join("tried");
    let script = format!(
        "echo \"$WF_RUN_ID\" >> '{}'; while [ ! -e '{}' ]; do sleep 0.02; done; \
         if [ -e '{f}' ]; then exit 0; fi; touch '{f}'; exit 1",
        work.markers().display(),
        work.gate("a").display(),
        f = flag.display()
    );
    let mut req = work.req(sh(&script), "");
    req.restart = Some(RestartPolicy {
        on: vec!["failed".into()],
        backoff_ms: 100,
        ..Default::default()
    });
    let a = api.spawn_req(req).await;
    let mut req = work.req(work.agent(None, "0", 0), "");
    req.after = vec![a.run_id.clone()];
    let b = api.spawn_req(req).await;
    work.open_gate("a");
    let b = api.wait_terminal(&b.run_id, TIMEOUT).await;
    assert_eq!(b.status(), RunStatus::Succeeded, "{b:?}");
    let a = api.get(&a.run_id).await;
    assert_eq!(a.status(), RunStatus::Failed, "{a:?}");
    let next = successors(&api, &a.run_id)
        .await
        .pop()
        .expect("A's restart");
    assert_eq!(next.status(), RunStatus::Succeeded, "{next:?}");
    assert_eq!(work.started(), vec![a.run_id, next.run_id, b.run_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_queue_limits_live_and_lowering_one_kills_nothing() {
    let mut site = site_with("[queues.one]\nmax_concurrent = 1\n");
    let api = site.start().await;
    let work = Work::new(&site);
    let first = api
        .spawn_req(work.req(work.agent(Some("h"), "0", 0), "one"))
        .await;
    let second = api
        .spawn_req(work.req(work.agent(Some("h"), "0", 0), "one"))
        .await;
    api.wait_running(&first.run_id).await;
    assert_eq!(api.get(&second.run_id).await.status(), RunStatus::Queued);
    let set_limit = |n: usize| {
        let text = std::fs::read_to_string(&site.config).expect("config");
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("max_concurrent") {
                    format!("max_concurrent = {n}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&site.config, text + "\n").expect("config");
        site.signal(nix::sys::signal::Signal::SIGHUP);
    };
    set_limit(2);
    api.wait_running(&second.run_id).await;
    // Lower it again: both go on, a third waits.
    set_limit(1);
    let third = api
        .spawn_req(work.req(work.agent(None, "0", 0), "one"))
        .await;
    let reason = wait_for(TIMEOUT, "the lower limit in force", || async {
        let r = api.get(&third.run_id).await;
        (r.waiting_reason == "queue one full: 2/1 running").then_some(r.waiting_reason)
    })
    .await;
    assert!(!reason.is_empty());
    for r in [&first, &second] {
        assert_eq!(api.get(&r.run_id).await.status(), RunStatus::Running);
    }
    work.open_gate("h");
    for r in wait_all(&api, &[first, second, third]).await {
        assert_eq!(r.status(), RunStatus::Succeeded, "{r:?}");
    }
}

/// The systemd STATUS line counts what an operator reads in `systemctl status`: the runs with
/// a process and the runs waiting, not the finished ones. The daemon's notifications go to a
/// datagram socket of the test's (`NOTIFY_SOCKET`), as systemd's would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_counts_running_and_queued_runs() {
    let mut site = Site::new(Options::default()).expect("a site");
    site.add_config("\n[queues.work]\nmax_concurrent = 2\n");
    let notify_path = site.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("a notify socket");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a read timeout");
    site.env
        .push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    let api = site.start().await;
    // Finished runs first: they must not count.
    for _ in 0..3 {
        let run = api.spawn(&sh("exit 0")).await;
        api.wait_terminal(&run.run_id, TIMEOUT).await;
    }
    let in_work = |argv: Vec<String>| SpawnRequest {
        argv,
        queue: "work".into(),
        ..Default::default()
    };
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(api.spawn_req(in_work(sh("sleep 300"))).await);
    }
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(api.spawn_req(in_work(sh("exit 0"))).await);
    }
    for run in &holders {
        api.wait_running(&run.run_id).await;
    }
    let status_line = |want: &'static str| {
        let notify = notify.try_clone().expect("the notify socket");
        async move {
            let deadline = std::time::Instant::now() + TIMEOUT;
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 4096];
            while std::time::Instant::now() < deadline {
                let Ok(n) = tokio::task::block_in_place(|| notify.recv(&mut buf)) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.lines().any(|l| l == format!("STATUS={want}")) {
                    return;
                }
                seen.push(text);
            }
            panic!("no STATUS={want} within {TIMEOUT:?}; the daemon sent: {seen:?}");
        }
    };
    status_line("2 running, 3 queued, 0 stuck").await;

    for run in &holders {
        api.kill(&run.run_id).await;
    }
    for run in &waiting {
        let ended = api.wait_terminal(&run.run_id, TIMEOUT).await;
        assert_eq!(ended.status(), RunStatus::Succeeded, "{ended:?}");
    }
    status_line("0 running, 0 queued, 0 stuck").await;
}
