//! Session cookie handling: the middleware that authenticates a request and re-issues the
//! cookie when its sliding expiry moved.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::Cookie;
use livechat_core::service::Authed;

use crate::error::ApiError;
use crate::AppState;

pub const COOKIE: &str = "session_id";

/// The `session_id` cookie of a request, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| Cookie::parse(kv.trim().to_string()).ok())
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// `Set-Cookie` for a session (HttpOnly, SameSite=Lax, Path=/; Secure when configured).
pub fn set_cookie(id: &str, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&v)
        .unwrap_or_else(|_| HeaderValue::from_static("session_id=; Max-Age=0; Path=/"))
}

/// `Set-Cookie` that deletes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    set_cookie("", 0, secure)
}

/// Authenticates the request (401 otherwise) and makes [`Authed`] available to handlers.
pub async fn require_session(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let cookie = session_cookie(req.headers());
    let authed = match st.svc.authenticate(cookie.as_deref()).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let refreshed = authed.refreshed.then(|| authed.session.clone());
    req.extensions_mut().insert(authed);
    let mut resp = next.run(req).await;
    if let Some(s) = refreshed {
        // Sliding expiry: the browser's cookie lives as long as the server-side session.
        if !resp.headers().contains_key(header::SET_COOKIE) {
            let secs = (s.expires_at - livechat_core::now()).num_seconds().max(1);
            resp.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&s.id.to_string(), secs, st.config.secure_cookies),
            );
        }
    }
    resp
}

/// The authenticated caller (present on every route behind [`require_session`]).
pub type Caller = axum::Extension<Authed>;
