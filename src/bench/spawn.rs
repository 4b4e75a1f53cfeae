//! spawn_burst and spawn_idle: Spawn call issued -> the agent has provably started, back to back
//! (burst) and with a pause of `IDLE_PAUSE` before each trial (idle: an orchestrator starting a
//! run every few seconds, the common case; the kernel then has no recent cgroup migration to
//! ride on, which is what made an idle spawn cost 13 ms when leaders wrote themselves into
//! their cgroups). The agent is
//! `sh -c 'echo "ready $BENCH_TRIAL" > "$BENCH_FIFO"; exec sleep 60'`; the benchmark reads the
//! FIFO, so the clock stops when the shell has run and written, which no daemon answer can fake.
//! The raw baseline starts the same command with fork/exec into a new process group with pipes
//! and fd 3, and reads the same FIFO. Daemon and raw trials alternate; a few warm-up trials of
//! each are not counted. Each run is ended with a forced kill between trials (not timed).
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::daemon::{self, Daemon};
use super::fifo::Fifo;
use super::procs::{self, Held};
use super::raw::{self, Stdout};
use super::report::{Report, Row};
use super::stats::ms;
use super::{cleanup, Ctx};

const WARMUP: usize = 3;
/// The pause before each idle trial (daemon and raw alike).
pub const IDLE_PAUSE: Duration = Duration::from_millis(200);

/// Back to back, or spaced by `IDLE_PAUSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    Burst,
    Idle,
}

impl Pace {
    fn name(self) -> &'static str {
        match self {
            Pace::Burst => "spawn_burst",
            Pace::Idle => "spawn_idle",
        }
    }
}
const SCRIPT: &str = r#"echo "ready $BENCH_TRIAL" > "$BENCH_FIFO"; exec sleep 60"#;

pub async fn run(ctx: &Ctx, pace: Pace) -> anyhow::Result<Report> {
    let name = pace.name();
    let trials = match pace {
        Pace::Burst => ctx.plan.spawn_trials,
        Pace::Idle => ctx.plan.spawn_idle_trials,
    };
    let pause = || async {
        if pace == Pace::Idle {
            tokio::time::sleep(IDLE_PAUSE).await;
        }
    };
    let mut d = Daemon::start(ctx, name).await?;
    let mut client = d.client().await?;
    let mut fifo = Fifo::create(&ctx.tmp().join("spawn.fifo"))?;
    let fifo_path = fifo.path().display().to_string();
    let argv = ["sh", "-c", SCRIPT];
    let raw_argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();

    let mut daemon_ms = Vec::new();
    let mut rpc_ms = Vec::new();
    let mut raw_ms = Vec::new();
    let mut containment = String::new();
    let mut cgroup_entry = String::new();
    for i in 0..trials + WARMUP {
        let counted = i >= WARMUP;

        // Through the daemon.
        let trial = ctx.unique(&format!("spawn-d{i}"));
        let env = [
            ("BENCH_FIFO", fifo_path.clone()),
            ("BENCH_TRIAL", trial.clone()),
        ];
        pause().await;
        let t0 = Instant::now();
        let run = daemon::spawn(&mut client, ctx, &argv, &env).await?;
        let answered = Instant::now();
        let at = fifo
            .wait_line(&format!("ready {trial}"), Duration::from_secs(10))
            .await?;
        if counted {
            daemon_ms.push(ms(at.saturating_duration_since(t0)));
            rpc_ms.push(ms(answered - t0));
        }
        containment = run.containment.clone();
        daemon::kill(&mut client, &run.run_id, 0, true).await?;

        // Raw.
        let trial = ctx.unique(&format!("spawn-r{i}"));
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("BENCH_FIFO".into(), fifo_path.clone());
        env.insert("BENCH_TRIAL".into(), trial.clone());
        let (k, v) = ctx.tag_env();
        env.insert(k, v);
        pause().await;
        let t0 = Instant::now();
        let mut r = raw::spawn(&raw_argv, &env, ctx.tmp(), Stdout::Pipe)?;
        let at = fifo
            .wait_line(&format!("ready {trial}"), Duration::from_secs(10))
            .await?;
        if counted {
            raw_ms.push(ms(at.saturating_duration_since(t0)));
        }
        r.signal_group(Signal::SIGKILL);
        let held = Held {
            pid: r.pid,
            fd: r.pidfd.as_fd().try_clone_to_owned()?,
        };
        procs::wait_all_exited(
            std::slice::from_ref(&held),
            Instant::now() + Duration::from_secs(5),
        );
        r.reap();
    }
    if let Ok(h) = client
        .get_health(wf_supervisor::proto::GetHealthRequest {})
        .await
    {
        cgroup_entry = h.into_inner().cgroup_entry;
    }
    let stop = d.stop();
    cleanup::reap_orphans();

    let mut rep = Report::new(name);
    let (dsum, rsum) = (
        super::stats::Summary::of(&daemon_ms),
        super::stats::Summary::of(&raw_ms),
    );
    let pass = matches!((dsum, rsum), (Some(a), Some(b))
        if a.p50 <= 1.3 * b.p50 && a.p99 <= b.p99 + 3.0);
    let what = match pace {
        Pace::Burst => "issued -> agent ran, back to back",
        Pace::Idle => "issued -> agent ran, 200 ms apart",
    };
    rep.rows.push(
        Row::dist(name, what, "ms", &daemon_ms)
            .raw_dist(&raw_ms)
            .target("p50 <= 1.3x raw p50, p99 <= raw p99 + 3 ms", pass),
    );
    rep.rows
        .push(Row::dist(name, "Spawn call answered", "ms", &rpc_ms));
    rep.notes.push(format!(
        "agent = sh -c 'echo ready > FIFO; exec sleep 60', started proven by the FIFO line; \
         containment {containment}, cgroup entry {}; {WARMUP} warm-up trials of each not counted{}",
        if cgroup_entry.is_empty() {
            "-"
        } else {
            &cgroup_entry
        },
        match pace {
            Pace::Idle => format!("; {} ms pause before every trial", IDLE_PAUSE.as_millis()),
            Pace::Burst => String::new(),
        }
    ));
    rep.data = serde_json::json!({
        "pace": name,
        "cgroup_entry": cgroup_entry,
        "containment": containment,
        "daemon_ms": daemon_ms,
        "spawn_answer_ms": rpc_ms,
        "raw_ms": raw_ms,
    });
    rep.daemon_stopped(stop);
    Ok(rep)
}
