//! The viewer check of a non-loopback HTTP listener, for every route: the caller shows a bearer
//! token of the API's tokens file, or a TLS client certificate that the API's policy grants a
//! role. Any role will do (every route is read-only). 401 without credentials or with an
//! unknown token (after the API's fixed delay), 403 without a role.
//!
//! A browser cannot send a bearer header when it loads a page, so the status page takes the
//! token once in the address (`/?token=wf_...`): a good one is answered with a redirect to the
//! same address without it, setting it as an HttpOnly, Secure, SameSite=Strict cookie that the
//! page, its assets and its event streams then send. The token is never logged nor written to
//! the audit trail; each refusal is audited (the caller's address, the path without its query,
//! why), at most once a minute per address (`refusals.rs`).
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::refusals::Verdict;
use super::HttpContext;
use crate::access::{Role, Subject};
use crate::grpc::listen::Peer;
use crate::store::{AuditRecord, Batch, Caller};

/// The cookie that carries a viewer's token.
pub const COOKIE: &str = "wf_token";

/// Where the credentials of a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Header,
    /// `?token=` in the address: answered with the cookie and a redirect.
    Query,
    Cookie,
    Cert,
}

/// A refusal: its status and why, in words without any secret.
struct Refusal {
    status: StatusCode,
    why: String,
    /// Clear a cookie that holds an unknown token.
    clear_cookie: bool,
}

/// The token of `?token=` in a query string (percent-decoded), if there is one.
pub fn query_token(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(percent_decode)
}

/// The query string without its `token` parameter.
pub fn query_without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && *kv != "token" && !kv.starts_with("token="))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of the token cookie, if the request has one.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The secret a request presents, and where it came from.
fn presented(req: &Request) -> Result<Option<(String, Source)>, Refusal> {
    let unauthorized = |why: &str| Refusal {
        status: StatusCode::UNAUTHORIZED,
        why: why.to_string(),
        clear_cookie: false,
    };
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let secret = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the authorization header must be \"Bearer TOKEN\""))?;
        return Ok(Some((secret.trim().to_string(), Source::Header)));
    }
    if let Some(t) = req.uri().query().and_then(query_token) {
        return Ok(Some((t, Source::Query)));
    }
    Ok(cookie_token(req.headers()).map(|t| (t.to_string(), Source::Cookie)))
}

/// Who the request's credentials name, or the refusal. Takes what it needs of the request
/// beforehand (a request is not `Sync`, so it cannot be held across the delay).
async fn subject_of(
    presented: Result<Option<(String, Source)>, Refusal>,
    cert_names: Option<Vec<String>>,
    ctx: &HttpContext,
) -> Result<(Subject, Option<Role>, Source), Refusal> {
    let state = ctx.access.current();
    if let Some((secret, source)) = presented? {
        let Some(t) = state.tokens.verify(&secret) else {
            // As the API does: guessing is slow.
            tokio::time::sleep(crate::grpc::auth::UNKNOWN_TOKEN_DELAY).await;
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                why: "unknown token".into(),
                clear_cookie: source == Source::Cookie,
            });
        };
        let subject = Subject::Token {
            name: t.name.clone(),
            role: t.role,
        };
        let role = state.policy.role_of(&subject);
        return Ok((subject, role, source));
    }
    match cert_names {
        Some(names) if !names.is_empty() => {
            let subject = Subject::Cert { names };
            let role = state.policy.role_of(&subject);
            Ok((subject, role, Source::Cert))
        }
        _ => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            why: "no credentials: send a token (authorization: Bearer TOKEN, or open the page \
                  once as /?token=TOKEN) or a client certificate"
                .into(),
            clear_cookie: false,
        }),
    }
}

