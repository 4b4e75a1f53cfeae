//! flood: one run writes N bytes (1 GiB) to stdout with `dd bs=64k`. The agent's own write rate
//! is timed from its FIFO marker lines (`go` just before dd starts, `done` just after it ends),
//! so it is what the agent experienced, whatever the daemon reports. The baseline is the same
//! agent writing straight into a file on the same file system (no daemon, no pipe). A second
//! reference, the pipe ceiling, is the same agent writing into a 1 MiB pipe that a reader empties
//! into /dev/null: what any design that reads the agent through a pipe can reach at best, with
//! no log written at all. While the daemon drains the flood, its VmRSS is sampled every 5 ms;
//! its VmHWM is read at the end, and its CPU time per GiB drained.
//!
//! The target: the daemon must see every byte (stream-json progress, the log cap, Logs follow),
//! so the agent writes into a pipe and the daemon writes the log, a second copy of each byte.
//! What is asked of the daemon is that its own copy is the only cost left: the agent is not
//! stalled beyond it (its rate through the daemon is at least 90% of the lesser of the pipe
//! ceiling and the rate one core copies at, 1 GiB / the daemon's CPU seconds per GiB) and the
//! daemon's memory stays flat. Direct-to-file is reported beside it, without a target.
//! Log files are removed after each trial to keep the disk free.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::daemon::{self, Daemon};
use super::fifo::Fifo;
use super::procs::{self, Held, RssSampler};
use super::raw::{self, Stdout};
use super::report::{Report, Row};
use super::stats::Summary;
use super::{cleanup, Ctx};

