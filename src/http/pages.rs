//! The status page's plain GETs: `/` (the header and the runs table), `/runs/ID` (a run's
//! detail, agent progress, kill report and log tail; 400 for what is not a run id, 404 for an
//! unknown one), the style sheet and script embedded in the binary, and a 404 page for any
//! other path. Each page is a complete snapshot, so it is useful without JavaScript; the script
//! then follows the page's event stream (`events.rs`). Every HTML answer forbids inline script
//! and anything from elsewhere (Content-Security-Policy), framing, sniffing and caching.
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{board, detail, feed, html, HttpContext};
use crate::supervisor::ApiError;

const CSS: &str = include_str!("assets/status.css");
const JS: &str = include_str!("assets/status.js");

/// What the pages may load: their own style sheet, script and event streams, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// An HTML answer with the page headers.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An error page.
pub fn error(status: StatusCode, why: &str) -> Response {
    html(status, html::error_page(status, why))
}

/// The error page of a failed read from the core.
fn unavailable(e: &ApiError) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("cannot read the runs: {e}"),
    )
}

/// The `400` answer for a path segment that is not a run id (echoed back escaped and clipped);
/// None for a run id.
pub fn bad_run_id(id: &str) -> Option<Response> {
    if crate::ids::is_run_id(id) {
        return None;
    }
    Some(error(
        StatusCode::BAD_REQUEST,
        &format!(
            "\"{}\" is not a run id: run ids are run_ and 12 lowercase hex digits, e.g. \
             run_5fbae44ab6f0",
            board::clip(id, 64)
        ),
    ))
}

/// `GET /`.
pub async fn index(State(ctx): State<HttpContext>) -> Response {
    match feed::snapshot(&ctx).await {
        Ok(inputs) => html(
            StatusCode::OK,
            html::index_page(&board::board(&inputs, crate::time::now_ms())),
        ),
        Err(e) => unavailable(&e),
    }
}

/// `GET /runs/{id}`.
pub async fn run(State(ctx): State<HttpContext>, Path(id): Path<String>) -> Response {
    if let Some(resp) = bad_run_id(&id) {
        return resp;
    }
    let run = match ctx.handle.get(&id).await {
        Ok(r) => crate::grpc::run_to_proto(&r),
        Err(ApiError::NotFound(_)) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no run {id} (never started here, or purged)"),
            )
        }
        Err(e) => return unavailable(&e),
    };
    let audit = feed::audit_of(&ctx, &id).await;
    let d = detail::detail(&run, &audit, crate::time::now_ms());
    let (log, note) = match ctx.handle.logs(&id).await {
        Ok(source) => (feed::LogTail::open(&source, feed::LOG_TAIL_BYTES).1, ""),
        Err(_) => (String::new(), "(no log files)"),
    };
    html(StatusCode::OK, html::run_page(&d, &log, note))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /assets/status.css`: the style sheet and the table's column rules.
pub async fn css() -> Response {
    static SHEET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sheet = SHEET.get_or_init(|| format!("{CSS}\n{}", html::column_rules()));
    asset("text/css; charset=utf-8", sheet.as_str())
}

/// `GET /assets/status.js`.
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// Any other path.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such page: the status page is / and /runs/RUN_ID; metrics are at /metrics",
    )
}
