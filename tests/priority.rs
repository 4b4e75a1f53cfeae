//! CPU priority: the daemon's threads run at `daemon.nice` and every run starts at `runs.nice`,
//! on each spawn path, and a SIGHUP applies new values (issue: with 200 busy agents on two cores
//! the daemon's heartbeat readers waited hundreds of milliseconds for a CPU). Values out of
//! range are refused with the key named.
mod common;

use common::*;
use nix::sys::signal::Signal;

/// The nice value of `pid` (field 19 of /proc/PID/stat, counted after the command's
/// parentheses).
fn nice_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // rest starts at field 3 (state); nice is field 19.
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// The nice value of every thread of `pid`.
fn thread_nices(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in dir.flatten() {
            let stat = t.path().join("stat");
            if let Ok(text) = std::fs::read_to_string(stat) {
                if let Some(i) = text.rfind(')') {
                    if let Some(n) = text[i + 2..].split_whitespace().nth(16) {
                        out.extend(n.parse::<i32>().ok());
                    }
                }
            }
        }
    }
    out
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A run with a child of its own: the leader and the child must both show `nice`.
async fn assert_run_starts_at(api: &Api, nice: i32) {
    let run = api.spawn(&sh("sleep 60 & echo started; wait")).await;
    api.wait_line(&run.run_id, "started").await;
    let needle = format!("WF_RUN_ID={}", run.run_id);
    let pids = wait_for(TIMEOUT, "the run's two processes", || {
        let pids = pids_with_env(&needle);
        async move { (pids.len() >= 2).then_some(pids) }
    })
    .await;
    for pid in &pids {
        assert_eq!(
            nice_of(*pid),
            Some(nice),
            "process {pid} of run {} ({})",
            run.run_id,
            describe(&[*pid])
        );
    }
    let procs: Vec<Proc> = pids.iter().filter_map(|p| Proc::capture(*p)).collect();
    api.kill(&run.run_id).await;
    assert_nothing_left(&run.run_id, &procs);
}

async fn the_daemon_and_its_runs_get_their_priorities(options: Options) {
    if !is_root() {
        eprintln!("skipping: lowering the daemon's nice value needs root");
        return;
    }
    let Some(mut site) = Site::new(Options {
        daemon_toml: "nice = -7\n".into(),
        runs_toml: format!("nice = 6\n{}", options.runs_toml),
        ..options
    }) else {
        return;
    };
    let api = site.start().await;
    let nices = thread_nices(site.pid);
    assert!(
        !nices.is_empty() && nices.iter().all(|n| *n == -7),
        "every thread of the daemon at daemon.nice: {nices:?}"
    );
    assert_run_starts_at(&api, 6).await;

    // A reload applies both: the daemon's threads now, runs from their next start.
    let text = std::fs::read_to_string(&site.config)
        .expect("config")
        .replace("nice = -7", "nice = -3")
        .replace("nice = 6", "nice = 2");
    std::fs::write(&site.config, text).expect("config");
    site.signal(Signal::SIGHUP);
    wait_until(
        TIMEOUT,
        "the daemon's threads at the new daemon.nice",
        || {
            let n = thread_nices(site.pid);
            !n.is_empty() && n.iter().all(|n| *n == -3)
        },
    )
    .await;
    assert_run_starts_at(&api, 2).await;
    assert!(
        site.log_text().contains("scheduling priority set"),
        "the change is logged"
    );
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vfork_runs_in_their_cgroups_start_at_runs_nice() {
    the_daemon_and_its_runs_get_their_priorities(Options::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_runs_start_at_runs_nice() {
    // Without cgroups the fork method goes through process-wrap and std's pre-exec, after the
    // drop to the run user: a path of its own.
    the_daemon_and_its_runs_get_their_priorities(Options {
        containment: Containment::ProcessGroup,
        runs_toml: "spawn_method = \"fork\"\n".into(),
        ..Options::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nice_values_out_of_range_are_refused_with_the_key_named() {
    for (daemon_toml, runs_toml, key, value) in [
        ("nice = -21\n", "", "daemon.nice", "-21"),
        ("nice = 20\n", "", "daemon.nice", "20"),
        ("", "nice = -1\n", "runs.nice", "-1"),
        ("", "nice = 20\n", "runs.nice", "20"),
    ] {
        let site = Site::new(Options {
            containment: Containment::ProcessGroup,
            daemon_toml: daemon_toml.into(),
            runs_toml: runs_toml.into(),
            ..Options::default()
        })
        .expect("site");
        let err = start_refused(&site);
        assert!(
            err.contains(key) && err.contains(value),
            "{key} = {value}: {err}"
        );
    }
}
