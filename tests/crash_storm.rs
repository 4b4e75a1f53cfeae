//! A bounded crash storm (invariant 5): three clients spawn and kill runs while the daemon is
//! SIGKILLed at random points and restarted, twenty times. Afterwards every spawn that was
//! acknowledged exists, no run is left in a live status without a process, and after a final
//! clean stop nothing of any run (acknowledged or not) is left in /proc or in the cgroup root.
//!
//! The delays come from a seeded generator; the seed is printed, and `WF_STORM_SEED=<n>` replays
//! a storm (as far as the machine's timing allows).
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use wf_supervisor::proto::{KillRequest, Run, RunStatus, SpawnRequest};

const ROUNDS: usize = 20;
const CLIENTS: usize = 3;

/// splitmix64: small, seeded, good enough to pick delays and actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    spawned: usize,
    spawn_errors: usize,
    killed: usize,
    kill_errors: usize,
}

/// A storm's seed (`WF_STORM_SEED`, else `default`; printed so that a storm can be replayed)
/// and its site (short graces, so that kills during the storm end quickly).
fn storm(name: &str, default: u64) -> (u64, Site) {
    let seed: u64 = std::env::var("WF_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{name}: seed {seed} (WF_STORM_SEED={seed} replays it)");
    let site = Site::new(Options {
        grace_ms: 300,
        ..Default::default()
    })
    .expect("a site");
    (seed, site)
}

