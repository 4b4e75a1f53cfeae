//! What the writer does when a commit fails (a full disk, an I/O error): whether the batch is
//! kept for a retry or dropped, when to retry, and the `store_write_failing` alert.
//!
//! A commit that fails for a condition that can go away (the filesystem is full, an I/O error, the
//! database is locked) keeps its batch: the writer retries it before anything newer, so every
//! state change reached meanwhile, a run's terminal state above all, is written as soon as the
//! store accepts writes again. Retries back off (never a busy loop); every new batch is also a
//! retry. A failure that retrying cannot fix (a constraint, a bug) drops the batch, as before.
//!
//! The alert about failing writes cannot be written while writes fail: it lives here, in memory,
//! while the condition lasts (`GetHealth` shows it from there), and the commit that succeeds
//! again writes it with its firing and resolved times.
use std::time::Duration;

use rusqlite::ErrorCode;

/// The alert's kind and dedup key.
pub const ALERT_KIND: &str = "store_write_failing";

/// Why a commit failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The filesystem (or a quota) is full.
    Full,
    /// Another transient condition: an I/O error, a lock, a read-only remount.
    Transient,
    /// Retrying the same batch cannot help.
    Permanent,
}

impl Fault {
    pub fn of(code: Option<ErrorCode>) -> Fault {
        match code {
            Some(ErrorCode::DiskFull) => Fault::Full,
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory,
            ) => Fault::Transient,
            _ => Fault::Permanent,
        }
    }

    pub fn retried(self) -> bool {
        self != Fault::Permanent
    }
}

/// A failed commit as callers see it: what happened, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitError {
    pub fault: Fault,
    pub message: String,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommitError {}

/// The words for a failed commit: SQLite's error and, when it has one, the OS error behind it.
pub fn describe(fault: Fault, sqlite: &str, os: Option<&str>) -> String {
    let cause = match os {
        Some(os) if !os.is_empty() => format!("{sqlite}: {os}"),
        _ => sqlite.to_string(),
    };
    match fault {
        Fault::Full => format!("the state dir's filesystem is full ({cause})"),
        Fault::Transient => format!("the store cannot write ({cause})"),
        Fault::Permanent => format!("the commit failed ({cause})"),
    }
}

/// An episode of failing commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// Unix ms of the first failed commit.
    pub since: i64,
    /// The latest failure.
    pub error: CommitError,
    /// Failed commits so far.
    pub failures: u32,
}

impl Failing {
    /// The alert's message.
    pub fn message(&self, path: &str) -> String {
        format!(
            "commits to {path} fail: {}; state changes are kept in memory and written once the store accepts writes again",
            self.error
        )
    }
}

/// What to do with the batch whose commit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Keep it and retry it before anything newer.
    Retain,
    /// Drop it (retrying cannot help).
    Drop,
}

/// First retry after this; doubled after each failure up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The writer's view of whether commits succeed.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Option<Failing>,
}

impl WriteHealth {
    /// A commit failed at `now`.
    pub fn failed(&mut self, error: CommitError, now: i64) -> Decision {
        if !error.fault.retried() {
            return Decision::Drop;
        }
        match &mut self.failing {
            Some(f) => {
                f.error = error;
                f.failures = f.failures.saturating_add(1);
            }
            None => {
                self.failing = Some(Failing {
                    since: now,
                    error,
                    failures: 1,
                })
            }
        }
        Decision::Retain
    }

    /// A commit succeeded: the episode that just ended, if one did (its alert is to be written,
    /// firing at `since` and resolved now).
    pub fn succeeded(&mut self) -> Option<Failing> {
        self.failing.take()
    }

    /// The current episode.
    pub fn failing(&self) -> Option<&Failing> {
        self.failing.as_ref()
    }

    /// How long the writer waits for new work before it retries on its own (`None`: nothing to
    /// retry, wait for work).
    pub fn retry_in(&self) -> Option<Duration> {
        let f = self.failing.as_ref()?;
        let doublings = f.failures.saturating_sub(1).min(16);
        Some(FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY))
    }
}

