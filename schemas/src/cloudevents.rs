//! The CloudEvents 1.0 attributes of a topic record, as the Kafka protocol binding's binary mode
//! carries them: `ce_`-prefixed headers, the data's media type in `content-type`, the event
//! itself as the record value. Tools that understand CloudEvents (and people reading headers)
//! then know what a record is without decoding it.

use chrono::{DateTime, SecondsFormat};

use crate::{RoomEvent, TopicEvent};

pub const SPEC_VERSION: &str = "1.0";
/// The record value's media type: Avro in the Confluent wire format (a zero byte, the schema's
/// id in the registry, then the Avro body).
pub const CONTENT_TYPE: &str = "application/avro";

/// `ce_specversion`, `ce_id` (the event id), `ce_source`, `ce_type` (e.g.
/// `livechat.room.message_sent`), `ce_time` (RFC 3339, the event's occurrence), `ce_subject`
/// (the room of a room event, the user of a user event or notification) and `content-type`.
pub fn headers(ev: &TopicEvent) -> [(&'static str, String); 7] {
    match ev {
        TopicEvent::Room(e) => room(e),
        TopicEvent::User(e) => build(
            &e.event_id,
            format!("livechat.user.{}", e.event_type.to_lowercase()),
            e.occurred_at,
            &e.user_id,
            "/livechat/users",
        ),
        TopicEvent::Notification(e) => build(
            &e.event_id,
            format!(
                "livechat.notification.{}",
                e.notification_type.to_lowercase()
            ),
            e.created_at,
            &e.user_id,
            "/livechat/notifications",
        ),
    }
}

/// The headers of a record of `topic` and the event's time (epoch ms): from its event when at
/// hand, else decoded from its payload; none for a dead letter (JSON, not an event) or a
/// payload that does not decode.
pub fn of_record(
    topic: &str,
    event: Option<&TopicEvent>,
    payload: &[u8],
) -> Option<([(&'static str, String); 7], i64)> {
    if topic == crate::DEAD_LETTER_TOPIC {
        return None;
    }
    match event {
        Some(ev) => Some((headers(ev), ev.occurred_at())),
        None => crate::codec::decode(payload)
            .ok()
            .map(|ev| (headers(&ev), ev.occurred_at())),
    }
}

/// [`headers`] of a room event.
pub fn room(e: &RoomEvent) -> [(&'static str, String); 7] {
    build(
        &e.event_id,
        format!("livechat.room.{}", e.event_type.to_lowercase()),
        e.occurred_at,
        &e.room_id,
        "/livechat/rooms",
    )
}

fn build(
    id: &str,
    kind: String,
    at_ms: i64,
    subject: &str,
    source: &str,
) -> [(&'static str, String); 7] {
    let time = DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default();
    [
        ("ce_specversion", SPEC_VERSION.to_string()),
        ("ce_id", id.to_string()),
        ("ce_source", source.to_string()),
        ("ce_type", kind),
        ("ce_time", time),
        ("ce_subject", subject.to_string()),
        ("content-type", CONTENT_TYPE.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_event_names_itself() {
        let ev = TopicEvent::Room(RoomEvent {
            event_id: "0190c2d4-0000-7000-8000-000000000001".into(),
            event_type: "MESSAGE_SENT".into(),
            occurred_at: 1_764_201_600_123,
            room_id: "5f0c6d3e-1111-4222-8333-944455556666".into(),
            ..Default::default()
        });
        let got: Vec<(&str, String)> = headers(&ev).into_iter().collect();
        assert_eq!(
            got,
            vec![
                ("ce_specversion", "1.0".to_string()),
                ("ce_id", "0190c2d4-0000-7000-8000-000000000001".to_string()),
                ("ce_source", "/livechat/rooms".to_string()),
                ("ce_type", "livechat.room.message_sent".to_string()),
                ("ce_time", "2025-11-27T00:00:00.123Z".to_string()),
                (
                    "ce_subject",
                    "5f0c6d3e-1111-4222-8333-944455556666".to_string()
                ),
                ("content-type", "application/avro".to_string()),
            ]
        );
    }
}