const SCRIPT: &str = r#"echo "go $BENCH_TRIAL" > "$BENCH_FIFO"; dd if=/dev/zero bs=65536 count=$BENCH_BLOCKS 2>/dev/null; echo "done $BENCH_TRIAL" > "$BENCH_FIFO""#;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Trial {
    mib_per_s: f64,
    seconds: f64,
    /// What the daemon says it drained (daemon) / the file size (raw).
    bytes_recorded: u64,
    /// Bytes the daemon kept on disk for the run (every file in its run dir: log segments).
    log_file_bytes: u64,
    peak_rss_kib: u64,
    /// The daemon's CPU seconds for the run, per GiB (daemon trials only).
    daemon_cpu_s_per_gib: f64,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let mut rep = Report::new("flood");
    let mut d = Daemon::start(ctx, "flood").await?;
    let result = trials(ctx, &d).await;
    let hwm = procs::rss_hwm_kib(d.pid).map(|(_, h)| h).unwrap_or(0);
    rep.daemon_stopped(d.stop());
    let (dt, rt, pt) = result?;

    let bytes = ctx.plan.flood_bytes;
    let rates = |v: &[Trial]| v.iter().map(|t| t.mib_per_s).collect::<Vec<f64>>();
    let (dr, rr) = (rates(&dt), rates(&rt));
    let ratio = match (Summary::of(&dr), Summary::of(&rr)) {
        (Some(a), Some(b)) if b.p50 > 0.0 => a.p50 / b.p50,
        _ => 0.0,
    };
    rep.rows.push(
        Row::dist(
            "flood",
            &format!(
                "agent writes {} MiB via daemon (raw: direct-to-file)",
                bytes >> 20
            ),
            "MiB/s",
            &dr,
        )
        .raw_dist(&rr),
    );
    let pr = rates(&pt);
    let ceiling = match (Summary::of(&pr), Summary::of(&rr)) {
        (Some(a), Some(b)) if b.p50 > 0.0 => a.p50 / b.p50,
        _ => 0.0,
    };
    rep.rows.push(
        Row::dist(
            "flood",
            "pipe ceiling: into a pipe emptied to /dev/null",
            "MiB/s",
            &pr,
        )
        .raw_dist(&rr),
    );
    let cpu: Vec<f64> = dt.iter().map(|t| t.daemon_cpu_s_per_gib).collect();
    let cpu_p50 = Summary::of(&cpu).map(|c| c.p50).unwrap_or(0.0);
    rep.rows
        .push(Row::dist("flood", "daemon CPU per GiB drained", "s", &cpu));
    if let (Some(d), Some(p)) = (Summary::of(&dr), Summary::of(&pr)) {
        // One core copying at the daemon's measured cost per byte.
        let copy_rate = if cpu_p50 > 0.0 {
            1024.0 / cpu_p50
        } else {
            f64::INFINITY
        };
        let bound = p.p50.min(copy_rate);
        let share = if bound > 0.0 { d.p50 / bound } else { 0.0 };
        rep.rows.push(
            Row::value(
                "flood",
                "agent rate / min(pipe ceiling, daemon copy rate)",
                "%",
                share * 100.0,
            )
            .target(">= 90%: the daemon's copy is the only cost", share >= 0.9),
        );
        rep.notes.push(format!(
            "the daemon's copy: {cpu_p50:.2} CPU s per GiB, i.e. {copy_rate:.0} MiB/s on one core"
        ));
        if p.p50 > 0.0 {
            rep.notes.push(format!(
                "the pipe ceiling is {:.0}% of direct-to-file; through the daemon the agent \
                 writes at {:.0}% of direct-to-file and {:.0}% of the pipe ceiling",
                ceiling * 100.0,
                ratio * 100.0,
                d.p50 / p.p50 * 100.0
            ));
        }
    }
    let peak = dt
        .iter()
        .map(|t| t.peak_rss_kib)
        .max()
        .unwrap_or(0)
        .max(hwm);
    let peak_mib = peak as f64 / 1024.0;
    rep.rows.push(
        Row::value("flood", "daemon peak RSS (VmHWM)", "MiB", peak_mib)
            .target("< 64 MiB", peak_mib < 64.0),
    );
    let logs: Vec<u64> = dt.iter().map(|t| t.log_file_bytes).collect();
    rep.notes.push(format!(
        "agent = dd if=/dev/zero bs=64k to stdout, timed by its own FIFO markers; baseline = the \
         same agent with stdout on a file; bytes the daemon kept on disk per run: {:?} \
         (logs.max_bytes_per_stream is the default 64 MiB); daemon counted {:?} stdout bytes",
        logs,
        dt.iter().map(|t| t.bytes_recorded).collect::<Vec<_>>()
    ));
    if logs.iter().any(|l| *l > 64 << 20) {
        rep.notes.push(
            "the run's logs grew past logs.max_bytes_per_stream: the cap is not enforced".into(),
        );
    }
    rep.data = serde_json::json!({
        "bytes": bytes,
        "daemon_trials": dt,
        "raw_trials": rt,
        "pipe_ceiling_trials": pt,
        "daemon_vmhwm_kib": hwm,
    });
    Ok(rep)
}

type Trials = (Vec<Trial>, Vec<Trial>, Vec<Trial>);

