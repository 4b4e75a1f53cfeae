//! The status page's server-sent events, fed by the core's Watch broadcast: `/events` sends the
//! board fragment of `/` (event `board`), `/runs/{id}/events` the detail fragment of a run's page
//! (event `run`) and its new output (event `log`, a JSON string the script appends as text;
//! `log-reset` replaces it). Theory of operation: each stream is one task that subscribes to the
//! broadcast first, then reads a snapshot, and from then on folds every event in; a state change
//! draws the fragment again after a short pause that gathers a burst of events into one message,
//! and a slow refresh re-reads the runs for what events do not carry (usage figures, ages, the
//! queues' and alerts' figures). A subscriber that lags behind the broadcast takes a fresh
//! snapshot instead of the events it missed. A fragment is sent only when it changed, and never
//! waited for: a browser that does not read gets the next one instead. At daemon shutdown every
//! stream sends `end` and finishes, so the listener's connections close cleanly.
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::{board, detail, feed, html, pages, HttpContext};
use crate::supervisor::ApiError;

/// How long a burst of events is gathered before the fragment is drawn.
const GATHER: Duration = Duration::from_millis(100);

/// How often the figures that events do not carry are read again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Messages a stream may have unread before fragments are skipped.
const BACKLOG: usize = 8;

type Tx = mpsc::Sender<Result<Event, Infallible>>;

/// What sending a message found.
enum Sent {
    Ok,
    /// The browser is behind: try again later.
    Full,
    /// The browser left.
    Gone,
}

fn send(tx: &Tx, event: Event) -> Sent {
    match tx.try_send(Ok(event)) {
        Ok(()) => Sent::Ok,
        Err(mpsc::error::TrySendError::Full(_)) => Sent::Full,
        Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
    }
}

/// Sends and waits for room (output must not be skipped), unless the daemon stops meanwhile.
async fn send_all(tx: &Tx, event: Event, stop: &tokio_util::sync::CancellationToken) -> Sent {
    tokio::select! {
        r = tx.send(Ok(event)) => if r.is_ok() { Sent::Ok } else { Sent::Gone },
        _ = stop.cancelled() => Sent::Gone,
    }
}

fn stream(rx: mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    Sse::new(ReceiverStream::new(rx)).into_response()
}

/// A stream with nothing to say for this long sends a comment, so proxies keep it open and a
/// browser that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Whether a keep-alive comment is due since `last` was sent; sends it.
fn keep_alive(tx: &Tx, last: &mut Instant) -> Sent {
    if last.elapsed() < KEEP_ALIVE {
        return Sent::Ok;
    }
    *last = Instant::now();
    send(tx, Event::default().comment("keep-alive"))
}

/// The `end` event: the daemon is going away (the browser reconnects by itself later).
fn end_event() -> Event {
    Event::default()
        .event("end")
        .data("the daemon is shutting down")
}

/// Sleeps until `at`, or forever without one.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `GET /events`.
pub async fn board_events(State(ctx): State<HttpContext>) -> Response {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(board_feed(ctx, tx));
    stream(rx)
}

/// A fresh snapshot that keeps the last events seen of the runs it still has.
async fn resync(ctx: &HttpContext, inputs: &mut board::Inputs) -> Result<(), ApiError> {
    let mut fresh = feed::snapshot(ctx).await?;
    let mut last = std::mem::take(&mut inputs.last_events);
    last.retain(|id, _| fresh.runs.contains_key(id));
    fresh.last_events = last;
    *inputs = fresh;
    Ok(())
}

async fn board_feed(ctx: HttpContext, tx: Tx) {
    // Subscribe first, then read, so that no change falls between the two.
    let mut events = ctx.handle.subscribe();
    let mut inputs = board::Inputs::default();
    if resync(&ctx, &mut inputs).await.is_err() {
        return;
    }
    let mut sent = String::new();
    let mut last_sent = Instant::now();
    let mut draw_at = Some(Instant::now());
    let mut refresh = tokio::time::interval_at(Instant::now() + REFRESH, REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.stop.cancelled() => {
                let _ = send(&tx, end_event());
                return;
            }
            _ = tx.closed() => return,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if feed::apply(&mut inputs, &ev) && draw_at.is_none() {
                        draw_at = Some(Instant::now() + GATHER);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "a status page stream fell behind: resyncing");
                    if resync(&ctx, &mut inputs).await.is_err() {
                        return;
                    }
                    draw_at = Some(Instant::now());
                }
                Err(RecvError::Closed) => return,
            },
            _ = refresh.tick() => {
                if let Sent::Gone = keep_alive(&tx, &mut last_sent) {
                    return;
                }
                if resync(&ctx, &mut inputs).await.is_err() {
                    return;
                }
                draw_at = Some(Instant::now());
            }
            _ = until(draw_at) => {
                draw_at = None;
                if feed::figures(&ctx, &mut inputs).await.is_err() {
                    return;
                }
                let fragment = html::board(&board::board(&inputs, crate::time::now_ms()));
                if fragment == sent {
                    continue;
                }
                match send(&tx, Event::default().event("board").data(&fragment)) {
                    Sent::Ok => {
                        sent = fragment;
                        last_sent = Instant::now();
                    }
                    Sent::Full => draw_at = Some(Instant::now() + REFRESH / 4),
                    Sent::Gone => return,
                }
            }
        }
    }
}