pub async fn require_viewer(State(ctx): State<HttpContext>, req: Request, next: Next) -> Response {
    let cert_names = match req.extensions().get::<Peer>() {
        Some(Peer::Tcp { cert_names, .. }) => Some((**cert_names).clone()),
        _ => None,
    };
    let refusal = match subject_of(presented(&req), cert_names, &ctx).await {
        Ok((_, Some(role), source)) if role >= Role::Viewer => {
            if source == Source::Query {
                return to_cookie(&req);
            }
            return next.run(req).await;
        }
        Ok((subject, _, _)) => Refusal {
            status: StatusCode::FORBIDDEN,
            why: format!("{} has no role (viewer needed)", subject.describe()),
            clear_cookie: false,
        },
        Err(r) => r,
    };
    ctx.audit_refusal(&req, refusal.status, &refusal.why);
    let html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut resp = if html {
        super::pages::html(
            refusal.status,
            super::html::error_page(refusal.status, &refusal.why),
        )
    } else {
        (refusal.status, format!("{}\n", refusal.why)).into_response()
    };
    if refusal.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if refusal.clear_cookie {
        resp.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "wf_token=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
            ),
        );
    }
    resp
}

/// The answer to a good `?token=`: the same address without it, and the cookie.
fn to_cookie(req: &Request) -> Response {
    let rest = req
        .uri()
        .query()
        .map(query_without_token)
        .unwrap_or_default();
    let location = if rest.is_empty() {
        req.uri().path().to_string()
    } else {
        format!("{}?{rest}", req.uri().path())
    };
    let secret = req.uri().query().and_then(query_token).unwrap_or_default();
    let cookie = format!("{COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=Strict");
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    // A token is `wf_` and hex digits; anything else that verified is still sent safely or not
    // at all.
    match (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&cookie),
    ) {
        (Ok(l), Ok(c)) => {
            h.insert(header::LOCATION, l);
            h.insert(header::SET_COOKIE, c);
        }
        _ => return (StatusCode::BAD_REQUEST, "unusable token or address\n").into_response(),
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

impl HttpContext {
    /// Put a refused request on record (rate-limited per address); never its token.
    fn audit_refusal(&self, req: &Request, status: StatusCode, why: &str) {
        let (caller, certs) = match req.extensions().get::<Peer>() {
            Some(Peer::Tcp {
                addr, cert_names, ..
            }) => (Caller::Tcp(*addr), cert_names.first().cloned()),
            _ => (Caller::Unknown, None),
        };
        let verdict = match &caller {
            Caller::Tcp(a) => self
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refused(a.ip(), crate::time::now_ms()),
            _ => Verdict::Record {
                suppressed: 0,
                others: 0,
            },
        };
        let Verdict::Record { suppressed, others } = verdict else {
            return;
        };
        let path = super::board::clip(req.uri().path(), 256);
        let mut message = format!(
            "{} {}: {why}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        if suppressed > 0 {
            message.push_str(&format!(
                " ({suppressed} more from this address since its last record not recorded)"
            ));
        }
        if others > 0 {
            message.push_str(&format!(
                " ({others} from other addresses not recorded: too many addresses)"
            ));
        }
        tracing::info!(peer = %caller.describe(), status = status.as_u16(), path, "refused an HTTP request");
        let identity = certs.map(|c| format!("cert {c}")).unwrap_or_default();
        let rec = AuditRecord::new(
            caller,
            "http_request",
            "",
            json!({"method": req.method().as_str(), "path": path}),
        )
        .by(identity, "")
        .outcome("refused", message);
        self.store.write(
            Batch {
                audits: vec![rec],
                ..Batch::default()
            },
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_from_the_query_and_dropped_from_it() {
        assert_eq!(query_token("token=wf_abc").as_deref(), Some("wf_abc"));
        assert_eq!(query_token("a=1&token=wf_%61b").as_deref(), Some("wf_ab"));
        assert_eq!(query_token("a=1"), None);
        assert_eq!(query_without_token("token=wf_abc"), "");
        assert_eq!(query_without_token("a=1&token=wf_abc&b=2"), "a=1&b=2");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; wf_token=wf_abc; x=1"),
        );
        assert_eq!(cookie_token(&h), Some("wf_abc"));
        let mut other = HeaderMap::new();
        other.insert(header::COOKIE, HeaderValue::from_static("wf_tokenx=1"));
        assert_eq!(cookie_token(&other), None);
    }
}
