//! Documents ↔ model. Ids are stored as hyphenated UUID strings and times as Unix milliseconds
//! (Int64), so documents read well in any MongoDB tool and sort correctly.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::from_ms;
use livechat_core::model::*;
use mongodb::bson::{doc, Document};
use serde::Deserialize;

use super::{id, parse_id};

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn decode<T: serde::de::DeserializeOwned>(d: Document, what: &str) -> StoreResult<T> {
    mongodb::bson::from_document(d).map_err(|e| {
        StoreError::Other(anyhow::anyhow!("malformed {what} document in MongoDB: {e}"))
    })
}

pub(super) fn user_doc(u: &User) -> Document {
    doc! {
        "_id": id(u.id),
        "username": &u.username,
        "name_key": livechat_core::validate::username_key(&u.username),
        "password_hash": &u.password_hash,
        "last_active": u.last_active.map(ms),
        "created_at": ms(u.created_at),
        "updated_at": ms(u.updated_at),
    }
}

#[derive(Deserialize)]
struct UserDoc {
    _id: String,
    username: String,
    password_hash: String,
    last_active: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

pub(super) fn user(d: Document) -> StoreResult<User> {
    let u: UserDoc = decode(d, "user")?;
    Ok(User {
        id: parse_id(&u._id)?,
        username: u.username,
        password_hash: u.password_hash,
        last_active: u.last_active.map(from_ms),
        created_at: from_ms(u.created_at),
        updated_at: from_ms(u.updated_at),
    })
}

/// What a room read needs (not its members, requests or outbox).
pub(super) fn room_projection() -> Document {
    doc! {
        "name": 1, "description": 1, "is_public": 1, "unlisted": 1, "direct": 1, "created_by": 1,
        "participants_count": 1, "last_seq": 1, "created_at": 1, "updated_at": 1,
    }
}

pub(super) fn room_doc(r: &Room) -> Document {
    let owner = id(r.created_by);
    doc! {
        "_id": id(r.id),
        "name": &r.name,
        "description": r.description.clone(),
        "is_public": r.is_public,
        "unlisted": r.unlisted,
        "direct": r.direct,
        "created_by": &owner,
        "participants_count": 1_i64,
        "last_seq": 0_i64,
        "created_at": ms(r.created_at),
        "updated_at": ms(r.updated_at),
        "member_ids": [&owner],
        "members": { &owner: member_entry(Role::Owner) },
        "request_ids": [],
        "request_users": [],
        "requests": {},
    }
}

/// `uid`'s member entry (`role`, `joined_at`, `read`) in a room document read with it; None
/// for a non-member. Membership is the role: a `read` marker alone (a send's `$max` racing a
/// removal) does not make a member.
pub(super) fn member_of<'a>(room: &'a Document, uid: &str) -> Option<&'a Document> {
    room.get_document("members")
        .ok()?
        .get_document(uid)
        .ok()
        .filter(|m| m.get_str("role").is_ok())
}

/// The role in a member entry.
pub(super) fn role_of(member: &Document) -> Role {
    member
        .get_str("role")
        .ok()
        .and_then(Role::parse)
        .unwrap_or(Role::Member)
}

pub(super) fn member_entry(role: Role) -> Document {
    doc! { "role": role.as_str(), "joined_at": ms(livechat_core::now()) }
}

#[derive(Deserialize)]
struct RoomDoc {
    _id: String,
    name: String,
    description: Option<String>,
    is_public: bool,
    /// Absent on rooms written before unlisted rooms existed.
    #[serde(default)]
    unlisted: bool,
    /// Absent on rooms written before direct conversations existed.
    #[serde(default)]
    direct: bool,
    created_by: String,
    participants_count: i64,
    last_seq: i64,
    created_at: i64,
    updated_at: i64,
}

pub(super) fn room(d: Document) -> StoreResult<Room> {
    let r: RoomDoc = decode(d, "room")?;
    Ok(Room {
        id: parse_id(&r._id)?,
        name: r.name,
        description: r.description,
        is_public: r.is_public,
        unlisted: r.unlisted,
        direct: r.direct,
        created_by: parse_id(&r.created_by)?,
        participants_count: r.participants_count,
        last_seq: r.last_seq,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
    })
}

#[derive(Deserialize)]
pub(super) struct MemberDoc {
    pub role: String,
    pub joined_at: i64,
}

impl MemberDoc {
    pub fn role(&self) -> Role {
        Role::parse(&self.role).unwrap_or(Role::Member)
    }
}

