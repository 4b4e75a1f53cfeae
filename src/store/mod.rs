//! The durable store (invariant 5): an embedded SQLite database (bundled, WAL mode) in the state
//! dir with the runs table, the append-only audit trail and operator alerts.
//!
//! Theory of operation: one writer thread owns the write connection. The core and the API send it
//! batches (run records to upsert, audit records to append, runs to delete) with a completion
//! callback; the thread drains whatever has queued up, commits it in one transaction (group
//! commit), then runs the callbacks, which is where API replies are sent. So a state change is
//! durable before the API acknowledges it, and the core task never waits on the disk.
//! `synchronous=NORMAL` in WAL mode makes each commit survive a crash of the daemon (the case this
//! invariant is about); a power loss may lose the last commits.
//!
//! A commit that fails for a condition that can go away (a full filesystem, an I/O error) keeps
//! its batch and is retried before anything newer (`failing.rs` decides), so a run's terminal state
//! reached meanwhile is written once the store accepts writes again; a `store_write_failing` alert
//! is shown from memory while commits fail and written, resolved, by the first that succeeds.
//!
//! At open: `PRAGMA quick_check`; a corrupt or unreadable database is moved aside to
//! `quarantine/<timestamp>/` with its WAL files, a fresh one is made, and an alert records it
//! until an operator acknowledges it. A database from a newer daemon is refused.
mod audit;
pub mod failing;
mod outbox;
mod rows;
mod schema;

pub use audit::{AuditRecord, Caller};
pub use failing::CommitError;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tracing::{error, info, warn};

use crate::run::RunRecord;
pub use outbox::{Purge, Purged};

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path} has schema version {found}, newer than this daemon's {supported}: refusing to touch it (run the newer daemon, or move the file aside)")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot quarantine {path}: {source}")]
    Quarantine {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store {path}: {error}")]
    Commit { path: PathBuf, error: CommitError },
    #[error("the store's writer has stopped")]
    WriterGone,
}

/// An alert for operators, shown until acknowledged or, for a condition that can go away (a
/// deep queue, a stuck run), until it resolved.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub message: String,
    pub acknowledged_at: i64,
    pub acknowledged_by: String,
    /// Unix ms when the condition went away (0: still firing, or an alert that never resolves).
    pub resolved_at: i64,
    /// One firing alert per key: firing it again while it fires changes nothing.
    pub dedup_key: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Unix ms when its condition was last reported (`at` is when it was first seen).
    pub last_seen: i64,
}

/// What one webhook was sent of one alert (the outbox row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub webhook: String,
    pub alert_id: i64,
    /// The notification this row is about: the alert's firing or its resolution.
    pub status: crate::alerts::format::Status,
    pub state: DeliveryState,
    /// Attempts made for this notification.
    pub attempts: u32,
    /// Unix ms of the next attempt (Pending).
    pub next_at: i64,
    /// Unix ms it was delivered (Delivered).
    pub sent_at: i64,
    pub last_error: String,
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Not delivered yet: due at `next_at`.
    Pending,
    Delivered,
    /// Given up on (a refusal, or the attempts ran out).
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> DeliveryState {
        match s {
            "delivered" => DeliveryState::Delivered,
            "pending" => DeliveryState::Pending,
            _ => DeliveryState::Failed,
        }
    }
}

/// A condition that fires an alert once per dedup key until it is resolved.
#[derive(Debug, Clone)]
pub struct AlertFire {
    pub kind: String,
    pub dedup_key: String,
    pub message: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A run as loaded from the store, with its ordering key.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    pub seq: u64,
    pub record: RunRecord,
}

/// What `open` found.
pub struct Opened {
    pub store: Store,
    pub runs: Vec<LoadedRun>,
    /// Where a corrupt database was moved, if one was.
    pub quarantined: Option<PathBuf>,
}

type Done = Box<dyn FnOnce(Result<(), CommitError>) + Send>;

