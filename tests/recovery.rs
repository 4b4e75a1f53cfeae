//! Recovery after a crash (invariant 5): when the daemon is SIGKILLed while runs are live, the
//! next start finds what they left (by the run's cgroup, or by `WF_RUN_ID` in /proc), ends it
//! with TERM, a grace and KILL, verifies it gone, marks the runs LOST with an error naming what
//! was found, and audits it as the daemon's own action; only then does it serve. Log folders are
//! reconciled at start as well.
mod common;

use common::*;
use wf_supervisor::proto::{KillRequest, Run, RunStatus};

/// One live run of the crashed daemon and the processes it had.
struct Leftover {
    run: Run,
    procs: Vec<Proc>,
    /// The status the store had for it at the crash.
    status_at_crash: RunStatus,
    /// Whether its processes ignore TERM (so recovery had to KILL them).
    ignores_term: bool,
}

/// Runs trees with grandchildren and setsid escapees, crashes the daemon, starts a new one and
/// checks what it did about them.
async fn crash_with_live_trees_then_recover(containment: Containment) {
    let Some(mut site) = Site::new(Options {
        containment,
        grace_ms: 1000,
        ..Default::default()
    }) else {
        return;
    };
    let api = site.start().await;
    let expected = match containment {
        Containment::ProcessGroup => "process-group",
        _ => "cgroup",
    };

    let mut leftovers = Vec::new();
    for (args, ignores_term) in [
        (&["--children", "3", "--escape-setsid", "--hang"][..], false),
        (
            &[
                "--ignore-term",
                "--children",
                "3",
                "--escape-setsid",
                "--hang",
            ][..],
            true,
        ),
    ] {
        let run = api.spawn(&fake(args)).await;
        let run = api.wait_status(&run.run_id, RunStatus::Running).await;
        assert_eq!(run.containment, expected, "{run:?}");
        let procs = api.fake_agent_procs(&run, true, true).await;
        assert_eq!(procs.len(), 5, "leader, 3 children, escapee: {procs:?}");
        leftovers.push(Leftover {
            run,
            procs,
            status_at_crash: RunStatus::Running,
            ignores_term,
        });
    }
    // One more caught in the middle of a kill: TERM is ignored and the grace is long, so the
    // store says STOPPING when the daemon dies.
    let stopping = api
        .spawn(&fake(&["--ignore-term", "--children", "2", "--hang"]))
        .await;
    let stopping = api.wait_status(&stopping.run_id, RunStatus::Running).await;
    let stopping_procs = api.fake_agent_procs(&stopping, true, false).await;
    let killer = {
        let api = api.clone();
        let run_id = stopping.run_id.clone();
        tokio::spawn(async move {
            api.try_kill(KillRequest {
                run_id,
                grace_ms: 600_000,
                reason: "interrupted by a crash".into(),
                ..Default::default()
            })
            .await
        })
    };
    api.wait_status(&stopping.run_id, RunStatus::Stopping).await;
    // The crash must come after STOPPING reached the file, not just the daemon's memory.
    wait_until(TIMEOUT, "the store says STOPPING", || {
        site.stored_status(&stopping.run_id).as_deref() == Some("STOPPING")
    })
    .await;
    leftovers.push(Leftover {
        run: stopping,
        procs: stopping_procs,
        status_at_crash: RunStatus::Stopping,
        ignores_term: true,
    });

    site.crash();
    let interrupted = killer.await.expect("the kill task");
    assert!(
        interrupted.is_err(),
        "a kill answered although the daemon died in its grace: {interrupted:?}"
    );
    // The crash itself ended nothing: the trees outlive the daemon that ran them.
    for l in &leftovers {
        for p in &l.procs {
            assert!(
                p.is_live(),
                "process {} of {} died with the daemon",
                p.pid,
                l.run.run_id
            );
        }
    }

    // The new daemon serves only once recovery is over.
    let api = site.start().await;
    for l in &leftovers {
        let id = &l.run.run_id;
        let run = api.get(id).await;
        assert_eq!(run.status(), RunStatus::Lost, "{run:?}");
        assert!(run.ended_at > 0, "{run:?}");
        // The error names what the new daemon found: every process by pid.
        assert!(
            run.error
                .contains(&format!("({})", short_status(l.status_at_crash))),
            "the error does not say the run was {:?}: {:?}",
            l.status_at_crash,
            run.error
        );
        assert!(
            run.error
                .contains(&format!("found {} process(es)", l.procs.len())),
            "the error does not count the {} processes found: {:?}",
            l.procs.len(),
            run.error
        );
        for p in &l.procs {
            assert!(
                run.error.contains(&format!("{} (", p.pid)),
                "the error does not name process {}: {:?}",
                p.pid,
                run.error
            );
        }
        // The run caught in its kill's grace says why it was being stopped, in its error and in
        // the recover record; the others say nothing of a stop.
        let stopping_for = "while stopping it (interrupted by a crash)";
        let records = api.audit(id).await;
        let recover: Vec<_> = records.iter().filter(|r| r.action == "recover").collect();
        assert_eq!(recover.len(), 1, "recover records of {id}: {records:?}");
        let stopping = l.status_at_crash == RunStatus::Stopping;
        assert_eq!(
            run.error.contains(stopping_for),
            stopping,
            "the error and the kill's reason: {:?}",
            run.error
        );
        assert_eq!(
            recover[0].message.contains(stopping_for),
            stopping,
            "the recover record and the kill's reason: {:?}",
            recover[0]
        );
        if l.ignores_term {
            assert!(
                run.error.contains("SIGKILL"),
                "TERM was ignored, yet the error names no SIGKILL: {:?}",
                run.error
            );
        }
        if containment != Containment::ProcessGroup {
            assert!(
                run.error.contains("cgroup"),
                "the error does not say the processes were found in the run's cgroup: {:?}",
                run.error
            );
            let root = site.cgroup_root.as_ref().expect("a cgroup root");
            assert!(
                !root.join(id).exists(),
                "the cgroup of {id} is still there after recovery"
            );
        }
        assert!(!run.logs_missing, "{run:?}");

        // Nothing of the run is alive (the killed orphans' parent is init, not the daemon).
        assert_nothing_left(id, &l.procs);

        // The recovery is on the record as the daemon's own action.
        assert_eq!(recover[0].caller, "daemon", "{:?}", recover[0]);
        assert_eq!(recover[0].outcome, "ok", "{:?}", recover[0]);
        assert!(recover[0].uid.is_none(), "{:?}", recover[0]);
        assert!(
            recover[0].message.contains("LOST"),
            "the recover record does not say the run was marked LOST: {:?}",
            recover[0]
        );

        // Its output from before the crash is still readable.
        let out = api.stdout(id).await;
        assert!(out.contains("children: "), "stdout of {id}: {out:?}");
    }
    let health = api.health().await;
    assert_eq!(health.live_runs, 0, "{health:?}");
    assert_eq!(health.total_runs, 3, "{health:?}");
    assert!(
        site.tagged_pids().is_empty(),
        "processes of the test's runs are left: {}",
        describe(&site.tagged_pids())
    );
    site.assert_reaped(&[]).await;
}

