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
//! stream sends `end` and finishes, so the listener's connections close cleanly. The board's
//! stream reads the daemon through [`BoardSource`], so that the lag and shutdown handling are
//! unit-tested with a stand-in.
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use tokio_util::sync::CancellationToken;

use super::{board, detail, feed, html, pages, HttpContext};
use crate::supervisor::{ApiError, RunEvent};

/// How long a burst of events is gathered before the fragment is drawn.
const GATHER: Duration = Duration::from_millis(100);

/// How often the figures that events do not carry (usage, ages, queues, alerts) are read again
/// for the board. The whole board is sent again then (its ages have changed): about 400 bytes a
/// run, so this is kept slow.
pub const BOARD_REFRESH: Duration = Duration::from_secs(5);

/// The same for a run's page (one run: small).
pub const RUN_REFRESH: Duration = Duration::from_secs(2);

/// How soon a fragment that found the browser behind is offered again.
const RETRY: Duration = Duration::from_millis(500);

/// Messages a stream may have unread before fragments are skipped.
const BACKLOG: usize = 8;

type Tx = mpsc::Sender<Result<Event, Infallible>>;

/// A stream with nothing to say for this long sends a comment, so proxies keep it open and a
/// browser that went away is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What offering a message found.
enum Sent {
    Ok,
    /// The browser is behind: offer it again later.
    Full,
    /// The browser left (or the daemon stops).
    Gone,
}

/// One browser's stream: the fragment it was last sent, and when anything was last sent.
struct Out {
    tx: Tx,
    /// The SSE event name of the fragments.
    event: &'static str,
    sent: String,
    last: Instant,
}

impl Out {
    fn new(tx: Tx, event: &'static str) -> Out {
        Out {
            tx,
            event,
            sent: String::new(),
            last: Instant::now(),
        }
    }

    /// Sends without waiting.
    fn try_send(&mut self, event: Event) -> Sent {
        match self.tx.try_send(Ok(event)) {
            Ok(()) => {
                self.last = Instant::now();
                Sent::Ok
            }
            Err(mpsc::error::TrySendError::Full(_)) => Sent::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
        }
    }

    /// Sends and waits for room (output must not be skipped), unless the daemon stops first.
    async fn send_all(&mut self, event: Event, stop: &CancellationToken) -> Sent {
        tokio::select! {
            r = self.tx.send(Ok(event)) => {
                if r.is_err() {
                    return Sent::Gone;
                }
                self.last = Instant::now();
                Sent::Ok
            }
            _ = stop.cancelled() => Sent::Gone,
        }
    }

    /// Offers a fragment: sent when it differs from the last one sent.
    fn fragment(&mut self, fragment: String) -> Sent {
        if fragment == self.sent {
            return Sent::Ok;
        }
        let sent = self.try_send(Event::default().event(self.event).data(&fragment));
        if let Sent::Ok = sent {
            self.sent = fragment;
        }
        sent
    }

    /// A comment when nothing was sent for [`KEEP_ALIVE`].
    fn keep_alive(&mut self) -> Sent {
        if self.last.elapsed() < KEEP_ALIVE {
            return Sent::Ok;
        }
        self.try_send(Event::default().comment("keep-alive"))
    }

    /// The `end` event: the daemon is going away (the browser reconnects by itself later).
    fn end(&mut self) {
        let _ = self.try_send(
            Event::default()
                .event("end")
                .data("the daemon is shutting down"),
        );
    }
}

/// When to draw again after offering a fragment, or None when the browser left.
fn after(sent: Sent) -> Option<Option<Instant>> {
    match sent {
        Sent::Ok => Some(None),
        Sent::Full => Some(Some(Instant::now() + RETRY)),
        Sent::Gone => None,
    }
}

fn stream(rx: mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    Sse::new(ReceiverStream::new(rx)).into_response()
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
    tokio::spawn(board_feed(ctx, tx, BOARD_REFRESH));
    stream(rx)
}

/// What the board's stream reads: the daemon (an [`HttpContext`]), or a test's stand-in, so that
/// the stream's handling of a lagging subscriber is tested without a daemon.
pub(crate) trait BoardSource {
    /// The Watch broadcast.
    fn subscribe(&self) -> broadcast::Receiver<RunEvent>;
    /// Fired at shutdown.
    fn stop(&self) -> &CancellationToken;
    async fn snapshot(&self) -> Result<board::Inputs, ApiError>;
    async fn figures(&self, inputs: &mut board::Inputs) -> Result<(), ApiError>;
}

