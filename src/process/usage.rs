//! Reading what a run costs the host: its cgroup's accounting files (`cpu.stat`,
//! `memory.current`/`memory.peak`, `memory.events`, `pids.current`/`pids.peak`, `pids.events`,
//! `io.stat`; on hybrid hosts the v1 memory cgroup's `memory.usage_in_bytes`,
//! `memory.max_usage_in_bytes` and `memory.oom_control`) and, for what the cgroup cannot give (a controller this host's v2 hierarchy lacks,
//! or process-group containment), the run's processes in /proc. Every figure is optional: a file
//! that is missing is reported as unavailable, never as an error, so usage can never fail a run.
//! The parsers are pure and unit-tested; the readers only open files.
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// One reading. `None`: this host cannot give the figure from this source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    pub memory_bytes: Option<u64>,
    /// The kernel's own peak (memory.peak), or the summed VmHWM of the processes read now.
    pub memory_peak_bytes: Option<u64>,
    pub processes: Option<u32>,
    pub processes_peak: Option<u32>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    /// memory.events oom_kill (None without the memory controller).
    pub oom_kills: Option<u64>,
    /// pids.events max (None without the pids controller).
    pub pids_max_hits: Option<u64>,
}

/// `key value` lines (cpu.stat, memory.events, pids.events) as a map.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k, v))
        })
        .collect()
}

/// `io.stat`: one line per device (`8:0 rbytes=1 wbytes=2 rios=...`), summed over devices.
pub fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        for field in line.split_whitespace().skip(1) {
            if let Some(v) = field.strip_prefix("rbytes=") {
                r = r.saturating_add(v.parse().unwrap_or(0));
            } else if let Some(v) = field.strip_prefix("wbytes=") {
                w = w.saturating_add(v.parse().unwrap_or(0));
            }
        }
    }
    (r, w)
}

/// A single number file (`memory.current`, `pids.peak`); "max" and garbage give None.
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// What one process's /proc files say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcFigures {
    /// utime + cutime (the process and its reaped children), in clock ticks.
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
}

/// utime, stime, cutime and cstime from the text of /proc/PID/stat (fields 14-17, counted from
/// the last ')' because the command name may hold anything).
pub fn parse_stat_times(text: &str) -> Option<(u64, u64)> {
    let close = text.rfind(')')?;
    // After ')': state is field 3; utime is field 14, so the 12th after state.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let f = |i: usize| rest.get(i).and_then(|s| s.parse::<u64>().ok());
    let (utime, stime, cutime, cstime) = (f(11)?, f(12)?, f(13)?, f(14)?);
    Some((utime + cutime, stime + cstime))
}

/// VmRSS and VmHWM (bytes) from the text of /proc/PID/status; a zombie has neither (0).
pub fn parse_status_memory(text: &str) -> (u64, u64) {
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// The figures of one process, or None when it is gone.
pub fn proc_figures(pid: i32) -> Option<ProcFigures> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (user_ticks, system_ticks) = parse_stat_times(&stat)?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let (rss_bytes, hwm_bytes) = parse_status_memory(&status);
    Some(ProcFigures {
        user_ticks,
        system_ticks,
        rss_bytes,
        hwm_bytes,
    })
}

