//! heartbeats: N runs of the heartbeat agent (see `agent`), each writing R lines per second to
//! fd 3 for S seconds, all released at once through a "go" FIFO.
//!
//! CPU: the daemon's utime+stime (from /proc/DAEMON/stat) from the release until its records
//! show every run ended, over the lines written, per million. Measured twice, on fresh daemons:
//! with a Watch stream open (as an orchestrator would have; the daemon only emits heartbeat
//! events while someone watches) and with no watcher.
//!
//! Lag, honestly: the daemon's events do not carry the agent's timestamps, but every event
//! carries the run's cumulative heartbeat count. The agent records the CLOCK_MONOTONIC time
//! just before writing each line; the benchmark records the same clock when each Watch event
//! arrives. Line k of a run became visible at the arrival of the first event whose count is
//! above k, so its lag is that arrival minus its write time. Every line of every run is
//! counted, so coalesced, late or skipped events all show up as lag, as an orchestrator would
//! see them. The raw baseline reads the same agents' fd 3 pipes directly in the benchmark and
//! applies the same rule to each read.
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use wf_supervisor::proto::{ListRequest, WatchRequest};

use super::daemon::{self, Daemon, StopReport};
use super::procs::{self, Held};
use super::raw::{self, Stdout};
use super::report::{Report, Row};
use super::stats::Summary;
use super::{agent, cleanup, sys, Ctx};

/// (cumulative lines visible, CLOCK_MONOTONIC ns when seen), in arrival order.
type Sightings = Vec<(u64, u64)>;

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Phase {
    name: &'static str,
    runs: usize,
    lines_written: u64,
    lines_counted: u64,
    /// Daemon CPU (benchmark CPU for the raw reader) over the window, seconds.
    cpu_s: f64,
    window_s: f64,
    cpu_s_per_million: f64,
    /// Sightings received (Watch events carrying a run, or raw reads).
    sightings: u64,
    lines_never_seen: u64,
    lag: Option<Summary>,
    /// Lines per second per agent actually achieved (median over agents).
    agent_rate: f64,
    #[serde(skip)]
    lags_ms: Vec<f64>,
    /// Where the lag of the daemon's path lies, in wall-clock ms from the events themselves:
    /// a run's reader handing a batch to the core (`run.last_heartbeat_at`) to the core's
    /// event (`event.at`), and that event to its arrival here.
    to_event: Option<Summary>,
    to_client: Option<Summary>,
    stop: Option<StopReport>,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut rep = Report::new("heartbeats");
    let watched = daemon_phase(ctx, true).await?;
    let unwatched = daemon_phase(ctx, false).await?;
    let raw = raw_phase(ctx).await?;
    let p = &ctx.plan;

    rep.rows.push(
        Row::value(
            "heartbeats",
            "daemon CPU per million lines (Watch open)",
            "s",
            watched.cpu_s_per_million,
        )
        .raw_value(raw.cpu_s_per_million)
        .target("<= 2 s", watched.cpu_s_per_million <= 2.0),
    );
    rep.rows.push(Row::value(
        "heartbeats",
        "daemon CPU per million lines (no watcher)",
        "s",
        unwatched.cpu_s_per_million,
    ));
    // Against the raw reader's own lag in the same run: the machine's load moves both.
    let raw_p99 = raw.lag.map(|l| l.p99).unwrap_or(0.0);
    let lag_pass =
        watched.lag.is_some_and(|l| l.p99 <= raw_p99 + 20.0) && watched.lines_never_seen == 0;
    rep.rows.push(
        Row::dist(
            "heartbeats",
            "write -> visible in Watch",
            "ms",
            &watched.lags_ms,
        )
        .raw_dist(&raw.lags_ms)
        .target("p99 <= raw p99 + 20 ms", lag_pass),
    );
    for ph in [&watched, &unwatched] {
        if ph.lines_counted != ph.lines_written {
            rep.notes.push(format!(
                "{}: the daemon counted {} heartbeat lines, the agents wrote {}",
                ph.name, ph.lines_counted, ph.lines_written
            ));
        }
    }
    if let (Some(e), Some(c)) = (&watched.to_event, &watched.to_client) {
        rep.notes.push(format!(
            "where the Watch lag lies (wall-clock ms, from the events' own times): a reader's \
             batch -> the core's event p50 {:.0}, p99 {:.0}; the event -> its arrival in the \
             benchmark p50 {:.0}, p99 {:.0}; the rest is the agent's write -> the reader's read \
             (batches of {} ms)",
            e.p50,
            e.p99,
            c.p50,
            c.p99,
            wf_supervisor::run::beats::HEARTBEAT_BATCH_MS
        ));
    }
    if watched.lines_never_seen > 0 {
        rep.notes.push(format!(
            "{} line(s) never became visible through Watch",
            watched.lines_never_seen
        ));
    }
    rep.notes.push(format!(
        "{} runs x {} lines/s x {} s; agents achieved a median {:.0} lines/s each; {} Watch \
         events with a run; lag = arrival of the first Watch event whose run.heartbeats covers a \
         line minus the agent's CLOCK_MONOTONIC write time of that line, over every line; raw = \
         the benchmark reading the fd 3 pipes itself (its CPU in the raw column)",
        p.hb_runs, p.hb_rate, p.hb_secs, watched.agent_rate, watched.sightings
    ));
    for ph in [&watched, &unwatched] {
        if let Some(s) = &ph.stop {
            rep.daemon_stopped(s.clone());
        }
    }
    rep.data = serde_json::json!({
        "watched": watched,
        "unwatched": unwatched,
        "raw": raw,
    });
    Ok(rep)
}

