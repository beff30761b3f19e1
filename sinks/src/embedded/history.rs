//! The message history: messages keyed by (room, seq), in `history.db` (beside the embedded
//! store, kept right behind its log: see `history_follower.rs`), and their reactions and pins. Inserts are `INSERT OR
//! IGNORE`; an edit applies only over an older change and a delete is final; a reaction's row
//! per (message, emoji, user) keeps its newest change (a removal stays as a row with
//! `present = 0`, so an older add applied late does not bring it back). Applying the same
//! changes twice, or in another order, gives the same messages.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::StoreResult;
use livechat_core::model::{
    attachments_text, group_reactions, Attachment, Checksum, HistoryOp, MessageId, Pin, RoomId,
    StoredMessage, ThreadSummary, UserId,
};
use livechat_core::ports::MessageStore;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::db::{checksum_query, ts_col, uuid_col, Db, Durability};
use super::multi_insert::{bind_uuid, MultiInsert};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS messages(
  room_id TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL,
  username TEXT NOT NULL, content TEXT NOT NULL, edited INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  client_msg_id TEXT, reply_to_seq INTEGER, thread_root_seq INTEGER, attachments TEXT,
  PRIMARY KEY(room_id, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages(id);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages(room_id, created_at);
CREATE TABLE IF NOT EXISTS reactions(
  room_id TEXT NOT NULL, seq INTEGER NOT NULL, emoji TEXT NOT NULL, user_id TEXT NOT NULL,
  at INTEGER NOT NULL, present INTEGER NOT NULL,
  PRIMARY KEY(room_id, seq, emoji, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pins(
  room_id TEXT NOT NULL, seq INTEGER NOT NULL, pinned INTEGER NOT NULL, pinned_by TEXT NOT NULL,
  at INTEGER NOT NULL, PRIMARY KEY(room_id, seq)) WITHOUT ROWID;
"#;

/// The columns [`row`] reads, in its order; a macro so that the hot queries are constant text
/// (not a string formatted on every call).
macro_rules! cols {
    () => {
        "id, room_id, seq, user_id, username, content, edited, deleted, created_at, updated_at, client_msg_id, reply_to_seq, thread_root_seq, attachments"
    };
}
const COLS: &str = cols!();

fn row(r: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        id: uuid_col(r, 0)?,
        room_id: uuid_col(r, 1)?,
        seq: r.get(2)?,
        user_id: uuid_col(r, 3)?,
        username: r.get(4)?,
        content: r.get(5)?,
        edited: r.get(6)?,
        deleted: r.get(7)?,
        created_at: ts_col(r, 8)?,
        updated_at: ts_col(r, 9)?,
        client_msg_id: r.get(10)?,
        reply_to_seq: r.get(11)?,
        thread_root_seq: r.get(12)?,
        reactions: Vec::new(),
        pin: None,
        thread: None,
        attachments: attachments_col(r, 13)?,
    })
}

/// A message's files, kept as a JSON array (NULL for none: most messages have none).
fn attachments_col(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<Attachment>> {
    match r.get_ref(i)?.as_str_or_null()? {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

/// Fills in the reactions and pins of messages of one room (tombstones have none).
fn with_relations(
    c: &Connection,
    mut ms: Vec<StoredMessage>,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let live = ms.iter().filter(|m| !m.deleted);
    let (Some(lo), Some(hi)) = (live.clone().map(|m| m.seq).min(), live.map(|m| m.seq).max())
    else {
        return Ok(ms);
    };
    let room = ms[0].room_id;
    let mut stmt = c.prepare_cached(
        "SELECT seq, emoji, user_id, at FROM reactions
         WHERE room_id = ?1 AND seq BETWEEN ?2 AND ?3 AND present = 1",
    )?;
    let mut by_seq: std::collections::HashMap<i64, Vec<(String, uuid::Uuid, i64)>> =
        std::collections::HashMap::new();
    let rows = stmt.query_map(params![room.to_string(), lo, hi], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            uuid_col(r, 2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (seq, emoji, user, at) = row?;
        by_seq.entry(seq).or_default().push((emoji, user, at));
    }
    let mut pins: std::collections::HashMap<i64, Pin> = std::collections::HashMap::new();
    let mut stmt = c.prepare_cached(
        "SELECT seq, pinned, pinned_by, at FROM pins WHERE room_id = ?1 AND seq BETWEEN ?2 AND ?3",
    )?;
    let rows = stmt.query_map(params![room.to_string(), lo, hi], |r| {
        let pin = Pin {
            pinned: r.get(1)?,
            by: uuid_col(r, 2)?,
            at: ts_col(r, 3)?,
        };
        Ok((r.get::<_, i64>(0)?, pin))
    })?;
    for row in rows {
        let (seq, pin) = row?;
        pins.insert(seq, pin);
    }
    // The threads rooted in the page: their live replies, through the partial index.
    let mut stmt = c.prepare_cached(
        "SELECT thread_root_seq, seq, created_at FROM messages
         WHERE room_id = ?1 AND thread_root_seq IS NOT NULL AND thread_root_seq BETWEEN ?2 AND ?3
           AND deleted = 0",
    )?;
    let replies = stmt
        .query_map(params![room.to_string(), lo, hi], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, ts_col(r, 2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut threads = ThreadSummary::of_replies(replies);
    for m in ms.iter_mut().filter(|m| !m.deleted) {
        if let Some(rows) = by_seq.remove(&m.seq) {
            m.reactions = group_reactions(rows);
        }
        m.pin = pins.remove(&m.seq);
        m.thread = threads.remove(&m.seq);
    }
    Ok(ms)
}

/// Applies history changes inside the caller's write (idempotent, in order). Its statements
/// refuse nothing (`INSERT OR IGNORE`, upserts, updates and deletes of rows that may be
/// missing), so it fails only when the database does, and its writes need no savepoint (whose
/// sub-journal would copy every page a batch touches).
pub(super) fn apply_in(tx: &Connection, ops: &[HistoryOp]) -> rusqlite::Result<()> {
    // Inserts in a row go in together, before the next change of another kind.
    let mut inserts: Vec<&StoredMessage> = Vec::new();
    for op in ops {
        if !matches!(op, HistoryOp::Insert(_)) && !inserts.is_empty() {
            insert_messages(tx, &inserts)?;
            inserts.clear();
        }
        match op {
            HistoryOp::Insert(m) => inserts.push(m),
            HistoryOp::Edit {
                room_id,
                message_id,
                content,
                at,
            } => {
                // The newest edit wins, whatever the order edits are applied in.
                tx.prepare_cached(
                    "UPDATE messages SET content = ?3, edited = 1, updated_at = ?4
                     WHERE room_id = ?1 AND id = ?2 AND deleted = 0 AND updated_at <= ?4",
                )?
                .execute(params![
                    room_id.to_string(),
                    message_id.to_string(),
                    content,
                    at.timestamp_millis()
                ])?;
            }
            HistoryOp::Delete {
                room_id,
                message_id,
                at,
            } => {
                // A tombstone keeps the seq, so resuming clients see no gap.
                tx.prepare_cached(
                    "UPDATE messages SET content = '', attachments = NULL, deleted = 1,
                     updated_at = max(updated_at, ?3) WHERE room_id = ?1 AND id = ?2",
                )?
                .execute(params![
                    room_id.to_string(),
                    message_id.to_string(),
                    at.timestamp_millis()
                ])?;
                // What a delete removes includes who reacted to it, and its pin.
                for delete in [
                    "DELETE FROM reactions WHERE room_id = ?1
                     AND seq = (SELECT seq FROM messages WHERE room_id = ?1 AND id = ?2)",
                    "DELETE FROM pins WHERE room_id = ?1
                     AND seq = (SELECT seq FROM messages WHERE room_id = ?1 AND id = ?2)",
                ] {
                    tx.prepare_cached(delete)?
                        .execute(params![room_id.to_string(), message_id.to_string()])?;
                }
            }
            HistoryOp::PurgeRoom { room_id } => {
                tx.prepare_cached("DELETE FROM messages WHERE room_id = ?1")?
                    .execute(params![room_id.to_string()])?;
                tx.prepare_cached("DELETE FROM reactions WHERE room_id = ?1")?
                    .execute(params![room_id.to_string()])?;
                tx.prepare_cached("DELETE FROM pins WHERE room_id = ?1")?
                    .execute(params![room_id.to_string()])?;
            }
            HistoryOp::React {
                room_id,
                message_id,
                seq,
                user_id,
                emoji,
                added,
                at,
            } => {
                // The newest change wins, a removal winning a tie (as Cassandra's cells do).
                tx.prepare_cached(
                    "INSERT INTO reactions(room_id, seq, emoji, user_id, at, present)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM messages
                       WHERE room_id = ?1 AND seq = ?2 AND id = ?7 AND deleted = 0)
                     ON CONFLICT(room_id, seq, emoji, user_id) DO UPDATE
                       SET at = excluded.at, present = excluded.present
                       WHERE excluded.at > reactions.at
                          OR (excluded.at = reactions.at AND excluded.present < reactions.present)",
                )?
                .execute(params![
                    room_id.to_string(),
                    seq,
                    emoji,
                    user_id.to_string(),
                    at.timestamp_millis(),
                    added,
                    message_id.to_string()
                ])?;
            }
            HistoryOp::Pin {
                room_id,
                message_id,
                seq,
                user_id,
                pinned,
                at,
            } => {
                // The newest change wins (a later one always has a later time).
                tx.prepare_cached(
                    "INSERT INTO pins(room_id, seq, pinned, pinned_by, at)
                     SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM messages
                       WHERE room_id = ?1 AND seq = ?2 AND id = ?6 AND deleted = 0)
                     ON CONFLICT(room_id, seq) DO UPDATE
                       SET pinned = excluded.pinned, pinned_by = excluded.pinned_by, at = excluded.at
                       WHERE excluded.at > pins.at",
                )?
                .execute(params![
                    room_id.to_string(),
                    seq,
                    pinned,
                    user_id.to_string(),
                    at.timestamp_millis(),
                    message_id.to_string()
                ])?;
            }
        }
    }
    insert_messages(tx, &inserts)
}

/// `INSERT OR IGNORE` of messages (several per statement), in order.
fn insert_messages(tx: &Connection, ms: &[&StoredMessage]) -> rusqlite::Result<()> {
    static INSERT: LazyLock<MultiInsert> =
        LazyLock::new(|| MultiInsert::new(&format!("INSERT OR IGNORE INTO messages({COLS})")));
    INSERT.run(tx, ms, |stmt, at, m| {
        bind_uuid(stmt, at, Some(m.id))?;
        bind_uuid(stmt, at + 1, Some(m.room_id))?;
        stmt.raw_bind_parameter(at + 2, m.seq)?;
        bind_uuid(stmt, at + 3, Some(m.user_id))?;
        stmt.raw_bind_parameter(at + 4, &m.username)?;
        stmt.raw_bind_parameter(at + 5, &m.content)?;
        stmt.raw_bind_parameter(at + 6, m.edited)?;
        stmt.raw_bind_parameter(at + 7, m.deleted)?;
        stmt.raw_bind_parameter(at + 8, m.created_at.timestamp_millis())?;
        stmt.raw_bind_parameter(at + 9, m.updated_at.timestamp_millis())?;
        stmt.raw_bind_parameter(at + 10, &m.client_msg_id)?;
        stmt.raw_bind_parameter(at + 11, m.reply_to_seq)?;
        stmt.raw_bind_parameter(at + 12, m.thread_root_seq)?;
        stmt.raw_bind_parameter(at + 13, attachments_text(&m.attachments))
    })
}

#[derive(Clone)]
pub struct SqliteHistory {
    db: Arc<Db>,
}

impl SqliteHistory {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(SqliteHistory {
            // A read model: `livechat replay` rebuilds it if a power loss cuts its tail.
            db: Db::open_with(path, SCHEMA, Durability::Normal)?,
        })
    }

    /// The history in a file shared with other stores (its table created by [`SCHEMA`]).
    pub(super) fn on(db: Arc<Db>) -> Self {
        SqliteHistory { db }
    }

    /// The file's database.
    pub(super) fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// A new file to fill from scratch (`livechat replay --into`): no journal, no fsync.
    pub fn create_for_rebuild(path: &Path) -> anyhow::Result<Self> {
        anyhow::ensure!(!path.exists(), "{} already exists", path.display());
        Ok(SqliteHistory {
            db: Db::open_with(path, SCHEMA, Durability::Bulk)?,
        })
    }
}

#[async_trait]
impl MessageStore for SqliteHistory {
    async fn apply(&self, ops: &[HistoryOp]) -> StoreResult<()> {
        let ops = ops.to_vec();
        // Without a savepoint: see `apply_in`.
        self.db.write_unguarded(move |tx| apply_in(tx, &ops)).await
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<StoredMessage>> {
        self.db
            .read_snapshot(move |c| {
                let m = c
                    .prepare_cached(concat!("SELECT ", cols!(), " FROM messages WHERE id = ?1"))?
                    .query_row(params![id.to_string()], row)
                    .optional()?;
                Ok(with_relations(c, m.into_iter().collect())?.pop())
            })
            .await
    }

    async fn recent(
        &self,
        room: RoomId,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let before = before.map(|b| b.timestamp_millis()).unwrap_or(i64::MAX);
        self.db
            .read_snapshot(move |c| {
                let mut stmt = c.prepare_cached(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM messages WHERE room_id = ?1 AND created_at < ?2 AND deleted = 0
                     ORDER BY created_at DESC, seq DESC"
                ))?;
                let rows = stmt.query_map(params![room.to_string(), before], row)?;
                with_relations(
                    c,
                    rows.take(limit as usize).collect::<rusqlite::Result<_>>()?,
                )
            })
            .await
    }

    async fn after_seq(
        &self,
        room: RoomId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.db
            .read_snapshot(move |c| {
                let mut stmt = c.prepare_cached(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM messages WHERE room_id = ?1 AND seq > ?2 ORDER BY seq"
                ))?;
                let rows = stmt.query_map(params![room.to_string(), after], row)?;
                with_relations(
                    c,
                    rows.take(limit as usize).collect::<rusqlite::Result<_>>()?,
                )
            })
            .await
    }

    async fn pinned(&self, room: RoomId, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        self.db
            .read_snapshot(move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {} FROM pins p JOIN messages m ON m.room_id = p.room_id AND m.seq = p.seq
                     WHERE p.room_id = ?1 AND p.pinned = 1 AND m.deleted = 0
                     ORDER BY p.at DESC, p.seq DESC LIMIT ?2",
                    COLS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ")
                ))?;
                let rows = stmt.query_map(params![room.to_string(), limit], row)?;
                with_relations(c, rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn thread(
        &self,
        room: RoomId,
        root_seq: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.db
            .read_snapshot(move |c| {
                let mut stmt = c.prepare_cached(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM messages
                     WHERE room_id = ?1 AND thread_root_seq = ?2 AND seq > ?3 AND deleted = 0
                     ORDER BY seq"
                ))?;
                let rows = stmt.query_map(params![room.to_string(), root_seq, after], row)?;
                with_relations(
                    c,
                    rows.take(limit as usize).collect::<rusqlite::Result<_>>()?,
                )
            })
            .await
    }

    async fn checksum(&self) -> StoreResult<Checksum> {
        self.db
            .read_blocking(|c| {
                // Each message's reactions as `reactions_digest` writes them.
                checksum_query(
                    c,
                    &format!(
                        "SELECT {COLS}, (SELECT group_concat(r.emoji || ' ' || r.user_id, ','
                                          ORDER BY r.emoji || ' ' || r.user_id)
                                FROM reactions r WHERE r.room_id = m.room_id AND r.seq = m.seq
                                  AND r.present = 1 AND m.deleted = 0),
                               (SELECT p.pinned_by || ' ' || p.at FROM pins p
                                WHERE p.room_id = m.room_id AND p.seq = m.seq AND p.pinned = 1
                                  AND m.deleted = 0)
                         FROM messages m ORDER BY room_id, seq"
                    ),
                )
            })
            .await
    }

    async fn by_author(
        &self,
        user: UserId,
        after: Option<(RoomId, i64)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let (room, seq) = after.map(|(r, s)| (r.to_string(), s)).unwrap_or_default();
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM messages
                     WHERE user_id = ?1 AND deleted = 0 AND (room_id, seq) > (?2, ?3)
                     ORDER BY room_id, seq"
                ))?;
                let rows = stmt.query_map(params![user.to_string(), room, seq], row)?;
                rows.take(limit as usize).collect()
            })
            .await
    }

    async fn before_seq(
        &self,
        room: RoomId,
        before: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.db
            .read_snapshot(move |c| {
                let mut stmt = c.prepare_cached(concat!(
                    "SELECT ",
                    cols!(),
                    " FROM messages WHERE room_id = ?1 AND seq < ?2 ORDER BY seq DESC"
                ))?;
                let rows = stmt.query_map(params![room.to_string(), before], row)?;
                with_relations(
                    c,
                    rows.take(limit as usize).collect::<rusqlite::Result<_>>()?,
                )
            })
            .await
    }
}
