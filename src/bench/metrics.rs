//! metrics: what `[metrics] listen` and per-run usage cost. (1) Spawn latency with metrics on
//! against off, in the same run: two daemons, one with the listener (and usage sampled every
//! second) and one without, their Spawn calls alternated trial by trial (each run is killed
//! before the next trial; not timed); the time is the Spawn call's round trip (the answer comes
//! once the run is RUNNING and recorded), not a kernel marker as in spawn_burst; target: the
//! mean with metrics on within 5% of off. (2) Throughput with metrics on against off: the
//! throughput measure's repetition (its own code, `throughput::daemon_once`) on a fresh daemon
//! with metrics on, then on one with metrics off, alternating which goes first, as many times as
//! the throughput measure repeats; target: the median rate with metrics on at least 95% of off.
//! (3) A scrape with N live runs: N idle runs (`sleep 3600`) on the metrics daemon, then `GET
//! /metrics` timed (connect, request, whole body); target p99 <= 20 ms.
use std::time::Instant;

use futures::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::daemon::{self, Daemon};
use super::report::{Report, Row};
use super::stats::{ms, Summary};
use super::throughput;
use super::Ctx;

const WARMUP: usize = 3;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut rep = Report::new("metrics");
    let (port, extra) = metrics_on()?;
    let mut on = Daemon::start_with(ctx, "metrics-on", &extra).await?;
    let mut off = Daemon::start(ctx, "metrics-off").await?;
    let compared = compare(ctx, &on, &off).await;
    rep.daemon_stopped(off.stop());
    let scraped = match &compared {
        Ok(_) => scrape(ctx, &on, port).await,
        Err(_) => Ok(Vec::new()),
    };
    rep.daemon_stopped(on.stop());
    let (on_ms, off_ms) = compared?;
    let scrape_ms = scraped?;
    let (on_rates, off_rates) = throughput_compare(ctx, &mut rep).await?;

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ratio = mean(&on_ms) / mean(&off_ms).max(f64::MIN_POSITIVE);
    rep.rows
        .push(Row::dist("metrics", "Spawn, metrics off", "ms", &off_ms));
    rep.rows
        .push(Row::dist("metrics", "Spawn, metrics on", "ms", &on_ms));
    rep.rows.push(
        Row::value("metrics", "Spawn mean, on / off", "x", ratio).target("<= 1.05", ratio <= 1.05),
    );
    let median = |v: &[f64]| Summary::of(v).map(|s| s.p50).unwrap_or(0.0);
    let (on_rate, off_rate) = (median(&on_rates), median(&off_rates));
    let rate_ratio = on_rate / off_rate.max(f64::MIN_POSITIVE);
    let what = format!(
        "{} x true, {} clients",
        ctx.plan.throughput_runs, ctx.plan.throughput_clients
    );
    rep.rows.push(Row::value(
        "metrics",
        &format!("Throughput, metrics off ({what})"),
        "runs/s",
        off_rate,
    ));
    rep.rows.push(Row::value(
        "metrics",
        &format!("Throughput, metrics on ({what})"),
        "runs/s",
        on_rate,
    ));
    rep.rows.push(
        Row::value("metrics", "Throughput median, on / off", "x", rate_ratio)
            .target(">= 0.95", rate_ratio >= 0.95),
    );
    rep.notes.push(format!(
        "throughput: {} repetition(s) each way, each on a fresh daemon, alternating which goes \
         first: on {}, off {} runs/s",
        on_rates.len(),
        list(&on_rates),
        list(&off_rates)
    ));
    let n = ctx.plan.scale_runs;
    let s = Summary::of(&scrape_ms);
    rep.rows.push(
        Row::dist(
            "metrics",
            &format!("GET /metrics ({n} live runs)"),
            "ms",
            &scrape_ms,
        )
        .target("p99 <= 20 ms", s.is_some_and(|s| s.p99 <= 20.0)),
    );
    rep.data = serde_json::json!({
        "spawn_on_ms": on_ms, "spawn_off_ms": off_ms, "scrape_ms": scrape_ms, "live_runs": n,
        "throughput_on_runs_per_s": on_rates, "throughput_off_runs_per_s": off_rates,
    });
    Ok(rep)
}

/// A free loopback port and the config that turns metrics on there (usage sampled every second).
fn metrics_on() -> anyhow::Result<(u16, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let extra =
        format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nusage_sample_interval_ms = 1000\n");
    Ok((port, extra))
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The throughput measure's repetition with metrics on and off, each on a fresh daemon,
/// alternating which goes first: (on, off) runs per second.
async fn throughput_compare(ctx: &Ctx, rep: &mut Report) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for r in 0..ctx.plan.throughput_repeats {
        for metrics in if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let mut d = if metrics {
                let (_, extra) = metrics_on()?;
                Daemon::start_with(ctx, &format!("metrics-throughput-on{r}"), &extra).await?
            } else {
                Daemon::start(ctx, &format!("metrics-throughput-off{r}")).await?
            };
            let result = throughput::daemon_once(ctx, &d).await;
            rep.daemon_stopped(d.stop());
            let rate = result?.runs_per_s;
            if metrics {
                on.push(rate)
            } else {
                off.push(rate)
            }
        }
    }
    Ok((on, off))
}

/// Spawn latency on both daemons, alternated: (on, off).
async fn compare(ctx: &Ctx, on: &Daemon, off: &Daemon) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let trials = ctx.plan.spawn_trials;
    let mut con = on.client().await?;
    let mut coff = off.client().await?;
    let (mut on_ms, mut off_ms) = (Vec::new(), Vec::new());
    for i in 0..trials + WARMUP {
        for (client, out) in [(&mut con, &mut on_ms), (&mut coff, &mut off_ms)] {
            let t = Instant::now();
            let run = daemon::spawn(client, ctx, &["sleep", "60"], &[]).await?;
            let took = ms(t.elapsed());
            if i >= WARMUP {
                out.push(took);
            }
            daemon::kill(client, &run.run_id, 0, true).await?;
        }
    }
    Ok((on_ms, off_ms))
}

/// N idle runs on `d`, then timed scrapes; the runs are killed after.
async fn scrape(ctx: &Ctx, d: &Daemon, port: u16) -> anyhow::Result<Vec<f64>> {
    let n = ctx.plan.scale_runs;
    let clients = d.clients(4).await?;
    let per = n.div_ceil(clients.len());
    let jobs = clients.iter().cloned().enumerate().map(|(ci, mut c)| {
        let k = per.min(n.saturating_sub(ci * per));
        async move {
            let mut ids = Vec::with_capacity(k);
            for _ in 0..k {
                ids.push(
                    daemon::spawn(&mut c, ctx, &["sleep", "3600"], &[])
                        .await?
                        .run_id,
                );
            }
            anyhow::Ok(ids)
        }
    });
    let mut ids = Vec::with_capacity(n);
    for r in join_all(jobs).await {
        ids.extend(r?);
    }
    let mut out = Vec::new();
    for i in 0..ctx.plan.scale_latency_trials + WARMUP {
        let t = Instant::now();
        let body = get_metrics(port).await?;
        let took = ms(t.elapsed());
        anyhow::ensure!(
            body.contains("wf_runs_live"),
            "the scrape has no wf_runs_live"
        );
        if i >= WARMUP {
            out.push(took);
        }
    }
    let mut c = d.client().await?;
    for id in ids {
        daemon::kill(&mut c, &id, 0, true).await?;
    }
    Ok(out)
}

pub(super) async fn get_metrics(port: u16) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 200"),
        "scrape answered {:?}",
        text.lines().next()
    );
    Ok(text)
}
