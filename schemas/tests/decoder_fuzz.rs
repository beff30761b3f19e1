//! Property-based fuzzing of the record decoder (every consumer and every replay reads the log
//! through it, and data teams may write anything to a topic): arbitrary bytes, and valid
//! records of each topic with bytes flipped, cut or inserted, must decode or be refused with an
//! error — never a panic, never an allocation sized by a hostile length. Arbitrary events must
//! come back from the wire format unchanged.
//!
//! Cases per property: `PROPTEST_CASES` (default below); `docs/reliability.md` says how many
//! ran. A longer run: `PROPTEST_CASES=1000000 cargo test -p livechat-schemas --test decoder_fuzz`.

use std::collections::BTreeMap;

use livechat_schemas::codec::{
    decode, encode_notification_event, encode_room_event, encode_user_event,
};
use livechat_schemas::{NotificationEvent, RoomEvent, TopicEvent, UserEvent};
use proptest::prelude::*;

/// Cases per property when `PROPTEST_CASES` is not set: enough to reach every field of every
/// schema many times, small enough for every CI run (half a minute in a debug build).
const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    ProptestConfig {
        cases,
        // Failures are shrunk and reported by the test; nothing to persist in the repository.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including control characters and the empty string.
    any::<String>().prop_map(|s| s.chars().take(40).collect())
}

fn room_event() -> impl Strategy<Value = RoomEvent> {
    (
        (text(), text(), any::<i64>(), text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<i64>()),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..4),
    )
        .prop_map(
            |(
                (event_id, event_type, occurred_at, room_id),
                actor,
                name,
                public,
                seq,
                content,
                mentions,
            )| RoomEvent {
                event_id,
                event_type,
                occurred_at,
                room_id,
                actor_id: actor.clone(),
                subject_user_id: actor,
                room_name: name,
                room_is_public: public,
                seq,
                message_created_at: seq,
                content,
                mentioned_user_ids: mentions,
                ..RoomEvent::default()
            },
        )
}

fn user_event() -> impl Strategy<Value = UserEvent> {
    (
        text(),
        text(),
        any::<i64>(),
        text(),
        proptest::option::of(text()),
    )
        .prop_map(
            |(event_id, event_type, occurred_at, user_id, username)| UserEvent {
                event_id,
                event_type,
                occurred_at,
                user_id,
                username,
                notification_id: None,
            },
        )
}

fn notification_event() -> impl Strategy<Value = NotificationEvent> {
    (
        (text(), text(), text(), text()),
        proptest::collection::btree_map(text(), text(), 0..4),
        proptest::option::of(text()),
        any::<i64>(),
    )
        .prop_map(
            |(
                (event_id, notification_id, user_id, notification_type),
                payload,
                source_id,
                created_at,
            )| {
                NotificationEvent {
                    event_id,
                    notification_id,
                    user_id,
                    notification_type,
                    payload: payload.into_iter().collect::<BTreeMap<_, _>>(),
                    source_id,
                    created_at,
                }
            },
        )
}

/// A valid record of any topic, encoded.
fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        room_event().prop_map(|e| encode_room_event(&e).expect("encodes")),
        user_event().prop_map(|e| encode_user_event(&e).expect("encodes")),
        notification_event().prop_map(|e| encode_notification_event(&e).expect("encodes")),
    ]
}

/// A change of a record: flip a byte, cut the tail, insert bytes, or overwrite a run with a
/// large varint (a hostile length or block count).
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    HugeLength(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::HugeLength),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let n = bytes.len().max(1);
    match m {
        Mutation::Flip(at, x) => {
            if let Some(b) = bytes.get_mut(at % n) {
                *b ^= x;
            }
        }
        Mutation::Cut(at) => bytes.truncate(at % n),
        Mutation::Insert(at, b) => {
            let at = at % n;
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::HugeLength(at) => {
            // Zigzag varint of 2^62: a length or count no record could have.
            let huge = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
            let at = (at % n).max(5.min(bytes.len()));
            let end = (at + huge.len()).min(bytes.len());
            bytes.splice(at..end, huge);
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_decode_or_are_refused(
        id in 1u32..=3, body in proptest::collection::vec(any::<u8>(), 0..256)
    ) {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }

    #[test]
    fn damaged_records_decode_or_are_refused(
        rec in record(), changes in proptest::collection::vec(mutation(), 1..4)
    ) {
        let damaged = changes.iter().fold(rec, apply);
        let _ = decode(&damaged);
    }

    #[test]
    fn room_events_come_back_unchanged(ev in room_event()) {
        let bytes = encode_room_event(&ev).expect("encodes");
        prop_assert_eq!(decode(&bytes).expect("decodes"), TopicEvent::Room(ev));
    }

    #[test]
    fn notifications_come_back_unchanged(ev in notification_event()) {
        let bytes = encode_notification_event(&ev).expect("encodes");
        prop_assert_eq!(decode(&bytes).expect("decodes"), TopicEvent::Notification(ev));
    }
}
