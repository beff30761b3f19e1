//! The event model of every LiveChat topic.
//!
//! Layout:
//! - `avro/*.avsc` (beside `src/`) are the schemas, one per topic value; they are compiled into the
//!   binary with `include_str!`, so the files are the single source of truth.
//! - [`RoomEvent`], [`UserEvent`] and [`NotificationEvent`] are their Rust types (serde maps them
//!   field by field); [`event_type`] names every `event_type` value once.
//! - [`codec`] frames records in the Confluent wire format: magic byte `0`, a 4-byte big-endian
//!   schema id, then Avro binary.
//! - [`registry`] knows every schema with its stable id (the embedded registry).
//! - [`sealed`] encrypts what a person wrote under their own key, so erasing the key erases it
//!   from every copy of the log.

pub mod cloudevents;
pub mod codec;
pub mod event_type;
pub mod registry;
pub mod sealed;

pub use event_type::{NotificationType, RoomEventType, UserEventType};

use serde::{Deserialize, Serialize};

/// Topic of room-scoped events, keyed by room id.
pub const ROOM_EVENTS_TOPIC: &str = "chat.room-events.v1";
/// Topic of user-scoped events, keyed by user id.
pub const USER_EVENTS_TOPIC: &str = "chat.user-events.v1";
/// Topic of stored notifications, keyed by recipient user id (pushed live by every ingress).
pub const NOTIFICATIONS_TOPIC: &str = "chat.notifications.v1";
/// Dead-letter topic: records a processor could not decode or process.
pub const DEAD_LETTER_TOPIC: &str = "chat.dead-letter.v1";
/// Compacted: each room's latest state ([`RoomState`]), keyed by room id; a tombstone (no
/// value) when the room is deleted.
pub const ROOMS_TOPIC: &str = "chat.rooms.v1";
/// Compacted: each user's public profile ([`UserState`]), keyed by user id.
pub const USERS_TOPIC: &str = "chat.users.v1";
/// Compacted: each membership ([`MembershipState`]), keyed by `<room id>:<user id>`; a
/// tombstone when it ends.
pub const MEMBERSHIPS_TOPIC: &str = "chat.memberships.v1";
/// Compacted: each member's read marker ([`ReadMarkerState`]), keyed by `<room id>:<user id>`;
/// a tombstone when the membership ends.
pub const READ_MARKERS_TOPIC: &str = "chat.read-markers.v1";
/// The latest-state tables: compacted to each key's newest record (on Kafka by the broker, in
/// the embedded log at the append).
pub const TABLE_TOPICS: [&str; 4] = [
    ROOMS_TOPIC,
    USERS_TOPIC,
    MEMBERSHIPS_TOPIC,
    READ_MARKERS_TOPIC,
];
/// Distributed mode, internal: sends waiting for their seq (a `MESSAGE_SENT` room event without
/// it), keyed by room id, so the one sequencer that owns a room's partition sees its sends in order.
pub const MESSAGE_COMMANDS_TOPIC: &str = "chat.message-commands.v1";
/// Distributed mode, internal: the sequencer's answer to each send (the sequenced room event, or
/// the first one for a retried `client_msg_id`), keyed by the ingress process that asked.
pub const MESSAGE_RECEIPTS_TOPIC: &str = "chat.message-receipts.v1";
/// Distributed mode, internal and compacted: each room's latest sequenced event, keyed by room id,
/// from which a sequencer taking over a partition learns the rooms' last seqs.
pub const SEQUENCER_STATE_TOPIC: &str = "chat.sequencer-state.v1";

/// One state change of a room (see `avro/chat.room-events.v1.avsc` for field docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RoomEvent {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: i64,
    pub room_id: String,
    pub actor_id: Option<String>,
    pub subject_user_id: Option<String>,
    pub subject_username: Option<String>,
    pub room_name: Option<String>,
    pub room_owner_id: Option<String>,
    pub room_is_public: Option<bool>,
    pub room_description: Option<String>,
    pub message_id: Option<String>,
    pub seq: Option<i64>,
    pub client_msg_id: Option<String>,
    pub content: Option<String>,
    pub message_created_at: Option<i64>,
    pub request_id: Option<String>,
    pub request_message: Option<String>,
    #[serde(default)]
    pub mentioned_user_ids: Vec<String>,
    #[serde(default)]
    pub reply_to_seq: Option<i64>,
    #[serde(default)]
    pub reaction: Option<String>,
    #[serde(default)]
    pub thread_root_seq: Option<i64>,
    #[serde(default)]
    pub answered_user_ids: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// What the subject wrote, sealed under their content key (see [`sealed`]); in this
    /// process's own copy of an event the clear fields are kept beside it.
    #[serde(default, with = "serde_bytes")]
    pub sealed: Option<Vec<u8>>,
}

/// A file shared with a message (see the `Attachment` record in `avro/chat.room-events.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Attachment {
    pub key: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    #[serde(default)]
    pub thumbnail: Option<String>,
}

/// One account or notification change of a user (see `avro/chat.user-events.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserEvent {
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: i64,
    pub user_id: String,
    pub username: Option<String>,
    pub notification_id: Option<String>,
}

/// A notification for a user (see `avro/chat.notifications.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NotificationEvent {
    pub event_id: String,
    pub notification_id: String,
    pub user_id: String,
    pub notification_type: String,
    #[serde(default)]
    pub payload: std::collections::BTreeMap<String, String>,
    pub source_id: Option<String>,
    pub created_at: i64,
}

/// A room's latest state on the compacted `chat.rooms.v1` (see `avro/chat.rooms.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RoomState {
    pub room_id: String,
    pub name: String,
    pub owner_id: String,
    pub visibility: String,
    pub is_public: bool,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A user's public profile on the compacted `chat.users.v1` (see `avro/chat.users.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UserState {
    pub user_id: String,
    pub username: String,
    pub created_at: i64,
}