/// The status name as the daemon writes it in errors ("RUNNING").
fn short_status(status: RunStatus) -> &'static str {
    status
        .as_str_name()
        .strip_prefix("RUN_STATUS_")
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_with_live_trees_recovers_them_with_cgroups() {
    crash_with_live_trees_then_recover(Containment::Cgroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_with_live_trees_recovers_them_with_process_groups() {
    crash_with_live_trees_then_recover(Containment::ProcessGroup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_nothing_left_still_marks_the_runs_lost() {
    let mut site = Site::new(Options::default()).expect("a site");
    let api = site.start().await;
    let run = api.spawn(&fake(&["--children", "1", "--hang"])).await;
    let run = api.wait_status(&run.run_id, RunStatus::Running).await;
    let procs = api.fake_agent_procs(&run, true, false).await;
    site.crash();
    // Whoever ends the orphans before the next start: the new daemon must still not trust the
    // stored pids and must still settle the run.
    for p in &procs {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_until(TIMEOUT, "the orphans are dead", || {
        procs.iter().all(|p| !p.is_live())
    })
    .await;

    let api = site.start().await;
    let after = api.get(&run.run_id).await;
    assert_eq!(after.status(), RunStatus::Lost, "{after:?}");
    assert!(
        after.error.contains("no process of the run was left"),
        "{:?}",
        after.error
    );
    let records = api.audit(&run.run_id).await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "recover" && r.caller == "daemon"),
        "{records:?}"
    );
    assert_nothing_left(&run.run_id, &procs);
    site.assert_reaped(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_folders_are_reconciled_at_start() {
    let mut site = Site::new(Options::default()).expect("a site");
    let api = site.start().await;
    let kept = api.spawn(&fake(&["--marker", "kept"])).await;
    let lost_logs = api.spawn(&fake(&["--marker", "gone"])).await;
    api.wait_terminal(&kept.run_id, TIMEOUT).await;
    api.wait_terminal(&lost_logs.run_id, TIMEOUT).await;
    site.stop().await;

    // While no daemon runs: a log folder of no run appears, one run's folder disappears.
    let orphan = site.state.join("runs").join("run_0123456789ab");
    std::fs::create_dir_all(&orphan).expect("making an orphan log folder");
    std::fs::write(orphan.join("stdout.log"), b"nobody's output\n").expect("writing");
    std::fs::remove_dir_all(site.run_dir(&lost_logs.run_id)).expect("removing a log folder");

    let api = site.start().await;
    assert!(
        !orphan.exists(),
        "a log folder with no run survived the start"
    );
    let kept_after = api.get(&kept.run_id).await;
    assert!(!kept_after.logs_missing, "{kept_after:?}");
    assert!(api.stdout(&kept.run_id).await.contains("kept"));
    let missing = api.get(&lost_logs.run_id).await;
    assert!(
        missing.logs_missing,
        "a run whose log folder is gone is not marked: {missing:?}"
    );
    assert_eq!(missing.status(), RunStatus::Succeeded, "{missing:?}");
    // And that is recorded: the next daemon says the same.
    site.stop().await;
    let api = site.start().await;
    assert!(api.get(&lost_logs.run_id).await.logs_missing);
    for id in [&kept.run_id, &lost_logs.run_id] {
        assert_nothing_left(id, &[]);
    }
    site.assert_reaped(&[]).await;
}

/// A daemon killed between making a run's cgroup and recording its STARTING leaves an empty
/// cgroup of a run no store knows: the next start removes it. A populated cgroup of an unknown
/// run (another daemon's, on a shared root) is not touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_cgroups_of_never_recorded_runs_are_removed_at_start() {
    let mut site = Site::new(Options::default()).expect("a site");
    let Some(root) = site.cgroup_root.clone() else {
        eprintln!("skipped: no cgroup v2 root for tests here");
        return;
    };
    let api = site.start().await;
    let run = api.spawn(&sh("exit 0")).await;
    api.wait_terminal(&run.run_id, TIMEOUT).await;
    // Stopped cleanly so the run's end is on record; the sweep runs at every start.
    site.stop().await;

    // While no daemon runs: the leftovers of one killed before a run's STARTING was on record.
    let orphan = root.join("run_0123456789ab");
    std::fs::create_dir(&orphan).expect("making an empty run cgroup");
    let foreign = root.join("run_ba9876543210");
    std::fs::create_dir(&foreign).expect("making a populated run cgroup");
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("a process for the foreign cgroup");
    std::fs::write(foreign.join("cgroup.procs"), child.id().to_string())
        .expect("moving it into the foreign cgroup");

    let api = site.start().await;
    assert!(
        !orphan.exists(),
        "an empty cgroup of no run survived the start"
    );
    assert!(
        foreign.exists(),
        "a populated cgroup of no known run was removed"
    );
    assert_eq!(api.get(&run.run_id).await.status(), RunStatus::Succeeded);

    let _ = child.kill();
    let _ = child.wait();
    wait_until(TIMEOUT, "the foreign cgroup is empty", || {
        std::fs::read_to_string(foreign.join("cgroup.events"))
            .is_ok_and(|t| t.contains("populated 0"))
    })
    .await;
    std::fs::remove_dir(&foreign).expect("removing the foreign cgroup");
}

/// A queued run starts while its STARTING record is written; its cgroup, made first, marks the
/// start. A daemon killed after the cgroup was made and before STARTING was durable leaves a
/// QUEUED run with a cgroup: the next start takes it for one that may have run (its processes
/// are ended, it is LOST with the reason saying so) and never starts it again, while the other
/// queued run still waits and runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_with_a_cgroup_is_taken_as_started_and_never_run_again() {
    let mut site = Site::new(Options::default()).expect("a site");
    let Some(root) = site.cgroup_root.clone() else {
        eprintln!("skipped: no cgroup v2 root for tests here");
        return;
    };
    site.add_config("\n[queues.work]\nmax_concurrent = 1\n");
    let api = site.start().await;
    pause(&api, true).await;
    let marks = site.dir.path().join("marks");
    std::fs::create_dir_all(&marks).expect("a folder for the markers");
    let queued = |name: &str| wf_supervisor::proto::SpawnRequest {
        argv: sh(&format!("echo ran >> {}/{name}", marks.display())),
        queue: "work".into(),
        ..Default::default()
    };
    let dequeued = api.spawn_req(queued("dequeued")).await;
    let waiting = api.spawn_req(queued("waiting")).await;
    assert_eq!(dequeued.status(), RunStatus::Queued);
    assert_eq!(waiting.status(), RunStatus::Queued);
    site.crash();

    // What the killed daemon left of the dequeued run: its cgroup, with its agent in it.
    let cg = root.join(&dequeued.run_id);
    std::fs::create_dir(&cg).expect("making the dequeued run's cgroup");
    let mut agent = std::process::Command::new("sleep")
        .arg("300")
        .env("WF_RUN_ID", &dequeued.run_id)
        .spawn()
        .expect("a process for the dequeued run");
    std::fs::write(cg.join("cgroup.procs"), agent.id().to_string())
        .expect("moving it into the run's cgroup");
    let agent_pid = agent.id() as i32;

    let api = site.start().await;
    let lost = api.get(&dequeued.run_id).await;
    assert_eq!(lost.status(), RunStatus::Lost, "{lost:?}");
    assert!(
        lost.error.contains("dequeued") && lost.error.contains(&format!("{agent_pid} (sleep)")),
        "the reason should say the run was dequeued and name what was ended: {}",
        lost.error
    );
    let status = agent.wait().expect("waiting for the leftover agent");
    assert!(
        !status.success(),
        "the leftover agent was not ended: {status:?}"
    );
    assert!(!cg.exists(), "the dequeued run's cgroup was not removed");
    let records = api.audit(&dequeued.run_id).await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "recover" && r.caller == "daemon" && r.outcome == "ok"),
        "no recover record by the daemon: {records:?}"
    );
    assert_eq!(api.get(&waiting.run_id).await.status(), RunStatus::Queued);

    pause(&api, false).await;
    let done = api.wait_terminal(&waiting.run_id, TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:?}");
    assert_eq!(
        std::fs::read_to_string(marks.join("waiting")).expect("the waiting run's marker"),
        "ran\n"
    );
    assert!(
        !marks.join("dequeued").exists(),
        "the run taken for started was started again"
    );
    assert_eq!(
        site.stored_status(&dequeued.run_id).as_deref(),
        Some("LOST")
    );
}

async fn pause(api: &Api, paused: bool) {
    api.client
        .clone()
        .update_queue(wf_supervisor::proto::UpdateQueueRequest {
            queue: "work".into(),
            paused: Some(paused),
            max_concurrent: None,
        })
        .await
        .expect("UpdateQueue");
}
