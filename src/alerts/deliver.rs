//! The delivery tasks: one per webhook, each reconciling its outbox rows with the alerts and
//! posting what is due (see the module above). The webhook's URL is never logged.
//!
//! [`Deliveries`] holds the tasks. A reload (SIGHUP) hands it the new `[alerts]`: what changes
//! is decided by the pure [`reload_plan`]; a webhook removed or changed has its task stopped
//! (an attempt in flight is abandoned: at worst a changed receiver hears of an alert twice),
//! a new or changed one gets a fresh task, and a removed one's pending outbox rows are dropped,
//! with its delivery-failure alert resolved (nothing can deliver to it any more).
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::format;
use super::plan::{plan, Route, Send};
use super::retry::{self, Attempt, Next, RetryPolicy};
use crate::config::{AlertsConfig, WebhookConfig};
use crate::metrics::Metrics;
use crate::store::{Alert, AlertFire, Batch, DeliveryRow, DeliveryState, Store};

/// How far back resolved alerts are still reconciled, and how many alerts at most.
const LOOKBACK_MS: i64 = 24 * 3_600_000;
const MAX_ALERTS: usize = 1000;
/// The longest a task sleeps with nothing due (a safety net; changes wake it at once).
const IDLE: Duration = Duration::from_secs(60);

struct Shared {
    store: Store,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    retry: RetryPolicy,
    repeat_interval: Duration,
    host: String,
}

/// The delivery tasks of the configured webhooks; they end with the daemon's `stop`.
pub struct Deliveries {
    store: Store,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    cfg: AlertsConfig,
    shared: Option<Arc<Shared>>,
    tasks: BTreeMap<String, Task>,
}

struct Task {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// What a reload changes of the delivery tasks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Webhooks whose task stops: removed ones and changed ones (by name).
    pub stop: Vec<String>,
    /// Webhooks that get a new task: new ones and changed ones (by name).
    pub start: Vec<String>,
    /// Webhooks no longer configured: their pending deliveries are dropped.
    pub removed: Vec<String>,
}

/// Compare the webhooks before and after a reload. When the settings all tasks share
/// (`timeout`, `retry_*`, `repeat_interval`) change, every task is restarted.
pub fn reload_plan(old: &AlertsConfig, new: &AlertsConfig) -> ReloadPlan {
    let settings_changed = old.timeout != new.timeout
        || old.retry != new.retry
        || old.repeat_interval != new.repeat_interval;
    let old_by: BTreeMap<&str, &WebhookConfig> =
        old.webhooks.iter().map(|h| (h.name.as_str(), h)).collect();
    let new_by: BTreeMap<&str, &WebhookConfig> =
        new.webhooks.iter().map(|h| (h.name.as_str(), h)).collect();
    let mut p = ReloadPlan::default();
    for (name, hook) in &old_by {
        match new_by.get(name) {
            None => {
                p.stop.push(name.to_string());
                p.removed.push(name.to_string());
            }
            Some(n) if settings_changed || n != hook => p.stop.push(name.to_string()),
            Some(_) => {}
        }
    }
    for (name, hook) in &new_by {
        match old_by.get(name) {
            Some(o) if !settings_changed && o == hook => {}
            _ => p.start.push(name.to_string()),
        }
    }
    p
}

/// What a reload did, for the log.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub plan: ReloadPlan,
    /// Pending deliveries dropped, per removed webhook.
    pub dropped: Vec<(String, usize)>,
}

