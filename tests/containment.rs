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

/// The kernel's answer on whether a child can be created inside a cgroup, as the daemon reads
/// it at start: `None` where it can't (the test then skips the clone3 half, saying so).
fn clone_into_cgroup_here() -> Option<()> {
    match wf_supervisor::process::vfork::clone_into_cgroup_support() {
        Ok(()) => Some(()),
        Err(reason) => {
            eprintln!("note: no CLONE_INTO_CGROUP here ({reason}); the clone3 checks skip");
            None
        }
    }
}

/// Each run's leader is in the run's cgroup from its first instruction, whichever way it got
/// there: `spawn_method` x `cgroup_entry`. The leader prints its own /proc/self/cgroup before
/// anything else, so a late move would show. GetHealth names the entry in use; a kill still
/// ends the whole run, escapee included.
async fn leader_is_born_in_its_cgroup(spawn_method: &str, cgroup_entry: &str) {
    if cgroup_entry == "auto" && clone_into_cgroup_here().is_none() {
        return;
    }
    let Some(daemon) = Daemon::try_start_with(Options {
        containment: Containment::Cgroup,
        runs_toml: format!("spawn_method = \"{spawn_method}\"\n"),
        // Lands in the harness's [containment] table, which comes last.
        extra_toml: format!("cgroup_entry = \"{cgroup_entry}\"\n"),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let api = daemon.api();
    let health = api.health().await;
    let expected = if cgroup_entry == "auto" {
        "clone3"
    } else {
        cgroup_entry
    };
    assert_eq!(health.cgroup_entry, expected, "{health:?}");
    assert_eq!(health.containment, "cgroup", "{health:?}");

    let run = api
        .spawn_req(SpawnRequest {
            argv: sh("cat /proc/self/cgroup | grep '^0::'; exec sleep 600"),
            ..Default::default()
        })
        .await;
    let line = api.wait_line(&run.run_id, "0::").await;
    let root = daemon.cgroup_root.clone().expect("a cgroup root");
    let mount = cgroup2_mount().expect("cgroup2 mount");
    let rel = root.strip_prefix(&mount).expect("root under the mount");
    // `cat` is the leader's child, born where the leader was at its exec.
    assert_eq!(
        line,
        format!("/{}/{}", rel.display(), run.run_id),
        "spawn_method {spawn_method}, cgroup_entry {cgroup_entry}"
    );
    let run = api.wait_running(&run.run_id).await;
    let response = api.kill(&run.run_id).await;
    assert!(response.success, "{response:?}");
    assert_gone_with_its_cgroup(&daemon, &run.run_id, &[]).await;

    // And a whole tree with an escapee still ends with the run.
    let run = api
        .spawn_req(SpawnRequest {
            argv: fake(&["--children", "2", "--escape-setsid", "--hang"]),
            grace_ms: 1000,
            ..Default::default()
        })
        .await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, true).await;
    let response = api.kill(&run.run_id).await;
    assert_eq!(response.survivors, 0, "{response:?}");
    assert_gone_with_its_cgroup(&daemon, &run.run_id, &procs).await;

    // A program that cannot be executed is a FAILED run naming the OS error, on every route.
    let run = api.spawn(&["/etc/passwd".to_string()]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert!(
        run.error.contains("/etc/passwd") && run.error.contains("ermission denied"),
        "{run:?}"
    );
    wait_until(TIMEOUT, "the failed run's cgroup is removed", || {
        cgroup_children(&root).is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vfork_leader_is_cloned_into_its_cgroup() {
    leader_is_born_in_its_cgroup("vfork", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_leader_is_cloned_into_its_cgroup() {
    leader_is_born_in_its_cgroup("fork", "auto").await;
}

/// The fallback for kernels without CLONE_INTO_CGROUP, forced by the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vfork_leader_writes_itself_into_its_cgroup_without_clone3() {
    leader_is_born_in_its_cgroup("vfork", "procs-write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_leader_writes_itself_into_its_cgroup_without_clone3() {
    leader_is_born_in_its_cgroup("fork", "procs-write").await;
}
