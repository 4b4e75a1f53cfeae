//! The viewer check of a non-loopback HTTP listener: the caller shows a bearer token of the
//! API's tokens file, or a TLS client certificate that the API's policy grants a role. Any role
//! will do (every route is read-only). 401 without credentials, 403 without a role.
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::HttpContext;
use crate::access::{Role, Subject};
use crate::grpc::listen::Peer;

/// Who the request's credentials name, or the refusal.
fn subject_of(req: &Request, ctx: &HttpContext) -> Result<(Subject, Option<Role>), Response> {
    let state = ctx.access.current();
    let unauthorized = |msg: &str| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{msg}\n"),
        )
            .into_response()
    };
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let secret = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the authorization header must be \"Bearer TOKEN\""))?;
        let t = state
            .tokens
            .verify(secret)
            .ok_or_else(|| unauthorized("unknown token"))?;
        let subject = Subject::Token {
            name: t.name.clone(),
            role: t.role,
        };
        let role = state.policy.role_of(&subject);
        return Ok((subject, role));
    }
    match req.extensions().get::<Peer>() {
        Some(Peer::Tcp { cert_names, .. }) if !cert_names.is_empty() => {
            let subject = Subject::Cert {
                names: (**cert_names).clone(),
            };
            let role = state.policy.role_of(&subject);
            Ok((subject, role))
        }
        _ => Err(unauthorized(
            "no credentials: send a token (authorization: Bearer TOKEN) or a client certificate",
        )),
    }
}

pub async fn require_viewer(State(ctx): State<HttpContext>, req: Request, next: Next) -> Response {
    match subject_of(&req, &ctx) {
        Ok((_, Some(role))) if role >= Role::Viewer => next.run(req).await,
        Ok((subject, _)) => (
            StatusCode::FORBIDDEN,
            format!("{} has no role (viewer needed)\n", subject.describe()),
        )
            .into_response(),
        Err(refusal) => refusal,
    }
}
