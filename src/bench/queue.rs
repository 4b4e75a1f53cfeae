//! queue: the work queue under load. (1) Throughput: N runs of `true` from 4 clients through the
//! default queue limited to 16 at once (UpdateQueue), against the same N with no queue limit in
//! the same run, each on a fresh daemon; the clock runs from the first Spawn until a Watch stream
//! opened before it has seen every run end. (2) Dispatch latency: a slot frees (the holder's
//! leader exits) -> the next queued run's process exists (its fork) and its program starts (its
//! exec), all stamped by the kernel (proc events), against a hand-written supervisor that waits
//! on the holder's pidfd and forks the next; and the same dispatch to the next run's first line
//! (its FIFO marker), against a plain fork/exec to its marker. (3) Memory per queued run: the
//! daemon's RSS before and after M spawns into a paused queue. (4) List (all at once, and one
//! page) and GetQueueHealth answer times with those M queued; the whole List's raw column is the
//! client alone decoding (and dropping) the same answer from memory. (5) The dispatch latency
//! again with the M queued in that other queue. Everything ends with one bulk Cancel.
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::join_all;
use wf_supervisor::proto::{
    CancelRequest, GetQueueHealthRequest, GetRequest, ListRequest, ListResponse, RunStatus,
    Selector, SpawnRequest, UpdateQueueRequest, WatchRequest,
};

use super::daemon::{self, Client, Daemon};
use super::fifo::Fifo;
use super::procevents::ProcEvents;
use super::raw::{self, Stdout};
use super::report::{Report, Row};
use super::stats::{ms, Summary};
use super::{procs, sys, Ctx};

const QUEUE_LIMIT: u32 = 16;
/// The queue the queued runs of (3) to (5) wait in, paused.
const BACKLOG: &str = "backlog";
/// The page a paging client asks for (as wfctl ps does).
const PAGE: u32 = 500;
const MARKER: &str = r#"echo "ready $BENCH_TRIAL" > "$BENCH_FIFO""#;

/// How much work: the issue's sizes for a full run, small ones for --quick.
struct Sizes {
    runs: usize,
    queued: usize,
    dispatch_trials: usize,
    latency_trials: usize,
}

fn sizes(ctx: &Ctx) -> Sizes {
    let p = &ctx.plan;
    if p.quick {
        Sizes {
            runs: 300,
            queued: 1000,
            dispatch_trials: p.spawn_trials.min(20),
            latency_trials: p.scale_latency_trials.min(20),
        }
    } else {
        Sizes {
            runs: 10_000,
            queued: 10_000,
            dispatch_trials: p.spawn_trials.min(200),
            latency_trials: p.scale_latency_trials,
        }
    }
}

async fn set_queue(
    c: &mut Client,
    queue: &str,
    paused: Option<bool>,
    max: Option<u32>,
) -> anyhow::Result<()> {
    c.update_queue(UpdateQueueRequest {
        queue: queue.into(),
        paused,
        max_concurrent: max,
    })
    .await
    .context("UpdateQueue")?;
    Ok(())
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let s = sizes(ctx);
    let mut rep = Report::new("queue");

    // (1) Throughput, unqueued then queued, each on a fresh daemon.
    let mut rates = Vec::new();
    for limit in [None, Some(QUEUE_LIMIT)] {
        let mut d = Daemon::start(ctx, &format!("queue-tp-{}", limit.unwrap_or(0))).await?;
        let r = throughput(ctx, &d, s.runs, limit).await;
        rep.daemon_stopped(d.stop());
        rates.push(r?);
    }
    let (free, queued) = (rates[0], rates[1]);
    rep.rows.push(
        Row::value(
            "queue",
            &format!("{} x true, 4 clients, max_concurrent {QUEUE_LIMIT}", s.runs),
            "runs/s",
            queued,
        )
        .raw_value(free)
        .target(
            format!(">= 90% of unqueued ({free:.0} runs/s here)"),
            queued >= 0.9 * free,
        ),
    );
    rep.notes.push(
        "the throughput row's raw column is the same load with no queue limit, on the daemon"
            .to_string(),
    );

    // (2)-(4) on one daemon.
    // The metrics listener gives the store's commit times (the part of a dispatch that is the
    // STARTING commit before the fork).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let extra = format!(
        "\n[queues.{BACKLOG}]\nmax_concurrent = 1\nmax_queued = {}\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
        s.queued + 1
    );
    let mut d = Daemon::start_with(ctx, "queue", &extra).await?;
    let r = on_one_daemon(ctx, &d, &s, port, &mut rep).await;
    rep.daemon_stopped(d.stop());
    r?;
    Ok(rep)
}

