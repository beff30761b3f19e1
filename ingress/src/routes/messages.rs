//! `/api/messages`: send, edit, delete, history.

use axum::extract::Path;
use axum::response::Response;
use chrono::{DateTime, Utc};
use livechat_core::model::FileChoice;
use livechat_core::ports::SearchOrder;
use livechat_core::send_order::SendOrder;
use livechat_core::service::SendOptions;
use serde::Deserialize;

use super::{empty_ok, json, St};
use crate::auth::Caller;
use crate::error::{in_query, invalid, ApiResult};
use crate::extract::{uuid_param, JsonBody, QueryParams};

#[derive(Deserialize)]
pub struct SendBody {
    /// May be empty when the message carries files.
    #[serde(default)]
    content: String,
    client_msg_id: Option<String>,
    reply_to_seq: Option<i64>,
    thread_root_seq: Option<i64>,
    #[serde(default)]
    attachments: Vec<FileChoice>,
}

#[derive(Deserialize)]
pub struct ThreadQuery {
    after_seq: Option<i64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
pub struct ReactionBody {
    emoji: String,
}

#[derive(Deserialize)]
pub struct EditBody {
    new_content: String,
}

#[derive(Deserialize)]
pub struct RecentQuery {
    before: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
pub struct SearchParams {
    text: Option<String>,
    room_id: Option<String>,
    order: Option<SearchOrder>,
    limit: Option<u32>,
    offset: Option<u32>,
}

#[derive(Deserialize)]
pub struct SeqQuery {
    after_seq: Option<i64>,
    before_seq: Option<i64>,
    limit: Option<u32>,
}

/// Parses the original's `before` datetime (ISO-8601; a missing offset means UTC).
fn parse_before(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

pub async fn create(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<SendBody>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    let (msg, _dup) = st
        .svc
        .send_message(
            &c.user,
            room,
            &b.content,
            SendOptions {
                client_msg_id: b.client_msg_id.as_deref(),
                reply_to_seq: b.reply_to_seq,
                thread_root_seq: b.thread_root_seq,
                attachments: &b.attachments,
            },
            SendOrder::default(),
        )
        .await?;
    Ok(json(msg))
}

pub async fn add_reaction(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ReactionBody>,
) -> ApiResult<Response> {
    let mid = uuid_param("path", "message_id", &id)?;
    Ok(json(st.svc.react(&c.user, mid, &b.emoji, true).await?))
}

pub async fn remove_reaction(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ReactionBody>,
) -> ApiResult<Response> {
    let mid = uuid_param("path", "message_id", &id)?;
    Ok(json(st.svc.react(&c.user, mid, &b.emoji, false).await?))
}

pub async fn update(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<EditBody>,
) -> ApiResult<Response> {
    let mid = uuid_param("path", "message_id", &id)?;
    Ok(json(
        st.svc.edit_message(&c.user, mid, &b.new_content).await?,
    ))
}

pub async fn delete(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    st.svc
        .delete_message(&c.user, uuid_param("path", "message_id", &id)?)
        .await?;
    Ok(empty_ok())
}

pub async fn pin(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let mid = uuid_param("path", "message_id", &id)?;
    Ok(json(st.svc.pin_message(&c.user, mid, true).await?))
}

pub async fn unpin(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let mid = uuid_param("path", "message_id", &id)?;
    Ok(json(st.svc.pin_message(&c.user, mid, false).await?))
}

pub async fn pinned(st: St, c: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    Ok(json(st.svc.pinned_messages(&c.user, room).await?))
}

/// The room and the root's seq of a thread's path.
fn thread_path(room: &str, root: &str) -> ApiResult<(uuid::Uuid, i64)> {
    let room = uuid_param("path", "room_id", room)?;
    let root_seq = root
        .parse()
        .map_err(|_| invalid("path", "root_seq", "Input should be a valid integer"))?;
    Ok((room, root_seq))
}

/// A thread's root and a page of its replies.
pub async fn thread(
    st: St,
    c: Caller,
    Path((id, root)): Path<(String, String)>,
    QueryParams(q): QueryParams<ThreadQuery>,
) -> ApiResult<Response> {
    let (room, root_seq) = thread_path(&id, &root)?;
    Ok(json(
        st.svc
            .thread(&c.user, room, root_seq, q.after_seq, q.limit)
            .await
            .map_err(in_query)?,
    ))
}

/// Marks a thread read up to a seq (clamped to its last reply; never backwards).
pub async fn thread_read_marker(
    st: St,
    c: Caller,
    Path((id, root)): Path<(String, String)>,
    JsonBody(b): JsonBody<super::rooms::ReadMarker>,
) -> ApiResult<Response> {
    let (room, root_seq) = thread_path(&id, &root)?;
    let read_seq = st
        .svc
        .mark_thread_read(&c.user, room, root_seq, b.seq)
        .await?;
    Ok(json(
        serde_json::json!({ "room_id": room, "root_seq": root_seq, "read_seq": read_seq }),
    ))
}

#[derive(Deserialize)]
pub struct ThreadFollow {
    follow: bool,
}

/// Follows a thread, or stops following it.
pub async fn thread_follow(
    st: St,
    c: Caller,
    Path((id, root)): Path<(String, String)>,
    JsonBody(b): JsonBody<ThreadFollow>,
) -> ApiResult<Response> {
    let (room, root_seq) = thread_path(&id, &root)?;
    let following = st
        .svc
        .follow_thread(&c.user, room, root_seq, b.follow)
        .await?;
    Ok(json(
        serde_json::json!({ "room_id": room, "root_seq": root_seq, "following": following }),
    ))
}

/// Full-text search over the caller's rooms (or one of them).
pub async fn search(
    st: St,
    c: Caller,
    QueryParams(q): QueryParams<SearchParams>,
) -> ApiResult<Response> {
    let room = match q.room_id.as_deref() {
        Some(r) => Some(uuid_param("query", "room_id", r)?),
        None => None,
    };
    let text = q
        .text
        .ok_or_else(|| invalid("query", "text", "text is required"))?;
    Ok(json(
        st.svc
            .search_messages(&c.user, &text, room, q.order, q.limit, q.offset)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn recent(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<RecentQuery>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    let before = match q.before.as_deref() {
        Some(b) => Some(
            parse_before(b)
                .ok_or_else(|| invalid("query", "before", "before must be an ISO-8601 datetime"))?,
        ),
        None => None,
    };
    Ok(json(
        st.svc
            .recent_messages(&c.user, room, before, q.limit)
            .await
            .map_err(in_query)?,
    ))
}

pub async fn by_seq(
    st: St,
    c: Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SeqQuery>,
) -> ApiResult<Response> {
    let room = uuid_param("path", "room_id", &id)?;
    Ok(json(
        st.svc
            .messages_by_seq(&c.user, room, q.after_seq, q.before_seq, q.limit)
            .await
            .map_err(in_query)?,
    ))
}
