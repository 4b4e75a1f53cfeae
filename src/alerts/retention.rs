//! The outbox's retention: once at start and then every hour, the store's writer purges the
//! webhook deliveries that are done with (delivered or given up) of alerts resolved more than
//! [`DELIVERY_RETENTION_MS`] ago, resolved alerts older than [`ALERT_RETENTION_MS`] with their
//! rows, and, above [`MAX_DELIVERY_ROWS`] done rows, the oldest of those resolved more than a day ago.
//! What a delivery task still reconciles against is never purged (see `store::outbox`). The
//! purge is one batch for the writer, so it never blocks the core or an API call.
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::{Batch, Purge, Store};

const DAY_MS: i64 = 24 * 3_600_000;
/// Delivered or given-up outbox rows stay this long after their alert resolved.
pub const DELIVERY_RETENTION_MS: i64 = 7 * DAY_MS;
/// Resolved alerts (what `wfctl alerts` lists as history) stay this long.
pub const ALERT_RETENTION_MS: i64 = 30 * DAY_MS;
/// At most this many delivered or given-up outbox rows stay.
pub const MAX_DELIVERY_ROWS: usize = 10_000;
/// How often the purge runs.
const EVERY: Duration = Duration::from_secs(3600);

/// The purge as of `now`.
pub fn purge_at(now: i64) -> Purge {
    Purge {
        now,
        deliveries_ms: DELIVERY_RETENTION_MS,
        alerts_ms: ALERT_RETENTION_MS,
        max_delivery_rows: MAX_DELIVERY_ROWS,
    }
}

/// Purge now and every hour until `stop`.
pub fn start(store: Store, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let batch = Batch {
                purge: Some(purge_at(crate::time::now_ms())),
                ..Default::default()
            };
            if let Err(e) = store.write_and_wait(batch).await {
                warn!(error = %e, "cannot purge the webhook outbox");
            }
        }
    })
}
