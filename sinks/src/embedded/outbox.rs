//! The outbox of the directory's file (when the log is not in the same file): the records each change queues in its own transaction, which
//! the relay appends to the log and then removes (a crash in between appends them again; every
//! consumer deduplicates).

use std::sync::Arc;

use async_trait::async_trait;
use livechat_core::error::StoreResult;
use livechat_core::model::OutboxRecord;
use livechat_core::ports::Outbox;
use rusqlite::{params, Connection};
use tokio::sync::watch;

use super::db::{uuid_col, Db};

/// The outbox table of the directory's file and the signal that wakes the relay.
pub struct OutboxTable {
    db: Arc<Db>,
    pending: watch::Sender<u64>,
}

impl OutboxTable {
    pub fn new(db: Arc<Db>) -> OutboxTable {
        OutboxTable {
            db,
            pending: watch::channel(0).0,
        }
    }

    /// Wakes the relay: records were committed.
    pub fn signal(&self) {
        self.pending.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// Queues records inside the caller's transaction.
pub(super) fn queue(tx: &Connection, records: &[OutboxRecord]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox(event_id, topic, key, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for r in records {
        stmt.execute(params![
            r.event_id.to_string(),
            r.topic,
            r.key,
            r.payload,
            r.created_at_ms
        ])?;
    }
    Ok(())
}

#[async_trait]
impl Outbox for OutboxTable {
    async fn pending(&self, limit: u32) -> StoreResult<Vec<(i64, OutboxRecord)>> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT pos, event_id, topic, key, payload, created_at FROM outbox ORDER BY pos")?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        OutboxRecord {
                            event_id: uuid_col(r, 1)?,
                            topic: r.get(2)?,
                            key: r.get(3)?,
                            payload: r.get(4)?,
                            created_at_ms: r.get(5)?,
                            headers: Vec::new(),
                            event: None,
                        },
                    ))
                })?;
                rows.take(limit as usize).collect()
            })
            .await
    }

    async fn remove(&self, positions: &[i64]) -> StoreResult<()> {
        let positions = positions.to_vec();
        self.db
            .write(move |tx| {
                let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE pos = ?1")?;
                for p in positions {
                    stmt.execute(params![p])?;
                }
                Ok(())
            })
            .await
    }

    fn pending_signal(&self) -> watch::Receiver<u64> {
        self.pending.subscribe()
    }
}
