//! The send path of `directory.db`: each message gets the next dense seq of its room, is
//! deduplicated by `client_msg_id`, and queues its records, in one transaction with many other
//! sends. Every send must be durable before it is acknowledged, and an fsync per send would cap
//! a machine at a few hundred sends per second; so the sequencer is a dedicated thread that
//! takes every send waiting in its queue, runs each in its own savepoint of one transaction (a
//! failing send rolls back alone), commits once, then answers them all.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::SendReceipt;
use livechat_core::ports::{MessageEventsFn, NewMessage};
use livechat_core::to_ms;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::db::{store_err, ts_col, user_err, uuid_col, Db};
use super::outbox::queue;

/// Sends waiting to be sequenced; beyond this the ingress answers 503 (back-pressure).
const QUEUE: usize = 8192;
/// Most sends in one transaction.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<StoreResult<Option<SendReceipt>>>;

struct Job {
    msg: NewMessage,
    events: MessageEventsFn,
    reply: Reply,
}

pub struct Sequencer {
    jobs: SyncSender<Job>,
}

impl Sequencer {
    /// Starts the thread; `on_commit` runs after each committed batch (wakes the relay).
    pub fn start(db: Arc<Db>, on_commit: impl Fn() + Send + 'static) -> anyhow::Result<Sequencer> {
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("livechat-sequencer".into())
            .spawn(move || run(db, rx, on_commit))
            .map_err(|e| anyhow::anyhow!("starting the sequencer thread: {e}"))?;
        Ok(Sequencer { jobs })
    }

    pub async fn send(
        &self,
        msg: NewMessage,
        events: MessageEventsFn,
    ) -> StoreResult<Option<SendReceipt>> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { msg, events, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Unavailable(anyhow::anyhow!("send queue full")))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Other(anyhow::anyhow!("sequencer stopped")))
            }
        }
        answer
            .await
            .map_err(|_| StoreError::Other(anyhow::anyhow!("sequencer dropped a send")))?
    }
}

fn run(db: Arc<Db>, rx: Receiver<Job>, on_commit: impl Fn()) {
    // Ends when the directory (and with it every sender) is dropped.
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let _span = tracing::info_span!("send_batch", sends = batch.len()).entered();
        metrics::histogram!("livechat_send_batch_size").record(batch.len() as f64);
        let started = std::time::Instant::now();
        let replies: Vec<Reply>;
        let results = {
            let mut work = Vec::with_capacity(batch.len());
            let mut rs = Vec::with_capacity(batch.len());
            for j in batch {
                work.push((j.msg, j.events));
                rs.push(j.reply);
            }
            replies = rs;
            db.with_writer(|conn| commit_batch(conn, work))
        };
        match results {
            Ok(results) => {
                metrics::histogram!("livechat_send_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                on_commit();
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Other(anyhow::anyhow!(
                        "committing sends: {msg}"
                    ))));
                }
            }
        }
    }
}

/// One transaction, one savepoint per send; the outer error means nothing was committed.
fn commit_batch(
    conn: &mut Connection,
    work: Vec<(NewMessage, MessageEventsFn)>,
) -> Result<Vec<StoreResult<Option<SendReceipt>>>, StoreError> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_err)?;
    let mut results = Vec::with_capacity(work.len());
    for (msg, events) in work {
        let sp = tx.savepoint().map_err(store_err)?;
        match send_tx(&sp, msg, events) {
            Ok(r) => {
                sp.commit().map_err(store_err)?;
                results.push(Ok(r));
            }
            // Dropping the savepoint rolls this send back; the others stay.
            Err(e) => results.push(Err(store_err(e))),
        }
    }
    tx.commit().map_err(store_err)?;
    Ok(results)
}

/// Assigns the next seq and queues the message's records (one send, inside a transaction).
fn send_tx(
    tx: &Connection,
    msg: NewMessage,
    events: MessageEventsFn,
) -> rusqlite::Result<Option<SendReceipt>> {
    let room = msg.room_id.to_string();
    let user = msg.user_id.to_string();
    let member: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM memberships WHERE room_id = ?1 AND user_id = ?2")?
        .query_row(params![room, user], |r| r.get(0))
        .optional()?;
    if member.is_none() {
        return Ok(None);
    }
    if let Some(cid) = &msg.client_msg_id {
        let earlier = tx
            .prepare_cached(
                "SELECT message_id, seq, created_at, content FROM message_receipts
                     WHERE room_id = ?1 AND user_id = ?2 AND client_msg_id = ?3",
            )?
            .query_row(params![room, user, cid], |r| {
                Ok(SendReceipt {
                    message_id: uuid_col(r, 0)?,
                    seq: r.get(1)?,
                    created_at: ts_col(r, 2)?,
                    content: r.get(3)?,
                    duplicate: true,
                })
            })
            .optional()?;
        if earlier.is_some() {
            return Ok(earlier);
        }
    }
    let seq: i64 = tx
        .prepare_cached(
            "UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
        )?
        .query_row(params![room], |r| r.get(0))?;
    // The author has read their own message: it never counts as unread for them.
    tx.prepare_cached("UPDATE memberships SET last_read_seq = max(last_read_seq, ?3) WHERE room_id = ?1 AND user_id = ?2")?
        .execute(params![room, user, seq])?;
    if let Some(cid) = &msg.client_msg_id {
        tx.prepare_cached(
                "INSERT INTO message_receipts(room_id, user_id, client_msg_id, message_id, seq, content, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![room, user, cid, msg.message_id.to_string(), seq, msg.content, to_ms(msg.created_at)])?;
    }
    let records = events(seq).map_err(user_err)?;
    queue(tx, &records)?;
    Ok(Some(SendReceipt {
        message_id: msg.message_id,
        seq,
        created_at: msg.created_at,
        content: msg.content.clone(),
        duplicate: false,
    }))
}
