//! Quarantine of a corrupt store (invariant 5: "a corrupt store is set aside, never silently
//! dropped, and the daemon still starts"): a database overwritten with garbage is moved with its
//! WAL files to `quarantine/<timestamp>/` byte for byte, a fresh store is made, and GetHealth
//! shows a `store_quarantined` alert until an operator acknowledges it (an audited call).
mod common;

use std::path::{Path, PathBuf};

use common::*;
use tonic::Code;
use wf_supervisor::proto::RunStatus;

/// Reproducible garbage (xorshift64*), so a failure can be replayed.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// What to do to the WAL files of the database being corrupted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wal {
    /// Remove `-wal` and `-shm`.
    Remove,
    /// Replace `-wal` with garbage, remove `-shm`.
    Garble,
}

/// Overwrites the database with garbage and removes or garbles its WAL; returns what was
/// written (db, wal).
fn corrupt_store(site: &Site, wal: Wal) -> (Vec<u8>, Vec<u8>) {
    let db = site.db();
    let len = std::fs::metadata(&db)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let db_bytes = garbage(0x5eed_0001, len.max(16 * 1024));
    std::fs::write(&db, &db_bytes).expect("overwriting the database");
    let wal_bytes = match wal {
        Wal::Garble => garbage(0x5eed_0002, 8 * 1024),
        Wal::Remove => Vec::new(),
    };
    for (suffix, garble) in [("-wal", wal == Wal::Garble), ("-shm", false)] {
        let path = with_suffix(&db, suffix);
        if garble {
            std::fs::write(&path, &wal_bytes).expect("garbling the WAL");
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing {}: {e}", path.display()),
        }
    }
    (db_bytes, wal_bytes)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// The folders under `<state>/quarantine/`.
fn quarantine_dirs(site: &Site) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(site.state.join("quarantine"))
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// The one folder under `<state>/quarantine/`, checked to hold the bad database byte for byte.
fn the_quarantine_dir(site: &Site, db_bytes: &[u8]) -> PathBuf {
    let dirs = quarantine_dirs(site);
    assert_eq!(dirs.len(), 1, "quarantine folders: {dirs:?}");
    let kept = std::fs::read(dirs[0].join("wf-supervisor.db")).expect("the quarantined db");
    assert!(
        kept == db_bytes,
        "the quarantined database is not the bad file byte for byte ({} bytes, expected {})",
        kept.len(),
        db_bytes.len()
    );
    dirs[0].clone()
}

/// GetHealth shows a `store_quarantined` alert.
async fn assert_quarantine_alert(api: &Api) {
    assert!(
        api.health()
            .await
            .alerts
            .iter()
            .any(|a| a.kind == "store_quarantined"),
        "no store_quarantined alert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_database_is_quarantined_and_acknowledged() {
    let mut site = Site::new(Options::default()).expect("a site");
    let api = site.start().await;
    let old = api.spawn(&fake(&["--marker", "before"])).await;
    api.wait_terminal(&old.run_id, TIMEOUT).await;
    assert!(
        api.health().await.alerts.is_empty(),
        "alerts on a fresh store"
    );
    site.stop().await;

    let (db_bytes, _) = corrupt_store(&site, Wal::Remove);

    // The daemon starts all the same.
    let api = site.start().await;
    let dir = the_quarantine_dir(&site, &db_bytes);
    let stamp = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a folder name")
        .to_string();
    assert!(
        !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()),
        "the quarantine folder is not named by a timestamp: {stamp:?}"
    );
    assert!(site.db().exists(), "no fresh database was made");

    let health = api.health().await;
    let alerts: Vec<_> = health
        .alerts
        .iter()
        .filter(|a| a.kind == "store_quarantined")
        .collect();
    assert_eq!(alerts.len(), 1, "GetHealth: {health:?}");
    let alert = alerts[0].clone();
    assert_eq!(alert.acknowledged_at, 0, "{alert:?}");
    assert!(alert.at > 0, "{alert:?}");
    assert!(
        alert.message.contains(&stamp),
        "the alert does not say where the store went: {alert:?}"
    );

    // The fresh store works: runs recorded only in the bad one are not known, new ones are.
    match api.try_get(&old.run_id).await {
        Err(s) => assert_eq!(s.code(), Code::NotFound, "{s:?}"),
        Ok(run) => panic!("a run of the quarantined store is listed: {run:?}"),
    }
    let fresh = api.spawn(&fake(&["--marker", "after"])).await;
    let fresh_run = api.wait_terminal(&fresh.run_id, TIMEOUT).await;
    assert_eq!(fresh_run.status(), RunStatus::Succeeded, "{fresh_run:?}");

    // Acknowledging clears it, names who did, and is audited.
    let euid = nix::unistd::geteuid().as_raw();
    let acked = api
        .try_ack_alert(alert.id, "seen by the quarantine test")
        .await
        .expect("AckAlert");
    assert_eq!(acked.id, alert.id);
    assert_eq!(acked.kind, "store_quarantined");
    assert!(acked.acknowledged_at > 0, "{acked:?}");
    assert!(
        acked.acknowledged_by.contains(&format!("uid={euid}"))
            && acked
                .acknowledged_by
                .contains("seen by the quarantine test"),
        "acknowledged_by: {acked:?}"
    );
    let health = api.health().await;
    assert!(
        health.alerts.iter().all(|a| a.id != alert.id),
        "the acknowledged alert is still shown: {health:?}"
    );
    let unknown = api.try_ack_alert(alert.id + 1000, "no such alert").await;
    assert_code(unknown, Code::NotFound, "AckAlert of an unknown alert");

    let records = api.audit("").await;
    let acks: Vec<_> = records.iter().filter(|r| r.action == "ack_alert").collect();
    assert_eq!(acks.len(), 2, "ack_alert records: {records:?}");
    // Newest first: the refused ack, then the accepted one.
    assert_eq!(acks[0].outcome, "refused", "{:?}", acks[0]);
    assert_eq!(acks[1].outcome, "ok", "{:?}", acks[1]);
    for rec in &acks {
        assert_eq!(rec.uid, Some(euid), "{rec:?}");
        assert_eq!(rec.pid, Some(std::process::id() as i32), "{rec:?}");
    }
    assert!(
        acks[1].request.contains(&alert.id.to_string()),
        "the audit record does not name the alert: {:?}",
        acks[1]
    );

    // The acknowledgement is durable, and the fresh store is not quarantined again.
    site.stop().await;
    let api = site.start().await;
    let health = api.health().await;
    assert!(
        health.alerts.is_empty(),
        "alerts after a clean restart: {health:?}"
    );
    assert_eq!(
        quarantine_dirs(&site).len(),
        1,
        "{:?}",
        quarantine_dirs(&site)
    );
    assert_eq!(api.get(&fresh.run_id).await.status(), RunStatus::Succeeded);
    for id in [&old.run_id, &fresh.run_id] {
        assert_nothing_left(id, &[]);
    }
    site.assert_reaped(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_and_a_corrupt_store_still_end_the_leftover_runs() {
    // Without its store the daemon can find a crashed daemon's runs only by their cgroups.
    let Some(mut site) = Site::new(Options {
        containment: Containment::Cgroup,
        grace_ms: 1000,
        ..Default::default()
    }) else {
        return;
    };
    let api = site.start().await;
    let run = api
        .spawn(&fake(&["--children", "2", "--escape-setsid", "--hang"]))
        .await;
    let run = api.wait_status(&run.run_id, RunStatus::Running).await;
    let procs = api.fake_agent_procs(&run, true, true).await;
    site.crash();
    corrupt_store(&site, Wal::Remove);

    let api = site.start().await;
    assert_eq!(quarantine_dirs(&site).len(), 1);
    assert_quarantine_alert(&api).await;
    assert_nothing_left(&run.run_id, &procs);
    let root = site.cgroup_root.as_ref().expect("a cgroup root");
    assert!(
        !root.join(&run.run_id).exists(),
        "the leftover cgroup of {} is still there",
        run.run_id
    );
    let records = api.audit(&run.run_id).await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "recover" && r.caller == "daemon"),
        "no recover record for the leftover cgroup of {}: {records:?}",
        run.run_id
    );
    assert!(
        site.tagged_pids().is_empty(),
        "{}",
        describe(&site.tagged_pids())
    );
    site.assert_reaped(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_of_a_garbage_database_is_quarantined_with_it() {
    let mut site = Site::new(Options::default()).expect("a site");
    let api = site.start().await;
    let run = api.spawn(&fake(&["--marker", "before"])).await;
    api.wait_terminal(&run.run_id, TIMEOUT).await;
    site.stop().await;

    let (db_bytes, wal_bytes) = corrupt_store(&site, Wal::Garble);
    let api = site.start().await;
    let dir = the_quarantine_dir(&site, &db_bytes);
    let listing: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    // The WAL belongs to the evidence: it may hold the newest commits of the bad store.
    match std::fs::read(dir.join("wf-supervisor.db-wal")) {
        Ok(kept_wal) => assert!(
            kept_wal == wal_bytes,
            "the quarantined WAL is not the bad WAL byte for byte ({} bytes, expected {})",
            kept_wal.len(),
            wal_bytes.len()
        ),
        Err(e) => panic!(
            "the WAL of the bad database was not quarantined with it ({e}); the quarantine \
             folder holds {listing:?}"
        ),
    }
    assert_quarantine_alert(&api).await;
    assert_nothing_left(&run.run_id, &[]);
    site.assert_reaped(&[]).await;
}
