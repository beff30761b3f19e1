//! Server → client event frames.
//!
//! The envelope is the original's `{"event_type", "payload", "timestamp"}` with string payload
//! values, so a client written for it works unchanged. LiveChat adds top-level `room_id` and,
//! for messages, `seq` (and `message` with the full message for new messages).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use livechat_schemas::{RoomEvent, RoomEventType};
use serde_json::{json, Map, Value};

use crate::model::{Notification, RoomId, UserId};
use crate::ports::LiveFrame;

/// The `event_type` of each frame clients receive (the original's names, kept for its clients).
pub mod client_event {
    pub const MESSAGE_CREATED: &str = "MESSAGE_CREATED";
    pub const MESSAGE_EDITED: &str = "MESSAGE_EDITED";
    pub const MESSAGE_DELETED: &str = "MESSAGE_DELETED";
    /// LiveChat's additions: a reaction added to or taken back from a message.
    pub const MESSAGE_REACTION_ADDED: &str = "MESSAGE_REACTION_ADDED";
    pub const MESSAGE_REACTION_REMOVED: &str = "MESSAGE_REACTION_REMOVED";
    /// LiveChat's additions: a message pinned in or unpinned from its room.
    pub const MESSAGE_PINNED: &str = "MESSAGE_PINNED";
    pub const MESSAGE_UNPINNED: &str = "MESSAGE_UNPINNED";
    pub const USER_JOINED: &str = "USER_JOINED";
    pub const USER_LEFT: &str = "USER_LEFT";
    pub const ROOM_UPDATED: &str = "ROOM_UPDATED";
    pub const ROOM_DELETED: &str = "ROOM_DELETED";
    pub const ROOM_USER_ONLINE: &str = "ROOM_USER_ONLINE";
    pub const ROOM_USER_OFFLINE: &str = "ROOM_USER_OFFLINE";
    pub const USER_TYPING: &str = "USER_TYPING";
    pub const NOTIFICATION: &str = "NOTIFICATION";
}

fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Builds an envelope; `payload` values are strings as in the original.
pub fn envelope(
    event_type: &str,
    payload: Map<String, Value>,
    at: DateTime<Utc>,
    extra: Map<String, Value>,
) -> String {
    let mut obj = Map::new();
    obj.insert("event_type".into(), Value::String(event_type.into()));
    obj.insert("payload".into(), Value::Object(payload));
    obj.insert("timestamp".into(), Value::String(ts(at)));
    obj.extend(extra);
    Value::Object(obj).to_string()
}

