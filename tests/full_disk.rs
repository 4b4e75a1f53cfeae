//! A full disk: the daemon's state dir on a small tmpfs that a filler file and a flooding run fill
//! up. Ending processes never depends on the disk (a force Kill and a Cancel end their runs and
//! answer with the report, saying the record is pending), a Spawn is refused with a clear error
//! and leaves no run behind, GetHealth shows `store_write_failing`; once the filler is gone every
//! terminal state reached meanwhile is in the store, the alert is written resolved, and a daemon
//! started again on the same state dir agrees.
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tonic::Code;
use wf_supervisor::proto::{
    CancelRequest, KillRequest, Run, RunStatus, SpawnRequest, UpdateQueueRequest,
};

/// The tmpfs: small, so the test fills it in a moment and writes nothing large elsewhere.
const TMPFS_SIZE: &str = "12m";
/// What the flooding run writes: more than the tmpfs holds.
const FLOOD_BYTES: u64 = 24 << 20;

/// A tmpfs mounted on a directory of its own; unmounted (lazily if something still holds it) and
/// removed on drop, whether the test passed or not.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) where this process may not mount.
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("wf-test-tmpfs-")
            .tempdir()
            .expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={TMPFS_SIZE},mode=0700"))
            .arg("wf-test-full-disk")
            .arg(dir.path())
            .output()
            .expect("running mount");
        if !out.status.success() {
            eprintln!(
                "skipping: cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Free bytes on the tmpfs, as `statfs` counts them.
    fn available(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.path())
            .output()
            .expect("running stat -f");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text
            .split_whitespace()
            .map(|n| n.parse::<u64>().expect("a number"));
        it.next().expect("free blocks") * it.next().expect("block size")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let plain = Command::new("umount").arg(self.dir.path()).status();
        if !plain.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
        // The TempDir, dropped next, removes the (now empty) mount point.
    }
}

/// The test's world: the site (its daemon and runs end first, when it drops), then the tmpfs its
/// state dir points to.
struct FullDisk {
    site: Site,
    disk: Tmpfs,
}

impl FullDisk {
    fn new() -> Option<FullDisk> {
        let disk = Tmpfs::mount()?;
        let site = Site::new(Options {
            grace_ms: 2000,
            // A queue the test pauses: a spawn into it stays QUEUED.
            extra_toml: "[queues.held]\nmax_concurrent = 1\n".into(),
            ..Default::default()
        })?;
        std::os::unix::fs::symlink(disk.path(), &site.state).expect("state dir -> the tmpfs");
        Some(FullDisk { site, disk })
    }

    fn filler(&self) -> PathBuf {
        self.disk.path().join("filler")
    }

    /// Fills the tmpfs with the filler file, then gives back `headroom` bytes of it.
    fn fill(&self, headroom: u64) -> u64 {
        let mut f = std::fs::File::create(self.filler()).expect("creating the filler");
        let chunk = vec![0x5a_u8; 256 << 10];
        let mut len = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => len += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32) => break,
                Err(e) => panic!("writing the filler: {e}"),
            }
        }
        let keep = len.saturating_sub(headroom);
        f.set_len(keep).expect("shrinking the filler");
        keep
    }
}

/// The stored spawn audit records: (run id, outcome, message).
fn spawn_audits(db: &Path) -> Vec<(String, String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening the database");
    let mut st = conn
        .prepare("SELECT run_id, outcome, message FROM audit WHERE action = 'spawn' ORDER BY id")
        .expect("audit query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("audit")
        .collect::<Result<Vec<_>, _>>()
        .expect("audit rows")
}

/// The stored row count of runs, and the stored `store_write_failing` alerts (message, resolved_at).
fn stored(db: &Path) -> (i64, Vec<(String, i64)>) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opening the database");
    let runs = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .expect("counting runs");
    let mut st = conn
        .prepare("SELECT message, resolved_at FROM alerts WHERE kind = 'store_write_failing'")
        .expect("alert query");
    let alerts = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("alerts")
        .collect::<Result<Vec<_>, _>>()
        .expect("alert rows");
    (runs, alerts)
}

fn failing_alert(h: &wf_supervisor::proto::GetHealthResponse) -> Option<String> {
    h.alerts
        .iter()
        .find(|a| a.kind == "store_write_failing")
        .map(|a| a.message.clone())
}

/// How many pipes the daemon holds open.
fn daemon_pipes(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with("pipe:"))
                .count()
        })
        .unwrap_or(0)
}

fn run_ids(runs: &[Run]) -> Vec<String> {
    let mut ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    ids.sort();
    ids
}

