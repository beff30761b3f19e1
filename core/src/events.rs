//! Builds the topic records (outbox entries) for each state change.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use livechat_schemas::{
    codec, MembershipState, ReadMarkerState, RoomEvent, RoomEventType, RoomState, TopicEvent,
    UserEvent, UserEventType, UserState, MEMBERSHIPS_TOPIC, READ_MARKERS_TOPIC, ROOMS_TOPIC,
    ROOM_EVENTS_TOPIC, USERS_TOPIC, USER_EVENTS_TOPIC,
};
use uuid::Uuid;

use crate::error::AppError;
use crate::model::{OutboxRecord, Role, Room, RoomId, UserId};

/// A room event of `event_type` with a fresh event id, stamped at `at`. Event ids (like message
/// ids) are UUIDv7: time-ordered, so every store indexing them appends instead of writing into
/// a random page of its index.
pub fn room_event(event_type: RoomEventType, room: RoomId, at: DateTime<Utc>) -> RoomEvent {
    RoomEvent {
        event_id: Uuid::now_v7().to_string(),
        event_type: event_type.as_str().to_string(),
        occurred_at: at.timestamp_millis(),
        room_id: room.to_string(),
        ..Default::default()
    }
}

/// A room event that carries the room's descriptive fields (name, owner, visibility).
pub fn room_event_for(
    event_type: RoomEventType,
    room: &Room,
    actor: UserId,
    at: DateTime<Utc>,
) -> RoomEvent {
    RoomEvent {
        actor_id: Some(actor.to_string()),
        room_name: Some(room.name.clone()),
        room_owner_id: Some(room.created_by.to_string()),
        room_is_public: Some(room.is_public),
        room_description: room.description.clone(),
        ..room_event(event_type, room.id, at)
    }
}

pub fn user_event(event_type: UserEventType, user: UserId, at: DateTime<Utc>) -> UserEvent {
    UserEvent {
        event_id: Uuid::now_v7().to_string(),
        event_type: event_type.as_str().to_string(),
        occurred_at: at.timestamp_millis(),
        user_id: user.to_string(),
        ..Default::default()
    }
}

/// The payload entry of a notification that quotes what someone wrote (a message's preview, a
/// join request's note). The log's copy of the notification leaves it out: the stored
/// notification holds it, so erasing the store's copy erases it everywhere; whoever pushes a
/// notification read back from the log takes it from the store.
pub const QUOTED: &str = "message";

/// Whose words a notification quotes, if it quotes any: its source's. A store hides such a
/// notification when it is stored after its author's erasure (see `Directory::erase_user`).
pub fn quoted_author(n: &crate::model::Notification) -> Option<crate::model::UserId> {
    n.source_id.filter(|_| n.payload.contains_key(QUOTED))
}

/// The topic record that announces a stored notification (event id = notification id).
pub fn notification_record(n: &crate::model::Notification) -> Result<OutboxRecord, AppError> {
    let mut ev = livechat_schemas::NotificationEvent {
        event_id: n.id.to_string(),
        notification_id: n.id.to_string(),
        user_id: n.user_id.to_string(),
        notification_type: n.kind.clone(),
        payload: n.payload.clone(),
        source_id: n.source_id.map(|s| s.to_string()),
        created_at: n.created_at.timestamp_millis(),
    };
    // This process's consumers get the whole notification; the log, all but the quote.
    let quoted = ev.payload.remove(QUOTED);
    let payload = codec::encode_notification_event(&ev)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding notification event: {e}")))?;
    if let Some(q) = quoted {
        ev.payload.insert(QUOTED.to_string(), q);
    }
    Ok(OutboxRecord {
        event_id: n.id,
        topic: livechat_schemas::NOTIFICATIONS_TOPIC.to_string(),
        key: ev.user_id.clone(),
        payload,
        created_at_ms: ev.created_at,
        headers: Vec::new(),
        event: Some(Arc::new(TopicEvent::Notification(ev))),
    })
}

/// The notification a notification event carries (None if its ids are malformed).
pub fn notification_of(
    ev: &livechat_schemas::NotificationEvent,
) -> Option<crate::model::Notification> {
    Some(crate::model::Notification {
        id: Uuid::parse_str(&ev.notification_id).ok()?,
        user_id: Uuid::parse_str(&ev.user_id).ok()?,
        kind: ev.notification_type.clone(),
        payload: ev.payload.clone(),
        read: false,
        source_id: ev
            .source_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok()),
        created_at: crate::from_ms(ev.created_at),
    })
}

fn parse_id(s: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(s)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event id {s:?} is not a UUID: {e}")))
}

/// Encodes a room event as an outbox record keyed by room id (the event rides along, with a
/// sealed event's clear fields for this process's consumers; the payload has them sealed only).
pub fn room_record(mut ev: RoomEvent) -> Result<OutboxRecord, AppError> {
    let payload = codec::encode_logged_room_event(&mut ev)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding room event: {e}")))?;
    Ok(OutboxRecord {
        event_id: parse_id(&ev.event_id)?,
        topic: ROOM_EVENTS_TOPIC.to_string(),
        key: ev.room_id.clone(),
        payload,
        created_at_ms: ev.occurred_at,
        headers: crate::trace::record_headers(),
        event: Some(Arc::new(TopicEvent::Room(ev))),
    })
}