/// Start one delivery task per configured webhook; they end with `stop`.
pub fn start(
    cfg: &AlertsConfig,
    store: Store,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Deliveries, String> {
    let mut d = Deliveries {
        store,
        metrics,
        stop,
        cfg: AlertsConfig {
            webhooks: Vec::new(),
            ..cfg.clone()
        },
        shared: None,
        tasks: BTreeMap::new(),
    };
    // The HTTP client is built only when there is somewhere to deliver to.
    if !cfg.webhooks.is_empty() {
        d.shared = Some(d.build_shared(cfg)?);
    }
    for hook in &cfg.webhooks {
        d.spawn(hook.clone());
    }
    d.cfg = cfg.clone();
    Ok(d)
}

impl Deliveries {
    fn build_shared(&self, cfg: &AlertsConfig) -> Result<Arc<Shared>, String> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // A redirect would carry the alert somewhere the config does not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wf-supervisor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Ok(Arc::new(Shared {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            client,
            retry: cfg.retry,
            repeat_interval: cfg.repeat_interval,
            host,
        }))
    }

    fn spawn(&mut self, hook: WebhookConfig) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        info!(
            webhook = hook.name.as_str(),
            format = hook.format.as_str(),
            kinds = ?hook.kinds,
            "delivering alerts to a webhook"
        );
        let cancel = self.stop.child_token();
        let name = hook.name.clone();
        let handle = tokio::spawn(run(hook, shared, cancel.clone()));
        self.tasks.insert(name, Task { cancel, handle });
    }

    /// The webhooks with a delivery task now.
    pub fn webhooks(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Take a reloaded `[alerts]`: stop the tasks of removed and changed webhooks, drop the
    /// removed ones' pending deliveries, start the new and changed ones. `Err` (the webhook
    /// client cannot be built) changes nothing.
    pub async fn reload(&mut self, cfg: &AlertsConfig) -> Result<Reloaded, String> {
        let plan = reload_plan(&self.cfg, cfg);
        if plan.start.is_empty() && plan.stop.is_empty() {
            self.cfg = cfg.clone();
            return Ok(Reloaded {
                plan,
                dropped: Vec::new(),
            });
        }
        let shared = if cfg.webhooks.is_empty() {
            None
        } else {
            Some(self.build_shared(cfg)?)
        };
        for name in &plan.stop {
            if let Some(t) = self.tasks.remove(name) {
                t.cancel.cancel();
                // The task ends at its next await; an attempt in flight is abandoned.
                let abort = t.handle.abort_handle();
                if tokio::time::timeout(Duration::from_secs(2), t.handle)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
                info!(
                    webhook = name.as_str(),
                    "stopped delivering alerts to a webhook"
                );
            }
        }
        let mut dropped = Vec::new();
        for name in &plan.removed {
            match self.drop_pending(name).await {
                Ok(n) => {
                    info!(
                        webhook = name.as_str(),
                        dropped = n,
                        "the webhook was removed from the config; its pending deliveries are dropped"
                    );
                    dropped.push((name.clone(), n));
                }
                // Nothing delivers them any more: left in the outbox, the retention takes them.
                Err(e) => warn!(
                    webhook = name.as_str(),
                    error = %e,
                    "cannot drop the pending deliveries of a removed webhook"
                ),
            }
        }
        self.shared = shared;
        let by_name: BTreeMap<&str, &WebhookConfig> =
            cfg.webhooks.iter().map(|h| (h.name.as_str(), h)).collect();
        for name in &plan.start {
            if let Some(hook) = by_name.get(name.as_str()) {
                self.spawn((*hook).clone());
            }
        }
        self.cfg = cfg.clone();
        Ok(Reloaded { plan, dropped })
    }

    /// Drop webhook `name`'s pending outbox rows and resolve its delivery-failure alert;
    /// returns how many rows were dropped.
    async fn drop_pending(&self, name: &str) -> Result<usize, String> {
        let store = self.store.clone();
        let n = name.to_string();
        let pending = tokio::task::spawn_blocking(move || store.pending_deliveries(&n))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let batch = Batch {
            drop_pending: vec![name.to_string()],
            resolve: vec![super::delivery_failed_key(name)],
            ..Default::default()
        };
        self.store
            .write_and_wait(batch)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pending)
    }
}