/// Runs of `true` from 4 clients; runs/s until the Watch stream has seen them all end.
async fn throughput(
    ctx: &Ctx,
    d: &Daemon,
    total: usize,
    limit: Option<u32>,
) -> anyhow::Result<f64> {
    let mut admin = d.client().await?;
    if let Some(l) = limit {
        set_queue(&mut admin, "default", None, Some(l)).await?;
    }
    let mut stream = admin
        .watch(WatchRequest {
            run_id: String::new(),
        })
        .await?
        .into_inner();
    let watch = tokio::spawn(async move {
        let mut ended: HashSet<String> = HashSet::new();
        while let Ok(Some(ev)) = stream.message().await {
            if daemon::is_terminal(ev.status) {
                ended.insert(ev.run_id);
                if ended.len() >= total {
                    return Some(Instant::now());
                }
            }
        }
        None
    });
    let clients = d.clients(4).await?;
    let per = total.div_ceil(clients.len());
    let t0 = Instant::now();
    let jobs = clients.into_iter().enumerate().map(|(ci, mut c)| {
        let n = per.min(total.saturating_sub(ci * per));
        async move {
            for _ in 0..n {
                daemon::spawn(&mut c, ctx, &["true"], &[]).await?;
            }
            anyhow::Ok(())
        }
    });
    for r in join_all(jobs).await {
        r?;
    }
    let end = tokio::time::timeout(Duration::from_secs(600), watch)
        .await
        .context("the runs did not all end within 10 minutes")??
        .context("the Watch stream ended early")?;
    Ok(total as f64 / end.duration_since(t0).as_secs_f64())
}

/// Holds the process behind `pid` by a pidfd; then, on a blocking thread, waits until it has
/// exited and says when that was seen.
fn on_exit(pid: i32) -> anyhow::Result<tokio::task::JoinHandle<Option<Instant>>> {
    let fd = sys::pidfd_open(pid).with_context(|| format!("pidfd_open({pid})"))?;
    let held = procs::Held { pid, fd };
    Ok(tokio::task::spawn_blocking(move || {
        procs::wait_all_exited(
            std::slice::from_ref(&held),
            Instant::now() + Duration::from_secs(30),
        )
        .last
    }))
}

/// What the dispatch trials measured, in ms.
#[derive(Default)]
struct Dispatch {
    /// The holder's exit -> the next run's process is created (its fork), both stamped by the
    /// kernel (proc events): "the next queued run's process exists".
    fork_ms: Vec<f64>,
    /// The same for a hand-written supervisor: it waits on the holder's pidfd and forks the next.
    raw_fork_ms: Vec<f64>,
    /// The holder's exit -> the next run's exec (its program starts), kernel-stamped.
    exec_ms: Vec<f64>,
    /// The same for the hand-written supervisor.
    raw_exec_ms: Vec<f64>,
    /// The holder's exit seen by the benchmark -> the next run's first line (its FIFO marker).
    marker_ms: Vec<f64>,
    /// The same for the raw fork/exec of the next run to its marker.
    raw_marker_ms: Vec<f64>,
}

