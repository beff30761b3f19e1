//! Builds the topic records (outbox entries) for each state change.

use chrono::{DateTime, Utc};
use livechat_schemas::{codec, RoomEvent, UserEvent, ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC};
use uuid::Uuid;

use crate::error::AppError;
use crate::model::{OutboxRecord, Room, RoomId, UserId};

/// A room event of `event_type` with a fresh event id, stamped at `at`.
pub fn room_event(event_type: &str, room: RoomId, at: DateTime<Utc>) -> RoomEvent {
    RoomEvent {
        event_id: Uuid::new_v4().to_string(),
        event_type: event_type.to_string(),
        occurred_at: at.timestamp_millis(),
        room_id: room.to_string(),
        ..Default::default()
    }
}

/// A room event that carries the room's descriptive fields (name, owner, visibility).
pub fn room_event_for(
    event_type: &str,
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

pub fn user_event(event_type: &str, user: UserId, at: DateTime<Utc>) -> UserEvent {
    UserEvent {
        event_id: Uuid::new_v4().to_string(),
        event_type: event_type.to_string(),
        occurred_at: at.timestamp_millis(),
        user_id: user.to_string(),
        ..Default::default()
    }
}

fn parse_id(s: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(s)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("event id {s:?} is not a UUID: {e}")))
}

/// Encodes a room event as an outbox record keyed by room id.
pub fn room_record(ev: &RoomEvent) -> Result<OutboxRecord, AppError> {
    let payload = codec::encode_room_event(ev)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding room event: {e}")))?;
    Ok(OutboxRecord {
        event_id: parse_id(&ev.event_id)?,
        topic: ROOM_EVENTS_TOPIC.to_string(),
        key: ev.room_id.clone(),
        payload,
        created_at_ms: ev.occurred_at,
    })
}

/// Encodes a user event as an outbox record keyed by user id.
pub fn user_record(ev: &UserEvent) -> Result<OutboxRecord, AppError> {
    let payload = codec::encode_user_event(ev)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding user event: {e}")))?;
    Ok(OutboxRecord {
        event_id: parse_id(&ev.event_id)?,
        topic: USER_EVENTS_TOPIC.to_string(),
        key: ev.user_id.clone(),
        payload,
        created_at_ms: ev.occurred_at,
    })
}
