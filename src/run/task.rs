//! One task per run, owning its process. Theory of operation: the task creates the run's cgroup
//! and log files, spawns the leader (see `process::spawn`), starts the output drains, then waits on
//! two things only: the leader's pidfd turning readable (it exited) and its control queue (a kill).
//! Either way it then ends the whole run through the kill plan: stop signals to the group, the
//! cgroup and any escapee, the grace, KILL, and verification that nothing is left, escalating
//! even after the leader is gone, because other members of the group may still live. Only then
//! does it reap the leader (so the group id cannot be reused while the run lives), clean up, and
//! report the end to the core. Every phase has a deadline.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::agent::heartbeat::CriticalSection;
use crate::agent::progress::StdoutTracker;
use crate::config::CriticalGraces;
use crate::process::cgroup::{Containment, RunCgroup};
use crate::process::pidfd::{ExitKind, PidFd};
use crate::process::procscan;
use crate::process::reaper::Reaper;
use crate::process::signals::{parse_signal, signal_name};
use crate::process::spawn::{self, SpawnSpec};
use crate::run::beats::drain_heartbeats;
use crate::run::kill::{next as kill_next, plan, Next as KillNext};
use crate::run::output::{drain_to_file, CappedLog, OutputProgress, StdoutWatch, Stream};
use crate::run::{CleanupStep, KillPhase, KillReport, RunSpec, Survivor};
use crate::supervisor::Msg;

/// Orders the core sends a run task.
#[derive(Debug)]
pub enum Control {
    /// End the run. `grace` overrides the run's own grace.
    Kill {
        force: bool,
        grace: Option<Duration>,
    },
    /// A kill is under way: skip what is left of the grace and KILL now.
    Escalate,
}

/// Everything a run task needs; built by the core.
pub struct RunContext {
    pub run_id: String,
    pub spec: RunSpec,
    pub child_env: BTreeMap<String, String>,
    pub log_dir: PathBuf,
    pub containment: Containment,
    pub reaper: Reaper,
    pub kill_deadline: Duration,
    pub core: mpsc::Sender<Msg>,
    /// The daemon's heartbeat poller, which reads the run's fd 3 while it is busy.
    pub beats: crate::run::beats::Poller,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub progress: watch::Sender<OutputProgress>,
    pub uid_gid: Option<(u32, u32)>,
    /// The nice value the run starts at (`runs.nice`).
    pub nice: i32,
    /// memory.max and pids.max for the run's cgroup.
    pub limits: (Option<u64>, Option<u64>),
    pub spawn_method: crate::process::spawn::SpawnMethod,
    /// Cap on each of stdout and stderr on disk.
    pub log_cap: u64,
    /// Decode stdout as Claude stream-json (workflow runs).
    pub agent_stdout: bool,
    pub max_line_bytes: usize,
    /// How long each declared critical section holds off KILL in a graceful kill.
    pub critical_graces: CriticalGraces,
    /// The run's usage, attached once the leader runs and finished before the cgroup goes.
    pub usage: crate::usage::UsageProbe,
    pub usage_interval: Duration,
    /// The store's answer for the run's STARTING record. The task makes the run's cgroup while
    /// the record is written, and (unless `start_while_recording`) starts no process before it
    /// is durable: an error (or no answer) ends the task with nothing started and the cgroup
    /// removed.
    pub recorded: oneshot::Receiver<Result<(), String>>,
    /// A run on record as QUEUED, in a cgroup: its process starts while STARTING is written.
    /// Its cgroup then marks the start for a recovery until STARTING is durable, so the cgroup
    /// is removed only after `recorded` said so (kept, for the next start to clear, if not).
    pub start_while_recording: bool,
}

/// The live handles on one run.
struct Handles {
    run_id: String,
    pidfd: PidFd,
    pgid: i32,
    cgroup: Option<RunCgroup>,
    env_needle: Vec<u8>,
    daemon_pid: i32,
    leader_exit: Option<ExitKind>,
}

impl Handles {
    fn leader_exited(&mut self) -> bool {
        if self.leader_exit.is_none() {
            if let Ok(Some(e)) = self.pidfd.peek_exit() {
                self.leader_exit = Some(e);
            }
        }
        self.leader_exit.is_some()
    }

    /// Live (non-zombie) processes of the run, leader included.
    fn members(&mut self) -> Vec<procscan::ProcStat> {
        match &self.cgroup {
            Some(cg) => {
                if cg.is_empty() {
                    return Vec::new();
                }
                cg.pids()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(procscan::stat)
                    .filter(|s| s.state != 'Z')
                    .collect()
            }
            None => procscan::live_members(self.pgid, Some(&self.env_needle), self.daemon_pid),
        }
    }