/// A running fake agent with three children, and its processes.
async fn spawn_tree(api: &Api) -> (Run, Vec<Proc>) {
    let run = api.spawn(&fake(&["--children", "3", "--hang"])).await;
    let run = api.wait_running(&run.run_id).await;
    let procs = api.fake_agent_procs(&run, true, false).await;
    (run, procs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_dir_never_stops_a_kill_and_every_end_is_written_once_there_is_room() {
    let Some(mut t) = FullDisk::new() else {
        return;
    };
    let api = t.site.start().await;

    // A tree to force-kill, and a flooding run held until the disk is nearly full.
    let (tree, tree_procs) = spawn_tree(&api).await;
    api.client
        .clone()
        .update_queue(UpdateQueueRequest {
            queue: "held".into(),
            paused: Some(true),
            max_concurrent: None,
        })
        .await
        .expect("pausing the held queue");
    let go = t.site.dir.path().join("go");
    let flood = api
        .spawn(&sh(&format!(
            "while [ ! -e {} ]; do sleep 0.02; done; exec {FAKE_AGENT} --flood {FLOOD_BYTES} --hang",
            go.display()
        )))
        .await;
    let flood = api.wait_running(&flood.run_id).await;
    let flood_leader = Proc::capture(flood.pid).expect("the flooding run's leader");

    // Fill the tmpfs, leave 1 MiB, and let the flood take that.
    let filler_len = t.fill(1 << 20);
    assert!(filler_len > 0, "the filler took no space");
    std::fs::write(&go, b"").expect("releasing the flood");
    wait_until(
        TIMEOUT,
        "the flood's log write fails for lack of space",
        || t.site.current_log().contains("log write failed"),
    )
    .await;
    assert!(t.disk.available() < 64 << 10, "the tmpfs is not full");

    // The flooding run goes on, its output dropped: nothing else broke.
    assert_eq!(api.get(&flood.run_id).await.status(), RunStatus::Running);

    // A spawn cannot be recorded: refused, clearly, and no run is left behind (one that would
    // wait in its queue here; one that would start, below and in the shutdown test).
    let refused = api
        .try_spawn(SpawnRequest {
            argv: fake(&["--hang"]),
            queue: "held".into(),
            ..Default::default()
        })
        .await
        .expect_err("a spawn the store cannot record must be refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("could not be recorded") && refused.message().contains("full"),
        "{refused:?}"
    );
    assert!(
        !refused.message().contains("writer has stopped"),
        "{refused:?}"
    );
    let expected = run_ids(&[tree.clone(), flood.clone()]);
    assert_eq!(
        run_ids(&api.list().await),
        expected,
        "a phantom run is listed"
    );

    // GetHealth shows the store's alert, with the OS error.
    let health = api.health().await;
    let message = failing_alert(&health).unwrap_or_else(|| panic!("no alert: {health:?}"));
    assert!(message.contains("full"), "{message}");
    assert!(message.contains("os error"), "{message}");

    // A second spawn, now that the store is known to fail, is refused the same way.
    let again = api
        .try_spawn(SpawnRequest {
            argv: fake(&["--hang"]),
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");
    assert_eq!(run_ids(&api.list().await), expected);

    // A force kill ends the tree and answers with its report: the record is pending.
    let killed = api
        .try_kill(KillRequest {
            run_id: tree.run_id.clone(),
            force: true,
            reason: "disk full test".into(),
            ..Default::default()
        })
        .await
        .expect("Kill answers whatever the disk does");
    assert!(killed.success, "{killed:?}");
    assert!(!killed.record_pending.is_empty(), "{killed:?}");
    assert!(killed.record_pending.contains("full"), "{killed:?}");
    assert!(killed.message.contains("warning"), "{killed:?}");
    assert_eq!(
        killed.run.as_ref().map(|r| r.status()),
        Some(RunStatus::Killed)
    );
    t.site.assert_run_gone(&tree.run_id, &tree_procs).await;

    // A cancel of the live flooding run ends it too.
    let cancelled = api
        .client
        .clone()
        .cancel(CancelRequest {
            run_id: flood.run_id.clone(),
            reason: "disk full test".into(),
            ..Default::default()
        })
        .await
        .expect("Cancel answers whatever the disk does")
        .into_inner();
    assert!(cancelled.killed, "{cancelled:?}");
    assert!(!cancelled.record_pending.is_empty(), "{cancelled:?}");
    assert!(
        cancelled.kill.as_ref().is_some_and(|k| k.success),
        "{cancelled:?}"
    );
    t.site.assert_run_gone(&flood.run_id, &[flood_leader]).await;
    assert_eq!(api.get(&tree.run_id).await.status(), RunStatus::Killed);
    assert_eq!(api.get(&flood.run_id).await.status(), RunStatus::Cancelled);

    // Nothing of it is on disk yet.
    assert_eq!(
        t.site.stored_status(&tree.run_id).as_deref(),
        Some("RUNNING")
    );
    assert!(failing_alert(&api.health().await).is_some());

    // Room again: the kept ends are written and the alert resolves, without another call.
    std::fs::remove_file(t.filler()).expect("removing the filler");
    let mut health = api.health().await;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while failing_alert(&health).is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "store_write_failing did not resolve: {health:?}"
        );
        tokio::time::sleep(POLL).await;
        health = api.health().await;
    }
    assert_eq!(
        t.site.stored_status(&tree.run_id).as_deref(),
        Some("KILLED")
    );
    assert_eq!(
        t.site.stored_status(&flood.run_id).as_deref(),
        Some("CANCELLED")
    );
    let (runs, alerts) = stored(&t.site.db());
    assert_eq!(runs, 2, "only the two runs are stored");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].0.contains("full") && alerts[0].1 > 0,
        "{alerts:?}"
    );
    api.assert_audited(&tree.run_id, "kill", "ok").await;
    // The two refused spawns are on record as refused, and no spawn of a run that does not exist
    // is on record as done.
    let spawns = spawn_audits(&t.site.db());
    let refusals: Vec<_> = spawns.iter().filter(|s| s.1 == "refused").collect();
    assert_eq!(refusals.len(), 2, "{spawns:?}");
    assert!(refusals.iter().all(|s| s.2.contains("full")), "{spawns:?}");
    for (id, outcome, _) in &spawns {
        if outcome == "ok" {
            assert!(
                expected.contains(id),
                "a spawn of unknown run {id} audited ok: {spawns:?}"
            );
        }
    }

    // A new spawn works again.
    let after = api.spawn(&["true".to_string()]).await;
    api.wait_terminal(&after.run_id, TIMEOUT).await;

    // A daemon started on the same state dir reads the same ends.
    t.site.stop().await;
    let api = t.site.start().await;
    assert_eq!(api.get(&tree.run_id).await.status(), RunStatus::Killed);
    assert_eq!(api.get(&flood.run_id).await.status(), RunStatus::Cancelled);
    assert_eq!(
        run_ids(&api.list().await),
        run_ids(&[tree, flood, after]),
        "the restarted daemon lists what the first one did"
    );
    assert!(failing_alert(&api.health().await).is_none());
    t.site.stop().await;
}

