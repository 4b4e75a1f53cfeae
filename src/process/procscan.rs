//! Reading /proc: who is in a process group, who carries a run's `WF_RUN_ID`, what state a
//! process is in. Used to verify that nothing of a run is left (and, without cgroups, to find
//! setsid escapees), never to decide whom to signal without a handle.
use std::fs;
use std::io::Read;

/// What /proc/PID/stat says of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
}

/// Parse the text of /proc/PID/stat. The command name may hold spaces and parentheses, so the
/// fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgid = rest.next()?.parse().ok()?;
    let sid = rest.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        pgid,
        sid,
    })
}

/// The stat of one process, or None when it is gone.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Every pid in /proc now.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Every process now, with its stat.
pub fn all_stats() -> Vec<ProcStat> {
    all_pids().into_iter().filter_map(stat).collect()
}

/// Whether the environment of `pid` holds exactly `needle` (e.g. `WF_RUN_ID=run_…`).
pub fn environ_contains(pid: i32, needle: &[u8]) -> bool {
    let Ok(mut f) = fs::File::open(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut buf = Vec::with_capacity(4096);
    if f.read_to_end(&mut buf).is_err() {
        return false;
    }
    buf.split(|b| *b == 0).any(|kv| kv == needle)
}

/// The children of this process (all threads), from /proc/self/task/*/children.
pub fn own_children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.filter_map(|e| e.ok()) {
        let mut p = task.path();
        p.push("children");
        if let Ok(text) = fs::read_to_string(&p) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The pids of a run that are still alive (not zombies): members of its process group, plus
/// (when `run_env` is given) every descendant of `daemon_pid` whose environment carries it.
pub fn live_members(pgid: i32, run_env: Option<&[u8]>, daemon_pid: i32) -> Vec<ProcStat> {
    let stats = all_stats();
    let mut out: Vec<ProcStat> = Vec::new();
    let descendants = run_env.map(|_| descendants_of(&stats, daemon_pid));
    for s in &stats {
        if s.state == 'Z' || s.state == 'X' {
            continue;
        }
        let in_group = pgid > 1 && s.pgid == pgid;
        let escapee = match (run_env, &descendants) {
            (Some(env), Some(desc)) if !in_group => {
                desc.binary_search(&s.pid).is_ok() && environ_contains(s.pid, env)
            }
            _ => false,
        };
        if in_group || escapee {
            out.push(s.clone());
        }
    }
    out
}

/// Sorted pids of every descendant of `root` in a snapshot of stats.
fn descendants_of(stats: &[ProcStat], root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for s in stats {
            if s.ppid == p && !found.contains(&s.pid) {
                found.push(s.pid);
                frontier.push(s.pid);
            }
        }
    }
    found.retain(|p| *p != root);
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let s = parse_stat("42 (a) b (c)) S 1 42 42 0 -1 4194560").expect("parse");
        assert_eq!(s.pid, 42);
        assert_eq!(s.comm, "a) b (c)");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgid, s.sid), (1, 42, 42));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn own_stat_and_environ() {
        let me = std::process::id() as i32;
        let s = stat(me).expect("own stat");
        assert_eq!(s.pid, me);
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(environ_contains(me, format!("PATH={path}").as_bytes()));
        assert!(!environ_contains(me, b"WF_RUN_ID=run_000000000000"));
    }

    #[test]
    fn descendants_walk_the_tree() {
        let mk = |pid, ppid| ProcStat {
            pid,
            comm: String::new(),
            state: 'S',
            ppid,
            pgid: pid,
            sid: pid,
        };
        let stats = vec![mk(10, 1), mk(11, 10), mk(12, 11), mk(13, 1)];
        assert_eq!(descendants_of(&stats, 10), vec![11, 12]);
    }
}