/// One batch for the writer.
#[derive(Default)]
pub struct Batch {
    pub runs: Vec<(u64, RunRecord)>,
    pub audits: Vec<AuditRecord>,
    pub deletes: Vec<String>,
    pub alerts: Vec<(String, String)>,
    pub acks: Vec<(i64, String)>,
    /// Alerts with a dedup key: inserted unless one with that key is still firing.
    pub fire: Vec<AlertFire>,
    /// Dedup keys whose condition is gone: their firing alert gets its resolved time.
    pub resolve: Vec<String>,
    /// Outbox rows to write (insert or replace).
    pub deliveries: Vec<DeliveryRow>,
    /// Webhooks removed from the config: their pending outbox rows are dropped.
    pub drop_pending: Vec<String>,
    /// Purge outbox rows and resolved alerts past their retention (see `outbox`).
    pub purge: Option<Purge>,
    /// New runs whose first record could not be written and that were dropped: whatever of
    /// them the writer still keeps for a retry (upserts, audit records) is discarded, and a row
    /// is deleted if there is one.
    pub forget: Vec<String>,
    /// Queues paused (true) or resumed (false) by an operator: kept across restarts.
    pub queue_paused: Vec<(String, bool)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.audits.is_empty()
            && self.deletes.is_empty()
            && self.alerts.is_empty()
            && self.acks.is_empty()
            && self.fire.is_empty()
            && self.resolve.is_empty()
            && self.deliveries.is_empty()
            && self.drop_pending.is_empty()
            && self.purge.is_none()
            && self.forget.is_empty()
            && self.queue_paused.is_empty()
    }

    /// Whether committing it may change what alerts fire (the outbox is told).
    fn touches_alerts(&self) -> bool {
        !(self.alerts.is_empty()
            && self.acks.is_empty()
            && self.fire.is_empty()
            && self.resolve.is_empty())
    }
}

enum Op {
    Write(Batch, Option<Done>),
}

/// Handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
    reader: Arc<Mutex<Connection>>,
    path: PathBuf,
    /// Told how long each group commit took (the metrics), once one is set.
    commit_observer: CommitObserver,
    /// Bumped after each commit that may have changed the alerts.
    alert_changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The writer's current episode of failing commits, for readers (GetHealth, the status line).
    failing: Arc<Mutex<Option<failing::Failing>>>,
}

type CommitObserver = Arc<std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>>;