/// At most this many audit records are kept for a retry; past it the oldest are dropped (and
/// counted in the log), so a long episode under a storm of calls cannot exhaust memory.
pub const MAX_KEPT_AUDITS: usize = 100_000;

/// Keep `batch` after `kept` for a retry. A run upserted again replaces its older, kept upsert
/// (the newest state is the one to write; the order of distinct runs does not matter), so a long
/// episode does not grow with every heartbeat flush. Returns how many kept audit records were
/// dropped to stay within `MAX_KEPT_AUDITS`.
pub fn retain(kept: &mut Vec<super::Batch>, batch: super::Batch) -> usize {
    retain_within(kept, batch, MAX_KEPT_AUDITS)
}

fn retain_within(kept: &mut Vec<super::Batch>, batch: super::Batch, max_audits: usize) -> usize {
    if batch.is_empty() {
        return 0;
    }
    let newer: std::collections::HashSet<&str> =
        batch.runs.iter().map(|(_, r)| r.run_id.as_str()).collect();
    for k in kept.iter_mut() {
        k.runs.retain(|(_, r)| !newer.contains(r.run_id.as_str()));
    }
    kept.push(batch);
    let mut excess = kept
        .iter()
        .map(|k| k.audits.len())
        .sum::<usize>()
        .saturating_sub(max_audits);
    let dropped = excess;
    for k in kept.iter_mut() {
        let n = excess.min(k.audits.len());
        k.audits.drain(..n);
        excess -= n;
    }
    kept.retain(|k| !k.is_empty());
    dropped
}