async fn run(hook: WebhookConfig, shared: Arc<Shared>, stop: CancellationToken) {
    let route = Route {
        kinds: hook.kinds.clone(),
        send_resolved: hook.send_resolved,
        repeat_interval: shared.repeat_interval,
    };
    let mut changes = shared.store.alert_changes();
    // Unknown at start: the first success resolves a failure alert left by an earlier daemon.
    let mut failing = true;
    loop {
        changes.borrow_and_update();
        let now = crate::time::now_ms();
        let store = shared.store.clone();
        let name = hook.name.clone();
        let view = tokio::task::spawn_blocking(move || {
            store.outbox_view(&name, now - LOOKBACK_MS, MAX_ALERTS)
        })
        .await;
        let (alerts, rows) = match view {
            Ok(Ok(v)) => v,
            other => {
                warn!(webhook = hook.name.as_str(), error = ?other.err(), "cannot read the outbox");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let rows: HashMap<i64, DeliveryRow> = rows.into_iter().map(|r| (r.alert_id, r)).collect();
        let p = plan(&route, &alerts, &rows, now);
        let by_id: BTreeMap<i64, &Alert> = alerts.iter().map(|a| (a.id, a)).collect();
        let mut wrote = false;
        for send in &p.sends {
            if stop.is_cancelled() {
                return;
            }
            let Some(a) = by_id.get(&send.alert_id) else {
                continue;
            };
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                r = attempt(&hook, &shared, a, send, &mut failing) => r,
            };
            match r {
                Ok(()) => wrote = true,
                Err(e) => {
                    warn!(webhook = hook.name.as_str(), error = %e, "cannot record a delivery");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if wrote {
            continue;
        }
        let wait = p
            .wake_at
            .map(|at| Duration::from_millis((at - crate::time::now_ms()).max(0) as u64))
            .unwrap_or(IDLE)
            .min(IDLE);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// POST one notification, then record how it went (and raise or resolve the webhook's failure
/// alert) in one commit.
async fn attempt(
    hook: &WebhookConfig,
    shared: &Shared,
    a: &Alert,
    send: &Send,
    failing: &mut bool,
) -> Result<(), String> {
    let body = format::body(hook.format, a, send.status, &shared.host, &hook.name);
    let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let outcome = match shared
        .client
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .await
    {
        Ok(resp) => Attempt::Status(resp.status().as_u16()),
        // Without the URL: it may hold the webhook's secret.
        Err(e) => Attempt::NoAnswer(describe(&e.without_url())),
    };
    let now = crate::time::now_ms();
    let next = retry::next(&shared.retry, send.attempt, &outcome);
    let mut row = DeliveryRow {
        webhook: hook.name.clone(),
        alert_id: a.id,
        status: send.status,
        state: DeliveryState::Pending,
        attempts: send.attempt,
        next_at: 0,
        sent_at: 0,
        last_error: String::new(),
    };
    let mut batch = Batch::default();
    let result = match &next {
        Next::Delivered => {
            row.state = DeliveryState::Delivered;
            row.sent_at = now;
            if *failing {
                batch.resolve.push(super::delivery_failed_key(&hook.name));
                *failing = false;
            }
            "delivered"
        }
        Next::Retry(after) => {
            row.next_at = now + after.as_millis() as i64;
            row.last_error = describe_attempt(&outcome);
            "retried"
        }
        Next::GiveUp(why) => {
            row.state = DeliveryState::Failed;
            row.last_error = why.clone();
            *failing = true;
            let mut labels = BTreeMap::new();
            labels.insert("webhook".to_string(), hook.name.clone());
            batch.fire.push(AlertFire {
                kind: super::DELIVERY_FAILED.into(),
                dedup_key: super::delivery_failed_key(&hook.name),
                message: format!(
                    "webhook {} could not be sent the {} {} alert ({}): {why}",
                    hook.name,
                    send.status.as_str(),
                    a.kind,
                    a.id
                ),
                labels,
            });
            "failed"
        }
    };
    let level_warn = !matches!(next, Next::Delivered);
    if level_warn {
        warn!(
            webhook = hook.name.as_str(),
            alert_id = a.id,
            kind = a.kind.as_str(),
            status = send.status.as_str(),
            attempt = send.attempt,
            outcome = describe_attempt(&outcome),
            result,
            "webhook delivery did not succeed"
        );
    } else {
        debug!(
            webhook = hook.name.as_str(),
            alert_id = a.id,
            status = send.status.as_str(),
            attempt = send.attempt,
            "webhook delivery succeeded"
        );
    }
    shared
        .metrics
        .webhook_delivery(hook.format.as_str(), result);
    batch.deliveries.push(row);
    shared
        .store
        .write_and_wait(batch)
        .await
        .map_err(|e| e.to_string())
}

fn describe_attempt(a: &Attempt) -> String {
    match a {
        Attempt::Status(s) => format!("HTTP {s}"),
        Attempt::NoAnswer(e) => e.clone(),
    }
}

/// A client error in words, with its causes (the URL already taken out).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::format::Format;

    fn hook(name: &str, url: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            format: Format::Json,
            kinds: Vec::new(),
            send_resolved: true,
        }
    }

    fn alerts(hooks: &[WebhookConfig]) -> AlertsConfig {
        AlertsConfig {
            webhooks: hooks.to_vec(),
            ..AlertsConfig::default()
        }
    }

    #[test]
    fn a_reload_restarts_only_what_changed() {
        let old = alerts(&[
            hook("keep", "http://a"),
            hook("change", "http://b"),
            hook("gone", "http://c"),
        ]);
        let new = alerts(&[
            hook("keep", "http://a"),
            hook("change", "http://B"),
            hook("new", "http://d"),
        ]);
        let p = reload_plan(&old, &new);
        assert_eq!(p.stop, vec!["change", "gone"]);
        assert_eq!(p.start, vec!["change", "new"]);
        assert_eq!(p.removed, vec!["gone"]);
        assert_eq!(reload_plan(&new, &new), ReloadPlan::default());
    }

    #[test]
    fn changed_shared_settings_restart_every_task() {
        let old = alerts(&[hook("a", "http://a"), hook("b", "http://b")]);
        let mut new = old.clone();
        new.timeout = Duration::from_secs(1);
        let p = reload_plan(&old, &new);
        assert_eq!(p.stop, vec!["a", "b"]);
        assert_eq!(p.start, vec!["a", "b"]);
        assert!(p.removed.is_empty());
    }
}
