//! Message history on a CQL cluster (ScyllaDB in production, Apache Cassandra 5 in tests), via
//! the `scylla` driver.
//!
//! Layout (created by [`MIGRATIONS`] at connect):
//! - `messages`: partition `(room_id, bucket)` with `bucket = seq / BUCKET_SIZE`, clustered by
//!   `seq`. A partition holds at most [`BUCKET_SIZE`] messages, so a busy room never grows one
//!   unbounded wide partition, and rows are keyed by seq (dense, unique per room), never by time,
//!   so two messages cannot collide.
//! - `room_buckets`: the buckets a room uses (one small partition per room), so reads walk only
//!   buckets that exist, newest or oldest first, and the checksum finds every room.
//! - `messages_by_id`: message id → (room, seq).
//! - `pins`: each message's latest pin change, by (room, seq).
//! - `author_rooms`: the rooms each user has written in (one small partition per user), so an
//!   account's erasure lists its messages by reading those rooms, not every room. Written
//!   before the rows, once per (user, room) a process sees; a store written before it existed is
//!   indexed once in the background (`backfills` records it), and until then the listing reads
//!   every room.
//! - `thread_replies`: the thread replies of a room by (root seq, seq), with their deleted flag:
//!   the summaries of the threads rooted in a page of messages are one range query. One
//!   partition per room (a room with very many thread replies grows it; bucketing it like
//!   `messages` would be the next step).
//!
//! Idempotence (replaying the log, in order, leaves identical content) without lightweight
//! transactions: every write to a message row carries its own write time (`USING TIMESTAMP`, the
//! change's time in microseconds), and Cassandra keeps, cell by cell, the value written latest:
//! - an insert is written at the message's creation time, so a replayed insert loses to every
//!   edit or delete that came after it (SQLite's `INSERT OR IGNORE`);
//! - an edit and a delete are written at their own (later) times, so `updated_at` keeps the
//!   latest change (SQLite's `max(updated_at, at)`) and an older change arriving late, or
//!   applied again, changes nothing;
//! - an edit reads the row first and leaves a deleted message alone; a deleted message reads
//!   with empty content even if an edit raced its delete (two ingress processes accepting an
//!   edit and a delete of one message at once);
//! - a purge (room deletion) writes partition tombstones at the server's time, after every
//!   message of the room.
//!
//! Lookup rows (`messages_by_id`, `room_buckets`) are plain upserts of fixed values.
//!
//! `apply` runs changes of distinct messages concurrently (they commute) and keeps the log order
//! between changes of the same message and around a purge. New messages go in unlogged batches,
//! one partition's rows per batch: a request costs Cassandra more than the row it carries.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::{
    Checksum, HistoryOp, MessageId, RoomId, StoredMessage, ThreadSummary, UserId,
};
use livechat_core::ports::MessageStore;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{
    DbError, ExecutionError, NextPageError, NextRowError, PagerExecutionError, PrepareError,
    RequestAttemptError,
};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlTimestamp, MaybeUnset};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use uuid::Uuid;

pub use crate::config::CassandraConfig;

/// Messages per partition. Part of the stored layout: changing it needs a data migration.
pub const BUCKET_SIZE: i64 = 1000;
/// Writes in flight at once within one `apply`.
const PARALLEL: usize = 32;
/// Most rows in one batch of a partition's messages, and about how much text: servers warn of
/// and refuse large batches (`batch_size_warn_threshold`, `batch_size_fail_threshold`; Cassandra
/// checks only batches over several partitions, ScyllaDB's are 128 KiB and 1 MiB).
const BATCH_ROWS: usize = 50;
const BATCH_BYTES: usize = 16 * 1024;
/// A row's bytes beside its text (ids, seq, flags, times).
const ROW_OVERHEAD_BYTES: usize = 100;
/// Partitions one unlogged batch of lookup entries touches: Cassandra warns above 10
/// (`unlogged_batch_across_partitions_warn_threshold`).
const BATCH_PARTITIONS: usize = 10;
/// Rows per page of a paged read.
const PAGE_SIZE: i32 = 500;

/// Schema migrations `(version, description, statements)`, applied in order at connect. A
/// migration is recorded in `schema_migrations` once all its statements succeeded; statements are
/// idempotent (`IF NOT EXISTS`), so one interrupted half-way simply runs again. `{ks}` is the
/// keyspace. (Concurrent first connects of several processes to a multi-node cluster may race on
/// the DDL, a known Cassandra hazard: start one process first, or create the schema beforehand.)
pub const MIGRATIONS: &[(i32, &str, &[&str])] = &[
    (
        1,
        "messages by (room, seq bucket); buckets per room; lookup by message id",
        &[
            "CREATE TABLE IF NOT EXISTS {ks}.messages (
            room_id uuid, bucket bigint, seq bigint, id uuid, user_id uuid, username text,
            content text, edited boolean, deleted boolean, created_at timestamp,
            updated_at timestamp, client_msg_id text,
            PRIMARY KEY ((room_id, bucket), seq)
        ) WITH CLUSTERING ORDER BY (seq ASC)",
            "CREATE TABLE IF NOT EXISTS {ks}.room_buckets (
            room_id uuid, bucket bigint, PRIMARY KEY (room_id, bucket)
        ) WITH CLUSTERING ORDER BY (bucket ASC)",
            "CREATE TABLE IF NOT EXISTS {ks}.messages_by_id (
            id uuid PRIMARY KEY, room_id uuid, seq bigint
        )",
        ],
    ),
    (
        2,
        "replies (the seq a message quotes) and reactions on the message row",
        &[
            "ALTER TABLE {ks}.messages ADD reply_to_seq bigint",
            // Key `<emoji> <user id>`, value the reaction's time (ms); each entry is a cell of its
            // own, written and removed at the change's time, so the newest change wins.
            "ALTER TABLE {ks}.messages ADD reactions map<text, bigint>",
        ],
    ),
    (
        3,
        "pins per room: each message's latest pin change",
        &["CREATE TABLE IF NOT EXISTS {ks}.pins (
                room_id uuid, seq bigint, pinned boolean, pinned_by uuid, pin_at timestamp,
                PRIMARY KEY (room_id, seq)
            ) WITH CLUSTERING ORDER BY (seq ASC)"],
    ),
    (
        4,
        "threads: a reply's root on its row, and each room's thread replies by root",
        &[
            "ALTER TABLE {ks}.messages ADD thread_root_seq bigint",
            // One partition per room, clustered by (root, seq): a page of messages reads the
            // summaries of the threads rooted in it with one range query, a thread its replies.
            "CREATE TABLE IF NOT EXISTS {ks}.thread_replies (
                room_id uuid, root_seq bigint, seq bigint, created_at timestamp, deleted boolean,
                PRIMARY KEY (room_id, root_seq, seq)
            ) WITH CLUSTERING ORDER BY (root_seq ASC, seq ASC)",
        ],
    ),
    (
        5,
        "the files shared with a message, on its row",
        // A JSON array (as the embedded history keeps it): read and written whole, never queried.
        &["ALTER TABLE {ks}.messages ADD attachments text"],
    ),
    (
        6,
        "the rooms each user has written in; one-time indexing jobs done",
        &[
            "CREATE TABLE IF NOT EXISTS {ks}.author_rooms (
                user_id uuid, room_id uuid, PRIMARY KEY (user_id, room_id)
            )",
            "CREATE TABLE IF NOT EXISTS {ks}.backfills (name text PRIMARY KEY, done_at timestamp)",
        ],
    ),
];