/// Discard what is kept of runs that were dropped because their first record failed: their
/// upserts and their audit records (the API records the refused call itself).
pub fn forget(kept: &mut Vec<super::Batch>, runs: &[String]) {
    if runs.is_empty() {
        return;
    }
    let gone = |id: &str| runs.iter().any(|r| r == id);
    for k in kept.iter_mut() {
        k.runs.retain(|(_, r)| !gone(&r.run_id));
        k.audits.retain(|a| !gone(&a.run_id));
    }
    kept.retain(|k| !k.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Batch;

    fn full() -> CommitError {
        CommitError {
            fault: Fault::Full,
            message: describe(
                Fault::Full,
                "database or disk is full",
                Some("No space left on device (os error 28)"),
            ),
        }
    }

    #[test]
    fn faults_that_can_go_away_are_retried_and_others_dropped() {
        assert_eq!(Fault::of(Some(ErrorCode::DiskFull)), Fault::Full);
        assert_eq!(
            Fault::of(Some(ErrorCode::SystemIoFailure)),
            Fault::Transient
        );
        assert_eq!(Fault::of(Some(ErrorCode::DatabaseBusy)), Fault::Transient);
        assert_eq!(
            Fault::of(Some(ErrorCode::ConstraintViolation)),
            Fault::Permanent
        );
        assert_eq!(Fault::of(None), Fault::Permanent);
        let mut h = WriteHealth::default();
        let bad = CommitError {
            fault: Fault::Permanent,
            message: "constraint".into(),
        };
        assert_eq!(h.failed(bad, 1), Decision::Drop);
        assert!(h.failing().is_none(), "a dropped batch raises no alert");
        assert_eq!(h.retry_in(), None);
    }

    #[test]
    fn the_message_says_the_disk_is_full_with_the_os_error() {
        let m = full().message;
        assert!(m.contains("filesystem is full"), "{m}");
        assert!(m.contains("os error 28"), "{m}");
        assert!(!m.contains("writer has stopped"), "{m}");
        assert_eq!(
            describe(Fault::Transient, "disk I/O error", None),
            "the store cannot write (disk I/O error)"
        );
    }

    #[test]
    fn an_episode_starts_at_the_first_failure_backs_off_and_ends_at_the_first_success() {
        let mut h = WriteHealth::default();
        assert_eq!(h.failed(full(), 100), Decision::Retain);
        assert_eq!(h.retry_in(), Some(FIRST_RETRY));
        assert_eq!(h.failed(full(), 200), Decision::Retain);
        assert_eq!(h.retry_in(), Some(FIRST_RETRY * 2));
        for t in 0..40 {
            h.failed(full(), 300 + t);
        }
        assert_eq!(h.retry_in(), Some(MAX_RETRY), "bounded backoff");
        let f = h.failing().expect("failing").clone();
        assert_eq!((f.since, f.failures), (100, 42));
        assert!(f.message("/s/wf.db").contains("/s/wf.db"));
        let ended = h.succeeded().expect("the episode ended");
        assert_eq!(ended.since, 100);
        assert!(h.failing().is_none());
        assert_eq!(h.retry_in(), None);
        assert!(h.succeeded().is_none(), "one end per episode");
    }

    fn rec(id: &str, status: crate::run::RunStatus) -> crate::run::RunRecord {
        crate::run::RunRecord::for_test(id, status)
    }

    #[test]
    fn kept_batches_keep_only_the_newest_state_of_each_run_and_everything_else() {
        use crate::run::RunStatus::*;
        let mut kept = Vec::new();
        retain(&mut kept, Batch::default());
        assert!(kept.is_empty());
        retain(
            &mut kept,
            Batch {
                runs: vec![(1, rec("a", Running)), (2, rec("b", Running))],
                ..Batch::default()
            },
        );
        retain(
            &mut kept,
            Batch {
                runs: vec![(1, rec("a", Stopping))],
                resolve: vec!["k".into()],
                ..Batch::default()
            },
        );
        retain(
            &mut kept,
            Batch {
                runs: vec![(1, rec("a", Killed))],
                ..Batch::default()
            },
        );
        let runs: Vec<(String, crate::run::RunStatus)> = kept
            .iter()
            .flat_map(|b| b.runs.iter().map(|(_, r)| (r.run_id.clone(), r.status)))
            .collect();
        assert_eq!(runs, vec![("b".into(), Running), ("a".into(), Killed)]);
        assert_eq!(kept.len(), 3, "the resolve stays, in order");
        assert_eq!(kept[1].resolve, vec!["k".to_string()]);
    }

    #[test]
    fn kept_audit_records_are_bounded_and_the_oldest_go_first() {
        use crate::store::{AuditRecord, Caller};
        let audit = |m: &str| {
            AuditRecord::new(Caller::Daemon, "kill", "r", serde_json::json!({})).outcome("ok", m)
        };
        let mut kept = Vec::new();
        let b = |m: &str| Batch {
            audits: vec![audit(m)],
            ..Batch::default()
        };
        assert_eq!(retain_within(&mut kept, b("1"), 2), 0);
        assert_eq!(retain_within(&mut kept, b("2"), 2), 0);
        assert_eq!(retain_within(&mut kept, b("3"), 2), 1);
        let left: Vec<&str> = kept
            .iter()
            .flat_map(|k| k.audits.iter().map(|a| a.message.as_str()))
            .collect();
        assert_eq!(left, vec!["2", "3"]);
        assert_eq!(kept.len(), 2, "the emptied batch is gone");
    }

    #[test]
    fn a_dropped_run_leaves_nothing_kept_but_the_others_stay() {
        use crate::run::RunStatus::*;
        use crate::store::{AuditRecord, Caller};
        let audit = |id: &str| {
            AuditRecord::new(Caller::Daemon, "spawn", id, serde_json::json!({})).outcome("ok", "")
        };
        let mut kept = Vec::new();
        retain(
            &mut kept,
            Batch {
                runs: vec![(1, rec("a", Killed))],
                audits: vec![audit("a")],
                ..Batch::default()
            },
        );
        retain(
            &mut kept,
            Batch {
                runs: vec![(2, rec("new", Queued))],
                audits: vec![audit("new")],
                ..Batch::default()
            },
        );
        forget(&mut kept, &[]);
        assert_eq!(kept.len(), 2);
        forget(&mut kept, &["new".to_string()]);
        assert_eq!(kept.len(), 1, "the dropped run's batch is gone");
        assert_eq!(kept[0].runs[0].1.run_id, "a");
        assert_eq!(kept[0].audits.len(), 1);
    }
}
