//! Resource usage per run: a run that burns the CPU for a second and holds 100 MiB reports both
//! within sensible bounds, live on Get and kept after it ended (also across a daemon restart),
//! from its cgroup and, under process-group containment, from /proc; an OOM kill under
//! `runs.memory_max_bytes` is reported as such, with the memory controller in the cgroup v2
//! hierarchy or, on hybrid hosts, on a v1 hierarchy (where each run's v1 memory cgroup is gone
//! after it, and leftovers are swept at start).
mod common;

use std::path::{Path, PathBuf};

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

/// The v1 memory root the daemon on `root` uses, where memory is not in v2 but on a v1
/// hierarchy (the hybrid layout); None where memory is in v2.
fn v1_memory_root(root: &Path) -> Option<PathBuf> {
    if memory_controller_in(root) {
        return None;
    }
    memory_v1_root(root)
}

/// Whether a run cgroup under `root` can have a memory limit at all: the memory controller in
/// v2, or a v1 memory hierarchy beside it.
fn memory_limits_here(root: &Path) -> bool {
    memory_controller_in(root) || memory_v1_root(root).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_is_reported_as_such() {
    let mut options = usage_options(Containment::Cgroup);
    options.runs_toml = format!("memory_max_bytes = {}\n", 64 * MIB);
    let Some(daemon) = Daemon::try_start_with(options).await else {
        return;
    };
    let root = daemon.cgroup_root.clone().expect("a cgroup root");
    if !memory_limits_here(&root) {
        // Neither cgroup v2 nor a v1 hierarchy has the memory controller on this host: nothing
        // can limit a run's memory, and the run says which figures it could not give.
        eprintln!(
            "SKIP: no memory controller: not in {}'s cgroup.controllers and no cgroup v1 memory \
             hierarchy is mounted",
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
    // GetHealth says which controller limits the run.
    let expected = if memory_controller_in(&root) {
        "cgroup v2"
    } else {
        "cgroup v1"
    };
    assert_eq!(api.health().await.memory_controller, expected);
    let run = api.spawn(&fake(&["--alloc-mib", "200", "--hang"])).await;
    let done = api.wait_terminal(&run.run_id, TIMEOUT).await;
    eprintln!("{done:?}");
    assert_eq!(done.status(), RunStatus::Failed, "{done:?}");
    let u = done.usage.clone().expect("usage");
    assert!(u.oom_killed, "{u:?}");
    assert!(!u.unavailable.contains(&"oom_kill".to_string()), "{u:?}");
    // The limit held: the kernel's peak for the run is at the limit, not at 200 MiB.
    assert!(
        u.memory_peak_bytes <= 64 * MIB && u.memory_peak_bytes >= 32 * MIB,
        "peak {}: {u:?}",
        u.memory_peak_bytes
    );
    assert!(done.error.contains("OOM killer"), "{}", done.error);
    daemon.assert_run_gone(&run.run_id, &[]).await;
    if let Some(v1) = v1_memory_root(&root) {
        assert!(
            !v1.join(&run.run_id).exists(),
            "the v1 memory cgroup is left"
        );
    }
}

/// On a hybrid host (memory on cgroup v1): the run's leader is in the run's v1 memory cgroup
/// from its start, with the run's limit, and the cgroup is gone once the run ended; by each
/// spawn route (vfork or fork, cloned into the v2 cgroup or writing to its cgroup.procs).
async fn v1_memory_cgroup_holds_the_run(spawn_method: &str, cgroup_entry: &str) {
    let mut options = usage_options(Containment::Cgroup);
    options.runs_toml = format!(
        "memory_max_bytes = {}\nspawn_method = \"{spawn_method}\"\n",
        256 * MIB
    );
    // Appended right after the harness's [containment] table: this line belongs to it.
    options.extra_toml = format!("cgroup_entry = \"{cgroup_entry}\"\n{}", options.extra_toml);
    let Some(daemon) = Daemon::try_start_with(options).await else {
        return;
    };
    let root = daemon.cgroup_root.clone().expect("a cgroup root");
    let Some(v1) = v1_memory_root(&root) else {
        eprintln!(
            "SKIP: memory is in cgroup v2 here ({}), or on no hierarchy at all",
            root.display()
        );
        return;
    };
    assert!(
        daemon
            .log_text()
            .contains("memory_controller=\"cgroup v1\""),
        "the start-up log names the v1 memory controller"
    );
    let api = daemon.api();
    let run = api
        .spawn(&fake(&["--alloc-mib", "20", "--sleep-ms", "60000"]))
        .await;
    api.wait_line(&run.run_id, "allocated:").await;
    let live = api.get(&run.run_id).await;
    let dir = v1.join(&run.run_id);
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("the v1 memory cgroup");
    assert!(
        procs.split_whitespace().any(|p| p == live.pid.to_string()),
        "leader {} not in {}: {procs}",
        live.pid,
        dir.display()
    );
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).expect("limit");
    assert_eq!(limit.trim(), (256 * MIB).to_string());
    // Usage reads the v1 figures: the kernel's own peak, which holds the 20 MiB.
    let u = live.usage.clone().expect("usage");
    assert!(u.memory_peak_bytes >= 20 * MIB, "{u:?}");
    assert!(!u.unavailable.contains(&"oom_kill".to_string()), "{u:?}");

    api.kill(&run.run_id).await;
    let done = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Killed, "{done:?}");
    daemon.assert_run_gone(&run.run_id, &[]).await;
    assert!(!dir.exists(), "{} is left after the run", dir.display());
}

/// Without a memory limit a run gets no v1 memory cgroup (its spawn keeps the clone into the
/// v2 cgroup, with no migration), and its memory figures come from /proc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_a_memory_limit_has_no_v1_memory_cgroup() {
    let Some(daemon) = Daemon::try_start_with(usage_options(Containment::Cgroup)).await else {
        return;
    };
    let root = daemon.cgroup_root.clone().expect("a cgroup root");
    let Some(v1) = v1_memory_root(&root) else {
        eprintln!("SKIP: memory is in cgroup v2 here, or on no hierarchy at all");
        return;
    };
    let api = daemon.api();
    let run = api.spawn(&fake(&["--alloc-mib", "20", "--hang"])).await;
    api.wait_line(&run.run_id, "allocated:").await;
    assert!(
        !v1.join(&run.run_id).exists(),
        "a v1 memory cgroup without a limit"
    );
    let u = api.get(&run.run_id).await.usage.expect("usage");
    assert!(u.memory_peak_bytes >= 20 * MIB, "{u:?}");
    assert!(u.unavailable.contains(&"oom_kill".to_string()), "{u:?}");
    api.kill(&run.run_id).await;
    api.wait_terminal(&run.run_id, TIMEOUT).await;
    daemon.assert_run_gone(&run.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vforked_run_is_in_its_v1_memory_cgroup_until_it_ends() {
    v1_memory_cgroup_holds_the_run("vfork", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_run_is_in_its_v1_memory_cgroup_until_it_ends() {
    v1_memory_cgroup_holds_the_run("fork", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vforked_procs_write_run_is_in_its_v1_memory_cgroup_until_it_ends() {
    v1_memory_cgroup_holds_the_run("vfork", "procs-write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_procs_write_run_is_in_its_v1_memory_cgroup_until_it_ends() {
    v1_memory_cgroup_holds_the_run("fork", "procs-write").await;
}

/// A v1 memory cgroup an earlier daemon left (it crashed between a run's end and its cleanup)
/// is removed when the next daemon starts, and so is that of a run live when a daemon crashed
/// (reconciliation ends it and removes both its cgroups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_v1_memory_cgroups_are_swept_at_start() {
    let mut options = usage_options(Containment::Cgroup);
    options.runs_toml = format!("memory_max_bytes = {}\n", 256 * MIB);
    let Some(mut site) = Site::new(options) else {
        return;
    };
    let root = site.cgroup_root.clone().expect("a cgroup root");
    let Some(v1) = v1_memory_root(&root) else {
        eprintln!("SKIP: memory is in cgroup v2 here, or on no hierarchy at all");
        return;
    };
    let leftover = v1.join("run_0123456789ab");
    std::fs::create_dir_all(&leftover).expect("a leftover v1 memory cgroup");
    let api = site.start().await;
    assert!(!leftover.exists(), "{} is left", leftover.display());
    assert!(
        site.log_text().contains("run_0123456789ab"),
        "the sweep is logged"
    );

    let run = api.spawn(&fake(&["--hang"])).await;
    let dir = v1.join(&run.run_id);
    assert!(dir.is_dir(), "{} is missing", dir.display());
    site.crash();
    let api = site.start().await;
    let lost = api.get(&run.run_id).await;
    assert_eq!(lost.status(), RunStatus::Lost, "{lost:?}");
    site.assert_run_gone(&run.run_id, &[]).await;
    assert!(!dir.exists(), "{} is left after recovery", dir.display());
    site.stop().await;
}