/// The `backfills` row of the author index.
const AUTHOR_BACKFILL: &str = "author_rooms";

const COLS: &str =
    "id, room_id, seq, user_id, username, content, edited, deleted, created_at, updated_at, client_msg_id, \
     reply_to_seq, reactions, thread_root_seq, attachments";

fn bucket_of(seq: i64) -> i64 {
    seq.div_euclid(BUCKET_SIZE)
}

fn ts(t: DateTime<Utc>) -> CqlTimestamp {
    CqlTimestamp(t.timestamp_millis())
}

/// A change's write time: its own time in microseconds (Cassandra keeps the latest per cell).
fn write_time(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis().saturating_mul(1000)
}

fn limit_i32(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

#[derive(scylla::DeserializeRow)]
struct MessageRow {
    id: Uuid,
    room_id: Uuid,
    seq: i64,
    user_id: Uuid,
    username: String,
    content: String,
    edited: bool,
    deleted: bool,
    created_at: CqlTimestamp,
    updated_at: CqlTimestamp,
    client_msg_id: Option<String>,
    reply_to_seq: Option<i64>,
    reactions: Option<HashMap<String, i64>>,
    thread_root_seq: Option<i64>,
    attachments: Option<String>,
}

/// A row of the pins table: seq, pinned, by whom, when.
type PinRow = (i64, bool, Uuid, CqlTimestamp);
/// A row of the thread_replies table: root seq, seq, created at, deleted.
type ThreadRow = (i64, i64, CqlTimestamp, bool);

fn pin_of(p: &PinRow) -> livechat_core::model::Pin {
    livechat_core::model::Pin {
        pinned: p.1,
        by: p.2,
        at: livechat_core::from_ms(p.3 .0),
    }
}

/// The key of a reaction in the row's `reactions` map (an emoji has no space).
fn reaction_key(emoji: &str, user: Uuid) -> String {
    format!("{emoji} {user}")
}

/// The reactions of a row's map (entries that do not parse are left out).
fn reactions_of(map: HashMap<String, i64>) -> Vec<livechat_core::model::Reaction> {
    let rows = map
        .into_iter()
        .filter_map(|(key, at)| {
            let (emoji, user) = key.rsplit_once(' ')?;
            Some((emoji.to_string(), Uuid::parse_str(user).ok()?, at))
        })
        .collect();
    livechat_core::model::group_reactions(rows)
}

impl From<MessageRow> for StoredMessage {
    fn from(r: MessageRow) -> Self {
        StoredMessage {
            id: r.id,
            room_id: r.room_id,
            seq: r.seq,
            user_id: r.user_id,
            username: r.username,
            // A deleted message has no text, whatever edit raced the delete.
            content: if r.deleted { String::new() } else { r.content },
            edited: r.edited,
            deleted: r.deleted,
            created_at: livechat_core::from_ms(r.created_at.0),
            updated_at: livechat_core::from_ms(r.updated_at.0),
            client_msg_id: r.client_msg_id,
            reply_to_seq: r.reply_to_seq,
            // A deleted message has no reactions either.
            reactions: match (r.deleted, r.reactions) {
                (false, Some(map)) => reactions_of(map),
                _ => Vec::new(),
            },
            thread_root_seq: r.thread_root_seq,
            // Filled in from the pins and thread tables (see `CassandraHistory::with_relations`).
            pin: None,
            thread: None,
            attachments: match (r.deleted, r.attachments) {
                (false, Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "A message's attachments do not parse.");
                    Vec::new()
                }),
                _ => Vec::new(),
            },
        }
    }
}

// ---------------------------------------------------------------- errors

/// Whether a failed attempt means "the cluster cannot serve this now" (retryable).
fn attempt_unavailable(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        RequestAttemptError::DbError(db, _) => matches!(
            db,
            DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ReadTimeout { .. }
                | DbError::WriteTimeout { .. }
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}

fn prepare_unavailable(e: &PrepareError) -> bool {
    match e {
        PrepareError::ConnectionPoolError(_) => true,
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_unavailable(first_attempt),
        _ => false,
    }
}

fn execution_unavailable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(a) => attempt_unavailable(a),
        ExecutionError::PrepareError(p) => prepare_unavailable(p),
        _ => false,
    }
}

fn page_unavailable(e: &NextPageError) -> bool {
    match e {
        NextPageError::RequestFailure(r) => {
            execution_unavailable(&r.clone().into_execution_error())
        }
        _ => false,
    }
}

fn classify(unavailable: bool, e: impl std::fmt::Display) -> StoreError {
    let e = anyhow::anyhow!("cassandra: {e}");
    if unavailable {
        StoreError::Unavailable(e)
    } else {
        StoreError::Other(e)
    }
}

fn exec_err(e: ExecutionError) -> StoreError {
    classify(execution_unavailable(&e), e)
}

fn pager_err(e: PagerExecutionError) -> StoreError {
    let down = match &e {
        PagerExecutionError::NextPageError(p) => page_unavailable(p),
        PagerExecutionError::PrepareError(p) => prepare_unavailable(p),
        _ => false,
    };
    classify(down, e)
}

fn row_err(e: NextRowError) -> StoreError {
    let down = match &e {
        NextRowError::NextPageError(p) => page_unavailable(p),
        _ => false,
    };
    classify(down, e)
}

/// Result decoding failures: a schema or driver mismatch, not an outage.
fn decode_err(e: impl std::fmt::Display) -> StoreError {
    classify(false, e)
}

// ---------------------------------------------------------------- statements

#[derive(Clone)]
struct Statements {
    author_add: PreparedStatement,
    author_rooms: PreparedStatement,
    bucket_authors: PreparedStatement,
    backfill_get: PreparedStatement,
    backfill_done: PreparedStatement,
    bucket_add: PreparedStatement,
    by_id_add: PreparedStatement,
    insert: PreparedStatement,
    by_id_get: PreparedStatement,
    row_get: PreparedStatement,
    edit: PreparedStatement,
    delete: PreparedStatement,
    react_add: PreparedStatement,
    react_remove: PreparedStatement,
    pin_set: PreparedStatement,
    pins_range: PreparedStatement,
    pins_of_room: PreparedStatement,
    pins_del: PreparedStatement,
    thread_add: PreparedStatement,
    thread_reply_deleted: PreparedStatement,
    threads_range: PreparedStatement,
    thread_page: PreparedStatement,
    threads_del: PreparedStatement,
    buckets_from: PreparedStatement,
    buckets_to_desc: PreparedStatement,
    page_after: PreparedStatement,
    page_before: PreparedStatement,
    first_created: PreparedStatement,
    recent_in_bucket: PreparedStatement,
    bucket_all: PreparedStatement,
    bucket_ids: PreparedStatement,
    by_id_del: PreparedStatement,
    bucket_del: PreparedStatement,
    room_buckets_del: PreparedStatement,
    rooms: PreparedStatement,
}

