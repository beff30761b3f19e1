//! Confluent wire format: `0x00`, schema id (u32 big-endian), Avro binary body.

use std::io::BufRead;

use serde_avro_fast::de::DeserializerState;
use serde_avro_fast::ser::SerializerConfig;

use crate::registry::{
    self, MEMBERSHIPS_SCHEMA_ID, NOTIFICATIONS_SCHEMA_ID, READ_MARKERS_SCHEMA_ID, ROOMS_SCHEMA_ID,
    ROOM_EVENTS_SCHEMA_ID, USERS_SCHEMA_ID, USER_EVENTS_SCHEMA_ID,
};
use crate::{
    MembershipState, NotificationEvent, ReadMarkerState, RoomEvent, RoomState, TopicEvent,
    UserEvent, UserState,
};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record shorter than the 5-byte wire header")]
    IncompleteHeader,
    #[error("invalid magic byte {0} (expected 0)")]
    InvalidMagicByte(u8),
    #[error("schema id {0} is not registered")]
    UnknownSchemaId(u32),
    /// A latest-state table's record (rooms, users, memberships): read as a table, not decoded
    /// as an event.
    #[error("schema id {0} is a state table's record, not an event")]
    NotAnEvent(u32),
    #[error("avro: {0}")]
    Avro(String),
}

fn encode<T: serde::Serialize>(schema_id: u32, value: &T) -> Result<Vec<u8>, CodecError> {
    let schema = &registry::by_id(schema_id)
        .ok_or(CodecError::UnknownSchemaId(schema_id))?
        .codec;
    let mut out = Vec::with_capacity(256);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    // Serialized straight into the buffer against the schema (unions chosen by it), with no
    // intermediate value tree: this runs for every record, on the path of every send.
    serde_avro_fast::to_datum(value, out, &mut SerializerConfig::new(schema))
        .map_err(|e| CodecError::Avro(e.to_string()))
}

/// A room event as the log carries it: a sealed event's clear fields are left out (they travel
/// only inside `sealed`). [`encode_logged_room_event`] does the same without a copy.
pub fn encode_room_event(ev: &RoomEvent) -> Result<Vec<u8>, CodecError> {
    if ev.sealed.is_some() && (ev.content.is_some() || ev.request_message.is_some()) {
        return encode_logged_room_event(&mut ev.clone());
    }
    encode(ROOM_EVENTS_SCHEMA_ID, ev)
}

/// Encodes a room event as the log carries it, taking a sealed event's clear fields out for
/// the time of the encoding (on the path of every send: no copy of the event).
pub fn encode_logged_room_event(ev: &mut RoomEvent) -> Result<Vec<u8>, CodecError> {
    if ev.sealed.is_none() {
        return encode(ROOM_EVENTS_SCHEMA_ID, ev);
    }
    let content = ev.content.take();
    let request_message = ev.request_message.take();
    let encoded = encode(ROOM_EVENTS_SCHEMA_ID, ev);
    ev.content = content;
    ev.request_message = request_message;
    encoded
}

pub fn encode_user_event(ev: &UserEvent) -> Result<Vec<u8>, CodecError> {
    encode(USER_EVENTS_SCHEMA_ID, ev)
}

pub fn encode_notification_event(ev: &NotificationEvent) -> Result<Vec<u8>, CodecError> {
    encode(NOTIFICATIONS_SCHEMA_ID, ev)
}

/// A room's latest state, for the compacted `chat.rooms.v1`.
pub fn encode_room_state(state: &RoomState) -> Result<Vec<u8>, CodecError> {
    encode(ROOMS_SCHEMA_ID, state)
}

/// A user's profile, for the compacted `chat.users.v1`.
pub fn encode_user_state(state: &UserState) -> Result<Vec<u8>, CodecError> {
    encode(USERS_SCHEMA_ID, state)
}

/// A membership, for the compacted `chat.memberships.v1`.
pub fn encode_membership_state(state: &MembershipState) -> Result<Vec<u8>, CodecError> {
    encode(MEMBERSHIPS_SCHEMA_ID, state)
}

/// A read marker, for the compacted `chat.read-markers.v1`.
pub fn encode_read_marker_state(state: &ReadMarkerState) -> Result<Vec<u8>, CodecError> {
    encode(READ_MARKERS_SCHEMA_ID, state)
}

/// Reads the schema id of a framed record without decoding the body.
pub fn schema_id(bytes: &[u8]) -> Result<u32, CodecError> {
    if bytes.len() < 5 {
        return Err(CodecError::IncompleteHeader);
    }
    if bytes[0] != 0 {
        return Err(CodecError::InvalidMagicByte(bytes[0]));
    }
    Ok(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]))
}

/// Decodes a framed record of any LiveChat topic: written with one of our schemas, or with a
/// learned writer schema one of ours can read (see [`registry::reader_id_for`]).
pub fn decode(bytes: &[u8]) -> Result<TopicEvent, CodecError> {
    let id = schema_id(bytes)?;
    let body = &bytes[5..];
    // An earlier version of one of ours decodes into the current version's type, like a
    // learned writer: the fields it lacks take their defaults.
    if let Some(registered) = registry::by_id(id) {
        return decode_as(registry::current_of(registered).id, body, &registered.codec);
    }
    match registry::learned_writer(id) {
        Some(w) => decode_as(w.reader.id, body, &w.codec),
        None => Err(CodecError::UnknownSchemaId(id)),
    }
}

/// Decodes a body written with `writer` into the type of the current schema `reader_id`.
fn decode_as(
    reader_id: u32,
    body: &[u8],
    writer: &serde_avro_fast::Schema,
) -> Result<TopicEvent, CodecError> {
    match reader_id {
        ROOM_EVENTS_SCHEMA_ID => decode_body(body, writer).map(TopicEvent::Room),
        USER_EVENTS_SCHEMA_ID => decode_body(body, writer).map(TopicEvent::User),
        NOTIFICATIONS_SCHEMA_ID => decode_body(body, writer).map(TopicEvent::Notification),
        ROOMS_SCHEMA_ID | USERS_SCHEMA_ID | MEMBERSHIPS_SCHEMA_ID | READ_MARKERS_SCHEMA_ID => {
            Err(CodecError::NotAnEvent(reader_id))
        }
        other => Err(CodecError::UnknownSchemaId(other)),
    }
}

/// Decodes an Avro body straight into its Rust type (every record a consumer or a replay reads
/// goes through here) with the schema it was written with, refusing bytes left over after the
/// record.
fn decode_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    writer: &serde_avro_fast::Schema,
) -> Result<T, CodecError> {
    let mut state = DeserializerState::from_slice(body, writer);
    let value =
        T::deserialize(state.deserializer()).map_err(|e| CodecError::Avro(e.to_string()))?;
    let left = state.into_reader().fill_buf().map_or(0, |rest| rest.len());
    if left > 0 {
        return Err(CodecError::Avro(format!(
            "{left} trailing bytes after the record"
        )));
    }
    Ok(value)
}
