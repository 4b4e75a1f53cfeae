//! Shutdown: SIGTERM to the daemon ends every live run through the kill state machine — trees
//! with children, TERM-ignoring trees, setsid escapees — leaves no process behind, and the daemon
//! exits 0.
mod common;

use common::*;
use nix::sys::signal::Signal;
use wf_supervisor::proto::SpawnRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_run_and_exits_zero() {
    let mut daemon = Daemon::start_with(Options {
        grace_ms: 1000,
        ..Default::default()
    })
    .await;
    let api = daemon.api();
    let specs: [(&[&str], bool); 3] = [
        (&["--children", "3", "--hang"], false),
        (&["--ignore-term", "--children", "3", "--hang"], false),
        (&["--children", "1", "--escape-setsid", "--hang"], true),
    ];
    let mut runs = Vec::new();
    let mut procs = Vec::new();
    for (args, escapee) in specs {
        let run = api
            .spawn_req(SpawnRequest {
                argv: fake(args),
                grace_ms: 500,
                ..Default::default()
            })
            .await;
        let run = api.wait_running(&run.run_id).await;
        procs.extend(api.fake_agent_procs(&run, true, escapee).await);
        runs.push(run.run_id);
    }
    let shell = api
        .spawn(&sh(
            "for i in 1 2 3; do sleep 1000 & done; echo started; wait",
        ))
        .await;
    api.wait_line(&shell.run_id, "started").await;
    runs.push(shell.run_id);

    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait_exit(TIMEOUT * 2).await;
    assert_eq!(status.code(), Some(0), "daemon exit: {status}");

    for run_id in &runs {
        let left = pids_with_env(&format!("WF_RUN_ID={run_id}"));
        assert!(left.is_empty(), "{run_id} left {}", describe(&left));
    }
    let live: Vec<&Proc> = procs.iter().filter(|p| p.is_live()).collect();
    assert!(live.is_empty(), "processes left after shutdown: {live:?}");
    // Whatever the daemon had not reaped went to init; it must be gone soon.
    wait_until(TIMEOUT, "every process of the runs is reaped", || {
        procs.iter().all(|p| !p.exists())
    })
    .await;
}