impl Statements {
    async fn prepare(s: &Session, ks: &str) -> anyhow::Result<Statements> {
        let p = |cql: String| async move {
            let mut st = s
                .prepare(cql.as_str())
                .await
                .map_err(|e| anyhow::anyhow!("preparing `{cql}`: {e}"))?;
            st.set_page_size(PAGE_SIZE);
            // Every statement here may be retried: the writes are idempotent by design.
            st.set_is_idempotent(true);
            anyhow::Ok(st)
        };
        let slot = "WHERE room_id = ? AND bucket = ? AND seq = ?";
        Ok(Statements {
            author_add: p(format!("INSERT INTO {ks}.author_rooms (user_id, room_id) VALUES (?, ?)")).await?,
            author_rooms: p(format!("SELECT room_id FROM {ks}.author_rooms WHERE user_id = ?")).await?,
            bucket_authors: p(format!("SELECT user_id FROM {ks}.messages WHERE room_id = ? AND bucket = ?")).await?,
            backfill_get: p(format!("SELECT done_at FROM {ks}.backfills WHERE name = ?")).await?,
            backfill_done: p(format!(
                "INSERT INTO {ks}.backfills (name, done_at) VALUES (?, toTimestamp(now()))"
            ))
            .await?,
            bucket_add: p(format!("INSERT INTO {ks}.room_buckets (room_id, bucket) VALUES (?, ?)")).await?,
            by_id_add: p(format!("INSERT INTO {ks}.messages_by_id (id, room_id, seq) VALUES (?, ?, ?)")).await?,
            insert: p(format!(
                "INSERT INTO {ks}.messages (room_id, bucket, seq, id, user_id, username, content, edited, \
                 deleted, created_at, updated_at, client_msg_id, reply_to_seq, thread_root_seq, attachments) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            by_id_get: p(format!("SELECT room_id, seq FROM {ks}.messages_by_id WHERE id = ?")).await?,
            row_get: p(format!("SELECT {COLS} FROM {ks}.messages {slot}")).await?,
            edit: p(format!(
                "UPDATE {ks}.messages USING TIMESTAMP ? SET content = ?, edited = true, updated_at = ? {slot}"
            ))
            .await?,
            delete: p(format!(
                "UPDATE {ks}.messages USING TIMESTAMP ? SET content = '', attachments = null, deleted = true, updated_at = ? {slot}"
            ))
            .await?,
            react_add: p(format!(
                "UPDATE {ks}.messages USING TIMESTAMP ? SET reactions = reactions + ? {slot}"
            ))
            .await?,
            react_remove: p(format!(
                "DELETE reactions[?] FROM {ks}.messages USING TIMESTAMP ? {slot}"
            ))
            .await?,
            pin_set: p(format!(
                "INSERT INTO {ks}.pins (room_id, seq, pinned, pinned_by, pin_at) VALUES (?, ?, ?, ?, ?) \
                 USING TIMESTAMP ?"
            ))
            .await?,
            pins_range: p(format!(
                "SELECT seq, pinned, pinned_by, pin_at FROM {ks}.pins WHERE room_id = ? AND seq >= ? AND seq <= ?"
            ))
            .await?,
            pins_of_room: p(format!("SELECT seq, pinned, pinned_by, pin_at FROM {ks}.pins WHERE room_id = ?")).await?,
            pins_del: p(format!("DELETE FROM {ks}.pins WHERE room_id = ?")).await?,
            thread_add: p(format!(
                "INSERT INTO {ks}.thread_replies (room_id, root_seq, seq, created_at, deleted) \
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            thread_reply_deleted: p(format!(
                "UPDATE {ks}.thread_replies USING TIMESTAMP ? SET deleted = true \
                 WHERE room_id = ? AND root_seq = ? AND seq = ?"
            ))
            .await?,
            threads_range: p(format!(
                "SELECT root_seq, seq, created_at, deleted FROM {ks}.thread_replies \
                 WHERE room_id = ? AND root_seq >= ? AND root_seq <= ?"
            ))
            .await?,
            thread_page: p(format!(
                "SELECT root_seq, seq, created_at, deleted FROM {ks}.thread_replies \
                 WHERE room_id = ? AND root_seq = ? AND seq > ?"
            ))
            .await?,
            threads_del: p(format!("DELETE FROM {ks}.thread_replies WHERE room_id = ?")).await?,
            buckets_from: p(format!("SELECT bucket FROM {ks}.room_buckets WHERE room_id = ? AND bucket >= ?")).await?,
            buckets_to_desc: p(format!(
                "SELECT bucket FROM {ks}.room_buckets WHERE room_id = ? AND bucket <= ? ORDER BY bucket DESC"
            ))
            .await?,
            page_after: p(format!(
                "SELECT {COLS} FROM {ks}.messages WHERE room_id = ? AND bucket = ? AND seq > ? LIMIT ?"
            ))
            .await?,
            page_before: p(format!(
                "SELECT {COLS} FROM {ks}.messages WHERE room_id = ? AND bucket = ? AND seq < ? \
                 ORDER BY seq DESC LIMIT ?"
            ))
            .await?,
            first_created: p(format!(
                "SELECT created_at FROM {ks}.messages WHERE room_id = ? AND bucket = ? LIMIT 1"
            ))
            .await?,
            // Filtering inside one bounded partition (at most BUCKET_SIZE rows) is cheap.
            recent_in_bucket: p(format!(
                "SELECT {COLS} FROM {ks}.messages WHERE room_id = ? AND bucket = ? AND created_at < ? \
                 AND deleted = false ORDER BY seq DESC LIMIT ? ALLOW FILTERING"
            ))
            .await?,
            bucket_all: p(format!("SELECT {COLS} FROM {ks}.messages WHERE room_id = ? AND bucket = ?")).await?,
            bucket_ids: p(format!("SELECT id FROM {ks}.messages WHERE room_id = ? AND bucket = ?")).await?,
            by_id_del: p(format!("DELETE FROM {ks}.messages_by_id WHERE id = ?")).await?,
            bucket_del: p(format!("DELETE FROM {ks}.messages WHERE room_id = ? AND bucket = ?")).await?,
            room_buckets_del: p(format!("DELETE FROM {ks}.room_buckets WHERE room_id = ?")).await?,
            rooms: p(format!("SELECT DISTINCT room_id FROM {ks}.room_buckets")).await?,
        })
    }
}

/// What a change touches, to find changes that commute (and can run concurrently).
#[derive(Hash, PartialEq, Eq)]
enum Key {
    Id(Uuid),
    Slot(Uuid, i64),
}

/// End (exclusive) of the run of changes starting at `start` that touch pairwise distinct
/// messages; a purge always runs alone.
fn run_end(ops: &[HistoryOp], start: usize) -> usize {
    let mut keys = HashSet::new();
    for (i, op) in ops.iter().enumerate().skip(start) {
        let touched = match op {
            HistoryOp::PurgeRoom { .. } => return if i == start { i + 1 } else { i },
            HistoryOp::Insert(m) => vec![Key::Id(m.id), Key::Slot(m.room_id, m.seq)],
            HistoryOp::Edit { message_id, .. }
            | HistoryOp::Delete { message_id, .. }
            | HistoryOp::React { message_id, .. }
            | HistoryOp::Pin { message_id, .. } => vec![Key::Id(*message_id)],
        };
        if touched.iter().any(|k| keys.contains(k)) {
            return i;
        }
        keys.extend(touched);
    }
    ops.len()
}

/// A message row's values for `Statements::insert`, written at the message's creation time:
/// every later change to it wins over a replay.
#[allow(clippy::type_complexity)]
fn row_values(
    m: &StoredMessage,
) -> (
    Uuid,
    i64,
    i64,
    Uuid,
    Uuid,
    &str,
    &str,
    bool,
    bool,
    CqlTimestamp,
    CqlTimestamp,
    MaybeUnset<&str>,
    MaybeUnset<i64>,
    MaybeUnset<i64>,
    MaybeUnset<String>,
    i64,
) {
    let client_msg_id = match &m.client_msg_id {
        Some(c) => MaybeUnset::Set(c.as_str()),
        None => MaybeUnset::Unset,
    };
    let set = |seq: Option<i64>| seq.map_or(MaybeUnset::Unset, MaybeUnset::Set);
    (
        m.room_id,
        bucket_of(m.seq),
        m.seq,
        m.id,
        m.user_id,
        m.username.as_str(),
        m.content.as_str(),
        m.edited,
        m.deleted,
        ts(m.created_at),
        ts(m.updated_at),
        client_msg_id,
        set(m.reply_to_seq),
        set(m.thread_root_seq),
        livechat_core::model::attachments_text(&m.attachments)
            .map_or(MaybeUnset::Unset, MaybeUnset::Set),
        write_time(m.created_at),
    )
}

/// Messages grouped into batches of one partition each, in their order, at most
/// [`BATCH_ROWS`] rows and about [`BATCH_BYTES`] per batch.
fn row_batches<'m>(ms: &[&'m StoredMessage]) -> Vec<Vec<&'m StoredMessage>> {
    let mut open: Vec<((RoomId, i64), usize, Vec<&'m StoredMessage>)> = Vec::new();
    let mut done = Vec::new();
    for m in ms {
        let slot = (m.room_id, bucket_of(m.seq));
        let size = m.content.len() + m.username.len() + ROW_OVERHEAD_BYTES;
        let i = match open.iter().position(|(s, ..)| *s == slot) {
            Some(i) => i,
            None => {
                open.push((slot, 0, Vec::new()));
                open.len() - 1
            }
        };
        let (_, bytes, rows) = &mut open[i];
        if !rows.is_empty() && (rows.len() >= BATCH_ROWS || *bytes + size > BATCH_BYTES) {
            done.push(std::mem::take(rows));
            *bytes = 0;
        }
        *bytes += size;
        rows.push(*m);
    }
    done.extend(open.into_iter().map(|(_, _, rows)| rows));
    done
}