/// Dispatch latency trials on the default queue (limited to 1): a holder runs, the next run
/// waits behind it; the holder's exit -> the next one's exec (kernel proc events, where the
/// benchmark may listen to them) and its FIFO marker. With `raw`, each trial also times a
/// hand-written supervisor doing the same: the holder's exit on a pidfd, then a fork/exec.
async fn dispatch_trials(
    ctx: &Ctx,
    c: &mut Client,
    fifo: &mut Fifo,
    events: Option<&ProcEvents>,
    trials: usize,
    what: &str,
    raw: bool,
) -> anyhow::Result<Dispatch> {
    let fifo_path = fifo.path().display().to_string();
    let mut out = Dispatch::default();
    for i in 0..trials {
        let holder = daemon::spawn(c, ctx, &["sleep", "0.2"], &[]).await?;
        let trial = ctx.unique(&format!("queue-{what}{i}"));
        let env = [
            ("BENCH_FIFO", fifo_path.clone()),
            ("BENCH_TRIAL", trial.clone()),
        ];
        let next = daemon::spawn(c, ctx, &["sh", "-c", MARKER], &env).await?;
        if next.status != RunStatus::Queued as i32 {
            anyhow::bail!("the second run did not wait behind the first: {next:?}");
        }
        let pid = c
            .get(GetRequest {
                run_id: holder.run_id.clone(),
            })
            .await?
            .into_inner()
            .pid;
        let t0 = on_exit(pid)?
            .await?
            .context("the holder did not exit within 30 s")?;
        let at = fifo
            .wait_line(&format!("ready {trial}"), Duration::from_secs(10))
            .await?;
        out.marker_ms.push(ms(at.saturating_duration_since(t0)));
        let ended = daemon::wait_terminal(c, &next.run_id, Duration::from_secs(30)).await?;
        if let Some(ev) = events {
            let (fork, exec) = handover(ev, pid, ended.pid).context("the daemon's dispatch")?;
            out.fork_ms.push(fork);
            out.exec_ms.push(exec);
        }
        if !raw {
            continue;
        }
        // Raw: a holder, its exit on a pidfd, then fork/exec of the same command to its marker.
        let trial = ctx.unique(&format!("queue-r{what}{i}"));
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("BENCH_FIFO".into(), fifo_path.clone());
        env.insert("BENCH_TRIAL".into(), trial.clone());
        let (k, v) = ctx.tag_env();
        env.insert(k, v);
        let hold: Vec<String> = ["sleep", "0.2"].iter().map(|a| a.to_string()).collect();
        let argv: Vec<String> = ["sh", "-c", MARKER].iter().map(|a| a.to_string()).collect();
        let mut holder = raw::spawn(&hold, &env, ctx.tmp(), Stdout::Pipe)?;
        let held = procs::Held {
            pid: holder.pid,
            fd: holder.pidfd.try_clone()?,
        };
        let tmp = ctx.tmp().to_path_buf();
        let (t0, mut child) = tokio::task::spawn_blocking(move || {
            let gone = procs::wait_all_exited(
                std::slice::from_ref(&held),
                Instant::now() + Duration::from_secs(30),
            );
            let t0 = gone.last.unwrap_or_else(Instant::now);
            raw::spawn(&argv, &env, &tmp, Stdout::Pipe).map(|c| (t0, c))
        })
        .await??;
        let at = fifo
            .wait_line(&format!("ready {trial}"), Duration::from_secs(10))
            .await?;
        out.raw_marker_ms.push(ms(at.saturating_duration_since(t0)));
        holder.reap();
        child.reap();
        if let Some(ev) = events {
            let (fork, exec) =
                handover(ev, holder.pid, child.pid).context("the raw supervisor's dispatch")?;
            out.raw_fork_ms.push(fork);
            out.raw_exec_ms.push(exec);
        }
    }
    Ok(out)
}

/// The kernel's times, in ms, from the holder's exit to the next process's fork and to its exec
/// (then both pids are forgotten, before their numbers can come round again).
fn handover(ev: &ProcEvents, holder: i32, next: i32) -> anyhow::Result<(f64, f64)> {
    let within = Duration::from_secs(5);
    let exit = ev.exit_ns(holder, within);
    let span = |to: Option<u64>| match (exit, to) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e6),
        _ => None,
    };
    let fork = span(ev.fork_ns(next, within));
    let exec = span(ev.exec_ns(next, within));
    ev.forget(holder);
    ev.forget(next);
    match (fork, exec) {
        (Some(f), Some(e)) => Ok((f, e)),
        _ => anyhow::bail!(
            "no proc events for the holder's exit ({holder}) and the next process's fork and exec ({next})"
        ),
    }
}

