//! wf-bench: the benchmark of wf-supervisor. Theory of operation: for each measure the bench
//! starts a fresh daemon from its release binary (temp state dir, socket and config), drives it
//! through its gRPC socket as an orchestrator would, and proves from the kernel (FIFO marker
//! lines, pidfds, /proc) when agents started and when nothing of a run was left. The same work
//! is done without the daemon (the raw baseline: fork/exec into a new process group, pipes,
//! killpg and pidfds), interleaved trial by trial with the daemon's so that machine noise falls
//! on both alike; the ratios are what compare across machines. Everything started is tagged
//! through its environment and swept at the end, also on error and Ctrl-C.
//!
//! One file per measure: `spawn`, `kill` (kill_tree, kill_ignore, kill_mixed, kill_escapee),
//! `throughput`, `scale`, `flood`, `heartbeats`; `agent` is the heartbeat agent (this binary,
//! re-executed); `sys` holds the only unsafe code.
mod agent;
mod args;
mod cleanup;
mod daemon;
mod fifo;
mod flood;
mod heartbeats;
mod kill;
mod metrics;
mod procevents;
mod procs;
mod queue;
mod raw;
mod report;
mod scale;
mod spawn;
mod stats;
mod sys;
mod throughput;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use futures::{FutureExt, StreamExt};

use args::{Args, Plan};
use report::{Machine, Report};

/// What every measure needs.
pub struct Ctx {
    pub plan: Plan,
    tmp: cleanup::TempDir,
    /// The session tag every process we start carries as `WF_BENCH_TAG`.
    tag: String,
    /// The daemon binary as given (for the report).
    pub daemon_src: PathBuf,
    /// A private copy of it in the temp dir, which every measure starts: a rebuild during the
    /// run cannot switch daemons between measures.
    pub daemon_bin: PathBuf,
    /// A private copy of this executable: the heartbeat agent.
    pub self_exe: PathBuf,
    pub containment: String,
    /// The daemon's `[containment] cgroup_entry`: auto or procs-write.
    pub cgroup_entry: String,
    /// The daemon's `[daemon] nice`.
    pub daemon_nice: i32,
    /// The Watch client's HTTP/2 stream window in bytes; None: the library's default.
    pub watch_window: Option<u32>,
}

impl Ctx {
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// The tag's environment entry.
    pub fn tag_env(&self) -> (String, String) {
        ("WF_BENCH_TAG".to_string(), self.tag.clone())
    }

    /// The tag as it appears in /proc/PID/environ.
    pub fn tag_needle(&self) -> Vec<u8> {
        format!("WF_BENCH_TAG={}", self.tag).into_bytes()
    }

    /// A name unique to this session, for trial markers.
    pub fn unique(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }
}

/// Entry point of the `wf-bench` binary.
pub fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == agent::FLAG) {
        return agent::main();
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wf-bench")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wf-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The measures run in this (main) thread's future, not in spawned tasks, so that daemons
    // are forked from the main thread: their parent-death signal then follows the benchmark's
    // life, not a pooled thread's.
    runtime.block_on(run(args))
}

fn setup(args: &Args) -> anyhow::Result<(Ctx, Vec<&'static str>, u64)> {
    let measures = args.measures()?;
    if !["auto", "cgroup", "process-group"].contains(&args.containment.as_str()) {
        anyhow::bail!(
            "--containment: {:?} is not one of auto, cgroup, process-group",
            args.containment
        );
    }
    if !["auto", "procs-write"].contains(&args.cgroup_entry.as_str()) {
        anyhow::bail!(
            "--cgroup-entry: {:?} is not one of auto, procs-write",
            args.cgroup_entry
        );
    }
    if args.daemon_nice.is_some_and(|n| !(-20..=19).contains(&n)) {
        anyhow::bail!("--daemon-nice: a nice value is -20 to 19");
    }
    let self_exe = std::env::current_exe().context("cannot find this executable")?;
    let daemon_bin = match &args.daemon {
        Some(p) => p.clone(),
        None => self_exe
            .parent()
            .map(|d| d.join("wf-supervisor"))
            .context("this executable has no directory")?,
    };
    if !daemon_bin.is_file() {
        anyhow::bail!(
            "no daemon binary at {}; build it (cargo build --release --bins) or pass --daemon PATH",
            daemon_bin.display()
        );
    }
    // Orphans of raw runs come to us, not to init, so that we reap them and can find them.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
    let nofile = sys::raise_nofile_limit().context("cannot raise the open-files limit")?;
    let tmp = cleanup::TempDir::new(args.keep_temp).context("cannot create a temp dir")?;
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    // Use the copy only if it runs (a temp dir may be mounted noexec).
    let copy = |from: &Path, name: &str| -> anyhow::Result<PathBuf> {
        let to = bin.join(name);
        std::fs::copy(from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        let runs = std::process::Command::new(&to)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if runs {
            Ok(to)
        } else {
            eprintln!(
                "wf-bench: cannot execute a copy in {}; using {} itself",
                bin.display(),
                from.display()
            );
            Ok(from.to_path_buf())
        }
    };
    let daemon_copy = copy(&daemon_bin, "wf-supervisor")?;
    let self_copy = copy(&self_exe, "wf-bench")?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tag = format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff);
    let ctx = Ctx {
        plan: Plan::new(args.quick, args.trials),
        tmp,
        tag,
        daemon_src: daemon_bin,
        daemon_bin: daemon_copy,
        self_exe: self_copy,
        containment: args.containment.clone(),
        cgroup_entry: args.cgroup_entry.clone(),
        daemon_nice: args
            .daemon_nice
            .unwrap_or(wf_supervisor::config::DEFAULT_DAEMON_NICE),
        watch_window: (args.watch_window_kib > 0).then(|| args.watch_window_kib * 1024),
    };
    Ok((ctx, measures, nofile))
}

