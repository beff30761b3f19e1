//! The history processor: room events → message store (inserts, edits, tombstones, purges).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::{HistoryOp, OutboxRecord, StoredMessage};
use livechat_core::ports::{MessageStore, WriteThrough};
use livechat_schemas::{codec, RoomEvent, RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC};
use uuid::Uuid;

use crate::runner::{Decoded, Processor};

/// Topics the history processor consumes.
pub const TOPICS: &[&str] = &[ROOM_EVENTS_TOPIC];

pub struct HistoryProcessor {
    pub store: Arc<dyn MessageStore>,
    pub group: String,
}

fn id(s: &Option<String>, what: &str) -> anyhow::Result<Uuid> {
    let s = s
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("{what} missing"))?;
    Uuid::parse_str(s).map_err(|e| anyhow::anyhow!("{what} {s:?}: {e}"))
}

/// The history change a room event makes, if any.
pub fn history_op(ev: &RoomEvent) -> anyhow::Result<Option<HistoryOp>> {
    let room = Uuid::parse_str(&ev.room_id)
        .map_err(|e| anyhow::anyhow!("room_id {:?}: {e}", ev.room_id))?;
    let at = livechat_core::from_ms(ev.occurred_at);
    Ok(match ev.kind() {
        Some(RoomEventType::MessageSent) => {
            let created = ev
                .message_created_at
                .map(livechat_core::from_ms)
                .unwrap_or(at);
            Some(HistoryOp::Insert(StoredMessage {
                id: id(&ev.message_id, "message_id")?,
                room_id: room,
                seq: ev.seq.ok_or_else(|| anyhow::anyhow!("seq missing"))?,
                user_id: id(&ev.subject_user_id, "subject_user_id")?,
                username: ev.subject_username.clone().unwrap_or_default(),
                content: ev.content.clone().unwrap_or_default(),
                edited: false,
                deleted: false,
                created_at: created,
                updated_at: created,
                client_msg_id: ev.client_msg_id.clone(),
                reply_to_seq: ev.reply_to_seq,
                thread_root_seq: ev.thread_root_seq,
                reactions: Vec::new(),
                pin: None,
                thread: None,
            }))
        }
        Some(
            kind @ (RoomEventType::MessageReactionAdded | RoomEventType::MessageReactionRemoved),
        ) => Some(HistoryOp::React {
            room_id: room,
            message_id: id(&ev.message_id, "message_id")?,
            seq: ev.seq.ok_or_else(|| anyhow::anyhow!("seq missing"))?,
            user_id: id(&ev.actor_id, "actor_id")?,
            emoji: ev
                .reaction
                .clone()
                .ok_or_else(|| anyhow::anyhow!("reaction missing"))?,
            added: kind == RoomEventType::MessageReactionAdded,
            at,
        }),
        Some(RoomEventType::MessageEdited) => Some(HistoryOp::Edit {
            room_id: room,
            message_id: id(&ev.message_id, "message_id")?,
            content: ev.content.clone().unwrap_or_default(),
            at,
        }),
        Some(RoomEventType::MessageDeleted) => Some(HistoryOp::Delete {
            room_id: room,
            message_id: id(&ev.message_id, "message_id")?,
            at,
        }),
        Some(kind @ (RoomEventType::MessagePinned | RoomEventType::MessageUnpinned)) => {
            Some(HistoryOp::Pin {
                room_id: room,
                message_id: id(&ev.message_id, "message_id")?,
                seq: ev.seq.ok_or_else(|| anyhow::anyhow!("seq missing"))?,
                user_id: id(&ev.actor_id, "actor_id")?,
                pinned: kind == RoomEventType::MessagePinned,
                at,
            })
        }
        Some(RoomEventType::RoomDeleted) => Some(HistoryOp::PurgeRoom { room_id: room }),
        _ => None,
    })
}

/// The history changes a batch of records makes, in order (the search index's too).
pub fn history_ops(batch: &[Decoded]) -> anyhow::Result<Vec<HistoryOp>> {
    let mut ops = Vec::new();
    for d in batch {
        if let TopicEvent::Room(ev) = d.event.as_ref() {
            if let Some(op) = history_op(ev)? {
                ops.push(op);
            }
        }
    }
    Ok(ops)
}

#[async_trait]
impl Processor for HistoryProcessor {
    fn name(&self) -> &str {
        &self.group
    }
    fn topics(&self) -> Vec<&'static str> {
        TOPICS.to_vec()
    }
    /// A change is readable before it is acknowledged (see [`HistoryWriteThrough`]), so this
    /// copy may wait: half a second of a room's messages go to Cassandra in a few batches.
    fn gather(&self) -> Duration {
        Duration::from_millis(500)
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
        let ops = history_ops(batch)?;
        if !ops.is_empty() {
            self.store.apply(&ops).await?;
        }
        Ok(())
    }
}

/// The history written before a change is acknowledged, where the history processor keeps it
/// later (distributed mode): the same mapping, applied at once (see [`WriteThrough`]).
pub struct HistoryWriteThrough {
    pub store: Arc<dyn MessageStore>,
}

#[async_trait]
impl WriteThrough for HistoryWriteThrough {
    async fn apply(&self, records: &[OutboxRecord]) -> StoreResult<()> {
        let mut ops = Vec::new();
        for r in records {
            let decoded;
            let ev = match r.event.as_deref() {
                Some(TopicEvent::Room(ev)) => ev,
                Some(_) => continue,
                None => {
                    decoded = codec::decode(&r.payload).map_err(|e| {
                        StoreError::Other(anyhow::anyhow!("decoding a record: {e}"))
                    })?;
                    match &decoded {
                        TopicEvent::Room(ev) => ev,
                        _ => continue,
                    }
                }
            };
            if let Some(op) = history_op(ev).map_err(StoreError::Other)? {
                ops.push(op);
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.store.apply(&ops).await
    }
}