fn agent_env(ctx: &Ctx, dir: &std::path::Path, i: usize) -> Vec<(&'static str, String)> {
    let p = &ctx.plan;
    vec![
        ("HB_RATE", p.hb_rate.to_string()),
        ("HB_SECS", p.hb_secs.to_string()),
        (
            "HB_OUT",
            dir.join(format!("hb-{i}.bin")).display().to_string(),
        ),
        ("BENCH_GO", dir.join("go.fifo").display().to_string()),
    ]
}

/// The go FIFO, opened read-write and kept open so that bytes wait for late agents.
fn go_fifo(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("go.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)?)
}

async fn daemon_phase(ctx: &Ctx, watched: bool) -> anyhow::Result<Phase> {
    let name = if watched { "watched" } else { "unwatched" };
    let mut d = Daemon::start(ctx, &format!("heartbeats-{name}")).await?;
    let result = daemon_phase_inner(ctx, &d, name, watched).await;
    let stop = d.stop();
    let mut ph = result?;
    ph.stop = Some(stop);
    Ok(ph)
}

async fn daemon_phase_inner(
    ctx: &Ctx,
    d: &Daemon,
    name: &'static str,
    watched: bool,
) -> anyhow::Result<Phase> {
    let n = ctx.plan.hb_runs;
    let dir = ctx.tmp().join(format!("hb-{name}"));
    std::fs::create_dir_all(&dir)?;
    let mut go = go_fifo(&dir)?;
    let clients = d.clients(4).await?;
    let mut lister = d.client().await?;

    let stop_watch = CancellationToken::new();
    let watcher = if watched {
        let mut wc = d.client_with_window(ctx.watch_window).await?;
        let mut stream = wc
            .watch(WatchRequest {
                run_id: String::new(),
            })
            .await?
            .into_inner();
        let stop = stop_watch.clone();
        Some(tokio::spawn(async move {
            // Every event of every run, until each of the n runs has shown its end (or the
            // benchmark gives up waiting).
            let mut seen: HashMap<String, Sightings> = HashMap::new();
            let (mut to_event, mut to_client) = (Vec::new(), Vec::new());
            let mut ended = std::collections::HashSet::new();
            while ended.len() < n {
                let msg = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = stream.message() => m,
                };
                match msg {
                    Ok(Some(ev)) => {
                        let t = sys::mono_ns();
                        if daemon::is_terminal(ev.status) {
                            ended.insert(ev.run_id.clone());
                        }
                        if let Some(run) = ev.run {
                            if ev.kind == "heartbeat" {
                                to_event.push((ev.at - run.last_heartbeat_at) as f64);
                                to_client.push((wf_supervisor::time::now_ms() - ev.at) as f64);
                            }
                            seen.entry(ev.run_id).or_default().push((run.heartbeats, t));
                        }
                    }
                    _ => break,
                }
            }
            (seen, Summary::of(&to_event), Summary::of(&to_client))
        }))
    } else {
        None
    };

    // Start the agents; they wait for the go byte.
    let self_exe = ctx.self_exe.display().to_string();
    let per = n.div_ceil(clients.len());
    let jobs = clients.iter().cloned().enumerate().map(|(ci, mut c)| {
        let lo = ci * per;
        let hi = n.min(lo + per);
        let (self_exe, dir) = (self_exe.clone(), dir.clone());
        async move {
            let mut runs = Vec::new();
            for i in lo..hi {
                let env = agent_env(ctx, &dir, i);
                let env: Vec<(&str, String)> = env.into_iter().collect();
                let run =
                    daemon::spawn(&mut c, ctx, &[self_exe.as_str(), agent::FLAG], &env).await?;
                runs.push((i, run));
            }
            anyhow::Ok(runs)
        }
    });
    let mut runs = Vec::with_capacity(n);
    for r in join_all(jobs).await {
        runs.extend(r?);
    }
    let held: Vec<Held> = runs
        .iter()
        .filter_map(|(_, r)| {
            sys::pidfd_open(r.pid)
                .ok()
                .map(|fd| Held { pid: r.pid, fd })
        })
        .collect();
    let held = Arc::new(held);

    let cpu0 = procs::cpu_seconds(d.pid).unwrap_or(0.0);
    let t0 = Instant::now();
    go.write_all(&vec![b'g'; n])?;
    let secs = ctx.plan.hb_secs;
    let exits = procs::watch_exits(held, Instant::now() + Duration::from_secs(secs + 120)).await?;
    if !exits.alive.is_empty() {
        anyhow::bail!("{} agent(s) did not finish in time", exits.alive.len());
    }
    // Until the daemon's records show every run ended.
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let all = lister.list(ListRequest::default()).await?.into_inner().runs;
        if all.iter().all(|r| daemon::is_terminal(r.status)) || Instant::now() >= deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu1 = procs::cpu_seconds(d.pid).unwrap_or(0.0);
    let window_s = t0.elapsed().as_secs_f64();
    // The records may show the end before its event reaches us: let the stream catch up.
    let (seen, to_event, to_client) = match watcher {
        Some(mut w) => match tokio::time::timeout(Duration::from_secs(10), &mut w).await {
            Ok(r) => r?,
            Err(_) => {
                stop_watch.cancel();
                w.await?
            }
        },
        None => (HashMap::new(), None, None),
    };

    let counted: BTreeMap<&str, u64> = records
        .iter()
        .map(|r| (r.run_id.as_str(), r.heartbeats))
        .collect();
    let mut ph = Phase {
        name,
        runs: n,
        cpu_s: cpu1 - cpu0,
        window_s,
        to_event,
        to_client,
        ..Phase::default()
    };
    let mut rates = Vec::new();
    for (i, run) in &runs {
        let times = read_times(&dir, *i)?;
        ph.lines_written += times.len() as u64;
        ph.lines_counted += counted.get(run.run_id.as_str()).copied().unwrap_or(0);
        rates.push(rate(&times));
        if watched {
            let s = seen.get(&run.run_id).map(Vec::as_slice).unwrap_or(&[]);
            ph.sightings += s.len() as u64;
            ph.lines_never_seen += lags(&times, s, &mut ph.lags_ms);
        }
    }
    finish_phase(&mut ph, rates);
    Ok(ph)
}