async fn run(args: Args) -> ExitCode {
    let (ctx, measures, nofile) = match setup(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("wf-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match signal_hook_tokio::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wf-bench: cannot watch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let machine = Machine::probe(nofile);
    eprintln!("wf-bench: {}", machine.line());
    eprintln!(
        "wf-bench: daemon {}, containment {}, measures: {}{}",
        ctx.daemon_src.display(),
        ctx.containment,
        measures.join(", "),
        if ctx.plan.quick { " (quick)" } else { "" }
    );
    let t0 = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    let mut interrupted = None;
    {
        let work = AssertUnwindSafe(run_measures(&ctx, &measures, &mut reports)).catch_unwind();
        tokio::select! {
            r = work => if r.is_err() {
                eprintln!("wf-bench: a measure panicked; cleaning up");
                interrupted = Some("panic".to_string());
            },
            sig = signals.next() => {
                let name = sig.map(|s| s.to_string()).unwrap_or_default();
                eprintln!("wf-bench: interrupted (signal {name}); stopping the daemon and cleaning up");
                interrupted = Some(format!("signal {name}"));
            }
        }
        // Dropping the unfinished measure stops its daemon and ends its raw runs.
    }
    let left = cleanup::sweep(&ctx.tag_needle());
    if left > 0 {
        eprintln!("wf-bench: killed {left} leftover process(es) of this session");
    }
    cleanup::reap_orphans();

    println!();
    println!("wf-bench results: {}", machine.line());
    println!(
        "daemon: {}; containment mode {}{}",
        ctx.daemon_src.display(),
        ctx.containment,
        if ctx.plan.quick {
            "; QUICK run (small samples)"
        } else {
            ""
        }
    );
    println!();
    print!("{}", report::table(&reports));
    println!(
        "\nratio = daemon / raw baseline (p50 over p50): above 1 is slower for times, below 1 \
         is slower for rates. Times are from the kernel (FIFO markers, pidfds, /proc), not from \
         the daemon's answers."
    );
    let notes = report::notes(&reports);
    if !notes.is_empty() {
        println!("\nnotes:");
        print!("{notes}");
    }
    let doc = serde_json::json!({
        "tool": "wf-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "machine": machine,
        "daemon": daemon_info(&ctx.daemon_src),
        "containment": ctx.containment,
        "daemon_nice": ctx.daemon_nice,
        "watch_window": ctx.watch_window,
        "plan": ctx.plan,
        "interrupted": interrupted,
        "seconds": t0.elapsed().as_secs_f64(),
        "loadavg_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "leftovers_swept": left,
        "measures": reports,
    });
    match report::write_json(&args.results, machine.unix_time, &doc) {
        Ok(p) => println!("\nraw numbers: {}", p.display()),
        Err(e) => eprintln!("wf-bench: {e:#}"),
    }
    drop(ctx);
    if interrupted.is_some() {
        ExitCode::from(130)
    } else if reports.iter().any(|r| r.error.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Which daemon build was measured: its path, size and modification time.
fn daemon_info(path: &Path) -> serde_json::Value {
    let meta = std::fs::metadata(path).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string());
    serde_json::json!({
        "path": path.display().to_string(),
        "bytes": meta.map(|m| m.len()),
        "modified": modified,
    })
}

async fn run_measures(ctx: &Ctx, measures: &[&'static str], reports: &mut Vec<Report>) {
    for &name in measures {
        eprintln!("wf-bench: {name} ...");
        let t = Instant::now();
        let result = match name {
            "spawn_burst" => spawn::run(ctx, spawn::Pace::Burst).await,
            "spawn_idle" => spawn::run(ctx, spawn::Pace::Idle).await,
            "kill_tree" => kill::run(ctx, kill::Kind::Tree).await,
            "kill_ignore" => kill::run(ctx, kill::Kind::Ignore).await,
            "kill_mixed" => kill::run(ctx, kill::Kind::Mixed).await,
            "kill_escapee" => kill::run(ctx, kill::Kind::Escapee).await,
            "throughput" => throughput::run(ctx).await,
            "scale" => scale::run(ctx).await,
            "metrics" => metrics::run(ctx).await,
            "flood" => flood::run(ctx).await,
            "heartbeats" => heartbeats::run(ctx).await,
            "queue" => queue::run(ctx).await,
            other => Err(anyhow::anyhow!("no measure {other}")),
        };
        let mut r = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("wf-bench: {name} failed: {e:#}");
                let mut r = Report::new(name);
                r.error = Some(format!("{e:#}"));
                r
            }
        };
        let left = cleanup::sweep(&ctx.tag_needle());
        if left > 0 {
            r.notes.push(format!(
                "{left} process(es) of this measure were still alive at its end; the benchmark \
                 killed them"
            ));
        }
        cleanup::reap_orphans();
        r.seconds = t.elapsed().as_secs_f64();
        eprintln!("wf-bench: {name} done in {:.1} s", r.seconds);
        reports.push(r);
    }
}