const DB_FILE: &str = "wf-supervisor.db";

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Open (or create) the store in `state_dir`, quarantining a corrupt one.
    pub fn open(state_dir: &Path) -> Result<Opened, StoreError> {
        let path = state_dir.join(DB_FILE);
        let mut quarantined = None;
        // Check on a read-only connection first: a read-write one would checkpoint the WAL of a
        // bad database into it and delete the WAL on close, changing the evidence.
        let checked = Self::check_readonly(&path).and_then(|()| Self::open_checked(&path));
        let conn = match checked {
            Ok(c) => c,
            Err(e @ StoreError::NewerSchema { .. }) => return Err(e),
            Err(e) => {
                error!(error = %e, "the store is corrupt or unreadable; quarantining it");
                let dest = quarantine(state_dir, &path)?;
                quarantined = Some(dest);
                Self::open_checked(&path)?
            }
        };
        if let Some(dest) = &quarantined {
            conn.execute(
                "INSERT INTO alerts (at, kind, message) VALUES (?1, 'store_quarantined', ?2)",
                params![
                    crate::time::now_ms(),
                    format!(
                        "the store was corrupt or unreadable at start; it was moved to {} and a fresh one was made. Runs recorded only there are not listed.",
                        dest.display()
                    )
                ],
            )
            .map_err(sqlite_err(&path))?;
            let rec = AuditRecord::new(
                Caller::Daemon,
                "quarantine",
                "",
                serde_json::json!({"moved_to": dest.display().to_string()}),
            )
            .outcome(
                "ok",
                "the store was corrupt or unreadable at start; a fresh one was made",
            );
            audit::insert(&conn, &rec).map_err(sqlite_err(&path))?;
        }
        let runs = rows::load_runs(&conn).map_err(sqlite_err(&path))?;
        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_err(&path))?;
        let _ = reader.busy_timeout(Duration::from_secs(5));
        let (tx, rx) = mpsc::channel();
        let wpath = path.clone();
        let commit_observer = CommitObserver::default();
        let observer = commit_observer.clone();
        let alert_changes = Arc::new(tokio::sync::watch::channel(0u64).0);
        let changes = alert_changes.clone();
        let failing = Arc::new(Mutex::new(None));
        let shared = failing.clone();
        std::thread::Builder::new()
            .name("wf-store".into())
            .spawn(move || writer(conn, rx, wpath, observer, changes, shared))
            .map_err(|source| StoreError::Quarantine {
                path: path.clone(),
                source,
            })?;
        info!(path = %path.display(), runs = runs.len(), "store open");
        Ok(Opened {
            store: Store {
                tx,
                reader: Arc::new(Mutex::new(reader)),
                path,
                commit_observer,
                alert_changes,
                failing,
            },
            runs,
            quarantined,
        })
    }

    /// `PRAGMA quick_check` on a read-only connection (which never checkpoints or deletes the
    /// WAL). A missing file is fine: it will be created.
    fn check_readonly(path: &Path) -> Result<(), StoreError> {
        if !path.exists() {
            return Ok(());
        }
        let e = sqlite_err(path);
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(&e)?;
        quick_check(&conn, path)?;
        Ok(())
    }

    fn open_checked(path: &Path) -> Result<Connection, StoreError> {
        let e = sqlite_err(path);
        let conn = Connection::open(path).map_err(&e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(&e)?;
        // quick_check first: a file that is not a database fails here.
        quick_check(&conn, path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(&e)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&e)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&e)?;
        let supported = schema::current_version();
        if version > supported {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported,
            });
        }
        for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction().map_err(&e)?;
            tx.execute_batch(m).map_err(&e)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(&e)?;
            tx.commit().map_err(&e)?;
            info!(version = i + 1, "store migrated");
        }
        Ok(conn)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bumped after every commit that may have changed the alerts (the outbox waits on it).
    pub fn alert_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.alert_changes.subscribe()
    }

    /// What webhook `webhook` must reconcile: alerts firing or resolved since `since` (the
    /// newest `limit`), and its outbox rows for them.
    pub fn outbox_view(
        &self,
        webhook: &str,
        since: i64,
        limit: usize,
    ) -> Result<(Vec<Alert>, Vec<DeliveryRow>), StoreError> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM alerts WHERE resolved_at = 0 OR resolved_at >= ?1
                 ORDER BY id DESC LIMIT ?2",
                rows::ALERT_COLUMNS
            ))?;
            let alerts: Vec<Alert> = st
                .query_map(params![since, limit as i64], rows::alert_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let min_id = alerts.iter().map(|a| a.id).min().unwrap_or(i64::MAX);
            let mut st = c.prepare(
                "SELECT webhook, alert_id, status, state, attempts, next_at, sent_at, last_error
                 FROM alert_deliveries WHERE webhook = ?1 AND alert_id >= ?2",
            )?;
            let deliveries = st
                .query_map(params![webhook, min_id], |r| {
                    Ok(DeliveryRow {
                        webhook: r.get(0)?,
                        alert_id: r.get(1)?,
                        status: crate::alerts::format::Status::parse(&r.get::<_, String>(2)?)
                            .unwrap_or(crate::alerts::format::Status::Firing),
                        state: DeliveryState::parse(&r.get::<_, String>(3)?),
                        attempts: r.get(4)?,
                        next_at: r.get(5)?,
                        sent_at: r.get(6)?,
                        last_error: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok((alerts, deliveries))
        })
    }

    /// Have `f` told how long each group commit takes (the first call wins).
    pub fn observe_commits(&self, f: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.commit_observer.set(Box::new(f));
    }

    /// Alerts firing now (not resolved; acknowledged ones included), counted by kind.
    pub fn firing_alert_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT kind, COUNT(*) FROM alerts WHERE resolved_at = 0 GROUP BY kind")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            rows.collect()
        })
    }

    /// Queue a batch; `done` runs after it is committed (or failed).
    pub fn write(&self, batch: Batch, done: Option<Done>) {
        if let Err(mpsc::SendError(Op::Write(_, Some(done)))) = self.tx.send(Op::Write(batch, done))
        {
            done(Err(CommitError {
                fault: failing::Fault::Permanent,
                message: "the store's writer has stopped".into(),
            }));
        }
    }

    /// Wait until every change queued before this call has been through a commit (written, or
    /// kept for a retry when commits fail): a read after it sees what was queued before it.
    pub async fn settled(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.write(
            Batch::default(),
            Some(Box::new(move |_| {
                let _ = tx.send(());
            })),
        );
        let _ = rx.await;
    }

    /// Queue a batch and wait until it is committed.
    pub async fn write_and_wait(&self, batch: Batch) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.write(
            batch,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StoreError::Commit {
                path: self.path.clone(),
                error,
            }),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Wait until everything queued so far is committed, retrying while commits fail, for at
    /// most `bound` (at exit: the ends of the runs a shutdown stopped). Returns the last failure
    /// when the bound passed first.
    pub async fn settle(&self, bound: Duration) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            // An empty batch commits after everything before it, kept batches first.
            match self.write_and_wait(Batch::default()).await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(StoreError::WriterGone) => return Err(StoreError::WriterGone),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Why commits fail now, while they do.
    pub fn write_failing(&self) -> Option<CommitError> {
        let f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref().map(|f| f.error.clone())
    }

    /// The `store_write_failing` alert while commits fail (it cannot be written until they
    /// succeed again; then it is written resolved).
    fn failing_alert(&self) -> Option<Alert> {
        let f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        f.as_ref().map(|f| Alert {
            id: 0,
            at: f.since,
            kind: failing::ALERT_KIND.into(),
            message: f.message(&self.path.display().to_string()),
            acknowledged_at: 0,
            acknowledged_by: String::new(),
            resolved_at: 0,
            dedup_key: failing::ALERT_KIND.into(),
            labels: Default::default(),
            last_seen: crate::time::now_ms(),
        })
    }

    /// Append one audit record and wait until it is durable.
    pub async fn audit(&self, rec: AuditRecord) -> Result<(), StoreError> {
        self.write_and_wait(Batch {
            audits: vec![rec],
            ..Batch::default()
        })
        .await
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(sqlite_err(&self.path))
    }

    /// Audit records, newest first.
    pub fn list_audit(
        &self,
        run_id: &str,
        since: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(|c| audit::list(c, run_id, since, limit))
    }

    /// Alerts neither acknowledged nor resolved, and the store's own while its commits fail.
    pub fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let mut open: Vec<Alert> = self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM alerts WHERE acknowledged_at = 0 AND resolved_at = 0 ORDER BY id",
                rows::ALERT_COLUMNS
            ))?;
            let rows = st.query_map([], rows::alert_from_row)?;
            rows.collect()
        })?;
        open.extend(self.failing_alert());
        Ok(open)
    }

    /// Alerts of these kinds that still fire or resolved at or after `since` (Unix ms).
    pub fn alerts_of_kinds(&self, kinds: &[&str], since: i64) -> Result<Vec<Alert>, StoreError> {
        let kinds: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        self.read(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {} FROM alerts WHERE (resolved_at = 0 OR resolved_at >= ?1)
                 AND kind IN (SELECT value FROM json_each(?2)) ORDER BY id",
                rows::ALERT_COLUMNS
            ))?;
            let list = serde_json::to_string(&kinds).unwrap_or_else(|_| "[]".into());
            let rows = st.query_map(params![since, list], rows::alert_from_row)?;
            rows.collect()
        })
    }

    /// The queues an operator paused (and did not resume), as of the last commit.
    pub fn paused_queues(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare("SELECT queue FROM queue_state WHERE paused = 1 ORDER BY queue")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// One alert by id.
    pub fn alert(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {} FROM alerts WHERE id = ?1", rows::ALERT_COLUMNS),
                [id],
                rows::alert_from_row,
            )
            .optional()
        })
    }
}