async fn trials(ctx: &Ctx, d: &Daemon) -> anyhow::Result<Trials> {
    let bytes = ctx.plan.flood_bytes;
    let blocks = (bytes / 65536).to_string();
    let mut client = d.client().await?;
    let mut fifo = Fifo::create(&ctx.tmp().join("flood.fifo"))?;
    let fifo_path = fifo.path().display().to_string();
    let timeout = Duration::from_secs(600);
    let mut dt = Vec::new();
    let mut rt = Vec::new();
    let mut pt = Vec::new();
    for i in 0..ctx.plan.flood_trials {
        // Through the daemon.
        let trial = ctx.unique(&format!("flood-d{i}"));
        let env = [
            ("BENCH_FIFO", fifo_path.clone()),
            ("BENCH_TRIAL", trial.clone()),
            ("BENCH_BLOCKS", blocks.clone()),
        ];
        let sampler = RssSampler::start(d.pid, Duration::from_millis(5));
        let cpu0 = procs::cpu_seconds(d.pid).unwrap_or(0.0);
        let run = daemon::spawn(&mut client, ctx, &["sh", "-c", SCRIPT], &env).await?;
        let go = fifo
            .wait_line(&format!("go {trial}"), Duration::from_secs(10))
            .await?;
        let done = fifo.wait_line(&format!("done {trial}"), timeout).await?;
        let ended = daemon::wait_terminal(&mut client, &run.run_id, Duration::from_secs(60)).await;
        let peak = sampler.finish();
        let cpu = procs::cpu_seconds(d.pid).unwrap_or(0.0) - cpu0;
        let ended = ended?;
        let secs = (done - go).as_secs_f64();
        let dir = d.run_dir(&run.run_id);
        let log_file_bytes = dir_bytes(&dir);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            daemon::remove_quietly(&e.path());
        }
        dt.push(Trial {
            mib_per_s: bytes as f64 / MIB / secs,
            seconds: secs,
            bytes_recorded: ended.stdout_bytes,
            log_file_bytes,
            peak_rss_kib: peak,
            daemon_cpu_s_per_gib: cpu / (bytes as f64 / (1u64 << 30) as f64),
        });

        // Straight to a file.
        let out = ctx.tmp().join("flood-direct.out");
        let file = std::fs::File::create(&out)?;
        let (secs, ()) = raw_trial(
            ctx,
            &mut fifo,
            &format!("flood-r{i}"),
            Stdout::File(file),
            |_| Ok(()),
        )
        .await?;
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&out);
        rt.push(Trial {
            mib_per_s: bytes as f64 / MIB / secs,
            seconds: secs,
            bytes_recorded: size,
            ..Trial::default()
        });

        // Into a pipe that nobody keeps: the ceiling of any pipe-reading design.
        let (secs, discarded) =
            raw_trial(ctx, &mut fifo, &format!("flood-p{i}"), Stdout::Pipe, |r| {
                let out = r
                    .take_stdout()
                    .ok_or_else(|| anyhow::anyhow!("the pipe run has no stdout pipe"))?;
                Ok(std::thread::spawn(move || super::sys::discard_pipe(out)))
            })
            .await?;
        let discarded = discarded
            .join()
            .map_err(|_| anyhow::anyhow!("the pipe reader panicked"))??;
        pt.push(Trial {
            mib_per_s: bytes as f64 / MIB / secs,
            seconds: secs,
            bytes_recorded: discarded,
            ..Trial::default()
        });
    }
    Ok((dt, rt, pt))
}

/// One flood without the daemon: the agent started raw with `stdout`, `attach` run on it right
/// after the start (to read its pipe), timed by its FIFO markers. Returns the seconds and what
/// `attach` gave.
async fn raw_trial<T>(
    ctx: &Ctx,
    fifo: &mut Fifo,
    name: &str,
    stdout: Stdout,
    attach: impl FnOnce(&mut raw::RawRun) -> anyhow::Result<T>,
) -> anyhow::Result<(f64, T)> {
    let trial = ctx.unique(name);
    let mut env = BTreeMap::new();
    env.insert("BENCH_FIFO".to_string(), fifo.path().display().to_string());
    env.insert("BENCH_TRIAL".to_string(), trial.clone());
    env.insert(
        "BENCH_BLOCKS".to_string(),
        (ctx.plan.flood_bytes / 65536).to_string(),
    );
    let (k, v) = ctx.tag_env();
    env.insert(k, v);
    let argv: Vec<String> = ["sh", "-c", SCRIPT].iter().map(|s| s.to_string()).collect();
    let mut r = raw::spawn(&argv, &env, ctx.tmp(), stdout)?;
    let attached = attach(&mut r)?;
    let go = fifo
        .wait_line(&format!("go {trial}"), Duration::from_secs(10))
        .await?;
    let done = fifo
        .wait_line(&format!("done {trial}"), Duration::from_secs(600))
        .await?;
    let held = Held {
        pid: r.pid,
        fd: r.pidfd.try_clone()?,
    };
    procs::wait_all_exited(
        std::slice::from_ref(&held),
        Instant::now() + Duration::from_secs(10),
    );
    r.reap();
    cleanup::reap_orphans();
    Ok(((done - go).as_secs_f64(), attached))
}

/// Total size of the files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
