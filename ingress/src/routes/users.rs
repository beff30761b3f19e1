//! `/api/users`: register, login, logout, get-me, export-my-data, delete-account.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{empty_ok, json, St};
use crate::auth::{clear_cookie, session_cookie, set_cookie, Caller};
use crate::error::ApiResult;
use crate::extract::JsonBody;

#[derive(Deserialize)]
pub struct UserAuth {
    username: String,
    password: String,
}

pub async fn register(
    st: St,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    JsonBody(b): JsonBody<UserAuth>,
) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .register(&b.username, &b.password, Some(addr.ip()))
            .await?,
    ))
}

pub async fn login(
    st: St,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(b): JsonBody<UserAuth>,
) -> ApiResult<Response> {
    let s = st
        .svc
        .login(&b.username, &b.password, Some(addr.ip()))
        .await?;
    // The session the client presented is replaced by the new one: it ends now, with its
    // sockets (it must not stay valid beside the new one, e.g. for whoever copied it).
    if let Some(old) = session_cookie(&headers) {
        st.svc.end_session(&old).await;
    }
    let secs = (s.expires_at - livechat_core::now()).num_seconds().max(1);
    let mut resp = empty_ok();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&s.id.to_string(), secs, st.config.secure_cookies),
    );
    Ok(resp)
}

pub async fn logout(st: St, headers: HeaderMap) -> ApiResult<Response> {
    st.svc.logout(session_cookie(&headers).as_deref()).await?;
    let mut resp = empty_ok();
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(st.config.secure_cookies));
    Ok(resp)
}

#[derive(Deserialize)]
pub struct AccountDeletion {
    password: String,
}

/// Deletes the caller's account for good (see `ChatService::delete_account`); the session
/// cookie is cleared with it.
pub async fn delete_account(
    st: St,
    caller: Caller,
    JsonBody(b): JsonBody<AccountDeletion>,
) -> ApiResult<Response> {
    st.svc.delete_account(&caller, &b.password).await?;
    let mut resp = empty_ok();
    resp.headers_mut()
        .append(header::SET_COOKIE, clear_cookie(st.config.secure_cookies));
    Ok(resp)
}

pub async fn get_me(st: St, caller: Caller) -> ApiResult<Response> {
    Ok(json(st.svc.me(&caller.user).await?).into_response())
}

/// The caller's own data as a JSON file, streamed as it is written (see `livechat_core::export`).
pub async fn export_my_data(st: St, caller: Caller) -> ApiResult<Response> {
    let pieces = st.svc.export_data(&caller.user)?;
    // Fused: a response layer (compression) may poll the stream again after its end.
    let pieces = futures::stream::unfold(pieces, |mut rx| async {
        let piece = rx.recv().await?.map_err(std::io::Error::other);
        Some((piece, rx))
    });
    let body = axum::body::Body::from_stream(futures::StreamExt::fuse(pieces));
    let file = format!(
        "attachment; filename=\"livechat-{}-{}.json\"",
        caller.user.id,
        livechat_core::now().format("%Y-%m-%d")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_DISPOSITION, file),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}
