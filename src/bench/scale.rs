//! scale: N concurrent idle runs (`sleep 3600`) on a fresh daemon. The daemon's VmRSS and open
//! fds (from /proc/DAEMON) are read idle (clients connected, no runs) and again with every run
//! live; the difference over N is the cost of one idle run. While they live, List (all runs)
//! and Get (one run) are timed. Then all N are killed at once (N concurrent Kill calls over 4
//! connections); the clock stops when the kernel says the last one is dead (pidfds).
//! The raw baseline for the kill: N `sleep 3600` in process groups of their own, killpg(TERM) to
//! each, pidfds to see them die.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use nix::sys::signal::Signal;
use wf_supervisor::proto::{GetRequest, ListRequest};

use super::daemon::{self, Daemon};
use super::procs::{self, Held, Usage};
use super::raw::{self, Stdout};
use super::report::{Report, Row};
use super::stats::{ms, Summary};
use super::{cleanup, sys, Ctx};

#[derive(Debug, Clone, serde::Serialize)]
struct DaemonScale {
    idle: Usage,
    busy: Usage,
    after_kill: Usage,
    spawn_seconds: f64,
    list_ms: Vec<f64>,
    get_ms: Vec<f64>,
    kill_all_ms: Option<f64>,
    kill_answers_ms: f64,
    held: usize,
    survivors: usize,
    kill_errors: usize,
    containment: String,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.plan.scale_runs;
    let mut rep = Report::new("scale");
    let mut d = Daemon::start(ctx, "scale").await?;
    let result = daemon_part(ctx, &d).await;
    rep.daemon_stopped(d.stop());
    let s = result?;
    let raw_ms = raw_kill_all(ctx).await?;

    let rss_per = (s.busy.rss_kib as f64 - s.idle.rss_kib as f64) / n as f64;
    let fds_per = (s.busy.fds as f64 - s.idle.fds as f64) / n as f64;
    rep.rows.push(
        Row::value("scale", "daemon RSS per idle run", "KiB", rss_per)
            .target("<= 64 KiB", rss_per <= 64.0),
    );
    rep.rows.push(
        Row::value("scale", "daemon fds per idle run", "fds", fds_per)
            .target("<= 4", fds_per <= 4.0),
    );
    let list = Summary::of(&s.list_ms);
    rep.rows.push(
        Row::dist("scale", &format!("List ({n} live runs)"), "ms", &s.list_ms)
            .target("p99 <= 20 ms", list.is_some_and(|l| l.p99 <= 20.0)),
    );
    rep.rows.push(Row::dist(
        "scale",
        &format!("Get ({n} live runs)"),
        "ms",
        &s.get_ms,
    ));
    let mut row = Row::value(
        "scale",
        &format!("kill all {n} at once -> nothing left"),
        "ms",
        s.kill_all_ms.unwrap_or(f64::NAN),
    );
    if let Some(r) = raw_ms {
        row = row.raw_value(r);
    }
    rep.rows.push(row);
    rep.rows.push(
        Row::value("scale", "survivors", "procs", s.survivors as f64).target("0", s.survivors == 0),
    );
    rep.notes.push(format!(
        "daemon idle: {} KiB RSS, {} fds, {} threads; with {n} live runs: {} KiB, {} fds, {} \
         threads; after killing them: {} KiB, {} fds; containment {}",
        s.idle.rss_kib,
        s.idle.fds,
        s.idle.threads,
        s.busy.rss_kib,
        s.busy.fds,
        s.busy.threads,
        s.after_kill.rss_kib,
        s.after_kill.fds,
        s.containment
    ));
    rep.notes.push(format!(
        "all {n} Kill calls answered {:.0} ms after they were issued",
        s.kill_answers_ms
    ));
    if s.kill_errors > 0 {
        rep.notes
            .push(format!("{} Kill call(s) failed", s.kill_errors));
    }
    rep.data = serde_json::json!({ "daemon": s, "raw_kill_all_ms": raw_ms });
    Ok(rep)
}