/// `PRAGMA quick_check`: a file that is not a database, or a damaged one, is an error.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sqlite_err(path))?;
    if check != "ok" {
        return Err(StoreError::Sqlite {
            path: path.to_path_buf(),
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!("quick_check: {check}")),
            ),
        });
    }
    Ok(())
}

/// Move a bad database and its WAL files to `quarantine/<timestamp>/`.
fn quarantine(state_dir: &Path, db: &Path) -> Result<PathBuf, StoreError> {
    let stamp = crate::time::now_ms();
    let dest = state_dir.join("quarantine").join(stamp.to_string());
    std::fs::create_dir_all(&dest).map_err(|source| StoreError::Quarantine {
        path: dest.clone(),
        source,
    })?;
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = dest.join(format!("{DB_FILE}{suffix}"));
            std::fs::rename(&from, &to).map_err(|source| StoreError::Quarantine {
                path: from.clone(),
                source,
            })?;
        }
    }
    warn!(to = %dest.display(), "store quarantined");
    Ok(dest)
}

/// The writer thread: group commits until every sender is gone. Batches whose commit failed for a
/// condition that can go away are kept and committed first, on the next batch or on the retry
/// timer (backing off, see `failing.rs`).
fn writer(
    mut conn: Connection,
    rx: mpsc::Receiver<Op>,
    path: PathBuf,
    observer: CommitObserver,
    alert_changes: Arc<tokio::sync::watch::Sender<u64>>,
    shared: Arc<Mutex<Option<failing::Failing>>>,
) {
    let mut health = failing::WriteHealth::default();
    let mut kept: Vec<Batch> = Vec::new();
    let publish = |h: &failing::WriteHealth| {
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = h.failing().cloned();
    };
    loop {
        let first = match health.retry_in() {
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            },
        };
        let mut ops: Vec<Op> = first.into_iter().collect();
        while let Ok(more) = rx.try_recv() {
            ops.push(more);
            if ops.len() >= 1024 {
                break;
            }
        }
        for Op::Write(b, _) in &ops {
            failing::forget(&mut kept, &b.forget);
        }
        // What failed before goes first, with the alert of the episode if this ends it.
        if let Some(f) = health.failing().cloned() {
            let started = std::time::Instant::now();
            let r = commit(&mut conn, kept.iter(), Some(&f)).map_err(|e| commit_error(&conn, e));
            if let Some(observe) = observer.get() {
                observe(started.elapsed());
            }
            match r {
                Ok(()) => {
                    // The episode's own alert was written with the kept changes.
                    alert_changes.send_modify(|n| *n = n.wrapping_add(1));
                    health.succeeded();
                    publish(&health);
                    kept.clear();
                    info!(path = %path.display(), failures = f.failures,
                        "store commits succeed again; the changes kept meanwhile are written");
                }
                Err(e) => match health.failed(e.clone(), crate::time::now_ms()) {
                    failing::Decision::Retain => {
                        publish(&health);
                        // The new batches would fail the same way: keep them behind the others.
                        for Op::Write(b, done) in ops {
                            keep(&mut kept, b, &path);
                            if let Some(done) = done {
                                done(Err(e.clone()));
                            }
                        }
                        continue;
                    }
                    failing::Decision::Drop => {
                        // Something kept cannot be written at all: retrying it would block every
                        // later change. The episode stays open; the next attempt, with nothing
                        // kept, ends it.
                        error!(path = %path.display(), error = %e, batches = kept.len(),
                            "the changes kept for a retry cannot be written; dropping them");
                        kept.clear();
                    }
                },
            }
        }
        if ops.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let result = commit(&mut conn, ops.iter().map(|Op::Write(b, _)| b), None)
            .map_err(|e| commit_error(&conn, e));
        if let Some(observe) = observer.get() {
            observe(started.elapsed());
        }
        if result.is_ok() && ops.iter().any(|Op::Write(b, _)| b.touches_alerts()) {
            alert_changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        let decision = match &result {
            Ok(()) => None,
            Err(e) => {
                let d = health.failed(e.clone(), crate::time::now_ms());
                publish(&health);
                match d {
                    failing::Decision::Retain => {
                        error!(path = %path.display(), error = %e,
                            "store commit failed; keeping the changes in memory until it succeeds")
                    }
                    failing::Decision::Drop => {
                        error!(path = %path.display(), error = %e, "store commit failed")
                    }
                }
                Some(d)
            }
        };
        for Op::Write(b, done) in ops {
            if decision == Some(failing::Decision::Retain) {
                keep(&mut kept, b, &path);
            }
            if let Some(done) = done {
                done(result.clone());
            }
        }
    }
    if !kept.is_empty() {
        error!(path = %path.display(), batches = kept.len(),
            "the daemon stops with changes its store could not write");
    }
}

