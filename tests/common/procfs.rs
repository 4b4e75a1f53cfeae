//! `/proc` evidence: processes identified by pid and start time, who carries a run's
//! `WF_RUN_ID`, zombies, and the proof that nothing of a run is left.

use std::fs;

use super::{wait_until, TIMEOUT};

/// One process, identified by pid and start time so that a reused pid is not mistaken for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

/// The fields of /proc/PID/stat the tests use.
#[derive(Clone, Debug)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    pub session: i32,
    pub start: u64,
}

/// Reads /proc/PID/stat; `None` once the process is gone (reaped).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        // Field 22 of the whole line is the 20th after the state.
        start: fields.get(19)?.parse().ok()?,
    })
}

impl Proc {
    /// Captures a process that exists now.
    pub fn capture(pid: i32) -> Option<Proc> {
        stat(pid).map(|s| Proc {
            pid,
            start: s.start,
        })
    }

    /// This very process exists in some state (a zombie included).
    pub fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }

    /// This very process exists and is not a zombie (or dead).
    pub fn is_live(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && !matches!(s.state, 'Z' | 'X'))
    }
}

/// The command name of a process (empty once it is gone).
pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The resident set size of a process in KiB, from /proc/PID/status.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose environment holds exactly the entry `entry` (e.g. `WF_RUN_ID=run_...`).
/// Zombies have no readable environment and vanished pids are skipped.
pub fn pids_with_env(entry: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect()
}

/// Zombie processes whose parent is `parent`.
pub fn zombie_children_of(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent && s.state == 'Z'))
        .collect()
}

/// `pid (comm) state` for each pid, for messages.
pub fn describe(pids: &[i32]) -> String {
    pids.iter()
        .map(|&pid| {
            let state = stat(pid).map(|s| s.state).unwrap_or('?');
            format!("{pid} ({}) {state}", comm(pid))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until every process carrying `WF_RUN_ID=<run_id>` is gone.
pub async fn wait_no_env(run_id: &str) {
    let entry = format!("WF_RUN_ID={run_id}");
    wait_until(TIMEOUT, &format!("no process carries {entry}"), || {
        pids_with_env(&entry).is_empty()
    })
    .await;
}

/// Asserts that no live process carries `WF_RUN_ID=<run_id>` right now and none of `procs` is
/// alive. Only "not alive" is asserted: for processes orphaned by a crashed daemon (their parent
/// is then init, not a daemon of the test) reaping is init's business; [`Site::assert_run_gone`]
/// also waits until a running daemon has reaped them.
///
/// [`Site::assert_run_gone`]: super::Site::assert_run_gone
pub fn assert_nothing_left(run_id: &str, procs: &[Proc]) {
    let carriers = pids_with_env(&format!("WF_RUN_ID={run_id}"));
    assert!(
        carriers.is_empty(),
        "processes of {run_id} still live: {}",
        describe(&carriers)
    );
    let live: Vec<&Proc> = procs.iter().filter(|p| p.is_live()).collect();
    assert!(
        live.is_empty(),
        "processes of {run_id} still live: {live:?}"
    );
}