fn strings(pairs: &[(&str, String)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect()
}

fn frame(seq: Option<i64>, text: String) -> LiveFrame {
    LiveFrame {
        seq,
        skip_user: None,
        text: Arc::from(text),
    }
}

/// The live frame for a room event read from the log, if clients see that event.
pub fn from_room_event(ev: &RoomEvent) -> Option<LiveFrame> {
    let at = crate::from_ms(ev.occurred_at);
    let room = ev.room_id.clone();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut extra = Map::new();
    extra.insert("room_id".into(), Value::String(room.clone()));
    let kind = ev.kind()?;
    match kind {
        RoomEventType::MessageSent
        | RoomEventType::MessageEdited
        | RoomEventType::MessageDeleted => {
            let name = match kind {
                RoomEventType::MessageSent => client_event::MESSAGE_CREATED,
                RoomEventType::MessageEdited => client_event::MESSAGE_EDITED,
                _ => client_event::MESSAGE_DELETED,
            };
            let seq = ev.seq.unwrap_or_default();
            let created = ev.message_created_at.map(crate::from_ms).unwrap_or(at);
            let payload = strings(&[
                ("message", opt(&ev.content)),
                ("message_id", opt(&ev.message_id)),
                ("user_id", opt(&ev.subject_user_id)),
                ("username", opt(&ev.subject_username)),
                ("room_id", room.clone()),
                ("seq", seq.to_string()),
                ("created_at", ts(created)),
            ]);
            extra.insert("seq".into(), json!(seq));
            if kind == RoomEventType::MessageSent {
                extra.insert("client_msg_id".into(), json!(ev.client_msg_id));
                extra.insert(
                    "message".into(),
                    json!({
                        "id": ev.message_id, "room_id": room, "user_id": ev.subject_user_id,
                        "username": ev.subject_username, "content": ev.content, "edited": false,
                        "deleted": false, "created_at": ts(created), "updated_at": ts(created),
                        "seq": seq, "client_msg_id": ev.client_msg_id,
                        "reply_to_seq": ev.reply_to_seq, "reactions": [],
                        "thread_root_seq": ev.thread_root_seq, "thread": null,
                        "attachments": ev.attachments.iter()
                            .map(|a| crate::model::Attachment::from_event(a).public(&room))
                            .collect::<Vec<_>>(),
                    }),
                );
                // Only new messages carry the ordering seq: edits and deletes refer to an old one.
                Some(frame(Some(seq), envelope(name, payload, at, extra)))
            } else {
                Some(frame(None, envelope(name, payload, at, extra)))
            }
        }
        RoomEventType::MessageReactionAdded | RoomEventType::MessageReactionRemoved => {
            let added = kind == RoomEventType::MessageReactionAdded;
            let name = match added {
                true => client_event::MESSAGE_REACTION_ADDED,
                false => client_event::MESSAGE_REACTION_REMOVED,
            };
            let seq = ev.seq.unwrap_or_default();
            let payload = strings(&[
                ("message_id", opt(&ev.message_id)),
                ("user_id", opt(&ev.actor_id)),
                ("emoji", opt(&ev.reaction)),
                ("room_id", room),
                ("seq", seq.to_string()),
            ]);
            extra.insert("seq".into(), json!(seq));
            extra.insert(
                "reaction".into(),
                json!({"message_id": ev.message_id, "emoji": ev.reaction,
                       "user_id": ev.actor_id, "added": added}),
            );
            Some(frame(None, envelope(name, payload, at, extra)))
        }
        RoomEventType::MessagePinned | RoomEventType::MessageUnpinned => {
            let pinned = kind == RoomEventType::MessagePinned;
            let name = match pinned {
                true => client_event::MESSAGE_PINNED,
                false => client_event::MESSAGE_UNPINNED,
            };
            let seq = ev.seq.unwrap_or_default();
            let payload = strings(&[
                ("message_id", opt(&ev.message_id)),
                ("user_id", opt(&ev.actor_id)),
                ("room_id", room),
                ("seq", seq.to_string()),
            ]);
            extra.insert("seq".into(), json!(seq));
            extra.insert(
                "pin".into(),
                json!({"message_id": ev.message_id, "pinned": pinned, "user_id": ev.actor_id,
                       "at": ts(at)}),
            );
            Some(frame(None, envelope(name, payload, at, extra)))
        }
        RoomEventType::UserJoinedRoom | RoomEventType::JoinRequestAccepted => {
            let payload = strings(&[("user_id", opt(&ev.subject_user_id)), ("room_id", room)]);
            Some(frame(
                None,
                envelope(client_event::USER_JOINED, payload, at, extra),
            ))
        }
        RoomEventType::UserLeftRoom | RoomEventType::UserRemovedFromRoom => {
            let payload = strings(&[("user_id", opt(&ev.subject_user_id)), ("room_id", room)]);
            extra.insert(
                "removed".into(),
                json!(kind == RoomEventType::UserRemovedFromRoom),
            );
            Some(frame(
                None,
                envelope(client_event::USER_LEFT, payload, at, extra),
            ))
        }
        RoomEventType::RoomUpdated => {
            let payload = strings(&[
                ("room_id", room),
                ("description", opt(&ev.room_description)),
                (
                    "is_public",
                    if ev.room_is_public.unwrap_or(true) {
                        "True".into()
                    } else {
                        "False".into()
                    },
                ),
            ]);
            Some(frame(
                None,
                envelope(client_event::ROOM_UPDATED, payload, at, extra),
            ))
        }
        RoomEventType::RoomDeleted => {
            let payload = strings(&[("room_id", room)]);
            Some(frame(
                None,
                envelope(client_event::ROOM_DELETED, payload, at, extra),
            ))
        }
        RoomEventType::RoomCreated
        | RoomEventType::JoinRequestCreated
        | RoomEventType::JoinRequestRejected
        | RoomEventType::UserConnected
        | RoomEventType::UserDisconnected
        | RoomEventType::UserForcedDisconnect => None,
    }
}

/// `ROOM_USER_ONLINE` / `ROOM_USER_OFFLINE`.
pub fn presence(room: RoomId, user: UserId, online: bool) -> LiveFrame {
    let name = if online {
        client_event::ROOM_USER_ONLINE
    } else {
        client_event::ROOM_USER_OFFLINE
    };
    let payload = strings(&[("user_id", user.to_string()), ("room_id", room.to_string())]);
    let mut extra = Map::new();
    extra.insert("room_id".into(), Value::String(room.to_string()));
    frame(None, envelope(name, payload, crate::now(), extra))
}

/// `USER_TYPING`; `is_typing` stays the original's "True"/"False" string in the payload and is a
/// boolean at the top level. Not sent back to the typist.
pub fn typing(room: RoomId, user: UserId, username: &str, is_typing: bool) -> LiveFrame {
    let payload = strings(&[
        ("user_id", user.to_string()),
        ("username", username.to_string()),
        (
            "is_typing",
            if is_typing {
                "True".into()
            } else {
                "False".into()
            },
        ),
        ("room_id", room.to_string()),
    ]);
    let mut extra = Map::new();
    extra.insert("room_id".into(), Value::String(room.to_string()));
    extra.insert("is_typing".into(), Value::Bool(is_typing));
    LiveFrame {
        seq: None,
        skip_user: Some(user),
        text: Arc::from(envelope(
            client_event::USER_TYPING,
            payload,
            crate::now(),
            extra,
        )),
    }
}

/// `NOTIFICATION` to the recipient: the original's payload fields plus the notification itself.
pub fn notification(n: &Notification) -> LiveFrame {
    let mut payload = strings(&[
        ("notification_type", n.kind.clone()),
        ("user_id", n.user_id.to_string()),
        ("notification_id", n.id.to_string()),
    ]);
    for (k, v) in &n.payload {
        payload.insert(k.clone(), Value::String(v.clone()));
    }
    let mut extra = Map::new();
    extra.insert(
        "notification".into(),
        serde_json::to_value(crate::model::NotificationPublic::from(n)).unwrap_or(Value::Null),
    );
    frame(
        None,
        envelope(client_event::NOTIFICATION, payload, n.created_at, extra),
    )
}

/// A stored message as a `MESSAGE_CREATED` frame (resume and gap fill); tombstones carry
/// `deleted: true` and an empty text.
pub fn stored_message(m: &crate::model::StoredMessage) -> String {
    let payload = strings(&[
        ("message", m.content.clone()),
        ("message_id", m.id.to_string()),
        ("user_id", m.user_id.to_string()),
        ("username", m.username.clone()),
        ("room_id", m.room_id.to_string()),
        ("seq", m.seq.to_string()),
        ("created_at", ts(m.created_at)),
    ]);
    let mut extra = Map::new();
    extra.insert("room_id".into(), Value::String(m.room_id.to_string()));
    extra.insert("seq".into(), json!(m.seq));
    extra.insert("client_msg_id".into(), json!(m.client_msg_id));
    extra.insert("replayed".into(), Value::Bool(true));
    extra.insert(
        "message".into(),
        serde_json::to_value(crate::model::MessagePublic::from(m)).unwrap_or(Value::Null),
    );
    envelope(client_event::MESSAGE_CREATED, payload, m.created_at, extra)
}
