//! Alerts that reach people: every alert the daemon stores (stuck runs, queue alerts, a
//! restart policy that gave up, a quarantined store, agents running as root, webhook
//! deliveries failing) is delivered to the `[[alerts.webhooks]]` that take its kind.
//!
//! Theory of operation: the alert model is the store's (`alerts`: kind, dedup key, labels,
//! summary, first and last seen, firing then resolved or acknowledged), and the outbox is
//! beside it (`alert_deliveries`: what each webhook was sent of each alert, and what it still
//! owes), so that both are durable in one database and survive a restart. Nobody enqueues:
//! one task per webhook (`deliver.rs`) reconciles, with the pure [`plan::plan`], what the
//! alerts are against what it sent, and attempts what is due, woken by the store after any
//! commit that touched alerts, and by its own next retry or repeat. So neither the core nor
//! an API call ever waits for a receiver. Bodies are built by [`format`], and what follows an
//! attempt is decided by [`retry`]; both are pure. What is done with is purged by
//! [`retention`]; a reload hands the tasks the new webhooks (`deliver::Deliveries::reload`).
pub mod deliver;
pub mod format;
pub mod plan;
pub mod retention;
pub mod retry;

pub use deliver::start;

/// The kind of the alert a webhook that cannot be delivered to raises.
pub const DELIVERY_FAILED: &str = "webhook_delivery_failed";

/// The dedup key of webhook `name`'s delivery-failure alert.
pub fn delivery_failed_key(name: &str) -> String {
    format!("webhook:{name}")
}

/// The alert a run's end raises, if any: `run_timed_out` for a run TIMED_OUT (its timeout or
/// a stuck rule's kill), `kill_survivors` for a run whose kill left processes behind. These
/// are events, not conditions that go away: they fire until an operator acknowledges them.
pub fn end_alert(
    r: &crate::run::RunRecord,
    left_survivors: bool,
) -> Option<crate::store::AlertFire> {
    let (kind, key, message) = if left_survivors {
        (
            "kill_survivors",
            format!("survivors:{}", r.run_id),
            format!(
                "run {} was ended but processes survived: {}",
                r.run_id, r.error
            ),
        )
    } else if r.status == crate::run::RunStatus::TimedOut {
        (
            "run_timed_out",
            format!("timed_out:{}", r.run_id),
            format!("run {} timed out: {}", r.run_id, r.end_reason),
        )
    } else {
        return None;
    };
    let mut labels = std::collections::BTreeMap::new();
    labels.insert("run_id".to_string(), r.run_id.clone());
    labels.insert("queue".to_string(), r.spec.policy.queue.clone());
    if let Some(a) = &r.spec.agent {
        labels.insert("workflow".to_string(), a.workflow.clone());
    }
    Some(crate::store::AlertFire {
        kind: kind.to_string(),
        dedup_key: key,
        message,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunStatus;

    #[test]
    fn timeouts_and_survivors_raise_alerts_other_ends_do_not() {
        let mut r = crate::metrics::tests::record(RunStatus::TimedOut, "batch", None);
        r.end_reason = "timeout: 60s".into();
        let a = end_alert(&r, false).expect("an alert");
        assert_eq!(a.kind, "run_timed_out");
        assert_eq!(a.dedup_key, format!("timed_out:{}", r.run_id));
        assert_eq!(a.labels.get("queue").map(String::as_str), Some("batch"));
        assert!(a.message.contains("timeout: 60s"), "{}", a.message);
        r.status = RunStatus::Killed;
        assert_eq!(
            end_alert(&r, true).map(|a| a.kind),
            Some("kill_survivors".into())
        );
        assert!(end_alert(&r, false).is_none());
        r.status = RunStatus::Succeeded;
        assert!(end_alert(&r, false).is_none());
    }
}