    fn is_empty(&mut self) -> bool {
        let leader_gone = self.leader_exited();
        leader_gone
            && match &self.cgroup {
                Some(cg) => cg.is_empty(),
                None => self.members().is_empty(),
            }
    }

    /// Send `sig` to everything of the run: the group (its leader is unreaped, so the id is
    /// still ours), the cgroup, and escapees found by their `WF_RUN_ID`.
    fn signal_all(&mut self, sig: Signal) {
        if self.pgid > 1 {
            match killpg(Pid::from_raw(self.pgid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => {
                    warn!(run_id = %self.run_id, pgid = self.pgid, error = %e, "killpg failed")
                }
            }
        }
        match &self.cgroup {
            Some(cg) => {
                let r = if sig == Signal::SIGKILL {
                    cg.kill()
                } else {
                    // The group got it from killpg above; the cgroup adds the escapees only.
                    cg.signal_all(sig, (self.pgid > 1).then_some(self.pgid))
                        .map(|_| ())
                };
                if let Err(e) = r {
                    warn!(run_id = %self.run_id, error = %e, "signalling the cgroup failed");
                }
            }
            None => {
                for s in self.members() {
                    if s.pgid == self.pgid {
                        continue;
                    }
                    // An escapee: hold it by a pidfd, then confirm it is still ours.
                    let Ok(pfd) = PidFd::open(s.pid) else {
                        continue;
                    };
                    if procscan::environ_contains(s.pid, &self.env_needle) {
                        debug!(run_id = %self.run_id, pid = s.pid, "signalling escapee");
                        let _ = pfd.send_signal(sig);
                    }
                }
            }
        }
    }
}

/// Run one run from spawn to its reported end.
pub async fn run(ctx: RunContext) {
    let span = info_span!("run", run_id = %ctx.run_id);
    run_inner(ctx).instrument(span).await
}

async fn run_inner(mut ctx: RunContext) {
    let run_id = ctx.run_id.clone();
    let fail = |error: String| Msg::SpawnFailed {
        run_id: run_id.clone(),
        error,
    };
    // The log folder and files are made on the first byte of output: a run that prints
    // nothing costs no inodes, and spawning stays off the file system's slow paths.
    let cap = ctx.log_cap;
    let open = |s: Stream| {
        let p = ctx.log_dir.join(s.file_name());
        CappedLog::create(p.clone(), cap)
            .map_err(|e| format!("cannot create log file {}: {e}", p.display()))
    };
    let (out_file, err_file) = match (open(Stream::Stdout), open(Stream::Stderr)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(e), _) | (_, Err(e)) => {
            let _ = ctx.core.send(fail(e)).await;
            return;
        }
    };
    let mut cgroup = match &ctx.containment {
        Containment::Cgroup(root) => match root.create_run(&run_id) {
            Ok(mut c) => {
                let missed = c.apply_limits(ctx.limits.0, ctx.limits.1);
                if !missed.is_empty() {
                    warn!(missed = ?missed, "cgroup limits not applied (controllers not available here)");
                }
                Some(c)
            }
            Err(e) => {
                let msg = format!("cannot create cgroup under {}: {e}", root.path().display());
                let _ = ctx.core.send(fail(msg)).await;
                return;
            }
        },
        Containment::ProcessGroup { .. } => None,
    };
    let spec = SpawnSpec {
        argv: ctx.spec.argv.clone(),
        cwd: ctx.spec.cwd.clone(),
        env: ctx.child_env.clone(),
        cgroup_procs_fd: cgroup.as_ref().and_then(|c| c.procs_fd()),
        cgroup_dir_fd: cgroup.as_ref().and_then(|c| c.dir_fd()),
        cgroup_v1_procs_fd: cgroup.as_ref().and_then(|c| c.memory_v1_procs_fd()),
        uid_gid: ctx.uid_gid,
        nice: ctx.nice,
        method: ctx.spawn_method,
    };
    // The program's path and the pipes are ready while the store writes; its error, if any,
    // is reported below as the spawn's, once the run is on record.
    let ready = spawn::prepare(&spec);
    // A new run is not started before STARTING is on record (a daemon killed in between must
    // not leave an agent no later daemon knows about); the core hears of a failed write itself.
    // A dequeued run, on record already, starts now; its cgroup marks the start meanwhile.
    if !ctx.start_while_recording {
        let r = (&mut ctx.recorded).await;
        if !matches!(r, Ok(Ok(()))) {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            debug!(outcome = ?r, "STARTING not recorded: nothing started");
            return;
        }
    }
    let spawned = match ready.and_then(|p| spawn::start(&spec, p, &ctx.reaper)) {
        Ok(s) => s,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            warn!(error = %e, "spawn failed");
            let _ = ctx.core.send(fail(e.to_string())).await;
            return;
        }
    };
    if let Some(cg) = cgroup.as_mut() {
        cg.close_procs_fd();
    }
    let pid = spawned.pid;
    info!(
        pid,
        pgid = pid,
        containment = ctx.containment.name(),
        argv = ?ctx.spec.argv,
        "started"
    );
    let _ = ctx
        .core
        .send(Msg::Started {
            run_id: run_id.clone(),
            pid,
            pgid: pid,
        })
        .await;

    ctx.usage.attach(match &cgroup {
        Some(cg) => crate::usage::Source::of_cgroup(cg),
        None => crate::usage::Source::Procs { leader: pid },
    });
    let sampler = tokio::spawn(sample_usage(ctx.usage.clone(), ctx.usage_interval));

    let stdout_watch = ctx.agent_stdout.then(|| StdoutWatch {
        tracker: StdoutTracker::new(ctx.max_line_bytes),
        run_id: run_id.clone(),
        core: ctx.core.clone(),
    });
    let (critical_tx, critical_rx) = watch::channel(None);
    let drains: Vec<JoinHandle<u64>> = vec![
        tokio::spawn(drain_to_file(
            spawned.stdout,
            out_file,
            Stream::Stdout,
            ctx.progress.clone(),
            stdout_watch,
        )),
        tokio::spawn(drain_to_file(
            spawned.stderr,
            err_file,
            Stream::Stderr,
            ctx.progress.clone(),
            None,
        )),
        tokio::spawn(drain_heartbeats(
            spawned.heartbeat,
            run_id.clone(),
            ctx.core.clone(),
            ctx.beats.clone(),
            ctx.max_line_bytes,
            critical_tx,
        )),
    ];

    let mut h = Handles {
        run_id: run_id.clone(),
        pidfd: spawned.pidfd,
        pgid: pid,
        cgroup,
        env_needle: format!("WF_RUN_ID={run_id}").into_bytes(),
        daemon_pid: std::process::id() as i32,
        leader_exit: None,
    };

    // Wait for the leader to exit or for a kill.
    let mut order: Option<(bool, Option<Duration>)> = None;
    loop {
        tokio::select! {
            r = h.pidfd.exited() => {
                if let Err(e) = r {
                    warn!(pid, error = %e, "cannot poll the leader's pidfd; checking it directly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if h.leader_exited() {
                    break;
                }
            }
            c = ctx.control.recv() => match c {
                Some(Control::Kill { force, grace }) => {
                    order = Some((force, grace));
                    break;
                }
                Some(Control::Escalate) => {
                    order = Some((true, None));
                    break;
                }
                // The core is gone (daemon stopping without orders): end the run all the same.
                None => {
                    order = Some((false, None));
                    break;
                }
            }
        }
    }

    let (force, grace, already_exited) = match order {
        Some((force, grace)) => (force, grace.unwrap_or(ctx.spec.grace), false),
        None => {
            let exit = h.leader_exit;
            debug!(pid, ?exit, "leader exited");
            let _ = ctx
                .core
                .send(Msg::LeaderExited {
                    run_id: run_id.clone(),
                    exit,
                })
                .await;
            (false, ctx.spec.grace, true)
        }
    };

    let critical = Critical {
        rx: critical_rx,
        graces: ctx.critical_graces,
    };
    let mut report = end_run(
        &mut h,
        &ctx.spec,
        force,
        grace,
        ctx.kill_deadline,
        &mut ctx.control,
        &critical,
    )
    .await;
    if already_exited && report.phase != KillPhase::Survivors {
        report.phase = KillPhase::AlreadyExited;
    }
    if report.phase != KillPhase::Survivors {
        // Nothing of the run is left: the next queued run may start while this one's end is
        // wrapped up (final usage, pipes, cgroup) and recorded.
        let _ = ctx
            .core
            .send(Msg::Vacated {
                run_id: run_id.clone(),
            })
            .await;
        // Let the core start that run before this task goes on.
        tokio::task::yield_now().await;
    }

    // The final usage: the run is empty, its cgroup (and its zombie leader) still there.
    sampler.abort();
    ctx.usage.finish();

    // Reap the leader now that its group is empty; then the reaper may have its number back.
    let mut cleanup = Vec::new();
    match h.pidfd.reap() {
        Ok(Some(exit)) => {
            h.leader_exit = Some(exit);
            cleanup.push(CleanupStep {
                step: "leader_reaped",
                ok: true,
                detail: format!("pid {pid}: {}", describe_exit(exit)),
            });
        }
        Ok(None) => cleanup.push(CleanupStep {
            step: "leader_reaped",
            ok: false,
            detail: format!("pid {pid} is still alive; the reaper will collect it when it dies"),
        }),
        Err(e) => cleanup.push(CleanupStep {
            step: "leader_reaped",
            ok: false,
            detail: format!("pid {pid}: {e}"),
        }),
    }
    ctx.reaper.unregister(pid);

    // Pipes: every writer is gone when the run is empty, so the drains see EOF promptly.
    let mut drained = Vec::new();
    let mut pipes_ok = true;
    let pipe_deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for d in drains {
        let abort = d.abort_handle();
        match tokio::time::timeout_at(pipe_deadline, d).await {
            Ok(Ok(n)) => drained.push(n),
            _ => {
                abort.abort();
                pipes_ok = false;
                drained.push(0);
            }
        }
    }
    cleanup.push(CleanupStep {
        step: "pipes",
        ok: pipes_ok,
        detail: if pipes_ok {
            "stdout, stderr and heartbeat pipes closed".into()
        } else {
            "a process outside the run still holds a pipe; its reader was stopped".into()
        },
    });
    ctx.progress.send_modify(|p| p.done = true);
    cleanup.push(CleanupStep {
        step: "logs",
        ok: true,
        detail: format!(
            "flushed: stdout {} bytes, stderr {} bytes, {} heartbeats",
            drained.first().copied().unwrap_or(0),
            drained.get(1).copied().unwrap_or(0),
            drained.get(2).copied().unwrap_or(0)
        ),
    });
    let on_record = match (&h.cgroup, ctx.start_while_recording) {
        // A dequeued run's cgroup marks its start until STARTING is durable: wait for that first.
        (Some(_), true) => (&mut ctx.recorded)
            .await
            .unwrap_or_else(|_| Err("the core gave no answer".to_string())),
        _ => Ok(()),
    };
    match (&h.cgroup, on_record) {
        (None, _) => {}
        (Some(cg), Err(e)) => {
            warn!(error = %e, "STARTING not on record: the run's cgroup is kept as the mark of its start");
            cleanup.push(CleanupStep {
                step: "cgroup",
                ok: false,
                detail: format!(
                    "kept {}: the run's STARTING record is not durable yet ({e}), and the cgroup marks its start until the next daemon start clears it",
                    cg.path().display()
                ),
            });
        }
        (Some(cg), Ok(())) => {
            let mut result = cg.remove();
            for _ in 0..20 {
                match &result {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        result = cg.remove();
                    }
                    _ => break,
                }
            }
            cleanup.push(CleanupStep {
                step: "cgroup",
                ok: result.is_ok(),
                detail: match result {
                    Ok(()) => format!("removed {}", cg.path().display()),
                    Err(e) => format!("cannot remove {}: {e}", cg.path().display()),
                },
            });
        }
    }
    cleanup.push(CleanupStep {
        step: "handles",
        ok: true,
        detail: "pidfd released".into(),
    });
    report.cleanup = cleanup;
    info!(
        pid,
        phase = ?report.phase,
        signals = ?report.signals_sent,
        survivors = report.survivors.len(),
        duration_ms = report.duration.as_millis() as u64,
        exit = ?h.leader_exit,
        "run ended"
    );
    let _ = ctx
        .core
        .send(Msg::Ended {
            run_id,
            exit: h.leader_exit,
            report,
        })
        .await;
}