/// Appends one row in the text form of the SQLite adapter's `checksum_query` (columns joined by
/// `|`, NULL as `\N`, booleans as 0/1, times as epoch milliseconds), so both engines give the
/// same digest for the same log.
fn hash_row(h: &mut Sha256, m: &StoredMessage) {
    use livechat_core::model::attachments_text;
    let line = [
        m.id.to_string(),
        m.room_id.to_string(),
        m.seq.to_string(),
        m.user_id.to_string(),
        m.username.clone(),
        m.content.clone(),
        i32::from(m.edited).to_string(),
        i32::from(m.deleted).to_string(),
        m.created_at.timestamp_millis().to_string(),
        m.updated_at.timestamp_millis().to_string(),
        m.client_msg_id.clone().unwrap_or_else(|| "\\N".into()),
        m.reply_to_seq
            .map_or_else(|| "\\N".into(), |s| s.to_string()),
        m.thread_root_seq
            .map_or_else(|| "\\N".into(), |s| s.to_string()),
        attachments_text(&m.attachments).unwrap_or_else(|| "\\N".into()),
        livechat_core::model::reactions_digest(&m.reactions).unwrap_or_else(|| "\\N".into()),
        match &m.pin {
            Some(p) if p.pinned && !m.deleted => format!("{} {}", p.by, p.at.timestamp_millis()),
            _ => "\\N".into(),
        },
    ]
    .join("|");
    h.update(line.as_bytes());
    h.update(b"\n");
}

// ---------------------------------------------------------------- the adapter

pub struct CassandraHistory {
    session: Arc<Session>,
    st: Statements,
    /// Buckets this process has recorded in `room_buckets`: a room's bucket is recorded once,
    /// not with each of its (up to BUCKET_SIZE) messages. Forgotten when the room is purged here,
    /// and all at once when it grows past KNOWN_BUCKETS_MAX.
    known_buckets: Mutex<HashSet<(RoomId, i64)>>,
    authors: Arc<AuthorIndex>,
}

/// At most this many remembered buckets (a few MB) before the memory starts over.
const KNOWN_BUCKETS_MAX: usize = 100_000;

/// What this process knows of `author_rooms`.
#[derive(Default)]
struct AuthorIndex {
    /// Every message of the store has its (author, room) entry: set once the backfill is
    /// recorded as done (by any process).
    complete: std::sync::atomic::AtomicBool,
    /// Entries this process has written (bounded like the known buckets).
    written: Mutex<HashSet<(UserId, RoomId)>>,
}

/// A keyspace name that is safe to splice into CQL (unquoted identifier, at most 48 chars).
fn valid_keyspace(ks: &str) -> bool {
    let mut chars = ks.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && ks.len() <= 48
}

