//! `/api/notifications`.

use axum::extract::Path;
use axum::response::Response;
use serde::Deserialize;

use super::{empty_ok, json, St};
use crate::auth::Caller;
use crate::error::{in_query, ApiResult};
use crate::extract::{uuid_param, QueryParams};

#[derive(Deserialize)]
pub struct ListQuery {
    unread_only: Option<bool>,
    limit: Option<u32>,
}

pub async fn list(
    st: St,
    c: Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .notifications(&c.user, q.unread_only.unwrap_or(false), q.limit)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn mark_read(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    st.svc
        .mark_notification_read(&c.user, uuid_param("path", "notification_id", &id)?)
        .await?;
    Ok(empty_ok())
}

pub async fn mark_all(st: St, c: Caller) -> ApiResult<Response> {
    st.svc.mark_all_notifications_read(&c.user).await?;
    Ok(empty_ok())
}

pub async fn count_unread(st: St, c: Caller) -> ApiResult<Response> {
    Ok(json(
        serde_json::json!({ "unread_count": st.svc.unread_notifications(&c.user).await? }),
    ))
}

pub async fn delete(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    st.svc
        .delete_notification(&c.user, uuid_param("path", "notification_id", &id)?)
        .await?;
    Ok(empty_ok())
}
