//! The read models the embedded store keeps itself, with the processors' own mappings (passed in
//! by the composition root, so a rebuild with `livechat replay` computes exactly what the store
//! kept): the notifications in the same transaction as the log append (few, and read at once by
//! the client that caused them), the message history right behind the log in a file of its own
//! (see `history_follower.rs`).

use std::sync::Arc;

use livechat_core::events::notification_record;
use livechat_core::keyring::Keyring;
use livechat_core::model::{HistoryOp, Notification, OutboxRecord};
use livechat_schemas::{RoomEvent, TopicEvent, ROOM_EVENTS_TOPIC};
use rusqlite::Connection;

use super::db::user_err;
use super::notifications;

/// The history change a room event makes (the history processor's mapping).
pub type HistoryMapping = fn(&RoomEvent) -> anyhow::Result<Option<HistoryOp>>;
/// The notifications a room event creates (the notifications processor's mapping).
pub type NotificationsMapping = fn(&RoomEvent) -> Vec<Notification>;

/// Which read models the store keeps, each with its mapping.
#[derive(Clone, Copy, Default)]
pub struct ReadModelMappings {
    /// `history.db`, kept right behind the log.
    pub history: Option<HistoryMapping>,
    /// The `notifications` table in the store's file, in the append's transaction; each stored
    /// notification is also announced on `chat.notifications.v1` (appended with the records).
    pub notifications: Option<NotificationsMapping>,
}

/// The notifications kept inline, with the keyring that opens a sealed event read back.
#[derive(Clone)]
pub(super) struct InlineNotifications {
    pub(super) map: NotificationsMapping,
    pub(super) keyring: Arc<Keyring>,
}

impl InlineNotifications {
    /// Stores the notifications `records` create, inside the caller's write; returns their
    /// announcements, to append besides the records.
    pub(super) fn apply(
        &self,
        conn: &Connection,
        records: &[OutboxRecord],
    ) -> rusqlite::Result<Vec<OutboxRecord>> {
        let mut more = Vec::new();
        for r in records {
            if r.topic != ROOM_EVENTS_TOPIC {
                continue;
            }
            let decoded;
            let ev = match r.event.as_deref() {
                Some(TopicEvent::Room(ev)) => ev,
                _ => {
                    decoded = self.keyring.decode(&r.payload).map_err(user_err)?;
                    match &decoded {
                        TopicEvent::Room(ev) => ev,
                        _ => continue,
                    }
                }
            };
            for n in (self.map)(ev) {
                if notifications::insert_in(conn, &n)? {
                    more.push(notification_record(&n).map_err(user_err)?);
                }
            }
        }
        Ok(more)
    }
}
