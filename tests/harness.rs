//! The harness's own evidence: the /proc checks every kill test ends with really see a live
//! process, a zombie and a reused pid, so that "nothing is left" is never vacuously true; and the
//! fake agent reports what it started. No daemon is involved.
mod common;

use std::process::{Command, Stdio};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_evidence_sees_live_zombie_and_gone_processes() {
    let entry = format!("WF_RUN_ID=run_harness{}", std::process::id());
    let mut child = Command::new("/bin/sleep")
        .arg("1000")
        .env("WF_RUN_ID", entry.trim_start_matches("WF_RUN_ID="))
        .spawn()
        .expect("sleep");
    let pid = child.id() as i32;
    let me = std::process::id() as i32;
    let proc = Proc::capture(pid).expect("a live child");
    assert!(proc.is_live() && proc.exists());
    // spawn returns once exec has begun, before the kernel has set up the new program's
    // environment: wait until /proc shows it.
    wait_until(TIMEOUT, "the child's environment is visible", || {
        !pids_with_env(&entry).is_empty()
    })
    .await;
    assert_eq!(pids_with_env(&entry), vec![pid]);
    assert!(
        pids_with_env(&format!("{entry}0")).is_empty(),
        "exact match"
    );

    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
    wait_until(TIMEOUT, "the child is a zombie", || {
        zombie_children_of(me).contains(&pid)
    })
    .await;
    assert!(
        !proc.is_live() && proc.exists(),
        "a zombie exists but is not live"
    );
    assert!(
        pids_with_env(&entry).is_empty(),
        "a zombie has no environment"
    );

    child.wait().expect("reap");
    assert!(!proc.exists());
    assert!(!zombie_children_of(me).contains(&pid));
    let reused = Proc {
        pid: me,
        start: u64::MAX,
    };
    assert!(
        !reused.exists(),
        "a pid with another start time is not the same process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_agent_reports_what_it_started() {
    // Orphans of the fake agent come to this process (as they would to the daemon), so that
    // the test can reap them instead of leaving zombies to init.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pids");
    // Stdout goes to a file: the children and the escapee keep it open after the leader exits,
    // so reading a pipe to EOF would never end.
    let stdout = dir.path().join("stdout");
    let status = Command::new(FAKE_AGENT)
        .args([
            "--marker",
            "hi",
            "--children",
            "2",
            "--escape-setsid",
            "--pidfile",
        ])
        .arg(&pidfile)
        .args(["--ignore-term", "--exit", "7"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("stdout file"))
        .status()
        .expect("fake agent");
    assert_eq!(status.code(), Some(7));
    let text = std::fs::read_to_string(&stdout).expect("stdout");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "hi");
    let children: Vec<i32> = lines[1]
        .strip_prefix("children: ")
        .expect("children line")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    let escapee: i32 = lines[2]
        .strip_prefix("escapee: ")
        .expect("escapee line")
        .parse()
        .expect("pid");
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .lines()
        .map(|l| l.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 4);
    assert_eq!(pids[1..3], children[..]);
    assert_eq!(pids[3], escapee);

    let started: Vec<Proc> = pids[1..].iter().filter_map(|&p| Proc::capture(p)).collect();
    assert_eq!(started.len(), 3, "children and escapee outlive the leader");
    let escapee_stat = stat(escapee).expect("escapee stat");
    assert_eq!(
        escapee_stat.session, escapee,
        "the escapee leads its own session"
    );
    let me = std::process::id() as i32;
    for p in &started {
        assert_eq!(
            stat(p.pid).map(|s| s.ppid),
            Some(me),
            "adopted by the subreaper"
        );
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGTERM);
    }
    // An ignored signal is discarded when it is sent, so nothing can have died of it.
    assert!(started.iter().all(Proc::is_live), "TERM was ignored");
    for p in &started {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        let status = waitpid(Pid::from_raw(p.pid), None).expect("waitpid");
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
            "{status:?}"
        );
        assert!(!p.exists());
    }
}
