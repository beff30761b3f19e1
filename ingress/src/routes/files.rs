//! `/api/files`: files members share in a room. The upload's body is the file itself (any
//! `Content-Type` the client sends is ignored: the type comes from the bytes).

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{json, St};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{uuid_param, QueryParams};
use livechat_core::AppError;

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    /// The image's thumbnail instead of the file.
    #[serde(default)]
    thumbnail: bool,
}

/// A download's own policy: nothing in the file may run, even when opened on its own.
const FILE_CSP: &str = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'";

pub async fn upload(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    // The route's body limit is the file limit (see the router).
    let bytes = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(format!(
            "files may have at most {} bytes",
            st.svc.limits.max_file_bytes
        )),
        _ => AppError::BadRequest(format!("Cannot read the request body: {}", e.body_text())),
    })?;
    let file = st
        .svc
        .upload_file(&c.user, room, q.name.as_deref(), bytes)
        .await?;
    Ok(json(file))
}

pub async fn download(
    st: St,
    c: Caller,
    Path((id, key)): Path<(String, String)>,
    QueryParams(q): QueryParams<DownloadQuery>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    let (meta, content_type, bytes) = st
        .svc
        .download_file(&c.user, room, &key, q.thumbnail)
        .await?;
    let disposition = if q.thumbnail || meta.inline() {
        "inline"
    } else {
        "attachment"
    };
    let mut res = Body::from(bytes).into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(disposition),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    // The key is the bytes' hash: what is under it never changes. Private: only members see it.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    let tag = match q.thumbnail {
        true => format!("\"{}-thumbnail\"", meta.key),
        false => format!("\"{}\"", meta.key),
    };
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    Ok(res)
}
