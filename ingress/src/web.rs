//! What the browser is told besides the content: the web client's files with revalidation
//! (`Cache-Control: no-cache` and a weak ETag, answered 304 when unchanged), and the security
//! headers every response carries (content security policy, no sniffing, no framing, no
//! referrer, HSTS behind HTTPS).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

use crate::AppState;

/// The web client: only its own scripts, styles and connections (the WebSocket is same-origin),
/// no plugins, no inline code, never framed. Its code sets styles through the CSSOM only, which
/// `style-src 'self'` allows.
const CLIENT_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The API docs page (Swagger UI starts itself with an inline script and styles).
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// A year, as browsers expect for HSTS.
const HSTS: &str = "max-age=31536000";

/// The web client's files. Their names carry no version, so browsers revalidate them at every
/// load (`no-cache`), which costs a 304 without a body while they are unchanged.
pub fn client(dir: &Path) -> Router {
    let files = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(revalidated))
}

/// Adds `Cache-Control: no-cache` and a weak ETag (the file's size and modification time) to a
/// file, and answers a matching `If-None-Match` with 304.
async fn revalidated(req: Request, next: Next) -> Response {
    let presented = req.headers().get(header::IF_NONE_MATCH).cloned();
    let mut res = next.run(req).await;
    let ok = res.status() == StatusCode::OK;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let (Some(modified), Some(len)) = (h.get(header::LAST_MODIFIED), h.get(header::CONTENT_LENGTH))
    else {
        return res;
    };
    let mut hasher = DefaultHasher::new();
    modified.as_bytes().hash(&mut hasher);
    len.as_bytes().hash(&mut hasher);
    let Ok(etag) = HeaderValue::from_str(&format!("W/\"{:016x}\"", hasher.finish())) else {
        return res;
    };
    let unchanged = presented.is_some_and(|p| {
        p.to_str()
            .is_ok_and(|p| p.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    });
    if ok && unchanged {
        let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
        let nh = not_modified.headers_mut();
        nh.insert(header::ETAG, etag);
        nh.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return not_modified;
    }
    h.insert(header::ETAG, etag);
    res
}

/// Headers on every response: the content security policy (the docs page gets a looser one),
/// no MIME sniffing, never framed by another site (clickjacking), no referrer sent to other
/// sites, HSTS when the server sits behind HTTPS (`secure_cookies`), and API answers never
/// stored by a browser or a proxy (they carry private data).
pub async fn security_headers(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let docs = path.starts_with("/api/internal/docs");
    let api = path.starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // A response may bring a stricter policy of its own (a shared file: sandboxed).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(if docs { DOCS_CSP } else { CLIENT_CSP }),
        );
    }
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if st.config.secure_cookies {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    if api && !docs && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}