impl BoardSource for HttpContext {
    fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.handle.subscribe()
    }

    fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    async fn snapshot(&self) -> Result<board::Inputs, ApiError> {
        feed::snapshot(self).await
    }

    async fn figures(&self, inputs: &mut board::Inputs) -> Result<(), ApiError> {
        feed::figures(self, inputs).await
    }
}

/// A fresh snapshot that keeps the last events seen of the runs it still has.
async fn resync(src: &impl BoardSource, inputs: &mut board::Inputs) -> Result<(), ApiError> {
    let mut fresh = src.snapshot().await?;
    let mut last = std::mem::take(&mut inputs.last_events);
    last.retain(|id, _| fresh.runs.contains_key(id));
    fresh.last_events = last;
    *inputs = fresh;
    Ok(())
}

/// The board's stream; `every` is how often it reads everything again.
async fn board_feed(src: impl BoardSource, tx: Tx, every: Duration) {
    // Subscribe first, then read, so that no change falls between the two.
    let mut events = src.subscribe();
    let mut inputs = board::Inputs::default();
    if resync(&src, &mut inputs).await.is_err() {
        return;
    }
    let mut out = Out::new(tx, "board");
    // Whether the queues' and alerts' figures were just read (by a snapshot).
    let mut fresh = true;
    let mut draw_at = Some(Instant::now());
    let mut refresh = tokio::time::interval_at(Instant::now() + every, every);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = src.stop().cancelled() => {
                // What the shutdown changed (the runs it ended) reaches the page before the end.
                while let Ok(ev) = events.try_recv() {
                    if feed::apply(&mut inputs, &ev) {
                        draw_at.get_or_insert(Instant::now());
                    }
                }
                if draw_at.is_some() {
                    let _ = out.fragment(html::board(&board::board(&inputs, crate::time::now_ms())));
                }
                return out.end();
            }
            _ = out.tx.closed() => return,
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if feed::apply(&mut inputs, &ev) && draw_at.is_none() {
                        draw_at = Some(Instant::now() + GATHER);
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "a status page stream fell behind: resyncing");
                    if resync(&src, &mut inputs).await.is_err() {
                        return;
                    }
                    fresh = true;
                    draw_at = Some(Instant::now());
                }
                Err(RecvError::Closed) => return,
            },
            _ = refresh.tick() => {
                if let Sent::Gone = out.keep_alive() {
                    return;
                }
                if resync(&src, &mut inputs).await.is_err() {
                    return;
                }
                fresh = true;
                draw_at = Some(Instant::now());
            }
            _ = until(draw_at) => {
                if !std::mem::take(&mut fresh) && src.figures(&mut inputs).await.is_err() {
                    return;
                }
                let fragment = html::board(&board::board(&inputs, crate::time::now_ms()));
                match after(out.fragment(fragment)) {
                    Some(next) => draw_at = next,
                    None => return,
                }
            }
        }
    }
}

