//! Limits of the host on how many runs the daemon can hold: the open-file limit (raised at
//! start from its soft to its hard value, as systemd's `LimitNOFILE=` does for a unit), the
//! `pids.max` of the daemon's cgroup and its ancestors, and `runs.max_live_runs`. The sampling
//! reads /proc and cgroupfs; what follows from a sample (`capacity`) is a pure function.
#![allow(unsafe_code)]
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Fds a run holds at most while live: its stdout, stderr and heartbeat pipes, its pidfd, the
/// two log files once it writes, and a relay pipe for a flooding stream. (An idle run holds 4.)
pub const FDS_PER_RUN: u64 = 8;

/// Fds kept for the daemon itself (store, sockets, clients, transient opens).
pub const FDS_RESERVED: u64 = 64;

/// (soft, hard) of RLIMIT_NOFILE.
fn getrlimit_nofile() -> io::Result<(u64, u64)> {
    // Safety: getrlimit(2) into a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((l.rlim_cur, l.rlim_max))
    }
}

fn setrlimit_nofile(soft: u64, hard: u64) -> io::Result<()> {
    let l = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // Safety: setrlimit(2) from a local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The open-file limit before and after the raise at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// The soft open-file limit run leaders get back before exec (0: nothing to restore). Programs
/// that use select(2) break on fds above 1024, so the raise is the daemon's alone, as systemd
/// and Go's runtime do it.
static CHILD_NOFILE: AtomicU64 = AtomicU64::new(0);

/// The soft limit to restore in a child, if the daemon raised its own.
pub(crate) fn child_nofile() -> Option<u64> {
    match CHILD_NOFILE.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; children get the old soft limit back.
pub fn raise_nofile() -> io::Result<FdLimit> {
    let (soft_before, hard) = getrlimit_nofile()?;
    if soft_before < hard {
        setrlimit_nofile(hard, hard)?;
        CHILD_NOFILE.store(soft_before, Ordering::Relaxed);
    }
    let (soft, hard) = getrlimit_nofile()?;
    Ok(FdLimit {
        soft_before,
        soft,
        hard,
    })
}

/// What GetHealth reports of the host: fixed at start but for `max_live_runs`, which a reload
/// changes.
#[derive(Debug)]
pub struct Host {
    /// How leaders enter their cgroups ("clone3", "procs-write", "" without cgroups).
    pub cgroup_entry: &'static str,
    /// Which memory controller run cgroups have ("cgroup v2", "cgroup v1", "none").
    pub memory_controller: &'static str,
    pub max_live_runs: AtomicUsize,
}

/// At start: raise the open-file limit and log what the host allows (one call from the daemon).
pub fn start(
    cgroup_entry: &'static str,
    memory_controller: &'static str,
    max_live_runs: usize,
) -> Host {
    match raise_nofile() {
        Ok(l) if l.soft > l.soft_before => tracing::info!(
            from = l.soft_before,
            to = l.soft,
            "raised the open-file limit to its hard limit"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let s = sample();
    let c = capacity(&s, 0, max_live_runs);
    let pids = c.by_pids.map_or("no limit".to_string(), |n| n.to_string());
    tracing::info!(
        fd_limit = s.fd_limit,
        runs_by_fds = c.by_fds,
        runs_by_pids = pids.as_str(),
        max_live_runs,
        runs_left = c.left,
        "capacity: {} live runs (open files allow {}, pids.max {}, runs.max_live_runs {})",
        c.left,
        c.by_fds,
        pids,
        max_live_runs
    );
    Host {
        cgroup_entry,
        memory_controller,
        max_live_runs: AtomicUsize::new(max_live_runs),
    }
}

/// What the host looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    pub fd_limit: u64,
    pub fds_open: u64,
    /// The tightest (max, current) of `pids.max` over the daemon's cgroup and its ancestors.
    pub pids: Option<(u64, u64)>,
}

/// How many more runs each limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub by_fds: u64,
    pub by_pids: Option<u64>,
    pub by_max_live_runs: u64,
    /// The least of them.
    pub left: u64,
}

/// Pure: the headroom a sample leaves, with `live` runs of at most `max_live_runs`.
pub fn capacity(s: &Sample, live: usize, max_live_runs: usize) -> Capacity {
    let by_fds = s
        .fd_limit
        .saturating_sub(s.fds_open)
        .saturating_sub(FDS_RESERVED)
        / FDS_PER_RUN;
    // Each run is at least one process: its leader.
    let by_pids = s.pids.map(|(max, current)| max.saturating_sub(current));
    let by_max_live_runs = (max_live_runs as u64).saturating_sub(live as u64);
    let left = by_fds
        .min(by_max_live_runs)
        .min(by_pids.unwrap_or(u64::MAX));
    Capacity {
        by_fds,
        by_pids,
        by_max_live_runs,
        left,
    }
}

/// Sample the daemon's own fds and its cgroup's pids limit.
pub fn sample() -> Sample {
    let fd_limit = getrlimit_nofile().map(|(soft, _)| soft).unwrap_or(0);
    let fds_open = fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Sample {
        fd_limit,
        fds_open,
        pids: own_pids_limit(),
    }
}

/// The tightest `pids.max` of the daemon's cgroup (v2, else the v1 pids hierarchy) and its
/// ancestors, with that cgroup's `pids.current`.
fn own_pids_limit() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let base = if controllers.is_empty() {
            crate::process::cgroup::cgroup2_mount()
        } else if controllers.split(',').any(|c| c == "pids") {
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        } else {
            None
        };
        if let Some(base) = base {
            dirs.push(base.join(path.trim_start_matches('/')));
        }
    }
    dirs.iter()
        .flat_map(|d| ancestors_within(d))
        .filter_map(|d| pids_headroom(&d))
        .min_by_key(|(max, current)| max.saturating_sub(*current))
}

