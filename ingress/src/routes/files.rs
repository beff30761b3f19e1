//! `/api/files`: files members share in a room. The upload's body is the file itself (any
//! `Content-Type` the client sends is ignored: the type comes from the bytes).

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::StreamExt;
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
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    let max = st.svc.limits.max_file_bytes;
    let too_large = || AppError::TooLarge(format!("files may have at most {max} bytes"));
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large().into());
    }
    // Leave first (member, rate, a free slot), then the bytes: no more than the process's
    // upload slots of files are ever held in memory.
    let slot = st.svc.upload_slot(&c.user, room).await?;
    let mut chunks = body.into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| AppError::BadRequest(format!("Cannot read the request body: {e}")))?;
        if bytes.len() + chunk.len() > max {
            return Err(too_large().into());
        }
        bytes.extend_from_slice(&chunk);
    }
    let file = st
        .svc
        .upload_file(slot, q.name.as_deref(), bytes.freeze())
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
