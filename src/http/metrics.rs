//! `GET /metrics`: the registry in the OpenMetrics text format, after the scrape-time figures
//! (live runs, stuck runs, memory of live runs, alerts firing, the daemon's process) are read
//! from the core and the store.
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::HttpContext;
use crate::metrics::{live_figures, CONTENT_TYPE};
use crate::supervisor::Selector;

pub async fn get(State(ctx): State<HttpContext>) -> Response {
    let _one_at_a_time = ctx.scrape.lock().await;
    let selector = Selector {
        statuses: crate::run::RunStatus::LIVE.to_vec(),
        ..Selector::default()
    };
    let runs = match ctx.handle.list(selector, 0).await {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the runs: {e}\n"),
            )
                .into_response()
        }
    };
    let live = live_figures(&runs);
    let store = ctx.store.clone();
    let firing = tokio::task::spawn_blocking(move || store.firing_alert_counts())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            tracing::warn!("cannot count the firing alerts for /metrics");
            BTreeMap::new()
        });
    ctx.metrics.set_live(&live, &firing);
    match ctx.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}\n"),
        )
            .into_response(),
    }
}
