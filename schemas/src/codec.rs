//! Confluent wire format: `0x00`, schema id (u32 big-endian), Avro binary body.

use apache_avro::{from_avro_datum, from_value, write_avro_datum_ref};

use crate::registry::{
    self, NOTIFICATIONS_SCHEMA_ID, ROOM_EVENTS_SCHEMA_ID, USER_EVENTS_SCHEMA_ID,
};
use crate::{NotificationEvent, RoomEvent, TopicEvent, UserEvent};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record shorter than the 5-byte wire header")]
    IncompleteHeader,
    #[error("invalid magic byte {0} (expected 0)")]
    InvalidMagicByte(u8),
    #[error("schema id {0} is not registered")]
    UnknownSchemaId(u32),
    #[error("avro: {0}")]
    Avro(String),
}

fn encode<T: serde::Serialize>(schema_id: u32, value: &T) -> Result<Vec<u8>, CodecError> {
    let schema = &registry::by_id(schema_id)
        .ok_or(CodecError::UnknownSchemaId(schema_id))?
        .schema;
    let mut out = Vec::with_capacity(256);
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    // Serialized straight into the buffer against the schema (unions chosen by it), with no
    // intermediate value tree: this runs for every record, on the path of every send.
    write_avro_datum_ref(schema, value, &mut out).map_err(|e| CodecError::Avro(e.to_string()))?;
    Ok(out)
}

pub fn encode_room_event(ev: &RoomEvent) -> Result<Vec<u8>, CodecError> {
    encode(ROOM_EVENTS_SCHEMA_ID, ev)
}

pub fn encode_user_event(ev: &UserEvent) -> Result<Vec<u8>, CodecError> {
    encode(USER_EVENTS_SCHEMA_ID, ev)
}

pub fn encode_notification_event(ev: &NotificationEvent) -> Result<Vec<u8>, CodecError> {
    encode(NOTIFICATIONS_SCHEMA_ID, ev)
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

/// Decodes a framed record of any LiveChat topic.
pub fn decode(bytes: &[u8]) -> Result<TopicEvent, CodecError> {
    let id = schema_id(bytes)?;
    let registered = registry::by_id(id).ok_or(CodecError::UnknownSchemaId(id))?;
    let mut body = &bytes[5..];
    let value = from_avro_datum(&registered.schema, &mut body, None)
        .map_err(|e| CodecError::Avro(e.to_string()))?;
    if !body.is_empty() {
        return Err(CodecError::Avro(format!(
            "{} trailing bytes after the record",
            body.len()
        )));
    }
    match id {
        ROOM_EVENTS_SCHEMA_ID => from_value::<RoomEvent>(&value).map(TopicEvent::Room),
        USER_EVENTS_SCHEMA_ID => from_value::<UserEvent>(&value).map(TopicEvent::User),
        NOTIFICATIONS_SCHEMA_ID => {
            from_value::<NotificationEvent>(&value).map(TopicEvent::Notification)
        }
        other => return Err(CodecError::UnknownSchemaId(other)),
    }
    .map_err(|e| CodecError::Avro(e.to_string()))
}
