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
//! attempt is decided by [`retry`]; both are pure.
pub mod deliver;
pub mod format;
pub mod plan;
pub mod retry;

pub use deliver::start;

/// The kind of the alert a webhook that cannot be delivered to raises.
pub const DELIVERY_FAILED: &str = "webhook_delivery_failed";

/// The dedup key of webhook `name`'s delivery-failure alert.
pub fn delivery_failed_key(name: &str) -> String {
    format!("webhook:{name}")
}
