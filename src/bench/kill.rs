//! kill_tree, kill_ignore, kill_mixed, kill_escapee: Kill issued -> no process of the run exists.
//!
//! Each trial starts a shell that builds a process tree and then writes a marker line to the
//! benchmark's FIFO. The benchmark then waits, from /proc, until the whole tree is in place
//! (every child has exec'd `sleep`, the ones meant to ignore TERM do so per their SigIgn mask,
//! the escapees sit in sessions of their own), holds every process of the run by a pidfd, starts
//! the clock and issues the Kill. The clock stops when the last pidfd turns readable: the kernel's
//! word that the process is dead, not the daemon's. Processes of a daemon run are found by
//! `WF_RUN_ID=<run id>` in their environment; those of a raw run by a per-trial variable.
//!
//! The raw baseline ends the same tree as a careful orchestrator would without the daemon:
//! killpg(TERM) (plus a pidfd TERM to each escapee, which it knows from its own /proc scan),
//! wait for the pidfds up to the grace, then killpg(KILL) and KILL through the pidfds.
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::daemon::{self, Client, Daemon};
use super::fifo::Fifo;
use super::procs::{self, Held, Proc};
use super::raw::{self, RawRun, Stdout};
use super::report::{Report, Row};
use super::stats::{ms, Summary};
use super::{cleanup, sys, Ctx};

/// Which tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 50 TERM-respecting `sleep` children.
    Tree,
    /// The same tree, every process ignoring TERM; grace 1 s.
    Ignore,
    /// The leader dies on TERM, its children ignore it; grace 1 s.
    Mixed,
    /// TERM-respecting children plus grandchildren that called setsid.
    Escapee,
}

/// Which processes must ignore TERM before the clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ignoring {
    Nobody,
    Everyone,
    SleepsOnly,
}

struct Scenario {
    measure: &'static str,
    script: String,
    sleeps: usize,
    escapees: usize,
    ignoring: Ignoring,
    /// Grace sent with the Kill; 0 means the run's own (the config's default).
    grace_ms: u64,
    subtract_grace: bool,
    trials: usize,
    raw_trials: usize,
    about: &'static str,
}

/// The daemon's default grace, used by the raw baseline where the Kill names none.
const DEFAULT_GRACE_MS: u64 = 5000;

fn scenario(ctx: &Ctx, kind: Kind) -> Scenario {
    let p = &ctx.plan;
    let ready = r#"echo "ready $BENCH_TRIAL" > "$BENCH_FIFO"; wait"#;
    let loop_of =
        |n: usize, body: &str| format!("i=0; while [ $i -lt {n} ]; do {body} & i=$((i+1)); done; ");
    match kind {
        Kind::Tree => Scenario {
            measure: "kill_tree",
            script: format!("{}{ready}", loop_of(p.kill_tree_children, "sleep 3600")),
            sleeps: p.kill_tree_children,
            escapees: 0,
            ignoring: Ignoring::Nobody,
            grace_ms: 0,
            subtract_grace: false,
            trials: p.kill_tree_trials,
            raw_trials: p.kill_tree_trials,
            about: "sh with 50 background sleeps, all TERM-respecting",
        },
        Kind::Ignore => Scenario {
            measure: "kill_ignore",
            script: format!(
                "trap '' TERM; {}{ready}",
                loop_of(p.kill_tree_children, "sleep 3600")
            ),
            sleeps: p.kill_tree_children,
            escapees: 0,
            ignoring: Ignoring::Everyone,
            grace_ms: p.kill_grace_ms,
            subtract_grace: true,
            trials: p.kill_grace_trials,
            raw_trials: p.kill_grace_raw_trials,
            about: "sh with 50 background sleeps, every process ignoring TERM",
        },
        Kind::Mixed => Scenario {
            measure: "kill_mixed",
            script: format!(
                "{}{ready}",
                loop_of(p.kill_mixed_children, "(trap '' TERM; exec sleep 3600)")
            ),
            sleeps: p.kill_mixed_children,
            escapees: 0,
            ignoring: Ignoring::SleepsOnly,
            grace_ms: p.kill_grace_ms,
            subtract_grace: true,
            trials: p.kill_grace_trials,
            raw_trials: p.kill_grace_raw_trials,
            about: "the leader sh dies on TERM, its 20 sleep children ignore it",
        },
        Kind::Escapee => Scenario {
            measure: "kill_escapee",
            script: format!(
                "{}sh -c 'setsid sleep 3600 & wait' & (setsid sleep 3600 &); {ready}",
                loop_of(5, "sleep 3600")
            ),
            sleeps: 7,
            escapees: 2,
            ignoring: Ignoring::Nobody,
            grace_ms: p.kill_grace_ms,
            subtract_grace: false,
            trials: p.kill_escapee_trials,
            raw_trials: p.kill_escapee_trials,
            about: "5 sleeps, a grandchild that calls setsid under a waiting sh, and a \
                    double-forked setsid grandchild whose parent is gone",
        },
    }
}

