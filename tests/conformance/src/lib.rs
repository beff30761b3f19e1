//! The shared conformance suite: what every adapter of a port must do, whatever its engine.
//!
//! Each module holds async checks over `&dyn Port`; the macros at the bottom stamp them out as
//! named `#[tokio::test]`s for one adapter, so a failure reads as the broken behaviour. Every
//! check makes its own ids (a fresh room, user, topic or group), so the suite can run against a
//! shared real server without cleaning up between runs.

pub mod analytics;
pub mod cache;
pub mod directory;
pub mod history;
pub mod log;
pub mod presence;

use chrono::{DateTime, Utc};
use livechat_core::model::*;
use uuid::Uuid;

/// A timestamp at millisecond precision (what every store keeps).
pub fn at(ms_offset: i64) -> DateTime<Utc> {
    livechat_core::from_ms(livechat_core::now().timestamp_millis() + ms_offset)
}

pub fn user(name_prefix: &str) -> User {
    let id = Uuid::new_v4();
    User {
        id,
        username: format!("{name_prefix}_{}", &id.simple().to_string()[..10]),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        last_active: None,
        created_at: at(0),
        updated_at: at(0),
    }
}

pub fn room(owner: UserId, public: bool) -> Room {
    let id = Uuid::new_v4();
    Room {
        id,
        name: format!("room-{}", &id.simple().to_string()[..12]),
        description: Some("a room".into()),
        is_public: public,
        created_by: owner,
        participants_count: 1,
        last_seq: 0,
        created_at: at(0),
        updated_at: at(0),
    }
}

pub fn message(room: RoomId, seq: i64, content: &str) -> StoredMessage {
    StoredMessage {
        id: Uuid::new_v4(),
        room_id: room,
        seq,
        user_id: Uuid::new_v4(),
        username: "someone".into(),
        content: content.into(),
        edited: false,
        deleted: false,
        created_at: at(seq),
        updated_at: at(seq),
        client_msg_id: Some(format!("c{seq}")),
    }
}

/// An outbox/log record with a recognisable payload.
pub fn record(topic: &str, key: &str, body: &str) -> OutboxRecord {
    OutboxRecord {
        event_id: Uuid::new_v4(),
        topic: topic.into(),
        key: key.into(),
        payload: body.as_bytes().to_vec(),
        created_at_ms: livechat_core::now().timestamp_millis(),
        headers: Vec::new(),
    }
}

/// Stamps out one `#[tokio::test]` per listed check; `$make` builds a fresh adapter per test.
#[macro_export]
macro_rules! suite {
    ($module:ident, $make:expr, [$($check:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let adapter = $make.await;
                $crate::$module::$check(&adapter).await;
            }
        )*
    };
}