/// `GET /runs/{id}/events`.
pub async fn run_events(State(ctx): State<HttpContext>, Path(id): Path<String>) -> Response {
    if let Some(resp) = pages::bad_run_id(&id) {
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
    mut events: broadcast::Receiver<RunEvent>,
    tx: Tx,
) {
    let id = run.run_id.clone();
    let mut run = crate::grpc::run_to_proto(&run);
    let mut audit = feed::audit_of(&ctx, &id).await;
    let mut out = Out::new(tx, "run");
    // A queued run has no output yet: its log is opened again once it has started.
    let mut log_queued = false;
    let mut log = match ctx.handle.logs(&id).await {
        Ok(source) => {
            log_queued = source.queued;
            let (tail, text) = feed::LogTail::open(&source, feed::LOG_TAIL_BYTES);
            if let Sent::Gone = out.try_send(log_event("log-reset", &text)) {
                return;
            }
            Some((tail, source.progress))
        }
        Err(_) => None,
    };
    let mut draw_at = Some(Instant::now());
    let mut refresh = tokio::time::interval_at(Instant::now() + RUN_REFRESH, RUN_REFRESH);
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
                // The run's last change (its end by the shutdown) reaches the page before the end.
                while let Ok(ev) = events.try_recv() {
                    if let (true, Some(r)) = (ev.run_id == id, &ev.run) {
                        run = crate::grpc::run_to_proto(r);
                        draw_at.get_or_insert(Instant::now());
                    }
                }
                if draw_at.is_some() {
                    audit = feed::audit_of(&ctx, &id).await;
                    let fragment =
                        html::run_detail(&detail::detail(&run, &audit, crate::time::now_ms()));
                    let _ = out.fragment(fragment);
                }
                return out.end();
            }
            _ = out.tx.closed() => return,
            ev = events.recv() => match ev {
                Ok(ev) if ev.run_id == id => {
                    if let Some(r) = &ev.run {
                        run = crate::grpc::run_to_proto(r);
                        if r.status.is_terminal() {
                            audit = feed::audit_of(&ctx, &id).await;
                        }
                        if log_queued && r.status != crate::run::RunStatus::Queued {
                            log_queued = false;
                            if let Ok(source) = ctx.handle.logs(&id).await {
                                let (tail, text) =
                                    feed::LogTail::open(&source, feed::LOG_TAIL_BYTES);
                                if let Sent::Gone = out.try_send(log_event("log-reset", &text)) {
                                    return;
                                }
                                log = Some((tail, source.progress));
                            }
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
                    if let Sent::Gone = out.send_all(log_event("log", &more), &ctx.stop).await {
                        return;
                    }
                }
                if done {
                    // The drains finished: nothing more will be written.
                    log = None;
                }
            }
            _ = refresh.tick() => {
                if let Sent::Gone = out.keep_alive() {
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
                let fragment = html::run_detail(&detail::detail(&run, &audit, crate::time::now_ms()));
                match after(out.fragment(fragment)) {
                    Some(next) => draw_at = next,
                    None => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::sync::Semaphore;

    use super::*;
    use crate::proto;

    /// A daemon stand-in: its snapshots are the test's, one per call, each let through by a
    /// permit of `gate`.
    struct Fake {
        events: broadcast::Sender<RunEvent>,
        stop: CancellationToken,
        snapshots: Mutex<VecDeque<board::Inputs>>,
        calls: AtomicUsize,
        gate: Semaphore,
    }

    #[derive(Clone)]
    struct Src(Arc<Fake>);

    impl BoardSource for Src {
        fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
            self.0.events.subscribe()
        }

        fn stop(&self) -> &CancellationToken {
            &self.0.stop
        }

        async fn snapshot(&self) -> Result<board::Inputs, ApiError> {
            self.0.gate.acquire().await.expect("the gate").forget();
            self.0.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.0.snapshots.lock().expect("lock").pop_front();
            next.ok_or_else(|| ApiError::Unavailable("no more snapshots".into()))
        }

        async fn figures(&self, _: &mut board::Inputs) -> Result<(), ApiError> {
            Ok(())
        }
    }

    fn with_run(status: proto::RunStatus) -> board::Inputs {
        let run = proto::Run {
            run_id: "run_5fbae44ab6f0".into(),
            status: status as i32,
            created_at: 1,
            ..proto::Run::default()
        };
        board::Inputs {
            runs: [(run.run_id.clone(), run)].into(),
            ..board::Inputs::default()
        }
    }

    /// One SSE message as text.
    fn data(event: &Event) -> String {
        format!("{event:?}")
    }

    #[tokio::test]
    async fn a_subscriber_that_lags_behind_sends_a_fresh_snapshot() {
        let (events, _) = broadcast::channel(2);
        let fake = Arc::new(Fake {
            events,
            stop: CancellationToken::new(),
            snapshots: Mutex::new(
                [
                    with_run(proto::RunStatus::Running),
                    with_run(proto::RunStatus::Killed),
                ]
                .into(),
            ),
            calls: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        });
        let (tx, mut rx) = mpsc::channel(BACKLOG);
        // No periodic refresh within the test: only the lag can bring the second snapshot.
        let feed = tokio::spawn(board_feed(
            Src(fake.clone()),
            tx,
            Duration::from_secs(86_400),
        ));
        while fake.events.receiver_count() == 0 {
            tokio::task::yield_now().await;
        }
        // While the stream waits for its first snapshot, more events come than the broadcast
        // keeps for it.
        for n in 0..5 {
            let _ = fake.events.send(RunEvent {
                run_id: "run_5fbae44ab6f0".into(),
                at: n,
                kind: "heartbeat",
                message: String::new(),
                status: crate::run::RunStatus::Running,
                run: None,
                heartbeat: Some((n, n as u64)),
            });
        }
        fake.gate.add_permits(2);
        let fresh = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let ev = rx
                    .recv()
                    .await
                    .expect("the stream goes on")
                    .expect("an event");
                if data(&ev).contains("KILLED") {
                    return;
                }
            }
        })
        .await;
        assert!(fresh.is_ok(), "no fresh snapshot after the stream lagged");
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            2,
            "one snapshot for the lag"
        );
        fake.stop.cancel();
        let end = rx.recv().await.expect("the end event").expect("an event");
        assert!(data(&end).contains("shutting down"), "{}", data(&end));
        assert!(rx.recv().await.is_none(), "the stream ends at shutdown");
        feed.await.expect("the stream's task");
    }
}