impl CassandraHistory {
    /// Connects, creates the keyspace if missing, applies the pending migrations and prepares
    /// the statements.
    pub async fn connect(cfg: CassandraConfig) -> anyhow::Result<CassandraHistory> {
        anyhow::ensure!(
            valid_keyspace(&cfg.keyspace),
            "cassandra keyspace {:?}: letters, digits and _ only, starting with a letter, at most 48",
            cfg.keyspace
        );
        anyhow::ensure!(
            cfg.replication_factor >= 1,
            "cassandra replication_factor must be at least 1"
        );
        anyhow::ensure!(!cfg.nodes.is_empty(), "cassandra: no nodes configured");
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms.max(1))))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.nodes)
            .connection_timeout(Duration::from_secs(5))
            .default_execution_profile_handle(profile.into_handle());
        if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
            builder = builder.user(user, password);
        }
        let session = builder
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("connecting to Cassandra at {:?}: {e}", cfg.nodes))?;
        migrate(&session, &cfg.keyspace, cfg.replication_factor).await?;
        let st = Statements::prepare(&session, &cfg.keyspace).await?;
        let history = CassandraHistory {
            session: Arc::new(session),
            st,
            known_buckets: Mutex::default(),
            authors: Arc::default(),
        };
        history.start_author_backfill().await;
        Ok(history)
    }

    /// Whether every message has its `author_rooms` entry (the backfill is done).
    pub fn author_index_complete(&self) -> bool {
        self.authors
            .complete
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Indexes the authors of a store written before `author_rooms` existed, in the background
    /// (a store of millions of messages takes minutes); with the backfill recorded as done,
    /// nothing. Rows inserted meanwhile write their own entries first, so the walk needs only
    /// what was there before it started.
    async fn start_author_backfill(&self) {
        let done: StoreResult<Vec<(Option<CqlTimestamp>,)>> =
            self.rows(&self.st.backfill_get, (AUTHOR_BACKFILL,)).await;
        if done.as_ref().is_ok_and(|rows| !rows.is_empty()) {
            self.authors
                .complete
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        let walker = CassandraHistory {
            session: self.session.clone(),
            st: self.st.clone(),
            known_buckets: Mutex::default(),
            authors: self.authors.clone(),
        };
        tokio::spawn(
            async move {
                match walker.backfill_authors().await {
                    Ok(n) => tracing::info!(entries = n, "History authors indexed."),
                    Err(e) => tracing::warn!(error = %e, "Indexing the history's authors failed; an erasure reads every room until a restart indexes them."),
                }
            }
            .instrument(tracing::info_span!("author_backfill")),
        );
    }

    /// Writes the (author, room) entry of every stored message, then records the backfill.
    async fn backfill_authors(&self) -> StoreResult<usize> {
        let mut entries = 0;
        for (_, room) in self.rooms_in_text_order().await? {
            let mut users = HashSet::new();
            for b in self.buckets_from(room, i64::MIN).await? {
                let rows: Vec<(Uuid,)> = self.rows(&self.st.bucket_authors, (room, b)).await?;
                users.extend(rows.into_iter().map(|(u,)| u));
            }
            entries += users.len();
            futures::stream::iter(users)
                .map(|u| self.exec(&self.st.author_add, (u, room)))
                .buffer_unordered(PARALLEL)
                .try_collect::<()>()
                .await?;
        }
        self.exec(&self.st.backfill_done, (AUTHOR_BACKFILL,))
            .await?;
        self.authors
            .complete
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(entries)
    }

    /// Writes the `author_rooms` entries of `ms` this process has not written yet.
    async fn author_entries(&self, ms: &[&StoredMessage]) -> StoreResult<()> {
        let new: HashSet<(UserId, RoomId)> = {
            let written = self
                .authors
                .written
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            ms.iter()
                .map(|m| (m.user_id, m.room_id))
                .filter(|e| !written.contains(e))
                .collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        futures::stream::iter(new.iter().copied())
            .map(|e| self.exec(&self.st.author_add, e))
            .buffer_unordered(PARALLEL)
            .try_collect::<()>()
            .await?;
        let mut written = self
            .authors
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if written.len() + new.len() > KNOWN_BUCKETS_MAX {
            written.clear();
        }
        written.extend(new);
        Ok(())
    }

    async fn exec(&self, st: &PreparedStatement, values: impl SerializeRow) -> StoreResult<()> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(exec_err)?;
        Ok(())
    }

    /// Every row of a paged read.
    async fn rows<T>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> StoreResult<Vec<T>>
    where
        T: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        self.session
            .execute_iter(st.clone(), values)
            .await
            .map_err(pager_err)?
            .rows_stream::<T>()
            .map_err(decode_err)?
            .map_err(row_err)
            .try_collect()
            .await
    }

    async fn buckets_from(&self, room: RoomId, from: i64) -> StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = self.rows(&self.st.buckets_from, (room, from)).await?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }

    /// Every room with messages, in the text order of its id (SQLite's `ORDER BY room_id` on
    /// the text column): what the whole-store reads walk.
    async fn rooms_in_text_order(&self) -> StoreResult<Vec<(String, Uuid)>> {
        let rooms: Vec<(Uuid,)> = self.rows(&self.st.rooms, ()).await?;
        let mut rooms: Vec<(String, Uuid)> =
            rooms.into_iter().map(|(r,)| (r.to_string(), r)).collect();
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    /// A room's messages, bucket after bucket, seqs ascending, read page by page.
    async fn room_messages(
        &self,
        room: RoomId,
    ) -> StoreResult<impl futures::Stream<Item = StoreResult<StoredMessage>> + '_> {
        let buckets = self.buckets_from(room, i64::MIN).await?;
        Ok(futures::stream::iter(buckets)
            .then(move |b| async move {
                Ok::<_, StoreError>(
                    self.session
                        .execute_iter(self.st.bucket_all.clone(), (room, b))
                        .await
                        .map_err(pager_err)?
                        .rows_stream::<MessageRow>()
                        .map_err(decode_err)?
                        .map_err(row_err)
                        .map_ok(StoredMessage::from),
                )
            })
            .try_flatten())
    }

    async fn buckets_to_desc(&self, room: RoomId, to: i64) -> StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = self.rows(&self.st.buckets_to_desc, (room, to)).await?;
        Ok(rows.into_iter().map(|(b,)| b).collect())
    }

    /// (room, seq) of a message, from the lookup table. May be stale (an insert that lost its
    /// slot, a purged room): callers check the row's id.
    async fn locate(&self, id: MessageId) -> StoreResult<Option<(RoomId, i64)>> {
        let rows: Vec<(Uuid, i64)> = self.rows(&self.st.by_id_get, (id,)).await?;
        Ok(rows.into_iter().next())
    }

    /// Inserts messages of pairwise distinct slots: the bucket and lookup entries first, so a
    /// stored row is always reachable by readers (both idempotent upserts of fixed values), then
    /// the rows. Written in unlogged batches: the rows of one partition (one mutation for
    /// Cassandra, however many rows), the lookup entries a few partitions at a time — a request
    /// costs the server more than the row it carries.
    ///
    /// Messages all in known buckets (sends' write-throughs, which their acknowledgements wait
    /// for) go in one request per partition with their lookup entries: a message's row and its
    /// entry land together, not entry first, which only a moderator deleting a message not yet
    /// acknowledged to its author could notice (as "not found", as if a moment earlier).
    async fn insert(&self, ms: &[&StoredMessage]) -> StoreResult<()> {
        // Before the rows: an erasure must find every row it has to delete.
        self.author_entries(ms).await?;
        let new_slots: HashSet<(RoomId, i64)> = {
            let known = self.known_buckets();
            ms.iter()
                .map(|m| (m.room_id, bucket_of(m.seq)))
                .filter(|slot| !known.contains(slot))
                .collect()
        };
        if new_slots.is_empty() {
            let partitions = row_batches(ms);
            let requests: Vec<_> = partitions
                .iter()
                .flat_map(|rows| rows.chunks(BATCH_PARTITIONS - 1))
                .map(|rows| self.rows_with_lookups(rows))
                .collect();
            futures::stream::iter(requests)
                .buffer_unordered(PARALLEL)
                .try_collect::<()>()
                .await?;
            return self.thread_entries(ms).await;
        }
        let buckets: Vec<_> = new_slots
            .iter()
            .map(|slot| self.exec(&self.st.bucket_add, *slot))
            .collect();
        let lookups: Vec<_> = ms
            .chunks(BATCH_PARTITIONS)
            .map(|c| {
                let rows: Vec<_> = c.iter().map(|m| (m.id, m.room_id, m.seq)).collect();
                self.batch(&self.st.by_id_add, rows)
            })
            .collect();
        futures::try_join!(
            futures::stream::iter(buckets)
                .buffer_unordered(PARALLEL)
                .try_collect::<()>(),
            futures::stream::iter(lookups)
                .buffer_unordered(PARALLEL)
                .try_collect::<()>(),
        )?;
        {
            let mut known = self.known_buckets();
            if known.len() + new_slots.len() > KNOWN_BUCKETS_MAX {
                known.clear();
            }
            known.extend(new_slots);
        }
        let rows: Vec<_> = row_batches(ms)
            .into_iter()
            .map(|batch| {
                let values: Vec<_> = batch.iter().map(|m| row_values(m)).collect();
                self.batch(&self.st.insert, values)
            })
            .collect();
        futures::stream::iter(rows)
            .buffer_unordered(PARALLEL)
            .try_collect::<()>()
            .await?;
        self.thread_entries(ms).await
    }

    /// Rows of one partition with their lookup entries, as one unlogged batch (a partition per
    /// entry beside the rows' one: at most [`BATCH_PARTITIONS`]).
    async fn rows_with_lookups(&self, rows: &[&StoredMessage]) -> StoreResult<()> {
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<Box<dyn SerializeRow + Send + Sync + '_>> =
            Vec::with_capacity(rows.len() * 2);
        for m in rows {
            batch.append_statement(self.st.by_id_add.clone());
            values.push(Box::new((m.id, m.room_id, m.seq)));
            batch.append_statement(self.st.insert.clone());
            values.push(Box::new(row_values(m)));
        }
        batch.set_is_idempotent(true);
        self.session.batch(&batch, values).await.map_err(exec_err)?;
        Ok(())
    }

    /// The `thread_replies` entries of the thread replies among `ms`, written at their
    /// creation time like their rows (a later delete wins over a replay).
    async fn thread_entries(&self, ms: &[&StoredMessage]) -> StoreResult<()> {
        let writes: Vec<_> = ms
            .iter()
            .filter_map(|m| {
                let root = m.thread_root_seq?;
                let values = (
                    m.room_id,
                    root,
                    m.seq,
                    ts(m.created_at),
                    m.deleted,
                    write_time(m.created_at),
                );
                Some(self.exec(&self.st.thread_add, values))
            })
            .collect();
        futures::stream::iter(writes)
            .buffer_unordered(PARALLEL)
            .try_collect::<()>()
            .await
    }

    /// One prepared statement with each of `rows` as an unlogged batch (a single row as itself).
    async fn batch<V: SerializeRow>(
        &self,
        st: &PreparedStatement,
        rows: Vec<V>,
    ) -> StoreResult<()> {
        if rows.len() == 1 {
            let row = rows.into_iter().next().expect("one row");
            return self.exec(st, row).await;
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for _ in &rows {
            batch.append_statement(st.clone());
        }
        // Retried like every write here: each row is idempotent by itself.
        batch.set_is_idempotent(true);
        self.session.batch(&batch, rows).await.map_err(exec_err)?;
        Ok(())
    }

    async fn edit(
        &self,
        room: RoomId,
        id: MessageId,
        content: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let Some((at_room, seq)) = self.locate(id).await? else {
            return Ok(());
        };
        if at_room != room {
            return Ok(());
        }
        let b = bucket_of(seq);
        // A deleted message is not edited (SQLite's `deleted = 0` condition). The changes of one
        // message are applied in log order, so the row read here already has every earlier one.
        let rows: Vec<MessageRow> = self.rows(&self.st.row_get, (room, b, seq)).await?;
        if !rows.first().is_some_and(|r| r.id == id && !r.deleted) {
            return Ok(());
        }
        // The newest change wins: an older edit arriving late (or applied again) changes nothing.
        self.exec(
            &self.st.edit,
            (write_time(at), content, ts(at), room, b, seq),
        )
        .await
    }

    async fn delete(&self, room: RoomId, id: MessageId, at: DateTime<Utc>) -> StoreResult<()> {
        let Some((at_room, seq)) = self.locate(id).await? else {
            return Ok(());
        };
        if at_room != room {
            return Ok(());
        }
        let b = bucket_of(seq);
        self.exec(&self.st.delete, (write_time(at), ts(at), room, b, seq))
            .await?;
        // A thread reply leaves its thread's count too.
        let rows: Vec<MessageRow> = self.rows(&self.st.row_get, (room, b, seq)).await?;
        match rows
            .first()
            .filter(|r| r.id == id)
            .and_then(|r| r.thread_root_seq)
        {
            Some(root) => {
                self.exec(
                    &self.st.thread_reply_deleted,
                    (write_time(at), room, root, seq),
                )
                .await
            }
            None => Ok(()),
        }
    }

    /// A reaction's change, on a message that is there and not deleted (as SQLite's): written
    /// at the change's own time, so the newest wins and a removal wins a tie (Cassandra's rule).
    #[allow(clippy::too_many_arguments)]
    async fn react(
        &self,
        room: RoomId,
        id: MessageId,
        seq: i64,
        user: Uuid,
        emoji: &str,
        added: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let b = bucket_of(seq);
        let rows: Vec<MessageRow> = self.rows(&self.st.row_get, (room, b, seq)).await?;
        if !rows.first().is_some_and(|r| r.id == id && !r.deleted) {
            return Ok(());
        }
        let key = reaction_key(emoji, user);
        match added {
            true => {
                let entry = HashMap::from([(key, at.timestamp_millis())]);
                self.exec(&self.st.react_add, (write_time(at), entry, room, b, seq))
                    .await
            }
            false => {
                self.exec(&self.st.react_remove, (key, write_time(at), room, b, seq))
                    .await
            }
        }
    }

    /// A pin's change, on a message that is there and not deleted, written at its own time.
    async fn pin(
        &self,
        room: RoomId,
        id: MessageId,
        seq: i64,
        user: Uuid,
        pinned: bool,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let rows: Vec<MessageRow> = self
            .rows(&self.st.row_get, (room, bucket_of(seq), seq))
            .await?;
        if !rows.first().is_some_and(|r| r.id == id && !r.deleted) {
            return Ok(());
        }
        self.exec(
            &self.st.pin_set,
            (room, seq, pinned, user, ts(at), write_time(at)),
        )
        .await
    }

    /// Fills in the pins and thread summaries of messages of one room (tombstones have none):
    /// one range query each, read concurrently.
    async fn with_relations(&self, mut ms: Vec<StoredMessage>) -> StoreResult<Vec<StoredMessage>> {
        let live = || ms.iter().filter(|m| !m.deleted).map(|m| m.seq);
        let (Some(lo), Some(hi)) = (live().min(), live().max()) else {
            return Ok(ms);
        };
        let room = ms[0].room_id;
        let (pins, replies) = futures::try_join!(
            self.rows::<PinRow>(&self.st.pins_range, (room, lo, hi)),
            self.rows::<ThreadRow>(&self.st.threads_range, (room, lo, hi)),
        )?;
        let mut pins: HashMap<i64, livechat_core::model::Pin> =
            pins.into_iter().map(|p| (p.0, pin_of(&p))).collect();
        let mut threads = ThreadSummary::of_replies(
            replies
                .into_iter()
                .filter(|r| !r.3)
                .map(|r| (r.0, r.1, livechat_core::from_ms(r.2 .0))),
        );
        for m in ms.iter_mut().filter(|m| !m.deleted) {
            m.pin = pins.remove(&m.seq);
            m.thread = threads.remove(&m.seq);
        }
        Ok(ms)
    }

    fn known_buckets(&self) -> std::sync::MutexGuard<'_, HashSet<(RoomId, i64)>> {
        self.known_buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn purge(&self, room: RoomId) -> StoreResult<()> {
        self.known_buckets().retain(|(r, _)| *r != room);
        for b in self.buckets_from(room, i64::MIN).await? {
            let ids: Vec<(Uuid,)> = self.rows(&self.st.bucket_ids, (room, b)).await?;
            futures::stream::iter(ids)
                .map(|(id,)| self.exec(&self.st.by_id_del, (id,)))
                .buffer_unordered(PARALLEL)
                .try_collect::<()>()
                .await?;
            self.exec(&self.st.bucket_del, (room, b)).await?;
        }
        self.exec(&self.st.pins_del, (room,)).await?;
        self.exec(&self.st.threads_del, (room,)).await?;
        // Last: until here a retried purge still finds every bucket.
        self.exec(&self.st.room_buckets_del, (room,)).await
    }

    async fn apply_one(&self, op: &HistoryOp) -> StoreResult<()> {
        match op {
            HistoryOp::Insert(m) => self.insert(&[m]).await,
            HistoryOp::Edit {
                room_id,
                message_id,
                content,
                at,
            } => self.edit(*room_id, *message_id, content, *at).await,
            HistoryOp::Delete {
                room_id,
                message_id,
                at,
            } => self.delete(*room_id, *message_id, *at).await,
            HistoryOp::PurgeRoom { room_id } => self.purge(*room_id).await,
            HistoryOp::React {
                room_id,
                message_id,
                seq,
                user_id,
                emoji,
                added,
                at,
            } => {
                self.react(*room_id, *message_id, *seq, *user_id, emoji, *added, *at)
                    .await
            }
            HistoryOp::Pin {
                room_id,
                message_id,
                seq,
                user_id,
                pinned,
                at,
            } => {
                self.pin(*room_id, *message_id, *seq, *user_id, *pinned, *at)
                    .await
            }
        }
    }
}