/// A membership on the compacted `chat.memberships.v1` (see `avro/chat.memberships.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MembershipState {
    pub room_id: String,
    pub user_id: String,
    pub username: Option<String>,
    pub role: String,
    pub joined_at: i64,
}

/// A read marker on the compacted `chat.read-markers.v1` (see `avro/chat.read-markers.v1.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReadMarkerState {
    pub room_id: String,
    pub user_id: String,
    pub last_read_seq: i64,
    pub updated_at: i64,
}

/// A decoded record of any LiveChat topic.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // decoded once per record and consumed at once; boxing buys nothing
pub enum TopicEvent {
    Room(RoomEvent),
    User(UserEvent),
    Notification(NotificationEvent),
}

impl TopicEvent {
    /// When it happened (epoch ms): what a Kafka record of it carries as its timestamp.
    pub fn occurred_at(&self) -> i64 {
        match self {
            TopicEvent::Room(e) => e.occurred_at,
            TopicEvent::User(e) => e.occurred_at,
            TopicEvent::Notification(e) => e.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_room_event() -> RoomEvent {
        RoomEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: "MESSAGE_SENT".into(),
            occurred_at: 1_700_000_000_123,
            room_id: uuid::Uuid::new_v4().to_string(),
            actor_id: Some("a".into()),
            seq: Some(42),
            content: Some("héllo @bob".into()),
            mentioned_user_ids: vec!["b".into()],
            ..Default::default()
        }
    }

    /// The direct serializer writes exactly the bytes of apache-avro's value-tree encoder, so
    /// records written before and after the switch are alike (checksums, consumers), and the
    /// direct decoder reads what apache-avro reads.
    #[test]
    fn the_direct_encoder_writes_the_value_encoders_bytes() {
        let full = sample_room_event();
        let sparse = RoomEvent {
            event_id: "e".into(),
            event_type: "ROOM_CREATED".into(),
            room_id: "r".into(),
            ..Default::default()
        };
        for ev in [full, sparse] {
            let schema = &registry::by_id(registry::ROOM_EVENTS_SCHEMA_ID)
                .unwrap()
                .schema;
            let value = apache_avro::to_value(&ev).unwrap().resolve(schema).unwrap();
            let mut expected = vec![0, 0, 0, 0, registry::ROOM_EVENTS_SCHEMA_ID as u8];
            expected.extend(apache_avro::to_avro_datum(schema, value).unwrap());
            assert_eq!(codec::encode_room_event(&ev).unwrap(), expected);
            let tree = apache_avro::from_avro_datum(schema, &mut &expected[5..], None).unwrap();
            let theirs: RoomEvent = apache_avro::from_value(&tree).unwrap();
            assert_eq!(codec::decode(&expected).unwrap(), TopicEvent::Room(theirs));
        }
    }

    #[test]
    fn room_event_round_trips_through_the_wire_format() {
        let ev = sample_room_event();
        let bytes = codec::encode_room_event(&ev).unwrap();
        assert_eq!(bytes[0], 0, "magic byte");
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        assert_eq!(id, registry::ROOM_EVENTS_SCHEMA_ID);
        match codec::decode(&bytes).unwrap() {
            TopicEvent::Room(back) => assert_eq!(back, ev),
            other => panic!("decoded to the wrong type: {other:?}"),
        }
    }

    #[test]
    fn user_event_round_trips() {
        let ev = UserEvent {
            event_id: "e".into(),
            event_type: "USER_REGISTERED".into(),
            occurred_at: 5,
            user_id: "u".into(),
            username: Some("alice".into()),
            notification_id: None,
        };
        let bytes = codec::encode_user_event(&ev).unwrap();
        assert_eq!(codec::decode(&bytes).unwrap(), TopicEvent::User(ev));
    }

    #[test]
    fn notification_event_round_trips() {
        let ev = NotificationEvent {
            event_id: "n".into(),
            notification_id: "n".into(),
            user_id: "u".into(),
            notification_type: "MENTION".into(),
            payload: [("room_name".to_string(), "général".to_string())]
                .into_iter()
                .collect(),
            source_id: Some("s".into()),
            created_at: 7,
        };
        let bytes = codec::encode_notification_event(&ev).unwrap();
        assert_eq!(codec::decode(&bytes).unwrap(), TopicEvent::Notification(ev));
    }

    #[test]
    fn malformed_records_are_rejected_with_a_reason() {
        assert!(matches!(
            codec::decode(&[]),
            Err(codec::CodecError::IncompleteHeader)
        ));
        assert!(matches!(
            codec::decode(&[1, 0, 0, 0, 1, 0]),
            Err(codec::CodecError::InvalidMagicByte(1))
        ));
        assert!(matches!(
            codec::decode(&[0, 0, 0, 0, 99, 0]),
            Err(codec::CodecError::UnknownSchemaId(99))
        ));
        let mut truncated = codec::encode_room_event(&sample_room_event()).unwrap();
        let mut longer = truncated.clone();
        truncated.truncate(12);
        assert!(matches!(
            codec::decode(&truncated),
            Err(codec::CodecError::Avro(_))
        ));
        longer.push(0);
        assert!(matches!(
            codec::decode(&longer),
            Err(codec::CodecError::Avro(e)) if e.contains("trailing")
        ));
    }

    #[test]
    fn every_schema_parses_and_has_a_unique_id() {
        let all = registry::all();
        assert_eq!(all.len(), 11);
        let mut ids: Vec<u32> = all.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
        for s in all {
            assert!(s.subject.ends_with("-value"));
        }
        assert_eq!(
            registry::current().count(),
            7,
            "one current version per topic"
        );
    }
}