/// Read the run's usage every `every` until the run task takes the final reading.
async fn sample_usage(probe: crate::usage::UsageProbe, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if probe.is_finished() {
            return;
        }
        probe.sample();
    }
}

/// The critical section the agent has open, if any, and how long each holds off KILL.
struct Critical {
    rx: watch::Receiver<Option<CriticalSection>>,
    graces: CriticalGraces,
}

/// Carry out the kill plan until the run is empty or the KILL deadline passes. A graceful kill
/// waits longer while the agent has a critical section open (its grace, if longer than the
/// run's); a forced kill does not wait.
async fn end_run(
    h: &mut Handles,
    spec: &RunSpec,
    force: bool,
    grace: Duration,
    kill_deadline: Duration,
    control: &mut mpsc::UnboundedReceiver<Control>,
    critical: &Critical,
) -> KillReport {
    let started_at = crate::time::now_ms();
    let t0 = Instant::now();
    let stop: Vec<Signal> = spec
        .stop_signals
        .iter()
        .filter_map(|s| parse_signal(s).ok())
        .collect();
    let stop = if stop.is_empty() {
        vec![Signal::SIGTERM]
    } else {
        stop
    };
    let p = plan(&stop, grace, force, kill_deadline);
    let mut signals_sent = Vec::new();
    let mut escalate = force;
    let mut empty = h.is_empty();
    let mut waited_for: Option<(CriticalSection, Duration)> = None;

    // The graceful phase: each step is `kill::next`'s decision; between steps, the run may
    // have emptied.
    let mut next_stop = 0;
    let mut backoff = Duration::from_millis(1);
    while !empty {
        let now = tokio::time::Instant::now();
        let elapsed = now.into_std().saturating_duration_since(t0);
        let open = *critical.rx.borrow();
        let critical_grace = open.map(|section| (section, critical.graces.for_section(section)));
        match kill_next(
            &p,
            next_stop,
            elapsed,
            critical_grace.map(|c| c.1),
            escalate,
        ) {
            KillNext::Signal(sig) => {
                h.signal_all(sig);
                signals_sent.push(signal_name(sig));
                next_stop += 1;
                backoff = Duration::from_millis(1);
                continue;
            }
            KillNext::Kill => break,
            KillNext::WaitUntil(at) => {
                // While a critical section is open, KILL waits for its grace.
                if let Some((section, cg)) = critical_grace {
                    if cg > p.kill_at {
                        waited_for = Some((section, cg));
                    }
                }
                let wake = (now + backoff).min(tokio::time::Instant::from_std(t0 + at));
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => {}
                    c = control.recv() => {
                        if matches!(c, Some(Control::Escalate) | Some(Control::Kill { force: true, .. })) {
                            escalate = true;
                            continue;
                        }
                    }
                }
            }
        }
        backoff = (backoff * 2).min(Duration::from_millis(5));
        empty = h.is_empty();
    }

    let mut phase = KillPhase::Term;
    let mut survivors = Vec::new();
    if !empty {
        phase = KillPhase::Kill;
        h.signal_all(Signal::SIGKILL);
        signals_sent.push(signal_name(Signal::SIGKILL));
        let deadline = Instant::now() + p.kill_deadline;
        let mut last_pass = Instant::now();
        let mut backoff = Duration::from_millis(1);
        loop {
            if h.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                phase = KillPhase::Survivors;
                survivors = h
                    .members()
                    .into_iter()
                    .map(|s| Survivor {
                        pid: s.pid,
                        state: s.state,
                        comm: s.comm,
                    })
                    .collect();
                if survivors.is_empty() && !h.leader_exited() {
                    if let Some(s) = procscan::stat(h.pidfd.pid()) {
                        survivors.push(Survivor {
                            pid: s.pid,
                            state: s.state,
                            comm: s.comm,
                        });
                    }
                }
                break;
            }
            // Repeat the pass: a fork that raced the first KILL may have added a member.
            if last_pass.elapsed() >= Duration::from_millis(50) {
                h.signal_all(Signal::SIGKILL);
                last_pass = Instant::now();
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(5));
        }
    }
    let duration = t0.elapsed();
    let mut message = match phase {
        KillPhase::Term if signals_sent.is_empty() => {
            "nothing of the run was left to signal".to_string()
        }
        KillPhase::Term => format!("the run ended on {}", signals_sent.join(", then ")),
        KillPhase::Kill if force => "forced: KILL sent at once; nothing is left".to_string(),
        KillPhase::Kill => format!(
            "still alive after the {} ms grace; KILL ended it; nothing is left",
            grace.as_millis()
        ),
        KillPhase::Survivors => format!(
            "{} process(es) outlived KILL for {} ms: {}",
            survivors.len(),
            p.kill_deadline.as_millis(),
            survivors
                .iter()
                .map(|s| format!("{} ({}, state {})", s.pid, s.comm, s.state))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        KillPhase::AlreadyExited | KillPhase::NotStarted => String::new(),
    };
    if let Some((section, cg)) = waited_for {
        message = format!(
            "{message} (waited for the open {} critical section: up to {} ms before KILL)",
            section.as_str(),
            cg.as_millis()
        );
    }
    KillReport {
        phase,
        signals_sent,
        started_at,
        killed_at: crate::time::now_ms(),
        duration,
        survivors,
        cleanup: Vec::new(),
        message,
    }
}

/// "exit code 3" or "killed by SIGKILL".
pub fn describe_exit(exit: ExitKind) -> String {
    match exit {
        ExitKind::Code(c) => format!("exit code {c}"),
        ExitKind::Signal(s) => format!("killed by {}", crate::process::signals::signal_name_raw(s)),
    }
}