async fn migrate(s: &Session, ks: &str, rf: u32) -> anyhow::Result<()> {
    let run = |cql: String| async move {
        s.query_unpaged(cql.as_str(), ())
            .await
            .map_err(|e| anyhow::anyhow!("cassandra schema: `{cql}`: {e}"))
    };
    run(format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
    ))
    .await?;
    run(format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations \
         (version int PRIMARY KEY, description text, applied_at timestamp)"
    ))
    .await?;
    let applied: HashSet<i32> = run(format!("SELECT version FROM {ks}.schema_migrations"))
        .await?
        .into_rows_result()?
        .rows::<(i32,)>()?
        .map(|r| r.map(|(v,)| v))
        .collect::<Result<_, _>>()?;
    for (version, description, statements) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for cql in *statements {
            match run(cql.replace("{ks}", ks)).await {
                // `ALTER TABLE ... ADD` has no IF NOT EXISTS everywhere: a column a migration
                // interrupted half-way already added is there (Cassandra: "already exists";
                // ScyllaDB: "conflicts with an existing column").
                Err(e)
                    if cql.trim_start().starts_with("ALTER TABLE")
                        && ["already exist", "conflicts with an existing column"]
                            .iter()
                            .any(|m| e.to_string().contains(m)) => {}
                other => {
                    other?;
                }
            }
        }
        s.query_unpaged(
            format!(
                "INSERT INTO {ks}.schema_migrations (version, description, applied_at) \
                 VALUES (?, ?, toTimestamp(now()))"
            ),
            (version, description),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cassandra schema: recording migration {version}: {e}"))?;
        tracing::info!(
            keyspace = ks,
            version,
            description,
            "cassandra migration applied"
        );
    }
    Ok(())
}

