//! The history processor: room events → message store (inserts, edits, tombstones, purges).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::{Attachment, HistoryOp, OutboxRecord, StoredMessage};
use livechat_core::ports::{MessageStore, WriteThrough};
use livechat_schemas::{codec, RoomEvent, RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
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

/// The history change a room event makes, if any. An event whose sealed text stayed shut (its
/// author's account was erased) gives its message no text; the erasure's own deletes follow it
/// on the log.
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
                attachments: ev.attachments.iter().map(Attachment::from_event).collect(),
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
///
/// Concurrent sends' changes go to the store together (group commit): one task applies what
/// is waiting, and what arrives meanwhile waits for the next call, so a lone change is written
/// at once and a busy moment costs one store call per batch rather than one per change
/// (Cassandra spends ~0.6 ms of CPU on each request on a small machine, whatever it carries).
pub struct HistoryWriteThrough {
    queue: mpsc::Sender<Waiting>,
}

/// One caller's changes and where their outcome goes.
struct Waiting {
    ops: Vec<HistoryOp>,
    done: oneshot::Sender<StoreResult<()>>,
}

/// Most changes one store call carries.
const WRITE_THROUGH_BATCH: usize = 512;
/// Callers waiting for the task at most (each holds one request; more wait to queue).
const WRITE_THROUGH_QUEUE: usize = 4096;

impl HistoryWriteThrough {
    /// Starts the task that applies the changes (on the current tokio runtime).
    pub fn start(store: Arc<dyn MessageStore>) -> HistoryWriteThrough {
        let (queue, waiting) = mpsc::channel(WRITE_THROUGH_QUEUE);
        tokio::spawn(apply_waiting(store, waiting));
        HistoryWriteThrough { queue }
    }
}

/// Applies whatever is waiting, one store call at a time, and answers each caller.
async fn apply_waiting(store: Arc<dyn MessageStore>, mut waiting: mpsc::Receiver<Waiting>) {
    while let Some(first) = waiting.recv().await {
        let (mut ops, mut callers) = (first.ops, vec![first.done]);
        while ops.len() < WRITE_THROUGH_BATCH {
            match waiting.try_recv() {
                Ok(w) => {
                    ops.extend(w.ops);
                    callers.push(w.done);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("livechat_write_through_batch_changes").record(ops.len() as f64);
        let span = tracing::debug_span!(
            "write_through",
            changes = ops.len(),
            callers = callers.len()
        );
        // On a task of its own: a store call that panics fails its callers, not every
        // write-through after it.
        let call = {
            let store = store.clone();
            tokio::spawn(async move { store.apply(&ops).await }.instrument(span))
        };
        let outcome = call.await.unwrap_or_else(|e| {
            Err(StoreError::Other(anyhow::anyhow!(
                "the history write-through's store call failed: {e}"
            )))
        });
        for done in callers {
            let _ = done.send(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(copy_error(e)),
            }); // a caller that gave up no longer listens
        }
    }
}

/// The same failure for each caller of a shared store call.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Conflict(what) => StoreError::Conflict(what.clone()),
        StoreError::Unavailable(e) => StoreError::Unavailable(anyhow::anyhow!("{e:#}")),
        StoreError::Other(e) => StoreError::Other(anyhow::anyhow!("{e:#}")),
    }
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
        let stopped =
            || StoreError::Unavailable(anyhow::anyhow!("the history write-through stopped"));
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Waiting { ops, done })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livechat_core::events::{room_event, room_record};
    use livechat_sinks::embedded::SqliteHistory;

    fn sent(room: Uuid, seq: i64) -> OutboxRecord {
        let author = Uuid::new_v4();
        let at = livechat_core::now();
        room_record(RoomEvent {
            actor_id: Some(author.to_string()),
            subject_user_id: Some(author.to_string()),
            subject_username: Some("someone".into()),
            message_id: Some(Uuid::now_v7().to_string()),
            seq: Some(seq),
            content: Some(format!("message {seq}")),
            message_created_at: Some(at.timestamp_millis()),
            ..room_event(RoomEventType::MessageSent, room, at)
        })
        .unwrap()
    }

    /// Many sends written through at once (gathered into shared store calls) are each answered
    /// only once stored; an undecodable record fails its own call, and the next calls go on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_write_throughs_are_each_stored_before_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteHistory::open(&dir.path().join("history.db")).unwrap());
        let wt = Arc::new(HistoryWriteThrough::start(store.clone()));
        let rooms = [Uuid::new_v4(), Uuid::new_v4()];
        let calls: Vec<_> = (1..=100)
            .map(|seq| {
                let (wt, store, room) = (wt.clone(), store.clone(), rooms[seq as usize % 2]);
                tokio::spawn(async move {
                    let record = sent(room, seq);
                    wt.apply(std::slice::from_ref(&record)).await.unwrap();
                    let Some(TopicEvent::Room(ev)) = record.event.as_deref() else {
                        unreachable!("a room record")
                    };
                    let id = Uuid::parse_str(ev.message_id.as_deref().unwrap()).unwrap();
                    let m = store.message(id).await.unwrap();
                    assert_eq!(m.map(|m| m.seq), Some(seq), "readable when apply returns");
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        for room in rooms {
            assert_eq!(store.after_seq(room, 0, 100).await.unwrap().len(), 50);
        }

        let mut bad = sent(rooms[0], 101);
        bad.event = None;
        bad.payload = b"not a record".to_vec();
        assert!(
            wt.apply(&[bad]).await.is_err(),
            "an undecodable record fails"
        );
        wt.apply(&[sent(rooms[0], 101)]).await.unwrap();
        assert_eq!(store.after_seq(rooms[0], 100, 10).await.unwrap().len(), 1);
    }
}