/// Keep a batch whose commit failed, saying when that drops the oldest kept audit records.
fn keep(kept: &mut Vec<Batch>, batch: Batch, path: &Path) {
    if batch.is_empty() {
        // A barrier (`settled`): nothing to retry.
        return;
    }
    let dropped = failing::retain(kept, batch);
    if dropped > 0 {
        error!(path = %path.display(), dropped, max = failing::MAX_KEPT_AUDITS,
            "too many audit records wait for the store; the oldest are dropped");
    }
}

/// A failed commit in words: the fault, SQLite's error and the OS error behind it. SQLite
/// reports SQLITE_FULL only for a write that failed with ENOSPC (or came up short); for I/O errors
/// it keeps the OS error on the connection.
#[allow(unsafe_code)]
fn commit_error(conn: &Connection, e: rusqlite::Error) -> CommitError {
    let fault = failing::Fault::of(e.sqlite_error_code());
    let errno = match fault {
        failing::Fault::Full => nix::errno::Errno::ENOSPC as i32,
        // SAFETY: the handle is the writer's own open connection, used on this thread only;
        // sqlite3_system_errno only reads the connection's last OS error.
        _ => unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) },
    };
    let os = (errno != 0).then(|| std::io::Error::from_raw_os_error(errno).to_string());
    CommitError {
        fault,
        message: failing::describe(fault, &e.to_string(), os.as_deref()),
    }
}

