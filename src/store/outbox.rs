//! The webhook outbox's upkeep: dropping what a removed webhook still owed, and the retention of
//! what is done with (`alert_deliveries` rows delivered or given up, resolved alerts).
//!
//! The invariant the purge keeps: no row is removed that the delivery tasks still reconcile
//! against. A delivery row of an alert that still fires records what was sent (without it the
//! alert would be sent again, ignoring `repeat_interval`), and one of an alert resolved within
//! the tasks' lookback records the resolved notification; so only rows of alerts resolved
//! before the cutoff (never younger than the lookback) or of alerts that are gone are purged,
//! pending rows only with their alert. The row cap removes the oldest such rows first and never
//! goes below what firing alerts need.
use rusqlite::{params, Transaction};
use tracing::info;

use super::{Store, StoreError};

/// The least retention: the delivery tasks reconcile alerts resolved within the last day
/// (`alerts::deliver`'s lookback), so their rows must stay at least that long.
pub const MIN_RETENTION_MS: i64 = 24 * 3_600_000;

/// A purge of what is done with, run by the writer in one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purge {
    /// Now, in ms since the epoch.
    pub now: i64,
    /// Delivered or given-up rows of alerts resolved longer ago than this go (at least
    /// [`MIN_RETENTION_MS`]).
    pub deliveries_ms: i64,
    /// Resolved alerts older than this go, with their rows (at least [`MIN_RETENTION_MS`]).
    pub alerts_ms: i64,
    /// At most this many delivered or given-up rows stay; the oldest purgeable go first.
    pub max_delivery_rows: usize,
}

/// What a purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub deliveries: usize,
    pub alerts: usize,
}

/// Which rows a purge may take: done with (not pending) and of an alert resolved before
/// `?1`, or of an alert that is gone.
const PURGEABLE: &str = "state != 'pending' AND (
        alert_id NOT IN (SELECT id FROM alerts)
        OR alert_id IN (SELECT id FROM alerts WHERE resolved_at > 0 AND resolved_at < ?1))";

/// Remove what `p` says is done with. Returns what went (and logs it, when anything did).
pub fn purge(tx: &Transaction<'_>, p: &Purge) -> rusqlite::Result<Purged> {
    let alerts_cutoff = p.now - p.alerts_ms.max(MIN_RETENTION_MS);
    let deliveries_cutoff = p.now - p.deliveries_ms.max(MIN_RETENTION_MS);
    // Old resolved alerts, and every row of theirs (a pending one included: its alert is done).
    let mut deliveries = tx.execute(
        "DELETE FROM alert_deliveries WHERE alert_id IN
           (SELECT id FROM alerts WHERE resolved_at > 0 AND resolved_at < ?1)",
        params![alerts_cutoff],
    )?;
    let alerts = tx.execute(
        "DELETE FROM alerts WHERE resolved_at > 0 AND resolved_at < ?1",
        params![alerts_cutoff],
    )?;
    deliveries += tx.execute(
        &format!("DELETE FROM alert_deliveries WHERE {PURGEABLE}"),
        params![deliveries_cutoff],
    )?;
    // The cap: the oldest purgeable rows (resolved at any time) first.
    let done: i64 = tx.query_row(
        "SELECT COUNT(*) FROM alert_deliveries WHERE state != 'pending'",
        [],
        |r| r.get(0),
    )?;
    let over = (done as usize).saturating_sub(p.max_delivery_rows);
    if over > 0 {
        deliveries += tx.execute(
            &format!(
                "DELETE FROM alert_deliveries WHERE rowid IN
                   (SELECT rowid FROM alert_deliveries WHERE {PURGEABLE}
                    ORDER BY alert_id LIMIT ?2)"
            ),
            params![p.now - MIN_RETENTION_MS, over as i64],
        )?;
    }
    let purged = Purged { deliveries, alerts };
    if purged != Purged::default() {
        info!(
            deliveries = purged.deliveries,
            alerts = purged.alerts,
            "purged webhook deliveries and resolved alerts past their retention"
        );
    }
    Ok(purged)
}

