//! The daemon's HTTP listener (`[metrics] listen`): a small route table of read-only pages
//! served beside the gRPC API: `/metrics`, and the status page (`/`, `/runs/ID`, their event
//! streams and assets). Theory of operation: [`serve`] accepts connections through the same
//! code as the API's TCP listener (`grpc::listen`: plaintext, or TLS with the reloadable
//! settings), attaches each connection's [`Peer`] to its requests, and hands them to an axum
//! [`Router`] built by [`router`] from [`ROUTES`]. Handlers live in their own files and reach the
//! daemon through [`HttpContext`]: the core's handle (List, Get, Watch's event broadcast through
//! `subscribe`), the store, the metrics and the access settings. Nothing served here changes a
//! run: the status page has no caller identity to authorize actions with, so it has none.
//!
//! The status page: `board.rs` and `detail.rs` are its pure models (the same header and runs
//! table as `wfctl top`), `html.rs` renders and escapes them, `feed.rs` reads the daemon,
//! `pages.rs` answers plain GETs with complete snapshots, `events.rs` keeps them live with
//! server-sent events fed by the Watch broadcast; `assets/` holds its style sheet and script.
//!
//! Access: a loopback address serves anyone on the host, as the unix socket's viewers could read
//! the same figures; any other address needs `[tls]` (refused at start without it, see
//! [`mode_for`]) and every request a viewer (a bearer token, the token cookie of the status page,
//! or a client certificate granted a role), decided in `auth.rs` with the API's own policy and
//! tokens; refusals are audited, at most once a minute per address (`refusals.rs`).
mod auth;
mod board;
mod detail;
mod events;
mod feed;
mod html;
mod metrics;
mod pages;
mod refusals;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, MethodRouter};
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::grpc::listen::{self, Peer, TlsSettings};
use crate::grpc::Access;
use crate::store::Store;
use crate::supervisor::SupervisorHandle;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct HttpContext {
    pub handle: SupervisorHandle,
    pub store: Store,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub access: Access,
    /// One scrape at a time (the scrape-time gauges are cleared and refilled).
    scrape: Arc<tokio::sync::Mutex<()>>,
    /// Fired at shutdown: the event streams end so the connections can close.
    stop: CancellationToken,
    /// Which refused requests are audited.
    refusals: Arc<std::sync::Mutex<refusals::Limiter>>,
}

impl HttpContext {
    pub fn new(
        handle: SupervisorHandle,
        store: Store,
        metrics: Arc<crate::metrics::Metrics>,
        access: Access,
    ) -> HttpContext {
        HttpContext {
            handle,
            store,
            metrics,
            access,
            scrape: Arc::default(),
            stop: CancellationToken::new(),
            refusals: Arc::default(),
        }
    }
}

/// Makes the handler of one route.
pub type Handler = fn() -> MethodRouter<HttpContext>;

/// The route table: each path and its handler (read-only pages only; every route gets the
/// listener's access rule).
pub const ROUTES: &[(&str, Handler)] = &[
    ("/metrics", || get(metrics::get)),
    ("/", || get(pages::index)),
    ("/events", || get(events::board_events)),
    ("/runs/{id}", || get(pages::run)),
    ("/runs/{id}/events", || get(events::run_events)),
    ("/assets/status.css", || get(pages::css)),
    ("/assets/status.js", || get(pages::js)),
];

/// The listener's routes, behind the viewer check when `require_viewer`.
pub fn router(ctx: HttpContext, require_viewer: bool) -> Router {
    let mut r = Router::new();
    for (path, handler) in ROUTES {
        r = r.route(path, handler());
    }
    r = r.fallback(pages::not_found);
    if require_viewer {
        r = r.layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_viewer,
        ));
    }
    r.with_state(ctx)
}

/// How the listener on an address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Loopback: plaintext, anyone on the host.
    Loopback,
    /// Elsewhere: TLS, viewers only.
    TlsViewers,
}

/// Decide how `addr` is served, or why it may not be.
pub fn mode_for(addr: SocketAddr, tls_configured: bool) -> Result<Mode, String> {
    if addr.ip().is_loopback() {
        return Ok(Mode::Loopback);
    }
    if !tls_configured {
        return Err(format!(
            "refusing metrics.listen = \"{addr}\": it is not a loopback address, so it needs \
             [tls] cert and key (scrapers then send a viewer token or client certificate); or \
             listen on 127.0.0.1"
        ));
    }
    Ok(Mode::TlsViewers)
}

/// Bind `addr` and serve the routes until `stop`. `tls` must be given for a non-loopback
/// address (see [`mode_for`]).
pub async fn serve(
    addr: SocketAddr,
    tls: Option<TlsSettings>,
    ctx: HttpContext,
    stop: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let ctx = HttpContext {
        stop: stop.clone(),
        ..ctx
    };
    let mode = mode_for(addr, tls.is_some()).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok(match (mode, tls) {
        (Mode::TlsViewers, Some(tls)) => {
            info!(addr = %local, "serving /metrics and the status page over HTTPS (viewers only)");
            let app = router(ctx, true);
            tokio::spawn(accept_loop(listen::tls_incoming(listener, tls), app, stop))
        }
        _ => {
            info!(addr = %local, "serving /metrics and the status page over HTTP (loopback)");
            let app = router(ctx, false);
            tokio::spawn(accept_loop(listen::tcp_incoming(listener), app, stop))
        }
    })
}

/// Serve each connection of `incoming` in its own task (HTTP/1.1 or 2), its peer attached to every
/// request, until `stop`; open connections are then closed gracefully, and the loop returns
/// once they are (or after a short bound), so the daemon exits with every stream's last event
/// sent.
async fn accept_loop<S, I>(incoming: I, app: Router, stop: CancellationToken)
where
    I: futures::Stream<Item = std::io::Result<listen::PeerStream<S>>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures::StreamExt;
    use tonic::transport::server::Connected;
    let mut incoming = std::pin::pin!(incoming);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let conn = tokio::select! {
            _ = stop.cancelled() => break,
            c = incoming.next() => match c {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    debug!(error = %e, "HTTP accept failed");
                    continue;
                }
                None => break,
            },
        };
        let peer: Peer = conn.connect_info();
        let app = app.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let svc = tower::ServiceExt::map_request(
                app,
                move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req
                },
            );
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            // HTTP/1.1, or HTTP/2 for scrapers that negotiate it (ALPN) or speak it directly.
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(conn), svc);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        warn!(error = %e, "HTTP connection did not close cleanly");
                    }
                }
            }
        });
    }
    let closing = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(2), closing)
        .await
        .is_err()
    {
        debug!("HTTP connections still open at the end of the shutdown; dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_open_elsewhere_needs_tls() {
        let lo: SocketAddr = "127.0.0.1:9464".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:9464".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:9464".parse().expect("addr");
        assert_eq!(mode_for(lo, false), Ok(Mode::Loopback));
        assert_eq!(mode_for(lo6, true), Ok(Mode::Loopback));
        assert_eq!(mode_for(any, true), Ok(Mode::TlsViewers));
        let e = mode_for(any, false).expect_err("refused");
        assert!(e.contains("metrics.listen") && e.contains("[tls]"), "{e}");
    }
}
