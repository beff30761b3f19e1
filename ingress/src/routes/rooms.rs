//! `/api/rooms`: rooms, membership, join requests, read markers.

use axum::extract::Path;
use axum::response::Response;
use livechat_core::model::Visibility;
use serde::Deserialize;

use super::{empty_ok, json, St};
use crate::auth::Caller;
use crate::error::{in_query, invalid, ApiResult};
use crate::extract::{uuid_param, JsonBody, QueryParams};

/// The original's body, plus an optional `visibility` (`public`, `private`, `unlisted`) that
/// wins over `is_public` (default: public).
#[derive(Deserialize)]
pub struct RoomCreate {
    name: String,
    description: Option<String>,
    is_public: Option<bool>,
    visibility: Option<Visibility>,
}

#[derive(Deserialize)]
pub struct DirectOpen {
    usernames: Vec<String>,
}

#[derive(Deserialize)]
pub struct RoomUpdate {
    description: Option<String>,
    is_public: Option<bool>,
    visibility: Option<Visibility>,
}

#[derive(Deserialize)]
pub struct TopQuery {
    limit: Option<u32>,
    only_public: Option<bool>,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    text: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
pub struct JoinRequestBody {
    room_id: String,
    message: Option<String>,
}

#[derive(Deserialize)]
pub struct HandleQuery {
    accept: Option<bool>,
}

#[derive(Deserialize)]
pub struct ReadMarker {
    pub(crate) seq: i64,
}

pub async fn create(st: St, c: Caller, JsonBody(b): JsonBody<RoomCreate>) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .create_room(
                &c.user,
                &b.name,
                b.description.as_deref(),
                b.visibility.unwrap_or_else(|| {
                    Visibility::from_is_public(b.is_public.unwrap_or(true), None)
                }),
            )
            .await?,
    ))
}

/// Opens (or finds) the caller's direct conversation with `usernames`.
pub async fn create_direct(
    st: St,
    c: Caller,
    JsonBody(b): JsonBody<DirectOpen>,
) -> ApiResult<Response> {
    Ok(json(st.svc.open_direct(&c.user, &b.usernames).await?))
}

pub async fn update(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<RoomUpdate>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    Ok(json(
        st.svc
            .update_room(
                &c.user,
                room,
                b.description.as_deref(),
                b.is_public,
                b.visibility,
            )
            .await?,
    ))
}

pub async fn delete(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    st.svc
        .delete_room(&c.user, uuid_param("path", "room_id", &id)?)
        .await?;
    Ok(empty_ok())
}

/// Any signed-in user may read a room's details.
pub async fn get(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .get_room(&c.user, uuid_param("path", "room_id", &id)?)
            .await?,
    ))
}

pub async fn users(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .members(&c.user, uuid_param("path", "room_id", &id)?)
            .await?,
    ))
}

pub async fn mine(st: St, c: Caller) -> ApiResult<Response> {
    Ok(json(st.svc.my_rooms(&c.user).await?))
}

pub async fn top(st: St, _c: Caller, QueryParams(q): QueryParams<TopQuery>) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .top_rooms(q.limit, q.only_public.unwrap_or(true))
            .await
            .map_err(in_query)?,
    ))
}

pub async fn search(
    st: St,
    _c: Caller,
    QueryParams(q): QueryParams<SearchQuery>,
) -> ApiResult<Response> {
    let text = q
        .text
        .ok_or_else(|| invalid("query", "text", "text is required"))?;
    Ok(json(
        st.svc
            .search_rooms(&text, q.limit)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn requests_of_room(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .join_requests_of_room(&c.user, uuid_param("path", "room_id", &id)?)
            .await?,
    ))
}

pub async fn my_requests(st: St, c: Caller) -> ApiResult<Response> {
    Ok(json(st.svc.my_join_requests(&c.user).await?))
}

pub async fn request_join(
    st: St,
    c: Caller,
    JsonBody(b): JsonBody<JoinRequestBody>,
) -> ApiResult<Response> {
    let room = uuid_param("body", "room_id", &b.room_id)?;
    st.svc
        .request_join(&c.user, room, b.message.as_deref())
        .await?;
    Ok(empty_ok())
}

pub async fn handle_request(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<HandleQuery>,
) -> ApiResult<Response> {
    let req = uuid_param("path", "request_id", &id)?;
    st.svc
        .handle_join_request(&c.user, req, q.accept.unwrap_or(false))
        .await?;
    Ok(empty_ok())
}

pub async fn remove_user(
    st: St,
    c: Caller,
    Path((room, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &room)?;
    let user = uuid_param("path", "user_id", &user)?;
    st.svc.remove_member(&c.user, room, user).await?;
    Ok(empty_ok())
}

pub async fn leave(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    st.svc
        .leave_room(&c.user, uuid_param("path", "room_id", &id)?)
        .await?;
    Ok(empty_ok())
}

pub async fn read_marker(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ReadMarker>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    let (seq, unread) = st.svc.set_read_marker(&c.user, room, b.seq).await?;
    Ok(json(
        serde_json::json!({ "room_id": room, "last_read_seq": seq, "unread_count": unread }),
    ))
}

pub async fn active_users(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(json(
        st.svc
            .active_users(&c.user, uuid_param("path", "room_id", &id)?)
            .await?,
    ))
}

pub async fn disconnect_user(
    st: St,
    c: Caller,
    Path((room, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &room)?;
    let user = uuid_param("path", "user_id", &user)?;
    st.svc.force_disconnect(&c.user, room, user).await?;
    Ok(empty_ok())
}
