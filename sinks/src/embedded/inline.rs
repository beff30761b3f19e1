//! Read models the embedded store keeps in the same transaction as the log append: the message
//! history and the notifications. So once a write is acknowledged, every read sees what it
//! changed (an edit right after a send finds the message; a history read right after a send
//! has it), and no consumer copies the record a second time. The mappings are the processors'
//! own (passed in by the composition root), so a rebuild with `livechat replay` computes exactly
//! what was kept inline.

use livechat_core::events::notification_record;
use livechat_core::model::{HistoryOp, Notification, OutboxRecord};
use livechat_schemas::{codec, RoomEvent, TopicEvent, ROOM_EVENTS_TOPIC};
use rusqlite::Connection;

use super::db::user_err;
use super::{history, notifications};

/// The history change a room event makes (the history processor's mapping).
pub type HistoryMapping = fn(&RoomEvent) -> anyhow::Result<Option<HistoryOp>>;
/// The notifications a room event creates (the notifications processor's mapping).
pub type NotificationsMapping = fn(&RoomEvent) -> Vec<Notification>;

/// Which read models are kept inline, each with its mapping.
#[derive(Clone, Copy, Default)]
pub struct InlineReadModels {
    /// The `messages` table in the same file.
    pub history: Option<HistoryMapping>,
    /// The `notifications` table in the same file; each stored notification is also announced
    /// on `chat.notifications.v1` (appended with the records).
    pub notifications: Option<NotificationsMapping>,
}

impl InlineReadModels {
    /// Applies what `records` change to the read models, inside the caller's write; returns the
    /// records to append besides them (notification announcements).
    pub(super) fn apply(
        &self,
        conn: &Connection,
        records: &[OutboxRecord],
    ) -> rusqlite::Result<Vec<OutboxRecord>> {
        let mut more = Vec::new();
        let mut ops = Vec::new();
        for r in records {
            if r.topic != ROOM_EVENTS_TOPIC {
                continue;
            }
            let decoded;
            let ev = match r.event.as_deref() {
                Some(TopicEvent::Room(ev)) => ev,
                _ => {
                    decoded = codec::decode(&r.payload).map_err(user_err)?;
                    match &decoded {
                        TopicEvent::Room(ev) => ev,
                        _ => continue,
                    }
                }
            };
            if let Some(map) = self.history {
                if let Some(op) = map(ev).map_err(user_err)? {
                    ops.push(op);
                }
            }
            if let Some(map) = self.notifications {
                for n in map(ev) {
                    if notifications::insert_in(conn, &n)? {
                        more.push(notification_record(&n).map_err(user_err)?);
                    }
                }
            }
        }
        history::apply_in(conn, &ops)?;
        Ok(more)
    }
}
