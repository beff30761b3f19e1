//! `GET /api/ws/stream`: the WebSocket endpoint. Everything is checked before the upgrade:
//! Origin (allowlist, 403), session cookie (401), and with the original's `?room_id=` the room
//! (422 malformed, 404 unknown, 403 not a member), and the user's open sockets (429 past
//! `max_sockets_per_user`).

pub mod conn;
pub mod protocol;
pub mod sends;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use livechat_core::model::{RoomId, User};
use livechat_core::AppError;
use uuid::Uuid;

use crate::auth::session_cookie;
use crate::error::{ApiError, ApiResult};
use crate::extract::{uuid_param, QueryParams};
use crate::AppState;

pub async fn stream(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let (user, session, legacy_room) = match admit(&st, &headers, &q).await {
        Ok(admitted) => admitted,
        Err(e) => {
            refused(e.0.code(), &e.0.to_string());
            return Err(e);
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            refused("not_websocket", &rejection.body_text());
            return Ok(rejection.into_response());
        }
    };
    let l = &st.svc.limits;
    // Checked before the upgrade, so the refusal is a plain 429 (two upgrades racing may both
    // pass: the cap is exceeded by at most the upgrades in flight, not without bound).
    if st.hub.sockets_of(user.id) >= l.max_sockets_per_user {
        refused("too_many_sockets", "open sockets per user");
        return Err(ApiError::from(AppError::TooManyRequests {
            message: format!(
                "At most {} open sockets per user; close one first",
                l.max_sockets_per_user
            ),
            retry_after_secs: 1,
        }));
    }
    let ws = ws
        .read_buffer_size(l.ws_read_buffer_bytes)
        // Frames are buffered until the flush that ends each turn of the connection's loop, so
        // the frames queued for a socket at one moment leave in one write.
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(l.ws_message_bytes().max(64 * 1024) * 4)
        .max_frame_size(l.ws_frame_bytes())
        .max_message_size(l.ws_message_bytes());
    Ok(ws.on_upgrade(move |socket| conn::serve(socket, st, user, session, legacy_room)))
}

/// Bytes of frames a socket buffers before writing them without waiting for the flush.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// Logs and counts a refused upgrade.
fn refused(reason: &'static str, detail: &str) {
    tracing::info!(reason, detail, "WebSocket upgrade refused.");
    metrics::counter!("livechat_websocket_upgrades_refused_total", "reason" => reason).increment(1);
}

/// The checks before an upgrade: Origin, session, and the original's `?room_id=`.
async fn admit(
    st: &AppState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(User, Uuid, Option<RoomId>), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !st.config.origin_allowed(origin) {
            return Err(ApiError::from(AppError::Forbidden(format!(
                "Origin {origin} is not allowed"
            ))));
        }
    }
    let authed = st
        .svc
        .authenticate(session_cookie(headers).as_deref())
        .await?;
    let legacy_room = match q.get("room_id") {
        Some(r) => {
            let room = uuid_param("query", "room_id", r)?;
            st.svc.room_to_stream(room, authed.user.id).await?;
            Some(room)
        }
        None => None,
    };
    Ok((authed.user, authed.session.id, legacy_room))
}
