//! Group commit for message sends. Every send must be durable before it is acknowledged, and
//! an fsync per send would cap a machine at a few hundred sends per second. The sequencer is a
//! dedicated thread that takes every send waiting in its queue, runs each in its own savepoint
//! of one transaction (a failing send rolls back alone), commits once, then answers them all.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::SendReceipt;
use livechat_core::ports::{MessageEventsFn, NewMessage};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::db::{store_err, Db};
use super::directory::send_tx;

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