async fn raw_phase(ctx: &Ctx) -> anyhow::Result<Phase> {
    let n = ctx.plan.hb_runs;
    let dir = ctx.tmp().join("hb-raw");
    std::fs::create_dir_all(&dir)?;
    let mut go = go_fifo(&dir)?;
    let argv = vec![ctx.self_exe.display().to_string(), agent::FLAG.to_string()];
    let mut runs = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for i in 0..n {
        let mut env: BTreeMap<String, String> = agent_env(ctx, &dir, i)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let (k, v) = ctx.tag_env();
        env.insert(k, v);
        let mut r = raw::spawn(&argv, &env, ctx.tmp(), Stdout::Pipe)?;
        let fd = r
            .heartbeat
            .take()
            .ok_or_else(|| anyhow::anyhow!("no heartbeat pipe"))?;
        let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        readers.push(tokio::spawn(async move {
            let mut seen: Sightings = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            let mut lines = 0u64;
            loop {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => {
                        let t = sys::mono_ns();
                        lines += buf[..k].iter().filter(|b| **b == b'\n').count() as u64;
                        seen.push((lines, t));
                    }
                }
            }
            seen
        }));
        runs.push(r);
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
    let me = std::process::id() as i32;
    let cpu0 = procs::cpu_seconds(me).unwrap_or(0.0);
    let t0 = Instant::now();
    go.write_all(&vec![b'g'; n])?;
    let secs = ctx.plan.hb_secs;
    let exits = procs::watch_exits(
        Arc::new(held),
        Instant::now() + Duration::from_secs(secs + 120),
    )
    .await?;
    let mut seen = Vec::with_capacity(n);
    for r in readers {
        seen.push(r.await?);
    }
    let cpu1 = procs::cpu_seconds(me).unwrap_or(0.0);
    let window_s = t0.elapsed().as_secs_f64();
    if !exits.alive.is_empty() {
        anyhow::bail!("{} raw agent(s) did not finish in time", exits.alive.len());
    }
    for r in runs.iter_mut() {
        r.reap();
    }
    cleanup::reap_orphans();
    let mut ph = Phase {
        name: "raw",
        runs: n,
        cpu_s: cpu1 - cpu0,
        window_s,
        ..Phase::default()
    };
    let mut rates = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let times = read_times(&dir, i)?;
        ph.lines_written += times.len() as u64;
        ph.lines_counted += s.last().map(|x| x.0).unwrap_or(0);
        ph.sightings += s.len() as u64;
        rates.push(rate(&times));
        ph.lines_never_seen += lags(&times, s, &mut ph.lags_ms);
    }
    finish_phase(&mut ph, rates);
    Ok(ph)
}

