//! `/api/analytics`: the seven views, with per-room and per-user authorization.

use axum::response::Response;
use serde::Deserialize;

use super::{json, St};
use crate::auth::Caller;
use crate::error::{in_query, invalid, ApiResult};
use crate::extract::{uuid_param, QueryParams};

#[derive(Deserialize)]
pub struct Q {
    room_id: Option<String>,
    user_id: Option<String>,
    limit: Option<u32>,
    since_minutes: Option<i64>,
    days: Option<i64>,
}

fn required<'a>(v: &'a Option<String>, field: &str) -> ApiResult<&'a str> {
    v.as_deref()
        .ok_or_else(|| invalid("query", field, format!("{field} is required")))
}

pub async fn room_stats(st: St, c: Caller, QueryParams(q): QueryParams<Q>) -> ApiResult<Response> {
    let room = uuid_param("query", "room_id", required(&q.room_id, "room_id")?)?;
    Ok(json(
        st.svc.room_stats(&c.user, room).await.map_err(in_query)?,
    ))
}

pub async fn user_activity(
    st: St,
    c: Caller,
    QueryParams(q): QueryParams<Q>,
) -> ApiResult<Response> {
    let user = uuid_param("query", "user_id", required(&q.user_id, "user_id")?)?;
    Ok(json(
        st.svc
            .user_activity(&c.user, user)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn top_active_rooms(
    st: St,
    c: Caller,
    QueryParams(q): QueryParams<Q>,
) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .top_active_rooms(&c.user, q.limit)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn messages_per_minutes(
    st: St,
    c: Caller,
    QueryParams(q): QueryParams<Q>,
) -> ApiResult<Response> {
    let room = uuid_param("query", "room_id", required(&q.room_id, "room_id")?)?;
    Ok(json(
        st.svc
            .messages_in_window(&c.user, room, q.since_minutes)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn retention(st: St, _c: Caller, QueryParams(q): QueryParams<Q>) -> ApiResult<Response> {
    Ok(json(st.svc.retention(q.days).await.map_err(in_query)?))
}

pub async fn edit_delete_ratio(st: St, _c: Caller) -> ApiResult<Response> {
    Ok(json(st.svc.edit_delete_ratio().await?))
}

pub async fn top_social_users(
    st: St,
    _c: Caller,
    QueryParams(q): QueryParams<Q>,
) -> ApiResult<Response> {
    if q.limit.is_none() {
        return Err(invalid("query", "limit", "limit is required"));
    }
    Ok(json(
        st.svc.top_social_users(q.limit).await.map_err(in_query)?,
    ))
}