#[async_trait]
impl MessageStore for CassandraHistory {
    async fn apply(&self, ops: &[HistoryOp]) -> StoreResult<()> {
        let mut start = 0;
        while start < ops.len() {
            let end = run_end(ops, start);
            let run = &ops[start..end];
            let inserts: Vec<&StoredMessage> = run
                .iter()
                .filter_map(|op| match op {
                    HistoryOp::Insert(m) => Some(m),
                    _ => None,
                })
                .collect();
            // Futures made up front: a closure here trips the compiler's higher-ranked
            // lifetime inference inside async_trait.
            let changes: Vec<_> = run
                .iter()
                .filter(|op| !matches!(op, HistoryOp::Insert(_)))
                .map(|op| self.apply_one(op))
                .collect();
            let changes = futures::stream::iter(changes)
                .buffer_unordered(PARALLEL)
                .try_collect::<()>();
            futures::try_join!(self.insert(&inserts), changes)?;
            start = end;
        }
        Ok(())
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<StoredMessage>> {
        let Some((room, seq)) = self.locate(id).await? else {
            return Ok(None);
        };
        let rows: Vec<MessageRow> = self
            .rows(&self.st.row_get, (room, bucket_of(seq), seq))
            .await?;
        let found: Vec<StoredMessage> = rows
            .into_iter()
            .filter(|r| r.id == id)
            .map(StoredMessage::from)
            .collect();
        Ok(self.with_relations(found).await?.pop())
    }

    /// Walks the room's buckets newest first. Assumes `created_at` grows with `seq` within a
    /// room (true up to the few milliseconds by which concurrent sends may cross): a bucket whose
    /// first message is not older than `before` is skipped, and a page is the `limit` newest
    /// matching messages by seq, ordered like SQLite (created_at, seq descending).
    async fn recent(
        &self,
        room: RoomId,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let limit = limit as usize;
        let before = before.map(ts).unwrap_or(CqlTimestamp(i64::MAX));
        let mut out: Vec<StoredMessage> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for b in self.buckets_to_desc(room, i64::MAX).await? {
            let first: Vec<(CqlTimestamp,)> = self.rows(&self.st.first_created, (room, b)).await?;
            if matches!(first.first(), Some((c,)) if c.0 >= before.0) {
                continue;
            }
            let need = limit_i32(limit - out.len());
            let rows: Vec<MessageRow> = self
                .rows(&self.st.recent_in_bucket, (room, b, before, need))
                .await?;
            out.extend(rows.into_iter().map(StoredMessage::from));
            if out.len() >= limit {
                break;
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.seq)));
        out.truncate(limit);
        self.with_relations(out).await
    }