/// The dispatch rows of one set of trials, against the raw columns of `raw`: the target on the
/// kernel-stamped exit -> exec where there is one, else on the exit -> first line.
fn dispatch_rows(rep: &mut Report, d: &Dispatch, raw: &Dispatch, suffix: &str) {
    let p99 = |v: &[f64]| Summary::of(v).map(|s| s.p99).unwrap_or(f64::MAX);
    let timed = !d.fork_ms.is_empty();
    if timed {
        rep.rows.push(
            Row::dist(
                "queue",
                &format!("slot frees -> next queued run's process exists (fork){suffix}"),
                "ms",
                &d.fork_ms,
            )
            .raw_dist(&raw.raw_fork_ms)
            .target("p99 <= 2 ms", p99(&d.fork_ms) <= 2.0),
        );
        rep.rows.push(
            Row::dist(
                "queue",
                &format!("slot frees -> next queued run's program starts (exec){suffix}"),
                "ms",
                &d.exec_ms,
            )
            .raw_dist(&raw.raw_exec_ms),
        );
    }
    let row = Row::dist(
        "queue",
        &format!("slot frees -> next queued run's first line{suffix}"),
        "ms",
        &d.marker_ms,
    )
    .raw_dist(&raw.raw_marker_ms);
    rep.rows.push(if timed {
        row
    } else {
        row.target("p99 <= 2 ms", p99(&d.marker_ms) <= 2.0)
    });
}

/// A run of `true` into the backlog queue (paused), tagged like every benchmark run.
async fn spawn_backlog(c: &mut Client, ctx: &Ctx) -> anyhow::Result<()> {
    let (k, v) = ctx.tag_env();
    let req = SpawnRequest {
        argv: vec!["true".into()],
        env: [(k, v), ("BENCH_QUEUED".to_string(), "1".to_string())]
            .into_iter()
            .collect(),
        queue: BACKLOG.into(),
        ..Default::default()
    };
    let run = tokio::time::timeout(Duration::from_secs(30), c.spawn(req))
        .await
        .context("Spawn did not answer within 30 s")?
        .context("Spawn into the backlog queue")?
        .into_inner()
        .run
        .context("the Spawn answer carries no run")?;
    if run.status != RunStatus::Queued as i32 {
        anyhow::bail!("a backlog run did not stay queued: {run:?}");
    }
    Ok(())
}

/// (sum of seconds, count) of the store's commits so far, from the daemon's metrics.
async fn commit_totals(port: u16) -> anyhow::Result<(f64, f64)> {
    let body = super::metrics::get_metrics(port).await?;
    let value = |name: &str| {
        body.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("the metrics have no {name}"))
    };
    Ok((
        value("wf_store_commit_seconds_sum")?,
        value("wf_store_commit_seconds_count")?,
    ))
}