/// `root` and every descendant of it, from /proc/PID/task/TID/children (no scan of all of
/// /proc: the cost is the size of the tree). A process whose parent exited was reparented to
/// the subreaper and is no longer found this way.
pub fn tree_of(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() && out.len() < 100_000 {
        let pid = out[i];
        i += 1;
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.filter_map(|e| e.ok()) {
            let Ok(text) = fs::read_to_string(t.path().join("children")) else {
                continue;
            };
            for c in text
                .split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok())
            {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Clock ticks per second (for /proc times).
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map(|t| t as u64)
        .unwrap_or(100)
}

/// Sum the figures of `pids` (those still there) into a reading: CPU and memory from /proc.
pub fn read_procs(pids: &[i32]) -> Reading {
    let tick_usec = 1_000_000 / clock_ticks().max(1);
    let mut r = Reading::default();
    let (mut user, mut system, mut rss, mut hwm, mut n) = (0u64, 0u64, 0u64, 0u64, 0u32);
    for pid in pids {
        if let Some(f) = proc_figures(*pid) {
            user += f.user_ticks;
            system += f.system_ticks;
            rss += f.rss_bytes;
            hwm += f.hwm_bytes;
            n += 1;
        }
    }
    r.cpu_user_usec = Some(user * tick_usec);
    r.cpu_system_usec = Some(system * tick_usec);
    r.memory_bytes = Some(rss);
    r.memory_peak_bytes = Some(hwm);
    r.processes = Some(n);
    r
}

/// Read a run's cgroup directory (and its v1 memory cgroup `memory_v1`, where memory is on v1).
/// Figures whose files are missing stay None; memory falls back to the cgroup's processes in
/// /proc when no memory controller is there (`members`).
pub fn read_cgroup(dir: &Path, memory_v1: Option<&Path>, members: &[i32]) -> Reading {
    let read = |f: &str| fs::read_to_string(dir.join(f)).ok();
    let mut r = Reading::default();
    if let Some(text) = read("cpu.stat") {
        let m = parse_flat_keyed(&text);
        r.cpu_user_usec = m.get("user_usec").copied();
        r.cpu_system_usec = m.get("system_usec").copied();
    }
    let memory_controller = dir.join("memory.current").exists();
    if memory_controller {
        r.memory_bytes = read("memory.current").and_then(|t| parse_number(&t));
        r.memory_peak_bytes = read("memory.peak").and_then(|t| parse_number(&t));
        r.oom_kills = read("memory.events").map(|t| {
            parse_flat_keyed(&t)
                .get("oom_kill")
                .copied()
                .unwrap_or_default()
        });
    } else if let Some(v1) = memory_v1 {
        let m = crate::process::cgroup_v1::RunMemoryV1::read(v1);
        r.memory_bytes = m.usage_bytes;
        r.memory_peak_bytes = m.max_usage_bytes;
        r.oom_kills = m.oom_kills;
    }
    if r.memory_bytes.is_none() || r.memory_peak_bytes.is_none() {
        let p = read_procs(members);
        r.memory_bytes = r.memory_bytes.or(p.memory_bytes);
        r.memory_peak_bytes = r.memory_peak_bytes.or(p.memory_peak_bytes);
    }
    r.processes = Some(members.len() as u32);
    r.processes_peak = read("pids.peak").and_then(|t| parse_number(&t).map(|n| n as u32));
    r.pids_max_hits =
        read("pids.events").map(|t| parse_flat_keyed(&t).get("max").copied().unwrap_or_default());
    if let Some(text) = read("io.stat") {
        let (rb, wb) = parse_io_stat(&text);
        r.io_read_bytes = Some(rb);
        r.io_write_bytes = Some(wb);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_and_events() {
        let m = parse_flat_keyed("usage_usec 900501\nuser_usec 524286\nsystem_usec 376215\n");
        assert_eq!(m.get("user_usec"), Some(&524286));
        assert_eq!(m.get("system_usec"), Some(&376215));
        let ev = parse_flat_keyed("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(ev.get("oom_kill"), Some(&1));
        assert!(parse_flat_keyed("garbage\nkey notanumber\n").is_empty());
    }

    #[test]
    fn io_stat_sums_devices() {
        let text = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    8:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(text), (4196, 8192));
        assert_eq!(parse_io_stat(""), (0, 0));
    }

    #[test]
    fn numbers_and_max() {
        assert_eq!(parse_number("104857600\n"), Some(104857600));
        assert_eq!(parse_number("max\n"), None);
    }

    #[test]
    fn stat_times_count_from_the_last_paren() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        let text = "42 (a) b (c)) S 1 42 42 0 -1 4194560 10 0 0 0 150 20 7 3 20 0 1 0";
        assert_eq!(parse_stat_times(text), Some((157, 23)));
        assert_eq!(parse_stat_times("42 (x) S 1"), None);
    }

    #[test]
    fn status_memory() {
        let text = "Name:\tx\nVmHWM:\t  102400 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_memory(text), (2048 * 1024, 102400 * 1024));
        assert_eq!(parse_status_memory("Name:\tzombie\n"), (0, 0));
    }

    #[test]
    fn the_tree_of_a_process_holds_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id() as i32;
        let tree = tree_of(me);
        assert_eq!(tree[0], me);
        assert!(tree.contains(&(child.id() as i32)), "{tree:?}");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn own_process_reads() {
        let me = std::process::id() as i32;
        let r = read_procs(&[me, i32::MAX]);
        assert_eq!(r.processes, Some(1));
        assert!(r.memory_bytes.unwrap_or(0) > 0);
        assert!(r.memory_peak_bytes.unwrap_or(0) >= r.memory_bytes.unwrap_or(0));
    }

    #[test]
    fn a_directory_without_cgroup_files_gives_nothing_but_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = read_cgroup(dir.path(), None, &[]);
        assert_eq!(r.cpu_user_usec, None);
        assert_eq!(r.oom_kills, None);
        assert_eq!(r.io_read_bytes, None);
        assert_eq!(r.processes, Some(0));
    }
}