/// `dir` and its parents up to (and including) the mount's root, which has no pids.max.
fn ancestors_within(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| d.join("cgroup.procs").exists())
        .map(Path::to_path_buf)
        .collect()
}

fn pids_headroom(dir: &Path) -> Option<(u64, u64)> {
    let max = parse_pids_max(&fs::read_to_string(dir.join("pids.max")).ok()?)?;
    let current = fs::read_to_string(dir.join("pids.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((max, current))
}

/// "max" (no limit) is `None`.
fn parse_pids_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_decides() {
        let s = Sample {
            fd_limit: 1024,
            fds_open: 24,
            pids: Some((500, 100)),
        };
        let c = capacity(&s, 10, 4096);
        assert_eq!(c.by_fds, (1024 - 24 - FDS_RESERVED) / FDS_PER_RUN);
        assert_eq!(c.by_pids, Some(400));
        assert_eq!(c.by_max_live_runs, 4086);
        assert_eq!(c.left, c.by_fds);

        let c = capacity(&s, 4090, 4096);
        assert_eq!(c.left, 6, "max_live_runs is the tightest now");
    }

    #[test]
    fn no_pids_limit_leaves_the_others() {
        let s = Sample {
            fd_limit: 1 << 20,
            fds_open: 100,
            pids: None,
        };
        let c = capacity(&s, 0, 4096);
        assert_eq!(c.by_pids, None);
        assert_eq!(c.left, 4096);
    }

    #[test]
    fn exhausted_limits_say_zero_not_wrap() {
        let s = Sample {
            fd_limit: 50,
            fds_open: 60,
            pids: Some((10, 12)),
        };
        let c = capacity(&s, 5000, 4096);
        assert_eq!(
            (c.by_fds, c.by_pids, c.by_max_live_runs, c.left),
            (0, Some(0), 0, 0)
        );
    }

    #[test]
    fn pids_max_parses_numbers_and_max() {
        assert_eq!(parse_pids_max("4096\n"), Some(4096));
        assert_eq!(parse_pids_max("max\n"), None);
    }

    #[test]
    fn the_raise_reaches_the_hard_limit() {
        let l = raise_nofile().expect("getrlimit/setrlimit");
        assert_eq!(l.soft, l.hard, "{l:?}");
        assert!(l.soft >= l.soft_before);
        assert_eq!(sample().fd_limit, l.soft);
    }
}
