//! Spawn and exit: many concurrent runs each end with their own exit code and leave no zombie;
//! a leader's exit ends what it left behind; a bad request is INVALID_ARGUMENT; a program that
//! cannot be executed yields a FAILED run that names it.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{RunStatus, SpawnRequest};

const RUNS: usize = 200;
const TASKS: usize = 4;

/// The exit code run `i` chooses: spread over 0..=255, with plenty of zeros.
fn exit_code_of(i: usize) -> i32 {
    if i.is_multiple_of(5) {
        0
    } else {
        ((i * 37) % 256) as i32
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_runs_end_with_their_exit_codes() {
    let daemon = Daemon::start().await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let api = daemon.api();
            tokio::spawn(async move {
                let mut runs = Vec::new();
                for i in (t..RUNS).step_by(TASKS) {
                    let code = exit_code_of(i);
                    let run = api.spawn(&sh(&format!("exit {code}"))).await;
                    runs.push((run.run_id, code));
                }
                runs
            })
        })
        .collect();
    let mut runs = Vec::new();
    for task in tasks {
        runs.extend(task.await.expect("spawning task"));
    }
    assert_eq!(runs.len(), RUNS);

    let api = daemon.api();
    for (run_id, code) in &runs {
        let run = api.wait_terminal(run_id, TIMEOUT * 2).await;
        let expected = if *code == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        assert_eq!(run.status(), expected, "exit {code}: {run:?}");
        assert_eq!(run.exit_code, Some(*code), "{run:?}");
        assert!(run.signal.is_empty(), "{run:?}");
        assert!(run.ended_at >= run.started_at, "{run:?}");
    }
    daemon.assert_reaped(&[]).await;
    for (run_id, _) in &runs {
        assert!(pids_with_env(&format!("WF_RUN_ID={run_id}")).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_exit_ends_children_it_left_behind() {
    let daemon = Daemon::start_with(Options {
        grace_ms: 1000,
        ..Default::default()
    })
    .await;
    let api = daemon.api();
    let cases = [
        (0, RunStatus::Succeeded, false),
        (3, RunStatus::Failed, false),
        // Leftovers that ignore TERM are escalated to KILL after the grace.
        (0, RunStatus::Succeeded, true),
    ];
    for (code, status, ignore_term) in cases {
        let code_arg = code.to_string();
        let mut args = vec!["--children", "3", "--sleep-ms", "1000", "--exit", &code_arg];
        if ignore_term {
            args.push("--ignore-term");
        }
        let run = api.spawn(&fake(&args)).await;
        // Captured while the leader sleeps; a child already gone is simply not checked.
        let line = api.wait_line(&run.run_id, "children: ").await;
        let procs: Vec<Proc> = line
            .split_whitespace()
            .filter_map(|p| Proc::capture(p.parse().expect("a pid")))
            .collect();
        let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
        assert_eq!(run.status(), status, "{run:?}");
        assert_eq!(run.exit_code, Some(code), "{run:?}");
        // A terminal status means the run was verified empty: no waiting for stragglers.
        daemon.assert_run_gone(&run.run_id, &procs).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_honours_cwd_env_and_labels() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let cwd = daemon.dir.path().join("work here");
    std::fs::create_dir(&cwd).expect("mkdir");
    let cwd = cwd.to_str().expect("utf-8 path").to_string();
    let run = api
        .spawn_req(SpawnRequest {
            argv: sh(
                "pwd; echo \"greeting=$GREETING\"; echo \"run=$WF_RUN_ID\"; \
                      cat; echo \"stdin-eof\"",
            ),
            cwd: cwd.clone(),
            env: [("GREETING".to_string(), "hello world".to_string())].into(),
            labels: [("team".to_string(), "infra".to_string())].into(),
            ..Default::default()
        })
        .await;
    assert_eq!(run.labels.get("team").map(String::as_str), Some("infra"));
    assert_eq!(run.cwd, cwd);
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        api.stdout(&run.run_id).await,
        format!(
            "{cwd}\ngreeting=hello world\nrun={}\nstdin-eof\n",
            run.run_id
        )
    );
}

/// The daemon waits for each exec at real-time priority; the agent must never inherit it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_start_with_normal_scheduling() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    // Fields 19 (nice) and 41 (policy) of /proc/PID/stat, for the shell and a child of it.
    let script = "for s in /proc/$$/stat /proc/self/stat; do \
                  cut -d' ' -f19,41 \"$s\"; done";
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(api.spawn(&sh(script)).await.run_id);
    }
    for run_id in runs {
        let run = api.wait_terminal(&run_id, TIMEOUT).await;
        assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
        // Nice 0 and SCHED_OTHER (0) for both.
        assert_eq!(api.stdout(&run_id).await, "0 0\n0 0\n", "{run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawns_beyond_max_live_runs_wait_in_the_queue() {
    let daemon = Daemon::start_with(Options {
        runs_toml: "max_live_runs = 2\n".into(),
        ..Default::default()
    })
    .await;
    let api = daemon.api();
    let first = api.spawn(&fake(&["--hang"])).await;
    let second = api.spawn(&fake(&["--hang"])).await;
    // A third live run has no slot: it is recorded QUEUED, with the reason, and no process.
    let third = api.spawn(&fake(&["--hang"])).await;
    assert_eq!(third.status(), RunStatus::Queued, "{third:?}");
    assert_eq!(third.pid, 0, "{third:?}");
    assert_eq!(third.queue, "default", "{third:?}");
    assert_eq!(
        third.waiting_reason, "queue default full: 2/2 running",
        "{third:?}"
    );
    assert!(third.queued_at > 0, "{third:?}");
    assert!(pids_with_env(&format!("WF_RUN_ID={}", third.run_id)).is_empty());
    // It starts once a slot frees.
    let response = api.kill(&first.run_id).await;
    assert!(response.success, "{response:?}");
    api.wait_running(&third.run_id).await;
    for run in [&second, &third] {
        let response = api.kill(&run.run_id).await;
        assert!(response.success, "{response:?}");
        daemon.assert_run_gone(&run.run_id, &[]).await;
    }
    daemon.assert_run_gone(&first.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_by_signal_records_the_signal() {
    let daemon = Daemon::start().await;
    let api = daemon.api();
    let run = api.spawn(&sh("kill -KILL $$")).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert_eq!(run.exit_code, None, "{run:?}");
    assert_eq!(run.signal, "SIGKILL", "{run:?}");
    daemon.assert_run_gone(&run.run_id, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_argv_is_invalid_argument() {
    let daemon = Daemon::start().await;
    let result = daemon.api().try_spawn(SpawnRequest::default()).await;
    assert_code(result, Code::InvalidArgument, "spawn with an empty argv");
}

/// Spawns `program`, which cannot be executed, and checks that the run FAILED with an error
/// that names the program and the OS error (`os_error`, or `os error <errno>`).
async fn assert_spawn_fails_naming(api: &Api, program: &Path, os_error: &str, errno: i32) {
    let program = program.to_str().expect("utf-8 path");
    let run = api.spawn(&[program.to_string()]).await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert!(
        run.error.contains(program),
        "error names the program: {run:?}"
    );
    assert!(
        run.error.contains(os_error) || run.error.contains(&format!("os error {errno}")),
        "error names the OS error: {run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_program_yields_failed_run_naming_it() {
    let daemon = Daemon::start().await;
    let program = daemon.dir.path().join("no-such-program");
    assert_spawn_fails_naming(&daemon.api(), &program, "No such file or directory", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexecutable_file_yields_failed_run_naming_it() {
    let daemon = Daemon::start().await;
    let program = daemon.dir.path().join("not-executable");
    std::fs::write(&program, "#!/bin/sh\nexit 0\n").expect("writing the file");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_spawn_fails_naming(&daemon.api(), &program, "Permission denied", 13).await;
}

/// `runs.user`: the agent runs as that user (no supplementary groups, no new privileges), and
/// a step that fails between clone and exec is named in the run's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_user_drops_to_the_user_and_names_a_failing_step() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: runs.user needs the tests to run as root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIP: no user named nobody on this machine");
        return;
    };
    let daemon = Daemon::start_with(Options {
        runs_toml: "user = \"nobody\"\n".into(),
        ..Options::default()
    })
    .await;
    let api = daemon.api();
    let run = api
        .spawn_req(SpawnRequest {
            argv: sh("id -u; id -G; grep NoNewPrivs /proc/self/status"),
            cwd: "/".into(),
            ..Default::default()
        })
        .await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    let out = api.stdout(&run.run_id).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string(), "{out}");
    assert_eq!(
        lines[1],
        nobody.gid.to_string(),
        "only the user's own group: {out}"
    );
    assert!(lines[2].ends_with('1'), "{out}");

    // A folder only root may enter: the run fails at chdir, and says so.
    let private = daemon.dir.path().join("root-only");
    std::fs::create_dir(&private).expect("mkdir");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let run = api
        .spawn_req(SpawnRequest {
            argv: sh("true"),
            cwd: private.display().to_string(),
            ..Default::default()
        })
        .await;
    let run = api.wait_terminal(&run.run_id, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed, "{run:?}");
    assert!(
        run.error.contains("chdir") && run.error.contains("Permission denied"),
        "the error names the failing step: {run:?}"
    );
    daemon.assert_reaped(&[]).await;
}
