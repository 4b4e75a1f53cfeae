//! Resource usage per run: a run that burns the CPU for a second and holds 100 MiB reports both
//! within sensible bounds, live on Get and kept after it ended (also across a daemon restart),
//! from its cgroup and, under process-group containment, from /proc; an OOM kill under
//! `runs.memory_max_bytes` is reported as such where the memory controller is in the cgroup v2
//! hierarchy.
mod common;

use std::path::Path;

use common::*;
use wf_supervisor::proto::{Run, RunStatus};

const MIB: u64 = 1 << 20;

fn usage_options(containment: Containment) -> Options {
    Options {
        containment,
        extra_toml: "[metrics]\nusage_sample_interval_ms = 100\n".into(),
        ..Default::default()
    }
}

/// The run allocates 100 MiB, spins for a second, then sleeps a second holding the memory.
fn burner() -> Vec<String> {
    fake(&[
        "--alloc-mib",
        "100",
        "--burn-cpu-ms",
        "1000",
        "--sleep-ms",
        "1000",
    ])
}

fn assert_figures(run: &Run, source: &str) {
    let u = run.usage.as_ref().expect("the run has usage");
    eprintln!("usage: {u:?}");
    assert_eq!(u.source, source, "{u:?}");
    let cpu_ms = u.cpu_user_ms + u.cpu_system_ms;
    // A second of spinning (on a busy machine the run may get less of a core than it asks for,
    // and the allocation adds some system time).
    assert!((300..=5000).contains(&cpu_ms), "cpu {cpu_ms} ms: {u:?}");
    assert!(
        (90 * MIB..=400 * MIB).contains(&u.memory_peak_bytes),
        "memory peak {}: {u:?}",
        u.memory_peak_bytes
    );
    assert!(u.processes_peak >= 1, "{u:?}");
    assert!(u.sampled_at > 0, "{u:?}");
    assert!(!u.oom_killed, "{u:?}");
}

async fn usage_is_read_and_kept(containment: Containment, source: &str) {
    let Some(mut site) = Site::new(usage_options(containment)) else {
        return;
    };
    let api = site.start().await;
    let run = api.spawn(&burner()).await;
    api.wait_line(&run.run_id, "burned:").await;
    // Live: Get reads the usage now.
    let live = api.get(&run.run_id).await;
    let u = live.usage.clone().expect("a live run has usage");
    assert!(u.processes >= 1, "{u:?}");
    assert!(
        u.memory_bytes >= 90 * MIB,
        "memory now {}: {u:?}",
        u.memory_bytes
    );

    let done = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:?}");
    assert_figures(&done, source);
    let kept = done.usage.clone().expect("usage");
    assert_eq!(kept.processes, 0, "nothing of the run is left: {kept:?}");
    site.assert_run_gone(&run.run_id, &[]).await;

    // The final figures are the stored ones: a later Get and the next daemon see the same.
    assert_eq!(api.get(&run.run_id).await.usage, Some(kept.clone()));
    site.stop().await;
    let api = site.start().await;
    assert_eq!(api.get(&run.run_id).await.usage, Some(kept));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_of_a_cgroup_run_is_read_and_kept() {
    usage_is_read_and_kept(Containment::Cgroup, "cgroup").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_of_a_process_group_run_is_read_and_kept() {
    usage_is_read_and_kept(Containment::ProcessGroup, "proc").await;
}

/// Whether the cgroup v2 directory `dir` can give its children the memory controller.
fn memory_controller_in(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|t| t.split_whitespace().any(|c| c == "memory"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported_as_such() {
    let mut options = usage_options(Containment::Cgroup);
    options.runs_toml = format!("memory_max_bytes = {}\n", 64 * MIB);
    let Some(daemon) = Daemon::try_start_with(options).await else {
        return;
    };
    let root = daemon.cgroup_root.clone().expect("a cgroup root");
    if !memory_controller_in(&root) {
        // This host mounts the memory controller on v1 only: no memory.max, no memory.events
        // in v2, so the kernel cannot OOM-kill a run for its cgroup limit, and the run says
        // which figures it could not give.
        eprintln!(
            "SKIP: the memory controller is not in {}'s cgroup.controllers (cgroup v1 holds it \
             on this host)",
            root.display()
        );
        let api = daemon.api();
        let run = api.spawn(&fake(&["--exit", "0"])).await;
        let done = api.wait_terminal(&run.run_id, TIMEOUT).await;
        let u = done.usage.expect("usage");
        assert!(u.unavailable.contains(&"oom_kill".to_string()), "{u:?}");
        return;
    }
    let api = daemon.api();
    let run = api.spawn(&fake(&["--alloc-mib", "200", "--hang"])).await;
    let done = api.wait_terminal(&run.run_id, TIMEOUT).await;
    eprintln!("{done:?}");
    assert_eq!(done.status(), RunStatus::Failed, "{done:?}");
    let u = done.usage.clone().expect("usage");
    assert!(u.oom_killed, "{u:?}");
    assert!(done.error.contains("OOM killer"), "{}", done.error);
    daemon.assert_run_gone(&run.run_id, &[]).await;
}