/// One trial's outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Trial {
    /// Kill issued -> nothing left (minus the grace where the measure says so); None when
    /// something survived.
    ms: Option<f64>,
    processes: usize,
    survivors: usize,
    /// Zombies of the run still unreaped 1 s after the Kill answer (daemon only).
    zombies: usize,
    /// The daemon's answer (daemon only).
    answer_ms: Option<f64>,
    phase: String,
    signals: Vec<String>,
    reported_survivors: u32,
    reported_duration_ms: u64,
    /// Processes of the run whose pidfd was not yet readable when the Kill answer arrived
    /// (checked right then, so a slow waiter thread cannot make it up).
    alive_at_answer: usize,
}

pub async fn run(ctx: &Ctx, kind: Kind) -> anyhow::Result<Report> {
    let sc = scenario(ctx, kind);
    let mut d = Daemon::start(ctx, sc.measure).await?;
    let mut client = d.client().await?;
    let mut fifo = Fifo::create(&ctx.tmp().join(format!("{}.fifo", sc.measure)))?;
    let mut daemon_trials = Vec::new();
    let mut raw_trials = Vec::new();
    let mut containment = String::new();
    // Alternate daemon and raw trials so that noise on the machine falls on both alike.
    for i in 0..sc.trials.max(sc.raw_trials) {
        if i < sc.trials {
            let (t, c) = daemon_trial(ctx, &sc, &mut client, &mut fifo, i).await?;
            containment = c;
            daemon_trials.push(t);
        }
        if i < sc.raw_trials {
            raw_trials.push(raw_trial(ctx, &sc, &mut fifo, i).await?);
        }
    }
    let stop = d.stop();

    let mut rep = Report::new(sc.measure);
    let times = |v: &[Trial]| v.iter().filter_map(|t| t.ms).collect::<Vec<f64>>();
    let (dt, rt) = (times(&daemon_trials), times(&raw_trials));
    let survivors: usize = daemon_trials.iter().map(|t| t.survivors).sum();
    let failed_trials = daemon_trials.iter().filter(|t| t.survivors > 0).count();
    let (ds, rs) = (Summary::of(&dt), Summary::of(&rt));
    let metric = if sc.subtract_grace {
        "Kill -> nothing left, minus grace"
    } else {
        "Kill -> nothing left"
    };
    let row = Row::dist(sc.measure, metric, "ms", &dt).raw_dist(&rt);
    let row = match kind {
        Kind::Tree => {
            let pass =
                matches!((ds, rs), (Some(a), Some(b)) if a.p99 <= b.p99 + 5.0) && survivors == 0;
            row.target("p99 <= raw p99 + 5 ms", pass)
        }
        Kind::Ignore | Kind::Mixed => {
            let pass = ds.is_some_and(|a| a.p99 <= 20.0) && survivors == 0;
            row.target("p99 <= grace + 20 ms", pass)
        }
        Kind::Escapee => row,
    };
    rep.rows.push(row);
    rep.rows.push(
        Row::value(
            sc.measure,
            "survivors (all trials)",
            "procs",
            survivors as f64,
        )
        .target("0", survivors == 0),
    );
    rep.notes.push(format!(
        "{}; {} processes held per trial; grace {} ms; containment {containment}",
        sc.about,
        daemon_trials.first().map(|t| t.processes).unwrap_or(0),
        if sc.grace_ms == 0 {
            DEFAULT_GRACE_MS
        } else {
            sc.grace_ms
        },
    ));
    if failed_trials > 0 {
        rep.notes.push(format!(
            "{failed_trials} trial(s) left survivors (excluded from the times; the benchmark \
             killed them)"
        ));
    }
    let zombies: usize = daemon_trials.iter().map(|t| t.zombies).sum();
    if zombies > 0 {
        rep.notes.push(format!(
            "{zombies} zombie(s) of killed runs were still unreaped 1 s after the Kill answer"
        ));
    }
    let early = daemon_trials
        .iter()
        .filter(|t| t.alive_at_answer > 0)
        .count();
    if early > 0 {
        rep.notes.push(format!(
            "in {early} trial(s) a process of the run was still alive when the Kill answer \
             arrived"
        ));
    }
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    for t in &daemon_trials {
        *phases.entry(t.phase.clone()).or_default() += 1;
    }
    let expected = match kind {
        Kind::Tree | Kind::Escapee => "KILL_PHASE_TERM",
        Kind::Ignore | Kind::Mixed => "KILL_PHASE_KILL",
    };
    if phases.keys().any(|p| p != expected) {
        rep.notes.push(format!(
            "the daemon reported phases {phases:?} (expected {expected} for this tree)"
        ));
    }
    let answers: Vec<f64> = daemon_trials.iter().filter_map(|t| t.answer_ms).collect();
    rep.data = serde_json::json!({
        "containment": containment,
        "daemon_trials": daemon_trials,
        "raw_trials": raw_trials,
        "kill_answer_ms": Summary::of(&answers),
        "phases": phases,
    });
    rep.daemon_stopped(stop);
    Ok(rep)
}

