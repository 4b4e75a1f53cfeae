//! What the benchmark knows about processes, from the kernel only: /proc (who carries a run's
//! environment variable, process state, session, ignored signals, the daemon's memory, fds and
//! CPU time) and pidfds (the moment each process exited). Never the daemon's word.
use std::collections::HashSet;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::sys;

// Reading /proc is the same job the daemon's process layer does: share it.
pub use wf_supervisor::process::procscan::{
    all_pids, environ_contains as environ_has, own_children, stat, ProcStat as Proc,
};

/// Every process (zombies included) whose environment holds `needle`.
pub fn with_env(needle: &[u8]) -> Vec<Proc> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| *p != me && environ_has(*p, needle))
        .filter_map(stat)
        .collect()
}

/// Live (non-zombie) processes whose environment holds `needle`.
pub fn live_with_env(needle: &[u8]) -> Vec<Proc> {
    with_env(needle)
        .into_iter()
        .filter(|p| p.state != 'Z')
        .collect()
}

/// Whether `pid` ignores signal `sig` (from the SigIgn mask in /proc/PID/status).
pub fn ignores(pid: i32, sig: i32) -> Option<bool> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("SigIgn:"))?;
    let mask = u64::from_str_radix(line["SigIgn:".len()..].trim(), 16).ok()?;
    Some(mask & (1u64 << (sig - 1)) != 0)
}

/// A process's resource use, from /proc.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub fds: u64,
    /// utime + stime, in seconds.
    pub cpu_s: f64,
    pub threads: u64,
}

/// The resource use of `pid` now.
pub fn usage(pid: i32) -> Option<Usage> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        fds,
        cpu_s: cpu_seconds(pid)?,
        threads: field("Threads:"),
    })
}

/// utime + stime of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    // Fields after the command: state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / sys::clock_ticks_per_sec() as f64)
}

/// A process held by a pidfd, so that its exit is seen and its number cannot be confused.
#[derive(Debug)]
pub struct Held {
    pub pid: i32,
    pub fd: OwnedFd,
}

/// Hold every process in `procs` by a pidfd, keeping only those that still carry `needle` once
/// held (a number may have been reused between the scan and the open).
pub fn hold(procs: &[Proc], needle: &[u8]) -> Vec<Held> {
    procs
        .iter()
        .filter_map(|p| {
            let fd = sys::pidfd_open(p.pid).ok()?;
            environ_has(p.pid, needle).then_some(Held { pid: p.pid, fd })
        })
        .collect()
}

/// When the last of a set of processes exited, and which had not by the deadline.
#[derive(Debug, Clone)]
pub struct Exits {
    pub last: Option<Instant>,
    pub alive: Vec<i32>,
}

/// Wait until every held process has exited (its pidfd turns readable: the process is dead,
/// reaped or not) or `deadline` passes.
pub fn wait_all_exited(held: &[Held], deadline: Instant) -> Exits {
    let mut pending: Vec<&Held> = held.iter().collect();
    let mut last = None;
    while !pending.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let wait_ms = (deadline - now).as_millis().clamp(1, 1000) as u16;
        let mut fds: Vec<PollFd> = pending
            .iter()
            .map(|h| PollFd::new(h.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(wait_ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let t = Instant::now();
        let done: HashSet<i32> = fds
            .iter()
            .zip(pending.iter())
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, h)| h.pid)
            .collect();
        drop(fds);
        if !done.is_empty() {
            last = Some(t);
            pending.retain(|h| !done.contains(&h.pid));
        }
    }
    Exits {
        last: if pending.is_empty() { last } else { None },
        alive: pending.iter().map(|h| h.pid).collect(),
    }
}

/// The same as [`wait_all_exited`], on a thread of its own; the answer comes back on a channel.
pub fn watch_exits(
    held: std::sync::Arc<Vec<Held>>,
    deadline: Instant,
) -> tokio::sync::oneshot::Receiver<Exits> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait_all_exited(&held, deadline));
    });
    rx
}

/// Whether the process behind a pidfd has exited.
pub fn has_exited(h: &Held) -> bool {
    let mut fds = [PollFd::new(h.fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// SIGKILL everything still alive that carries `needle` (held by a pidfd first). Returns how
/// many were signalled.
pub fn kill_all_with_env(needle: &[u8]) -> usize {
    let live = live_with_env(needle);
    let held = hold(&live, needle);
    for h in &held {
        let _ = sys::pidfd_signal(h.fd.as_fd(), libc::SIGKILL);
    }
    held.len()
}

/// Reap exited children of the benchmark (orphans of raw runs are re-parented to us, a child
/// subreaper), except those in `keep`: the daemons and raw leaders, which their owners reap.
/// Walks children by pid; never `waitpid(-1)`, which would steal an owner's status.
pub fn reap_orphans(keep: &HashSet<i32>) -> usize {
    let mut n = 0;
    for pid in own_children() {
        if keep.contains(&pid) {
            continue;
        }
        if stat(pid).is_some_and(|p| p.state == 'Z')
            && waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Poll `cond` every `step` until it holds or `timeout` passes. Returns whether it held.
pub async fn wait_until(timeout: Duration, step: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(step).await;
    }
}

/// VmRSS and VmHWM of `pid` in KiB (a cheaper read than [`usage`], for sampling).
pub fn rss_hwm_kib(pid: i32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l[name.len()..].split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples a process's VmRSS on a thread of its own until stopped; yields the peak in KiB.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: i32, every: Duration) -> RssSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((rss, _)) = rss_hwm_kib(pid) {
                    peak = peak.max(rss);
                }
                std::thread::sleep(every);
            }
            peak
        });
        RssSampler { stop, thread }
    }

    /// Stop and return the peak VmRSS seen, in KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