#[derive(Deserialize)]
pub(super) struct RequestDoc {
    pub user_id: String,
    pub message: Option<String>,
    pub created_at: i64,
}

/// A room's members and pending join requests (the parts `room()` leaves out).
#[derive(Deserialize)]
pub(super) struct RoomPeople {
    pub _id: String,
    pub name: String,
    #[serde(default)]
    pub members: HashMap<String, MemberDoc>,
    #[serde(default)]
    pub requests: HashMap<String, RequestDoc>,
}

pub(super) fn room_people(d: Document) -> StoreResult<RoomPeople> {
    decode(d, "room")
}

pub(super) fn join_request(room: &RoomPeople, req_id: &str) -> StoreResult<Option<JoinRequest>> {
    let Some(r) = room.requests.get(req_id) else {
        return Ok(None);
    };
    Ok(Some(JoinRequest {
        id: parse_id(req_id)?,
        room_id: parse_id(&room._id)?,
        user_id: parse_id(&r.user_id)?,
        message: r.message.clone(),
        created_at: from_ms(r.created_at),
    }))
}

pub(super) fn notification_doc(n: &Notification) -> StoreResult<Document> {
    let payload = serde_json::to_string(&n.payload)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("encoding a notification payload: {e}")))?;
    Ok(doc! {
        "_id": id(n.id),
        "user_id": id(n.user_id),
        "type": &n.kind,
        "payload": payload,
        "read": false,
        "source_id": n.source_id.map(id),
        "created_at": ms(n.created_at),
        "_ords": [],
    })
}

#[derive(Deserialize)]
struct NotificationDoc {
    _id: String,
    user_id: String,
    #[serde(rename = "type")]
    kind: String,
    payload: String,
    read: bool,
    #[serde(default)]
    deleted: bool,
    source_id: Option<String>,
    created_at: i64,
}

pub(super) fn notification(d: Document) -> StoreResult<Notification> {
    let n: NotificationDoc = decode(d, "notification")?;
    Ok(Notification {
        id: parse_id(&n._id)?,
        user_id: parse_id(&n.user_id)?,
        kind: n.kind,
        payload: serde_json::from_str::<BTreeMap<String, String>>(&n.payload).unwrap_or_default(),
        read: n.read,
        source_id: n.source_id.as_deref().map(parse_id).transpose()?,
        created_at: from_ms(n.created_at),
    })
}

/// A notification's fields, tombstones included, in checksum order.
pub(super) fn notification_checksum_line(d: Document) -> StoreResult<String> {
    let n: NotificationDoc = decode(d, "notification")?;
    Ok(format!(
        "{}|{}|{}|{}|{}|{}|{}|{}\n",
        n._id,
        n.user_id,
        n.kind,
        n.payload,
        u8::from(n.read),
        u8::from(n.deleted),
        n.source_id.as_deref().unwrap_or("\\N"),
        n.created_at
    ))
}

pub(super) fn session_doc(s: &Session) -> Document {
    doc! {
        "_id": id(s.id),
        "user_id": id(s.user_id),
        "created_at": ms(s.created_at),
        "expires_at": ms(s.expires_at),
        "absolute_expires_at": ms(s.absolute_expires_at),
    }
}

#[derive(Deserialize)]
struct SessionDoc {
    _id: String,
    user_id: String,
    created_at: i64,
    expires_at: i64,
    absolute_expires_at: i64,
}

pub(super) fn session(d: Document) -> StoreResult<Session> {
    let s: SessionDoc = decode(d, "session")?;
    Ok(Session {
        id: parse_id(&s._id)?,
        user_id: parse_id(&s.user_id)?,
        created_at: from_ms(s.created_at),
        expires_at: from_ms(s.expires_at),
        absolute_expires_at: from_ms(s.absolute_expires_at),
    })
}

/// A stored send, as its receipt (for a retried `client_msg_id`).
#[derive(Deserialize)]
struct MessageDoc {
    message_id: String,
    seq: i64,
    content: Option<String>,
    created_at: i64,
}

pub(super) fn receipt(d: Document) -> StoreResult<SendReceipt> {
    let m: MessageDoc = decode(d, "message")?;
    Ok(SendReceipt {
        message_id: parse_id(&m.message_id)?,
        seq: m.seq,
        created_at: from_ms(m.created_at),
        content: m.content.unwrap_or_default(),
        duplicate: true,
    })
}