/// Wait until the tree of `leader` is complete, as seen in /proc; returns its processes.
async fn wait_tree(sc: &Scenario, needle: &[u8], leader: i32) -> anyhow::Result<Vec<Proc>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let procs = procs::live_with_env(needle);
        let sleeps: Vec<&Proc> = procs.iter().filter(|p| p.comm == "sleep").collect();
        let escapees = sleeps.iter().filter(|p| p.sid == p.pid).count();
        let ignores = |p: &Proc| procs::ignores(p.pid, libc::SIGTERM) == Some(true);
        let ignoring_ok = match sc.ignoring {
            Ignoring::Nobody => true,
            Ignoring::Everyone => procs.iter().all(ignores),
            Ignoring::SleepsOnly => sleeps.iter().all(|p| ignores(p)),
        };
        if procs.iter().any(|p| p.pid == leader)
            && sleeps.len() == sc.sleeps
            && escapees == sc.escapees
            && ignoring_ok
        {
            return Ok(procs);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the tree of pid {leader} was not complete within 15 s: {} process(es), {} sleep(s), \
                 {escapees} escapee(s), TERM ignored as planned: {ignoring_ok}",
                procs.len(),
                sleeps.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Kill whatever of the trial survived and count it.
fn count_and_end_survivors(needle: &[u8], exits: &procs::Exits) -> usize {
    let mut alive: Vec<i32> = exits.alive.clone();
    for p in procs::live_with_env(needle) {
        if !alive.contains(&p.pid) {
            alive.push(p.pid);
        }
    }
    if !alive.is_empty() {
        procs::kill_all_with_env(needle);
    }
    alive.len()
}

fn grace(sc: &Scenario) -> Duration {
    Duration::from_millis(if sc.grace_ms == 0 {
        DEFAULT_GRACE_MS
    } else {
        sc.grace_ms
    })
}

fn elapsed_ms(sc: &Scenario, t0: Instant, exits: &procs::Exits) -> Option<f64> {
    let last = exits.last?;
    let mut v = ms(last.saturating_duration_since(t0));
    if sc.subtract_grace {
        v -= sc.grace_ms as f64;
    }
    Some(v)
}

async fn daemon_trial(
    ctx: &Ctx,
    sc: &Scenario,
    client: &mut Client,
    fifo: &mut Fifo,
    i: usize,
) -> anyhow::Result<(Trial, String)> {
    let trial = ctx.unique(&format!("{}-d{i}", sc.measure));
    let env = [
        ("BENCH_FIFO", fifo.path().display().to_string()),
        ("BENCH_TRIAL", trial.clone()),
    ];
    let run = daemon::spawn(client, ctx, &["sh", "-c", &sc.script], &env).await?;
    fifo.wait_line(&format!("ready {trial}"), Duration::from_secs(15))
        .await?;
    let needle = format!("WF_RUN_ID={}", run.run_id).into_bytes();
    let tree = wait_tree(sc, &needle, run.pid).await?;
    let held = Arc::new(procs::hold(&tree, &needle));
    let rx = procs::watch_exits(
        held.clone(),
        Instant::now() + grace(sc) + Duration::from_secs(20),
    );

    let t0 = Instant::now();
    let answer = daemon::kill(client, &run.run_id, sc.grace_ms, false).await;
    let answered = Instant::now();
    let alive_at_answer = held.iter().filter(|h| !procs::has_exited(h)).count();
    let exits = rx.await?;

    let survivors = count_and_end_survivors(&needle, &exits);
    // The daemon reaps what it adopted; give it a moment, then count what is left unreaped.
    procs::wait_until(Duration::from_secs(1), Duration::from_millis(5), || {
        procs::with_env(&needle).is_empty()
    })
    .await;
    let zombies = procs::with_env(&needle)
        .iter()
        .filter(|p| p.state == 'Z')
        .count();
    let answer = answer?;
    let t = Trial {
        ms: if survivors == 0 {
            elapsed_ms(sc, t0, &exits)
        } else {
            None
        },
        processes: held.len(),
        survivors,
        zombies,
        answer_ms: Some(ms(answered - t0)),
        phase: wf_supervisor::proto::KillPhase::try_from(answer.phase)
            .map(|p| p.as_str_name().to_string())
            .unwrap_or_else(|_| answer.phase.to_string()),
        signals: answer.signals_sent.clone(),
        reported_survivors: answer.survivors,
        reported_duration_ms: answer.duration_ms,
        alive_at_answer,
    };
    Ok((t, run.containment))
}

async fn raw_trial(ctx: &Ctx, sc: &Scenario, fifo: &mut Fifo, i: usize) -> anyhow::Result<Trial> {
    let trial = ctx.unique(&format!("{}-r{i}", sc.measure));
    let mut env = BTreeMap::new();
    env.insert("BENCH_FIFO".to_string(), fifo.path().display().to_string());
    env.insert("BENCH_TRIAL".to_string(), trial.clone());
    let (k, v) = ctx.tag_env();
    env.insert(k, v);
    let argv: Vec<String> = ["sh", "-c", &sc.script]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut run = raw::spawn(&argv, &env, ctx.tmp(), Stdout::Pipe)?;
    fifo.wait_line(&format!("ready {trial}"), Duration::from_secs(15))
        .await?;
    let needle = format!("BENCH_TRIAL={trial}").into_bytes();
    let tree = wait_tree(sc, &needle, run.pid).await?;
    let held = Arc::new(procs::hold(&tree, &needle));
    let outside: Vec<i32> = tree
        .iter()
        .filter(|p| p.pgid != run.pid)
        .map(|p| p.pid)
        .collect();
    let rx = procs::watch_exits(
        held.clone(),
        Instant::now() + grace(sc) + Duration::from_secs(20),
    );

    let t0 = Instant::now();
    raw_end(&run, &held, &outside, grace(sc));
    let exits = rx.await?;

    let survivors = count_and_end_survivors(&needle, &exits);
    finish(&mut run);
    Ok(Trial {
        ms: if survivors == 0 {
            elapsed_ms(sc, t0, &exits)
        } else {
            None
        },
        processes: held.len(),
        survivors,
        ..Trial::default()
    })
}

/// The raw kill: TERM to the group and to known escapees, the grace (cut short when all are
/// dead), then KILL to the group and to whatever is left.
fn raw_end(run: &RawRun, held: &[Held], outside: &[i32], grace: Duration) {
    run.signal_group(Signal::SIGTERM);
    for h in held.iter().filter(|h| outside.contains(&h.pid)) {
        let _ = sys::pidfd_signal(h.fd.as_fd(), libc::SIGTERM);
    }
    let exits = procs::wait_all_exited(held, Instant::now() + grace);
    if !exits.alive.is_empty() {
        run.signal_group(Signal::SIGKILL);
        for h in held.iter().filter(|h| exits.alive.contains(&h.pid)) {
            let _ = sys::pidfd_signal(h.fd.as_fd(), libc::SIGKILL);
        }
    }
}

/// Reap the leader (its group is empty now) and the orphans re-parented to us.
fn finish(run: &mut RawRun) {
    run.reap();
    cleanup::reap_orphans();
}