/// A shutdown on a full disk ends every run and the daemon exits cleanly, after trying for a few
/// seconds to write the ends; the next daemon, with room again, recovers the run from its last
/// record: LOST, not left RUNNING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_on_a_full_disk_ends_every_run() {
    let Some(mut t) = FullDisk::new() else {
        return;
    };
    let api = t.site.start().await;
    let (run, procs) = spawn_tree(&api).await;
    t.fill(0);
    let pipes_before = daemon_pipes(t.site.pid);
    let refused = api
        .try_spawn(SpawnRequest {
            argv: fake(&["--hang"]),
            ..Default::default()
        })
        .await
        .expect_err("a spawn the store cannot record must be refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        run_ids(&api.list().await),
        run_ids(std::slice::from_ref(&run))
    );
    // Its cgroup was made while the STARTING record was being written; with the write failed,
    // nothing was started in it and it goes.
    if let Some(root) = t.site.cgroup_root.clone() {
        let only_the_tree = vec![root.join(&run.run_id)];
        wait_until(TIMEOUT, "the refused run's cgroup is removed", || {
            cgroup_children(&root) == only_the_tree
        })
        .await;
    }
    // Its program and pipes were prepared beside that write too; they are closed again.
    wait_until(TIMEOUT, "the refused run's pipes are closed", || {
        daemon_pipes(t.site.pid) <= pipes_before
    })
    .await;

    t.site.stop().await;
    assert_nothing_left(&run.run_id, &procs);
    assert!(
        t.site
            .current_log()
            .contains("stopping with changes the store could not write"),
        "{}",
        t.site.current_log()
    );

    std::fs::remove_file(t.filler()).expect("removing the filler");
    let api = t.site.start().await;
    let after = api.get(&run.run_id).await;
    assert_eq!(after.status(), RunStatus::Lost, "{after:?}");
    assert!(failing_alert(&api.health().await).is_none());
    t.site.stop().await;
}