fn finish_phase(ph: &mut Phase, rates: Vec<f64>) {
    ph.cpu_s_per_million = if ph.lines_written > 0 {
        ph.cpu_s / (ph.lines_written as f64 / 1e6)
    } else {
        f64::NAN
    };
    ph.lag = Summary::of(&ph.lags_ms);
    ph.agent_rate = Summary::of(&rates).map(|s| s.p50).unwrap_or(0.0);
}

/// An agent's write times.
fn read_times(dir: &std::path::Path, i: usize) -> anyhow::Result<Vec<u64>> {
    let path = dir.join(format!("hb-{i}.bin"));
    let bytes = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("agent {i} left no times in {}: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect())
}

/// Lines per second an agent achieved.
fn rate(times: &[u64]) -> f64 {
    match (times.first(), times.last()) {
        (Some(a), Some(b)) if b > a => (times.len() - 1) as f64 / ((b - a) as f64 / 1e9),
        _ => 0.0,
    }
}

/// Push the lag of every line (ms) given its write times and the sightings of its run;
/// returns how many lines were never seen.
fn lags(times: &[u64], seen: &[(u64, u64)], out: &mut Vec<f64>) -> u64 {
    let mut next = 0usize;
    for &(count, at) in seen {
        let upto = (count as usize).min(times.len());
        while next < upto {
            out.push(at.saturating_sub(times[next]) as f64 / 1e6);
            next += 1;
        }
    }
    (times.len() - next) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_of_each_line_is_its_first_covering_sighting() {
        let times = [100, 200, 300, 400];
        // Count 0 first (a snapshot before any line), then two lines, then all four.
        let seen = [(0, 150), (2, 1_000_250), (4, 2_000_450)];
        let mut out = Vec::new();
        let unseen = lags(&times, &seen, &mut out);
        assert_eq!(unseen, 0);
        let ns: Vec<u64> = out.iter().map(|ms| (ms * 1e6).round() as u64).collect();
        assert_eq!(ns, vec![1_000_150, 1_000_050, 2_000_150, 2_000_050]);
        let mut out = Vec::new();
        assert_eq!(lags(&times, &[(3, 500)], &mut out), 1);
    }
}