async fn on_one_daemon(
    ctx: &Ctx,
    d: &Daemon,
    s: &Sizes,
    port: u16,
    rep: &mut Report,
) -> anyhow::Result<()> {
    let mut c = d.client().await?;
    set_queue(&mut c, "default", None, Some(1)).await?;
    let mut fifo = Fifo::create(&ctx.tmp().join("queue.fifo"))?;

    // (2) Dispatch latency: the holder exits, the queued run starts.
    let events = match ProcEvents::start() {
        Ok(ev) => Some(ev),
        Err(e) => {
            rep.notes.push(format!(
                "queue: no kernel proc events here ({e}): the dispatch rows are timed to the next run's first line only"
            ));
            None
        }
    };
    let before = commit_totals(port).await?;
    let first = dispatch_trials(
        ctx,
        &mut c,
        &mut fifo,
        events.as_ref(),
        s.dispatch_trials,
        "d",
        true,
    )
    .await?;
    let after = commit_totals(port).await?;
    let commits = after.1 - before.1;
    let commit_ms = (after.0 - before.0) * 1000.0 / commits.max(1.0);
    rep.notes.push(format!(
        "queue: {commits:.0} store commits during the {} dispatch trials (wf_store_commit from the daemon's metrics): each trial's dispatch waits for one of them, the STARTING record, before the fork",
        s.dispatch_trials
    ));
    dispatch_rows(rep, &first, &first, "");
    rep.rows.push(Row::value(
        "queue",
        "store commit during those trials (mean; one precedes each fork)",
        "ms",
        commit_ms,
    ));

    // (3) Memory per queued run: M spawns into the paused backlog queue.
    set_queue(&mut c, BACKLOG, Some(true), None).await?;
    let before = d.usage()?.rss_kib;
    let clients = d.clients(4).await?;
    let per = s.queued.div_ceil(clients.len());
    let jobs = clients.into_iter().enumerate().map(|(ci, mut c)| {
        let n = per.min(s.queued.saturating_sub(ci * per));
        async move {
            for _ in 0..n {
                spawn_backlog(&mut c, ctx).await?;
            }
            anyhow::Ok(())
        }
    });
    for r in join_all(jobs).await {
        r?;
    }
    let after = d.usage()?.rss_kib;
    let per_run = after.saturating_sub(before) as f64 / s.queued as f64;
    rep.rows.push(
        Row::value(
            "queue",
            &format!("daemon RSS per queued run ({} queued)", s.queued),
            "KiB",
            per_run,
        )
        .target("<= 4 KiB", per_run <= 4.0),
    );

    // (4) List and GetQueueHealth with M queued: List whole (unpaged) and one page, as a
    // client that pages (wfctl ps) asks for it.
    let mut list_ms = Vec::new();
    let mut page_ms = Vec::new();
    let mut health_ms = Vec::new();
    let mut unpaged = false;
    let mut decode_ms = Vec::new();
    let mut answer = Vec::new();
    for _ in 0..s.latency_trials {
        let t = Instant::now();
        let n = c
            .list(ListRequest::default())
            .await?
            .into_inner()
            .runs
            .len();
        list_ms.push(ms(t.elapsed()));
        if answer.is_empty() {
            let whole = c.list(ListRequest::default()).await?.into_inner();
            answer = prost::Message::encode_to_vec(&whole);
        }
        let t = Instant::now();
        let decoded: ListResponse = prost::Message::decode(answer.as_slice())?;
        drop(std::hint::black_box(decoded));
        decode_ms.push(ms(t.elapsed()));
        if n < s.queued {
            anyhow::bail!("List returned {n} runs, fewer than the {} queued", s.queued);
        }
        let t = Instant::now();
        let page = c
            .list(ListRequest {
                page_size: PAGE,
                ..Default::default()
            })
            .await?
            .into_inner();
        page_ms.push(ms(t.elapsed()));
        unpaged |= page.runs.len() > PAGE as usize;
        let t = Instant::now();
        c.get_queue_health(GetQueueHealthRequest {}).await?;
        health_ms.push(ms(t.elapsed()));
    }
    if unpaged {
        rep.notes.push(format!(
            "queue: this daemon does not page List: the page row is every run, not {PAGE}"
        ));
    }
    let list_name = format!("List with the queued runs: all {} in one answer", s.queued);
    let page_name = format!("List with the queued runs: one page of {PAGE}");
    for (metric, samples) in [
        (list_name.as_str(), &list_ms),
        (page_name.as_str(), &page_ms),
        ("GetQueueHealth with the queued runs", &health_ms),
    ] {
        let p99 = Summary::of(samples).map(|s| s.p99).unwrap_or(f64::MAX);
        let row = Row::dist("queue", metric, "ms", samples).target("p99 <= 20 ms", p99 <= 20.0);
        rep.rows.push(if metric == list_name {
            row.raw_dist(&decode_ms)
        } else {
            row
        });
    }
    rep.notes.push(format!(
        "queue: the whole List's raw column is this client decoding the same answer ({} KiB) from memory and dropping it: what any prost client pays before the daemon does anything",
        answer.len() / 1024
    ));

    // (5) Dispatch latency again with the M runs queued in the backlog: a dispatch costs what
    // changed, not the number of queued runs.
    let backlog = dispatch_trials(
        ctx,
        &mut c,
        &mut fifo,
        events.as_ref(),
        s.dispatch_trials,
        "b",
        false,
    )
    .await?;
    dispatch_rows(
        rep,
        &backlog,
        &first,
        &format!(", {} more queued", s.queued),
    );
    rep.notes.push(format!(
        "queue: the dispatch rows \"{} more queued\" have that many runs queued in another queue (paused) meanwhile; their raw columns are the first rows' hand-written supervisor",
        s.queued
    ));

    // End them all in one bulk call (each cancelled and audited).
    let t = Instant::now();
    let out = c
        .cancel(CancelRequest {
            selector: Some(Selector {
                statuses: vec![RunStatus::Queued as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    rep.notes.push(format!(
        "bulk Cancel of {} queued runs took {:.0} ms",
        out.results.len(),
        ms(t.elapsed())
    ));
    Ok(())
}