/// One client: spawns (60 %) and kills its own acknowledged runs (40 %) until told to stop,
/// riding out the crashes (a call that fails is simply not counted as acknowledged).
async fn client_loop(
    client: Api,
    mut rng: Rng,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut mine: Vec<String> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if mine.is_empty() || rng.range(0, 10) < 6 {
            let args: &[&str] = match rng.range(0, 5) {
                0 => &["--hang"],
                1 => &["--children", "2", "--hang"],
                2 => &["--escape-setsid", "--hang"],
                3 => &["--sleep-ms", "200"],
                _ => &["--exit", "3"],
            };
            match client
                .try_spawn(SpawnRequest {
                    argv: fake(args),
                    ..Default::default()
                })
                .await
            {
                Ok(run) => {
                    tally.spawned += 1;
                    acked.lock().expect("acked lock").push(run.run_id.clone());
                    mine.push(run.run_id);
                }
                Err(_) => {
                    tally.spawn_errors += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        } else {
            let i = rng.range(0, mine.len() as u64) as usize;
            let run_id = mine.swap_remove(i);
            let force = rng.range(0, 2) == 0;
            match client
                .try_kill(KillRequest {
                    run_id,
                    force,
                    reason: "storm".into(),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => tally.killed += 1,
                Err(_) => {
                    tally.kill_errors += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.range(0, 30))).await;
    }
    tally
}

/// Whether something of the run exists: a process carrying its id, or its leader (which may
/// be a zombie not reaped yet).
fn has_process(run: &Run) -> bool {
    !pids_with_env(&format!("WF_RUN_ID={}", run.run_id)).is_empty()
        || (run.pid > 0 && stat(run.pid).is_some())
}

/// For a failure message: the run of each leftover process, whether any daemon knew it, and
/// what the daemons logged about it.
fn explain_leftovers(site: &Site, pids: &[i32], known: &BTreeSet<String>) -> String {
    let logs = site.log_text();
    let mut out = String::new();
    for &pid in pids {
        let run_id = std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| {
                env.split(|b| *b == 0)
                    .find_map(|kv| kv.strip_prefix(b"WF_RUN_ID="))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .unwrap_or_default();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        out.push_str(&format!(
            "pid {pid}: WF_RUN_ID={run_id}, listed or acknowledged: {}, log folder: {}, cgroup: {}\n",
            known.contains(&run_id),
            site.run_dir(&run_id).exists(),
            cgroup.trim().replace('\n', " ")
        ));
        if !run_id.is_empty() {
            let mut daemon = String::new();
            for line in logs.lines() {
                if line.starts_with("==== daemon start") {
                    daemon = line.to_string();
                } else if line.contains(&run_id) {
                    out.push_str(&format!("  {daemon} {line}\n"));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spawns_survive_twenty_crashes_and_nothing_is_left() {
    let (seed, mut site) = storm("crash storm", 20_240_611);
    site.start().await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client_loop(
                site.client(),
                Rng(seed ^ ((c as u64 + 1) << 32)),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut rng = Rng(seed);
    for _ in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(rng.range(50, 400))).await;
        site.crash();
        site.start().await;
    }
    // The last daemon gets some runs of its own before the clients stop.
    tokio::time::sleep(Duration::from_millis(rng.range(200, 400))).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for c in clients {
        let t = c.await.expect("a client task");
        total.spawned += t.spawned;
        total.spawn_errors += t.spawn_errors;
        total.killed += t.killed;
        total.kill_errors += t.kill_errors;
    }
    eprintln!("crash storm: {total:?}");
    assert!(
        total.spawned >= ROUNDS,
        "too few spawns got through for the storm to mean anything: {total:?}"
    );

    // Every acknowledged spawn exists.
    let api = site.client();
    let acked: Vec<String> = acked.lock().expect("acked lock").clone();
    let runs = api.list().await;
    let listed: BTreeSet<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !listed.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged spawn(s) are not listed after the storm: {missing:?}",
        missing.len()
    );
    for id in &acked {
        api.get(id).await;
    }
    eprintln!(
        "crash storm: {} runs listed, by status {:?}",
        runs.len(),
        count_by(runs.iter().map(|r| r.status().as_str_name()))
    );

    // No run is live without a process (a run that is ending may take a moment to say so).
    let mut suspects: Vec<String> = runs
        .iter()
        .filter(|r| !is_terminal(r.status()) && !has_process(r))
        .map(|r| r.run_id.clone())
        .collect();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !suspects.is_empty() {
        let mut still = Vec::new();
        for id in &suspects {
            let run = api.get(id).await;
            if !is_terminal(run.status()) && !has_process(&run) {
                still.push(run);
            }
        }
        assert!(
            still.is_empty() || std::time::Instant::now() < deadline,
            "runs in a live status with no process: {still:#?}"
        );
        suspects = still.into_iter().map(|r| r.run_id).collect();
        tokio::time::sleep(POLL).await;
    }
    site.assert_reaped(&[]).await;

    // A clean stop ends everything: nothing of any run is left, acknowledged or not.
    site.stop().await;
    let mut all: BTreeSet<String> = listed;
    all.extend(site.known_runs());
    for id in &all {
        assert_nothing_left(id, &[]);
    }
    let tagged = site.tagged_pids();
    assert!(
        tagged.is_empty(),
        "processes of the storm's runs are left after a clean stop: {}\n{}",
        describe(&tagged),
        explain_leftovers(&site, &tagged, &all)
    );
    if let Some(root) = &site.cgroup_root {
        let left = cgroup_children(root);
        assert!(
            left.is_empty(),
            "run cgroups are left after a clean stop: {left:?}"
        );
    }

    // And the next daemon finds every run settled.
    let api = site.start().await;
    let runs = api.list().await;
    let live: Vec<&Run> = runs.iter().filter(|r| !is_terminal(r.status())).collect();
    assert!(
        live.is_empty(),
        "runs still live after a clean stop and a restart: {live:#?}"
    );
    for id in &acked {
        api.get(id).await;
    }
    site.assert_reaped(&[]).await;
}

/// A crash storm over a queue: 40 runs wait in a queue of one, each writing a line to its own
/// marker file as the first thing it does. The daemon is SIGKILLed at random points while it
/// dispatches them and restarted, twelve times. Then the queue drains: every run ends, none ever
/// ran twice (no marker has two lines), every SUCCEEDED run ran once, and nothing is left. (The
/// narrow window of a dequeued run started before its STARTING record is durable is rarely hit
/// by chance here; `tests/recovery.rs` sets that state up on purpose.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_never_start_twice_through_a_crash_storm() {
    const RUNS: usize = 40;
    const QUEUE_ROUNDS: usize = 12;
    let (seed, mut site) = storm("queue crash storm", 20_261_202);
    site.add_config("\n[queues.one]\nmax_concurrent = 1\nmax_queued = 100\n");
    let marks = site.dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("a folder for the markers");
    let api = site.start().await;
    let script = format!("echo ran >> {}/$WF_RUN_ID; sleep 0.05", marks.display());
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        let run = api
            .spawn_req(SpawnRequest {
                argv: sh(&script),
                queue: "one".into(),
                ..Default::default()
            })
            .await;
        ids.push(run.run_id);
    }

    let mut rng = Rng(seed);
    for _ in 0..QUEUE_ROUNDS {
        tokio::time::sleep(Duration::from_millis(rng.range(30, 300))).await;
        site.crash();
        site.start().await;
    }
    let api = site.client();
    let mut ended = Vec::new();
    for id in &ids {
        ended.push(api.wait_terminal(id, Duration::from_secs(120)).await);
    }
    let lines = |id: &str| {
        std::fs::read_to_string(marks.join(id))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let twice: Vec<(String, usize)> = ids
        .iter()
        .map(|id| (id.clone(), lines(id)))
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "queued runs started more than once: {twice:?}"
    );
    for run in &ended {
        match run.status() {
            RunStatus::Succeeded => assert_eq!(
                lines(&run.run_id),
                1,
                "a SUCCEEDED run did not leave its one line: {run:?}"
            ),
            RunStatus::Lost => {}
            other => panic!("a queued run ended {other:?}, neither ran nor lost: {run:?}"),
        }
    }
    let by_status = count_by(ended.iter().map(|r| r.status().as_str_name()));
    eprintln!("queue crash storm: {by_status:?}");
    assert!(
        by_status.get("RUN_STATUS_SUCCEEDED").copied().unwrap_or(0) > 0,
        "no queued run succeeded: {by_status:?}"
    );

    site.stop().await;
    for id in &ids {
        assert_nothing_left(id, &[]);
    }
    if let Some(root) = &site.cgroup_root {
        let left = cgroup_children(root);
        assert!(
            left.is_empty(),
            "run cgroups are left after a clean stop: {left:?}"
        );
    }
}