/// Drop the pending rows of webhook `name` (removed from the config); returns how many.
pub fn drop_pending(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM alert_deliveries WHERE webhook = ?1 AND state = 'pending'",
        params![name],
    )
}

impl Store {
    /// How many deliveries webhook `name` still owes (pending rows).
    pub fn pending_deliveries(&self, name: &str) -> Result<usize, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM alert_deliveries WHERE webhook = ?1 AND state = 'pending'",
                params![name],
                |r| r.get::<_, i64>(0).map(|n| n as usize),
            )
        })
    }

    /// How many outbox rows there are, and how many alerts (for tests and upkeep).
    pub fn outbox_counts(&self) -> Result<(usize, usize), StoreError> {
        self.read(|c| {
            let rows: i64 =
                c.query_row("SELECT COUNT(*) FROM alert_deliveries", [], |r| r.get(0))?;
            let alerts: i64 = c.query_row("SELECT COUNT(*) FROM alerts", [], |r| r.get(0))?;
            Ok((rows as usize, alerts as usize))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::format::Status;
    use crate::store::{AlertFire, Batch, DeliveryRow, DeliveryState};

    const DAY: i64 = 24 * 3_600_000;

    fn fire(key: &str) -> AlertFire {
        AlertFire {
            kind: "queue_depth".into(),
            dedup_key: key.into(),
            message: "deep".into(),
            labels: Default::default(),
        }
    }

    fn row(webhook: &str, alert_id: i64, state: DeliveryState) -> DeliveryRow {
        DeliveryRow {
            webhook: webhook.into(),
            alert_id,
            status: Status::Firing,
            state,
            attempts: 1,
            next_at: 0,
            sent_at: 1,
            last_error: String::new(),
        }
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open").store;
        (dir, store)
    }

    async fn write(store: &Store, b: Batch) {
        store.write_and_wait(b).await.expect("commit");
    }

    async fn purge_with(store: &Store, p: Purge) {
        write(
            store,
            Batch {
                purge: Some(p),
                ..Default::default()
            },
        )
        .await;
    }

    fn ids(store: &Store) -> std::collections::BTreeMap<String, i64> {
        store
            .alerts_of_kinds(&["queue_depth"], 0)
            .expect("alerts")
            .into_iter()
            .map(|a| (a.dedup_key.clone(), a.id))
            .collect()
    }

    fn rows_of(store: &Store) -> Vec<(String, i64, String)> {
        store
            .read(|c| {
                let mut st = c.prepare(
                    "SELECT webhook, alert_id, state FROM alert_deliveries ORDER BY webhook, alert_id",
                )?;
                let rows = st
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .expect("rows")
    }

    /// Resolved alerts past the retention go with their rows; rows of firing alerts and of
    /// alerts resolved within the retention stay, pending ones too; what a purge sees as young
    /// never goes, whatever the cap says.
    #[tokio::test]
    async fn the_purge_takes_only_what_is_done_with() {
        let (_dir, store) = store().await;
        write(
            &store,
            Batch {
                fire: vec![fire("firing"), fire("resolved")],
                ..Default::default()
            },
        )
        .await;
        write(
            &store,
            Batch {
                resolve: vec!["resolved".into()],
                ..Default::default()
            },
        )
        .await;
        let id = ids(&store);
        let (firing, resolved) = (id["firing"], id["resolved"]);
        write(
            &store,
            Batch {
                deliveries: vec![
                    row("a", firing, DeliveryState::Delivered),
                    row("a", resolved, DeliveryState::Delivered),
                    row("b", resolved, DeliveryState::Failed),
                    row("c", resolved, DeliveryState::Pending),
                    // A row whose alert is gone (purged by hand, or an old store).
                    row("a", 9999, DeliveryState::Delivered),
                ],
                ..Default::default()
            },
        )
        .await;

        // Now: nothing is past a 7-day retention but the orphan row.
        let now = crate::time::now_ms();
        let week = Purge {
            now,
            deliveries_ms: 7 * DAY,
            alerts_ms: 30 * DAY,
            max_delivery_rows: 10_000,
        };
        purge_with(&store, week).await;
        assert_eq!(rows_of(&store).len(), 4, "{:?}", rows_of(&store));
        assert!(!rows_of(&store).iter().any(|r| r.1 == 9999));

        // Eight days on: the resolved alert's done rows go; its pending row and the firing
        // alert's row stay, and so does the resolved alert itself (30-day retention).
        purge_with(
            &store,
            Purge {
                now: now + 8 * DAY,
                ..week
            },
        )
        .await;
        assert_eq!(
            rows_of(&store),
            vec![
                ("a".to_string(), firing, "delivered".to_string()),
                ("c".to_string(), resolved, "pending".to_string()),
            ]
        );
        assert_eq!(store.outbox_counts().expect("counts"), (2, 2));

        // 31 days on: the resolved alert goes, with its pending row; the firing one stays.
        purge_with(
            &store,
            Purge {
                now: now + 31 * DAY,
                ..week
            },
        )
        .await;
        assert_eq!(
            rows_of(&store),
            vec![("a".to_string(), firing, "delivered".to_string())]
        );
        assert_eq!(ids(&store).keys().collect::<Vec<_>>(), vec!["firing"]);

        // A cap of 0 cannot take the firing alert's row: without it the alert would be sent
        // again.
        purge_with(
            &store,
            Purge {
                now: now + 31 * DAY,
                max_delivery_rows: 0,
                ..week
            },
        )
        .await;
        assert_eq!(rows_of(&store).len(), 1);
    }

    /// Over the cap, the oldest rows of alerts resolved more than a day ago go first; the
    /// retentions cannot be set below a day.
    #[tokio::test]
    async fn the_cap_takes_the_oldest_and_retention_has_a_floor() {
        let (_dir, store) = store().await;
        let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
        write(
            &store,
            Batch {
                fire: keys.iter().map(|k| fire(k)).collect(),
                ..Default::default()
            },
        )
        .await;
        write(
            &store,
            Batch {
                resolve: keys.clone(),
                ..Default::default()
            },
        )
        .await;
        let id = ids(&store);
        write(
            &store,
            Batch {
                deliveries: keys
                    .iter()
                    .map(|k| row("a", id[k], DeliveryState::Delivered))
                    .collect(),
                ..Default::default()
            },
        )
        .await;
        let now = crate::time::now_ms();
        // Retentions of 0 are a day: nothing resolved just now goes, cap or not.
        purge_with(
            &store,
            Purge {
                now,
                deliveries_ms: 0,
                alerts_ms: 0,
                max_delivery_rows: 2,
            },
        )
        .await;
        assert_eq!(rows_of(&store).len(), 5);
        // Two days on, with long retentions: the cap of 2 takes the three oldest.
        purge_with(
            &store,
            Purge {
                now: now + 2 * DAY,
                deliveries_ms: 7 * DAY,
                alerts_ms: 30 * DAY,
                max_delivery_rows: 2,
            },
        )
        .await;
        let left: Vec<i64> = rows_of(&store).iter().map(|r| r.1).collect();
        assert_eq!(left, vec![id["k3"], id["k4"]]);
    }

    /// A removed webhook's pending rows are dropped; its done rows and other webhooks' pending
    /// rows stay.
    #[tokio::test]
    async fn dropping_a_webhooks_pending_rows_keeps_the_rest() {
        let (_dir, store) = store().await;
        write(
            &store,
            Batch {
                fire: vec![fire("x"), fire("y")],
                ..Default::default()
            },
        )
        .await;
        let id = ids(&store);
        write(
            &store,
            Batch {
                deliveries: vec![
                    row("gone", id["x"], DeliveryState::Pending),
                    row("gone", id["y"], DeliveryState::Delivered),
                    row("kept", id["x"], DeliveryState::Pending),
                ],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(store.pending_deliveries("gone").expect("count"), 1);
        write(
            &store,
            Batch {
                drop_pending: vec!["gone".into()],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(store.pending_deliveries("gone").expect("count"), 0);
        assert_eq!(
            rows_of(&store),
            vec![
                ("gone".to_string(), id["y"], "delivered".to_string()),
                ("kept".to_string(), id["x"], "pending".to_string()),
            ]
        );
    }
}