/// `GET /runs/{id}/events`.
pub async fn run_events(State(ctx): State<HttpContext>, Path(id): Path<String>) -> Response {
    if let Err(resp) = pages::check_run_id(&id) {
        return resp;
    }
    // Subscribe first, then look the run up, so no change falls between the two.
    let events = ctx.handle.subscribe();
    let run = match ctx.handle.get(&id).await {
        Ok(r) => r,
        Err(ApiError::NotFound(_)) => {
            return pages::error(axum::http::StatusCode::NOT_FOUND, &format!("no run {id}"))
        }
        Err(e) => {
            return pages::error(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot read the run: {e}"),
            )
        }
    };
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(run_feed(ctx, run, events, tx));
    stream(rx)
}

fn log_event(kind: &'static str, text: &str) -> Event {
    // As a JSON string: the script adds it as text, never as markup.
    Event::default()
        .event(kind)
        .data(serde_json::Value::from(text).to_string())
}

async fn run_feed(
    ctx: HttpContext,
    run: crate::run::RunRecord,
    mut events: tokio::sync::broadcast::Receiver<crate::supervisor::RunEvent>,
    tx: Tx,
) {
    let id = run.run_id.clone();
    let mut run = crate::grpc::run_to_proto(&run);
    let mut audit = feed::audit_of(&ctx, &id).await;
    let mut log = match ctx.handle.logs(&id).await {
        Ok(source) => {
            let (tail, text) = feed::LogTail::open(&source, feed::LOG_TAIL_BYTES);
            if let Sent::Gone = send(&tx, log_event("log-reset", &text)) {
                return;
            }
            Some((tail, source.progress))
        }
        Err(_) => None,
    };
    let mut sent = String::new();
    let mut last_sent = Instant::now();
    let mut draw_at = Some(Instant::now());
    let mut refresh = tokio::time::interval_at(Instant::now() + REFRESH, REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let output = async {
            match log.as_mut() {
                Some((_, progress)) => progress.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctx.stop.cancelled() => {
                let _ = send(&tx, end_event());
                return;
            }
            _ = tx.closed() => return,
            ev = events.recv() => match ev {
                Ok(ev) if ev.run_id == id => {
                    if let Some(r) = &ev.run {
                        run = crate::grpc::run_to_proto(r);
                        if r.status.is_terminal() {
                            audit = feed::audit_of(&ctx, &id).await;
                        }
                        draw_at.get_or_insert(Instant::now() + GATHER);
                    } else if let Some((at, n)) = ev.heartbeat {
                        run.last_heartbeat_at = at;
                        run.heartbeats = n;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    match ctx.handle.get(&id).await {
                        Ok(r) => run = crate::grpc::run_to_proto(&r),
                        Err(_) => return,
                    }
                    draw_at = Some(Instant::now());
                }
                Err(RecvError::Closed) => return,
            },
            alive = output => {
                let Some((tail, progress)) = log.as_mut() else { continue };
                let done = !alive || progress.borrow_and_update().done;
                let more = tail.more();
                if !more.is_empty() {
                    if let Sent::Gone = send_all(&tx, log_event("log", &more), &ctx.stop).await {
                        return;
                    }
                    last_sent = Instant::now();
                }
                if done {
                    // The drains finished: nothing more will be written.
                    log = None;
                }
            }
            _ = refresh.tick() => {
                if let Sent::Gone = keep_alive(&tx, &mut last_sent) {
                    return;
                }
                match ctx.handle.get(&id).await {
                    Ok(r) => run = crate::grpc::run_to_proto(&r),
                    // Purged meanwhile: the page keeps what it last showed.
                    Err(ApiError::NotFound(_)) => continue,
                    Err(_) => return,
                }
                audit = feed::audit_of(&ctx, &id).await;
                draw_at = Some(Instant::now());
            }
            _ = until(draw_at) => {
                draw_at = None;
                let fragment = html::run_detail(&detail::detail(&run, &audit, crate::time::now_ms()));
                if fragment == sent {
                    continue;
                }
                match send(&tx, Event::default().event("run").data(&fragment)) {
                    Sent::Ok => {
                        sent = fragment;
                        last_sent = Instant::now();
                    }
                    Sent::Full => draw_at = Some(Instant::now() + REFRESH / 4),
                    Sent::Gone => return,
                }
            }
        }
    }
}