async fn daemon_part(ctx: &Ctx, d: &Daemon) -> anyhow::Result<DaemonScale> {
    let n = ctx.plan.scale_runs;
    let clients = d.clients(4).await?;
    let mut c = d.client().await?;
    c.list(ListRequest::default()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = d.usage()?;

    let t0 = Instant::now();
    let per = n.div_ceil(clients.len());
    let jobs = clients.iter().cloned().enumerate().map(|(ci, mut c)| {
        let k = per.min(n.saturating_sub(ci * per));
        async move {
            let mut runs = Vec::with_capacity(k);
            for _ in 0..k {
                runs.push(daemon::spawn(&mut c, ctx, &["sleep", "3600"], &[]).await?);
            }
            anyhow::Ok(runs)
        }
    });
    let mut runs = Vec::with_capacity(n);
    for r in join_all(jobs).await {
        runs.extend(r?);
    }
    let spawn_seconds = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = d.usage()?;

    let trials = ctx.plan.scale_latency_trials;
    let mut list_ms = Vec::with_capacity(trials);
    for _ in 0..trials {
        let t = Instant::now();
        let got = c
            .list(ListRequest::default())
            .await?
            .into_inner()
            .runs
            .len();
        list_ms.push(ms(t.elapsed()));
        if got < n {
            anyhow::bail!("List returned {got} runs, expected {n}");
        }
    }
    let mut get_ms = Vec::with_capacity(trials);
    for i in 0..trials {
        let id = runs[(i * 7919) % runs.len()].run_id.clone();
        let t = Instant::now();
        c.get(GetRequest { run_id: id }).await?;
        get_ms.push(ms(t.elapsed()));
    }

    // Hold every run's process (argv is exec'd directly: the leader is the whole run).
    let held: Vec<Held> = runs
        .iter()
        .filter_map(|r| {
            let fd = sys::pidfd_open(r.pid).ok()?;
            let needle = format!("WF_RUN_ID={}", r.run_id).into_bytes();
            procs::environ_has(r.pid, &needle).then_some(Held { pid: r.pid, fd })
        })
        .collect();
    let held = Arc::new(held);
    let rx = procs::watch_exits(held.clone(), Instant::now() + Duration::from_secs(60));
    let t0 = Instant::now();
    let kills = runs.iter().enumerate().map(|(i, r)| {
        let mut c = clients[i % clients.len()].clone();
        let id = r.run_id.clone();
        async move { daemon::kill(&mut c, &id, 0, false).await }
    });
    let answers = join_all(kills).await;
    let kill_answers_ms = ms(t0.elapsed());
    let exits = rx.await?;
    let kill_errors = answers.iter().filter(|a| a.is_err()).count();
    let kill_all_ms = exits.last.map(|l| ms(l.saturating_duration_since(t0)));
    let mut survivors = exits.alive.len();
    if survivors > 0 {
        survivors = survivors.max(procs::kill_all_with_env(&ctx.tag_needle()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_kill = d.usage()?;
    Ok(DaemonScale {
        idle,
        busy,
        after_kill,
        spawn_seconds,
        list_ms,
        get_ms,
        kill_all_ms,
        kill_answers_ms,
        held: held.len(),
        survivors,
        kill_errors,
        containment: runs
            .first()
            .map(|r| r.containment.clone())
            .unwrap_or_default(),
    })
}

/// The raw baseline of the kill-all: ms until the last of N raw sleeps is dead.
async fn raw_kill_all(ctx: &Ctx) -> anyhow::Result<Option<f64>> {
    let n = ctx.plan.scale_runs;
    let argv = vec!["sleep".to_string(), "3600".to_string()];
    let mut env = BTreeMap::new();
    let (k, v) = ctx.tag_env();
    env.insert(k, v);
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        runs.push(raw::spawn(&argv, &env, ctx.tmp(), Stdout::Pipe)?);
    }
    let held: Vec<Held> = runs
        .iter()
        .map(|r| {
            Ok(Held {
                pid: r.pid,
                fd: r.pidfd.try_clone()?,
            })
        })
        .collect::<std::io::Result<_>>()?;
    let held = Arc::new(held);
    let rx = procs::watch_exits(held, Instant::now() + Duration::from_secs(60));
    let t0 = Instant::now();
    for r in &runs {
        r.signal_group(Signal::SIGTERM);
    }
    let exits = rx.await?;
    for r in runs.iter_mut() {
        r.reap();
    }
    cleanup::reap_orphans();
    Ok(exits.last.map(|l| ms(l.saturating_duration_since(t0))))
}
