//! The delivery tasks: one per webhook, each reconciling its outbox rows with the alerts and
//! posting what is due (see the module above). The webhook's URL is never logged.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

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

/// Start one delivery task per configured webhook; they end with `stop`.
pub fn start(
    cfg: &AlertsConfig,
    store: Store,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    if cfg.webhooks.is_empty() {
        return Ok(Vec::new());
    }
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
    let shared = Arc::new(Shared {
        store,
        metrics,
        client,
        retry: cfg.retry,
        repeat_interval: cfg.repeat_interval,
        host,
    });
    Ok(cfg
        .webhooks
        .iter()
        .map(|hook| {
            info!(
                webhook = hook.name.as_str(),
                format = hook.format.as_str(),
                kinds = ?hook.kinds,
                "delivering alerts to a webhook"
            );
            tokio::spawn(run(hook.clone(), shared.clone(), stop.clone()))
        })
        .collect())
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
            match attempt(&hook, &shared, a, send, &mut failing).await {
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