/// Commit `batches` in one transaction; with `ended`, also the alert of an episode of failing
/// commits that this commit ends (firing since its first failure, resolved now).
fn commit<'a>(
    conn: &mut Connection,
    batches: impl Iterator<Item = &'a Batch>,
    ended: Option<&failing::Failing>,
) -> rusqlite::Result<()> {
    let path = conn.path().unwrap_or_default().to_string();
    let tx = conn.transaction()?;
    if let Some(f) = ended {
        tx.execute(
            "INSERT INTO alerts (at, kind, message, dedup_key, labels, resolved_at)
             VALUES (?1, ?2, ?3, ?2, '{}', ?4)",
            params![
                f.since,
                failing::ALERT_KIND,
                f.message(&path),
                crate::time::now_ms()
            ],
        )?;
    }
    for b in batches {
        for (seq, r) in &b.runs {
            rows::upsert_run(&tx, *seq, r)?;
        }
        for a in &b.audits {
            audit::insert(&tx, a)?;
        }
        for id in b.deletes.iter().chain(&b.forget) {
            tx.execute("DELETE FROM runs WHERE run_id = ?1", [id])?;
        }
        for (kind, message) in &b.alerts {
            tx.execute(
                "INSERT INTO alerts (at, kind, message) VALUES (?1, ?2, ?3)",
                params![crate::time::now_ms(), kind, message],
            )?;
        }
        for f in &b.fire {
            let now = crate::time::now_ms();
            let inserted = tx.execute(
                "INSERT INTO alerts (at, kind, message, dedup_key, labels, last_seen)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?1 WHERE NOT EXISTS
                   (SELECT 1 FROM alerts WHERE dedup_key = ?4 AND resolved_at = 0)",
                params![
                    now,
                    f.kind,
                    f.message,
                    f.dedup_key,
                    serde_json::to_string(&f.labels).unwrap_or_default()
                ],
            )?;
            if inserted == 0 {
                tx.execute(
                    "UPDATE alerts SET last_seen = ?1 WHERE dedup_key = ?2 AND resolved_at = 0",
                    params![now, f.dedup_key],
                )?;
            }
        }
        for d in &b.deliveries {
            tx.execute(
                "INSERT OR REPLACE INTO alert_deliveries
                   (webhook, alert_id, status, state, attempts, next_at, sent_at, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    d.webhook,
                    d.alert_id,
                    d.status.as_str(),
                    d.state.as_str(),
                    d.attempts,
                    d.next_at,
                    d.sent_at,
                    d.last_error
                ],
            )?;
        }
        for name in &b.drop_pending {
            outbox::drop_pending(&tx, name)?;
        }
        if let Some(p) = &b.purge {
            outbox::purge(&tx, p)?;
        }
        for key in &b.resolve {
            tx.execute(
                "UPDATE alerts SET resolved_at = ?1 WHERE dedup_key = ?2 AND resolved_at = 0",
                params![crate::time::now_ms(), key],
            )?;
        }
        for (queue, paused) in &b.queue_paused {
            if *paused {
                tx.execute(
                    "INSERT OR REPLACE INTO queue_state (queue, paused) VALUES (?1, 1)",
                    [queue],
                )?;
            } else {
                tx.execute("DELETE FROM queue_state WHERE queue = ?1", [queue])?;
            }
        }
        for (id, by) in &b.acks {
            tx.execute(
                "UPDATE alerts SET acknowledged_at = ?1, acknowledged_by = ?2 WHERE id = ?3 AND acknowledged_at = 0",
                params![crate::time::now_ms(), by, id],
            )?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written before the queue (schema version 2) opens, migrates, and its runs
    /// are in the default queue with no policy; alerts fire once per dedup key and resolve.
    #[tokio::test]
    async fn a_version_2_store_migrates_and_alerts_fire_once_and_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("db");
            for m in &schema::MIGRATIONS[..2] {
                conn.execute_batch(m).expect("old migration");
            }
            conn.pragma_update(None, "user_version", 2)
                .expect("version");
            conn.execute(
                "INSERT INTO runs VALUES ('run_0123456789ab', 1, 'SUCCEEDED', '[\"true\"]', '/',
                 '{}', '{}', '[\"SIGTERM\"]', 5000, 10, 10, 1, 2, 3, 0, NULL, '', 1, '', 0, 0,
                 'process-group', 0, 0, '', 0, 0, '', '')",
                [],
            )
            .expect("old row");
        }
        let opened = Store::open(dir.path()).expect("open");
        assert_eq!(opened.runs.len(), 1);
        let r = &opened.runs[0].record;
        assert_eq!(r.status, crate::run::RunStatus::Succeeded);
        assert_eq!(r.spec.policy.queue, "default");
        assert_eq!(r.spec.policy.restart, None);
        assert_eq!((r.queued_at, r.timeout_at, r.policy_restarts), (0, 0, 0));
        let store = opened.store;
        let fire = || AlertFire {
            kind: "queue_depth".into(),
            dedup_key: "queue_depth:agents".into(),
            message: "deep".into(),
            labels: [("queue".to_string(), "agents".to_string())].into(),
        };
        for _ in 0..2 {
            store
                .write_and_wait(Batch {
                    fire: vec![fire()],
                    ..Batch::default()
                })
                .await
                .expect("fire");
        }
        let open = store.open_alerts().expect("alerts");
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(
            open[0].labels.get("queue").map(String::as_str),
            Some("agents")
        );
        store
            .write_and_wait(Batch {
                resolve: vec!["queue_depth:agents".into()],
                ..Batch::default()
            })
            .await
            .expect("resolve");
        assert!(store.open_alerts().expect("alerts").is_empty());
        let recent = store.alerts_of_kinds(&["queue_depth"], 0).expect("recent");
        assert_eq!(recent.len(), 1);
        assert!(recent[0].resolved_at > 0, "{recent:?}");
        // Once resolved, the condition coming back is a new alert.
        store
            .write_and_wait(Batch {
                fire: vec![fire()],
                ..Batch::default()
            })
            .await
            .expect("fire again");
        assert_eq!(store.open_alerts().expect("alerts").len(), 1);
        assert_eq!(
            store
                .alerts_of_kinds(&["queue_depth"], 0)
                .expect("all")
                .len(),
            2
        );
    }
}