    async fn after_seq(
        &self,
        room: RoomId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let limit = limit as usize;
        let mut out = Vec::new();
        let Some(first) = after.checked_add(1) else {
            return Ok(out);
        };
        if limit == 0 {
            return Ok(out);
        }
        for b in self.buckets_from(room, bucket_of(first)).await? {
            let need = limit_i32(limit - out.len());
            let rows: Vec<MessageRow> = self
                .rows(&self.st.page_after, (room, b, after, need))
                .await?;
            out.extend(rows.into_iter().map(StoredMessage::from));
            if out.len() >= limit {
                break;
            }
        }
        self.with_relations(out).await
    }

    async fn before_seq(
        &self,
        room: RoomId,
        before: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let limit = limit as usize;
        let mut out = Vec::new();
        let Some(last) = before.checked_sub(1) else {
            return Ok(out);
        };
        if limit == 0 {
            return Ok(out);
        }
        for b in self.buckets_to_desc(room, bucket_of(last)).await? {
            let need = limit_i32(limit - out.len());
            let rows: Vec<MessageRow> = self
                .rows(&self.st.page_before, (room, b, before, need))
                .await?;
            out.extend(rows.into_iter().map(StoredMessage::from));
            if out.len() >= limit {
                break;
            }
        }
        self.with_relations(out).await
    }

    /// The room's pins table, newest pin first, each message row read (a room keeps few pins).
    async fn pinned(&self, room: RoomId, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        let mut pins: Vec<PinRow> = self.rows(&self.st.pins_of_room, (room,)).await?;
        pins.retain(|p| p.1);
        pins.sort_by_key(|p| std::cmp::Reverse((p.3 .0, p.0)));
        let mut out = Vec::new();
        for p in pins {
            if out.len() >= limit as usize {
                break;
            }
            let rows: Vec<MessageRow> = self
                .rows(&self.st.row_get, (room, bucket_of(p.0), p.0))
                .await?;
            if let Some(r) = rows.into_iter().next().filter(|r| !r.deleted) {
                let mut m = StoredMessage::from(r);
                m.pin = Some(pin_of(&p));
                out.push(m);
            }
        }
        Ok(out)
    }

    /// The thread's entries, then each live reply's row (a thread is read a page at a time).
    async fn thread(
        &self,
        room: RoomId,
        root_seq: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let entries: Vec<ThreadRow> = self
            .rows(&self.st.thread_page, (room, root_seq, after))
            .await?;
        let reads: Vec<_> = entries
            .into_iter()
            .filter(|e| !e.3)
            .take(limit as usize)
            .map(|e| self.rows::<MessageRow>(&self.st.row_get, (room, bucket_of(e.1), e.1)))
            .collect();
        let rows: Vec<Vec<MessageRow>> = futures::stream::iter(reads)
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        let replies = rows
            .into_iter()
            .flatten()
            .filter(|r| !r.deleted && r.thread_root_seq == Some(root_seq))
            .map(StoredMessage::from)
            .collect();
        self.with_relations(replies).await
    }

    /// Rooms in text order of their id (SQLite's `ORDER BY room_id` on the text column), then
    /// buckets and seqs ascending; rows are streamed page by page into the digest.
    async fn checksum(&self) -> StoreResult<Checksum> {
        let mut h = Sha256::new();
        let mut n = 0u64;
        for (_, room) in self.rooms_in_text_order().await? {
            let pins: Vec<PinRow> = self.rows(&self.st.pins_of_room, (room,)).await?;
            let pins: HashMap<i64, livechat_core::model::Pin> =
                pins.iter().map(|p| (p.0, pin_of(p))).collect();
            let rows = self.room_messages(room).await?;
            futures::pin_mut!(rows);
            while let Some(mut m) = rows.try_next().await? {
                m.pin = pins.get(&m.seq).cloned();
                hash_row(&mut h, &m);
                n += 1;
            }
        }
        let sha256 = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Checksum { rows: n, sha256 })
    }

    async fn by_author(
        &self,
        user: UserId,
        after: Option<(RoomId, i64)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        // The rooms the user wrote in (every room until the author index is complete), in the
        // order of the room ids' text, from `after`'s room on.
        let rooms = if self.author_index_complete() {
            let rows: Vec<(Uuid,)> = self.rows(&self.st.author_rooms, (user,)).await?;
            let mut rooms: Vec<(String, Uuid)> =
                rows.into_iter().map(|(r,)| (r.to_string(), r)).collect();
            rooms.sort();
            rooms
        } else {
            self.rooms_in_text_order().await?
        };
        let after = after.map(|(r, s)| (r.to_string(), s));
        let mut out = Vec::new();
        for (name, room) in rooms {
            if after.as_ref().is_some_and(|(r, _)| name < *r) {
                continue;
            }
            let rows = self.room_messages(room).await?;
            futures::pin_mut!(rows);
            while let Some(m) = rows.try_next().await? {
                let past = after.as_ref().is_none_or(|(r, s)| name > *r || m.seq > *s);
                if m.user_id == user && !m.deleted && past {
                    out.push(m);
                    if out.len() >= limit as usize {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_keyspace_names() {
        assert_eq!(
            (bucket_of(0), bucket_of(999), bucket_of(1000), bucket_of(-1)),
            (0, 0, 1, -1)
        );
        assert!(valid_keyspace("livechat_test1"));
        assert!(!valid_keyspace("1abc") && !valid_keyspace("a-b") && !valid_keyspace(""));
        assert!(!valid_keyspace("ks; DROP KEYSPACE x"));
    }

    #[test]
    fn runs_keep_changes_of_one_message_in_order() {
        let room = Uuid::new_v4();
        let m = |seq| StoredMessage {
            id: Uuid::new_v4(),
            room_id: room,
            seq,
            user_id: Uuid::new_v4(),
            username: "u".into(),
            content: "c".into(),
            edited: false,
            deleted: false,
            created_at: livechat_core::from_ms(0),
            updated_at: livechat_core::from_ms(0),
            client_msg_id: None,
            reply_to_seq: None,
            reactions: Vec::new(),
            pin: None,
            thread_root_seq: None,
            thread: None,
            attachments: Vec::new(),
        };
        let (a, b) = (m(1), m(2));
        let edit = HistoryOp::Edit {
            room_id: room,
            message_id: a.id,
            content: "x".into(),
            at: livechat_core::from_ms(1),
        };
        let ops = vec![
            HistoryOp::Insert(a.clone()),
            HistoryOp::Insert(b),
            edit,
            HistoryOp::PurgeRoom { room_id: room },
            HistoryOp::Insert(a.clone()),
            HistoryOp::Insert(a),
        ];
        assert_eq!(run_end(&ops, 0), 2, "the edit waits for its insert");
        assert_eq!(run_end(&ops, 2), 3, "a purge ends a run");
        assert_eq!(run_end(&ops, 3), 4, "and runs alone");
        assert_eq!(run_end(&ops, 4), 5, "a repeated insert is ordered");
        assert_eq!(run_end(&ops, 5), 6);
    }
}
