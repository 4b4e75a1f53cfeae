//! Containment: a grandchild that double-forks and calls setsid() leaves the run's process group
//! and session, yet a kill (or the leader's own exit) still ends it — through the run's cgroup in
//! "cgroup" mode, and through the subreaper and the WF_RUN_ID scan in "process-group" mode.
mod common;

use common::*;
use wf_supervisor::proto::{RunStatus, SpawnRequest};

/// Proves that nothing of the run is left (`procs` included) and, with cgroups, that the run's
/// cgroup is removed soon.
async fn assert_gone_with_its_cgroup(daemon: &Daemon, run_id: &str, procs: &[Proc]) {
    daemon.assert_run_gone(run_id, procs).await;
    if let Some(root) = &daemon.cgroup_root {
        wait_until(TIMEOUT, "the run's cgroup is removed", || {
            cgroup_children(root).is_empty()
        })
        .await;
    }
}

/// Spawns a leader with two children and a setsid escapee, kills the run, and proves that
/// nothing is left. `None` options mean the test skips (no cgroups to give).
async fn escapee_is_killed(containment: Containment, expected: &str) {
    let Some(daemon) = Daemon::try_start_in(containment).await else {
        return;
    };
    let api = daemon.api();
    let run = api
        .spawn_req(SpawnRequest {
            argv: fake(&["--children", "2", "--escape-setsid", "--hang"]),
            grace_ms: 1000,
            ..Default::default()
        })
        .await;
    let run = api.wait_running(&run.run_id).await;
    assert_eq!(run.containment, expected, "{run:?}");
    let procs = api.fake_agent_procs(&run, true, true).await;
    let leader = stat(run.pid).expect("leader stat");
    let escapee = stat(procs[3].pid).expect("escapee stat");
    assert_ne!(
        escapee.pgid, leader.pgid,
        "the escapee left the run's group"
    );
    assert_ne!(
        escapee.session, leader.session,
        "the escapee left the session"
    );
    if let Some(root) = &daemon.cgroup_root {
        assert_eq!(cgroup_children(root).len(), 1, "one cgroup for the run");
    }

    let response = api.kill(&run.run_id).await;
    eprintln!(
        "phase {:?}, signals {:?}",
        response.phase(),
        response.signals_sent
    );
    assert!(response.success, "{response:?}");
    assert_eq!(response.survivors, 0, "{response:?}");
    assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Killed);
    assert_gone_with_its_cgroup(&daemon, &run.run_id, &procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setsid_escapee_is_killed_with_cgroups() {
    escapee_is_killed(Containment::Cgroup, "cgroup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setsid_escapee_is_killed_without_cgroups() {
    escapee_is_killed(Containment::ProcessGroup, "process-group").await;
}

/// The leader exits 0 on its own and leaves an escapee and a child behind: the run still ends
/// SUCCEEDED and nothing of it is left.
async fn escapee_is_ended_when_leader_exits(containment: Containment) {
    let Some(daemon) = Daemon::try_start_with(Options {
        containment,
        grace_ms: 1000,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let api = daemon.api();
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pids");
    let run = api
        .spawn(&fake(&[
            "--children",
            "1",
            "--escape-setsid",
            "--pidfile",
            pidfile.to_str().expect("utf-8 path"),
            "--sleep-ms",
            "1000",
            "--exit",
            "0",
        ]))
        .await;
    // The pidfile is written before the leader sleeps, so its processes can be captured alive.
    wait_until(TIMEOUT, "the pidfile appears", || pidfile.exists()).await;
    let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .lines()
        .map(|l| l.parse().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 3, "leader, child, escapee: {pids:?}");
    let procs: Vec<Proc> = pids.iter().filter_map(|&p| Proc::capture(p)).collect();

    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.exit_code, Some(0), "{run:?}");
    // A terminal status means the run was verified empty: no waiting for stragglers.
    assert_gone_with_its_cgroup(&daemon, &run.run_id, &procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapee_is_ended_when_leader_exits_with_cgroups() {
    escapee_is_ended_when_leader_exits(Containment::Cgroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escapee_is_ended_when_leader_exits_without_cgroups() {
    escapee_is_ended_when_leader_exits(Containment::ProcessGroup).await;
}
