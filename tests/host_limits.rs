//! Limits of the host (issue: a daemon started by hand under the usual soft limit of 1024 open
//! files held about 250 runs, then refused spawns with "Too many open files"). The daemon
//! raises its soft RLIMIT_NOFILE to the hard limit at start, gives each run's leader the old
//! soft limit back (select(2)-based programs break above 1024), and GetHealth says how many
//! more runs the fd limit, pids.max and runs.max_live_runs allow.
//!
//! One test in its own binary: it lowers the test process's own soft limit, which the daemon
//! inherits.
mod common;

use common::*;

/// "Max open files  SOFT  HARD  files" from /proc/PID/limits.
fn nofile(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_and_health_shows_the_capacity() {
    let (_, hard) = nofile(std::process::id() as i32);
    if hard <= 1024 {
        eprintln!("skipping: the hard open-file limit is {hard}, nothing to raise to");
        return;
    }
    let lowered = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: hard,
    };
    // Safety: setrlimit(2) from a local struct, on this test process alone.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) },
        0,
        "lowering our own soft limit"
    );
    let daemon = Daemon::start_with(Options {
        runs_toml: "max_live_runs = 5\n".into(),
        ..Options::default()
    })
    .await;
    assert_eq!(
        nofile(daemon.pid),
        (hard, hard),
        "the daemon raised its soft limit"
    );
    let log = daemon.log_text();
    assert!(
        log.contains("raised the open-file limit") && log.contains("capacity:"),
        "{log}"
    );

    let api = daemon.api();
    let run = api.spawn(&sh("exec sleep 600")).await;
    let run = api.wait_running(&run.run_id).await;
    assert_eq!(
        nofile(run.pid),
        (1024, hard),
        "the agent gets the old soft limit back"
    );

    let health = api.health().await;
    assert_eq!(health.fd_limit, hard, "{health:?}");
    assert!(health.fds_open > 0 && health.fds_per_run > 0, "{health:?}");
    let by_fds = (hard - health.fds_open - 64) / u64::from(health.fds_per_run);
    assert_eq!(health.runs_left_by_fds, by_fds, "{health:?}");
    assert_eq!(
        health.runs_left_by_max_live_runs, 4,
        "5 allowed, 1 live: {health:?}"
    );
    if let (Some(max), Some(left)) = (health.pids_max, health.runs_left_by_pids) {
        assert!(left <= max, "{health:?}");
    }
    assert_eq!(
        health.runs_left,
        [
            health.runs_left_by_fds,
            health.runs_left_by_max_live_runs,
            health.runs_left_by_pids.unwrap_or(u64::MAX)
        ]
        .into_iter()
        .min()
        .unwrap(),
        "{health:?}"
    );

    // wfctl prints it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wfctl"))
        .args(["--socket"])
        .arg(&daemon.socket)
        .arg("health")
        .output()
        .expect("wfctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("capacity") && text.contains("4 more runs"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A reload's new runs.max_live_runs shows at once.
    let text = std::fs::read_to_string(&daemon.config).expect("config");
    std::fs::write(
        &daemon.config,
        text.replace("max_live_runs = 5", "max_live_runs = 7"),
    )
    .expect("config");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(
        TIMEOUT,
        "GetHealth follows the reloaded max_live_runs",
        || async { (api.health().await.runs_left_by_max_live_runs == 6).then_some(()) },
    )
    .await;

    let response = api.kill(&run.run_id).await;
    assert!(response.success, "{response:?}");
    daemon.assert_run_gone(&run.run_id, &[]).await;
}