/// A record of a compacted latest-state topic: `payload` None is the key's tombstone.
fn state_record(topic: &str, key: String, payload: Option<Vec<u8>>, at_ms: i64) -> OutboxRecord {
    OutboxRecord {
        event_id: Uuid::now_v7(),
        topic: topic.to_string(),
        key,
        // The log's tombstone is an empty value (never a framed record: those have a header).
        payload: payload.unwrap_or_default(),
        created_at_ms: at_ms,
        headers: crate::trace::record_headers(),
        event: None,
    }
}

/// The room as it is now, for the compacted `chat.rooms.v1`; with `deleted`, its tombstone.
pub fn room_state_record(room: &Room, deleted: bool) -> Result<OutboxRecord, AppError> {
    let at = crate::now().timestamp_millis();
    if deleted {
        return Ok(state_record(ROOMS_TOPIC, room.id.to_string(), None, at));
    }
    let state = RoomState {
        room_id: room.id.to_string(),
        name: room.name.clone(),
        owner_id: room.created_by.to_string(),
        visibility: room.visibility().as_str().to_string(),
        is_public: room.is_public,
        description: room.description.clone(),
        created_at: room.created_at.timestamp_millis(),
        updated_at: room.updated_at.timestamp_millis(),
    };
    let payload = codec::encode_room_state(&state)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding room state: {e}")))?;
    Ok(state_record(ROOMS_TOPIC, state.room_id, Some(payload), at))
}

/// The user's public profile, for the compacted `chat.users.v1`.
pub fn user_state_record(user: &crate::model::User) -> Result<OutboxRecord, AppError> {
    let state = UserState {
        user_id: user.id.to_string(),
        username: user.username.clone(),
        created_at: user.created_at.timestamp_millis(),
    };
    let payload = codec::encode_user_state(&state)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding user state: {e}")))?;
    let at = user.updated_at.timestamp_millis();
    Ok(state_record(USERS_TOPIC, state.user_id, Some(payload), at))
}

/// The tombstone of an erased user's profile on the compacted `chat.users.v1`.
pub fn user_tombstone(user: UserId) -> OutboxRecord {
    let at = crate::now().timestamp_millis();
    state_record(USERS_TOPIC, user.to_string(), None, at)
}

/// The key of a member's records on the compacted per-member tables (`chat.memberships.v1`,
/// `chat.read-markers.v1`): `<room>:<user>`, so a room's members share its prefix.
fn member_key(room: RoomId, user: UserId) -> String {
    format!("{room}:{user}")
}

/// A membership as it begins, for the compacted `chat.memberships.v1` (key `<room>:<user>`).
pub fn membership_record(
    room: RoomId,
    user: UserId,
    username: Option<&str>,
    role: Role,
    at: DateTime<Utc>,
) -> Result<OutboxRecord, AppError> {
    let state = MembershipState {
        room_id: room.to_string(),
        user_id: user.to_string(),
        username: username.map(str::to_string),
        role: role.as_str().to_string(),
        joined_at: at.timestamp_millis(),
    };
    let payload = codec::encode_membership_state(&state)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding membership: {e}")))?;
    Ok(state_record(
        MEMBERSHIPS_TOPIC,
        member_key(room, user),
        Some(payload),
        at.timestamp_millis(),
    ))
}

/// A membership's end (left, removed, or its room deleted): its key's tombstones on
/// `chat.memberships.v1` and `chat.read-markers.v1`.
pub fn membership_end(room: RoomId, user: UserId) -> [OutboxRecord; 2] {
    let at = crate::now().timestamp_millis();
    let key = member_key(room, user);
    [
        state_record(MEMBERSHIPS_TOPIC, key.clone(), None, at),
        state_record(READ_MARKERS_TOPIC, key, None, at),
    ]
}

/// A member's read marker moved forward, for the compacted `chat.read-markers.v1` (key
/// `<room>:<user>`).
pub fn read_marker_record(
    room: RoomId,
    user: UserId,
    last_read_seq: i64,
    at: DateTime<Utc>,
) -> Result<OutboxRecord, AppError> {
    let state = ReadMarkerState {
        room_id: room.to_string(),
        user_id: user.to_string(),
        last_read_seq,
        updated_at: at.timestamp_millis(),
    };
    let payload = codec::encode_read_marker_state(&state)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding read marker: {e}")))?;
    Ok(state_record(
        READ_MARKERS_TOPIC,
        member_key(room, user),
        Some(payload),
        state.updated_at,
    ))
}

/// Encodes a user event as an outbox record keyed by user id (the event rides along).
pub fn user_record(ev: UserEvent) -> Result<OutboxRecord, AppError> {
    let payload = codec::encode_user_event(&ev)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding user event: {e}")))?;
    Ok(OutboxRecord {
        event_id: parse_id(&ev.event_id)?,
        topic: USER_EVENTS_TOPIC.to_string(),
        key: ev.user_id.clone(),
        payload,
        created_at_ms: ev.occurred_at,
        headers: crate::trace::record_headers(),
        event: Some(Arc::new(TopicEvent::User(ev))),
    })
}
