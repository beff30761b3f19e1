//! `livechat.db`: the embedded store when the directory and the log are both embedded (the
//! default). One file, one committer thread, so a state change, its log records and the
//! notifications it creates (see `inline.rs`) commit in one transaction with one fsync, shared
//! with every other write waiting at that moment:
//! - a message is written once into the log, not copied through an outbox and a relay;
//! - committed entries are published from memory to the in-process consumers (live delivery,
//!   analytics) and to the history's follower, see `log.rs`;
//! - the message history is `history.db` beside it, kept right behind the log by the follower
//!   (`history_follower.rs`); its reads wait for the follower, so once a write is acknowledged
//!   every read sees it (read-your-writes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use livechat_core::keyring::Keyring;
use livechat_core::model::OutboxRecord;
use livechat_schemas::ROOM_EVENTS_TOPIC;
use rusqlite::Connection;

use super::db::Durability;
use super::db::{uuid_col, Db};
use super::directory::{self, SqliteDirectory};
use super::file_refs;
use super::history::{self, SqliteHistory};
use super::history_follower::{self, FollowedHistory};
use super::inline::{InlineNotifications, ReadModelMappings};
use super::log::{self, SqliteLog};

pub struct EmbeddedStore {
    pub directory: Arc<SqliteDirectory>,
    pub log: SqliteLog,
    pub history: Arc<FollowedHistory>,
    /// Every content key of the directory, held from the open on (see `livechat_core::keyring`).
    pub keyring: Arc<Keyring>,
}

impl EmbeddedStore {
    /// The file's name in the data directory.
    pub const FILE: &'static str = "livechat.db";

    /// The store's file in `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(Self::FILE)
    }

    /// The history's file in `data_dir`.
    pub fn history_path(data_dir: &Path) -> PathBuf {
        data_dir.join("history.db")
    }

    /// Opens (creating if needed) the store in `data_dir`, keeping the read models `kept` maps
    /// (without a history mapping, nothing follows the log into the history: tests apply to it
    /// directly).
    pub fn open(data_dir: &Path, partitions: u32, kept: ReadModelMappings) -> anyhow::Result<Self> {
        let schema = [directory::SCHEMA, file_refs::SCHEMA, log::SCHEMA].concat();
        // Files from before `history.db` hold the history in the single file: imported with it,
        // then moved out.
        let imported = import_separate_files(data_dir, &[&schema, history::SCHEMA].concat())?;
        let db = Db::open(&Self::path(data_dir), &schema)?;
        directory::prepare(&db)?;
        // One connection of its own for the one-time upkeep of older files, below.
        let upkeep = Connection::open(db.path())?;
        upkeep.busy_timeout(std::time::Duration::from_secs(10))?;
        drop_receipts(&upkeep, db.path())?;
        // Before anything reads an event back from the log: the follower, the inline
        // notifications and the retries open sealed events with these keys.
        let keyring = Keyring::complete(directory::all_content_keys(&upkeep)?);
        let log = SqliteLog::on(
            db.clone(),
            partitions,
            kept.notifications.map(|map| InlineNotifications {
                map,
                keyring: keyring.clone(),
            }),
        );
        if imported {
            catch_up(&upkeep, &log)?;
        }
        move_history_out(&upkeep, &Self::history_path(data_dir), partitions, imported)?;
        drop(upkeep);
        let history = SqliteHistory::on(Db::open_with(
            &Self::history_path(data_dir),
            &[history::SCHEMA, history_follower::SCHEMA].concat(),
            // A read model: the follower applies again what a power loss cut from its tail.
            Durability::Normal,
        )?);
        let history = match kept.history {
            Some(map) => FollowedHistory::start(log.clone(), history, map, keyring.clone())?,
            None => FollowedHistory::unfollowed(history),
        };
        let directory = Arc::new(SqliteDirectory::on(db, log.clone(), keyring.clone()));
        keyring.attach(directory.clone());
        Ok(EmbeddedStore {
            directory,
            log,
            history: Arc::new(history),
            keyring,
        })
    }
}

/// Drops the receipts table files from before `retries.rs` kept (a row per send, with its text,
/// for good): retries are answered from the log now.
fn drop_receipts(conn: &Connection, file: &Path) -> anyhow::Result<()> {
    if has_table(conn, "message_receipts")? {
        conn.execute_batch("DROP TABLE IF EXISTS message_receipts")
            .map_err(|e| anyhow::anyhow!("dropping the receipts of {}: {e}", file.display()))?;
        tracing::info!(file = %file.display(), "Dropped the sends' receipts: retries are answered from the log.");
    }
    Ok(())
}

/// Whether the file `conn` is on has a table of this name.
fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// The history's tables as the single file held them before `history.db`.
const HISTORY_TABLES: [&str; 3] = ["messages", "reactions", "pins"];

/// Moves the history out of the single file into `history.db`, once: into a temporary file
/// renamed into place when complete, then the tables are dropped from the single file (a crash
/// in between leaves them to drop at the next open). The history was written in the same
/// transactions as the log, so the follower starts at the log's end, unless the store was just
/// imported from separate files (then it applies the whole log again: idempotent).
fn move_history_out(
    conn: &Connection,
    target: &Path,
    partitions: u32,
    imported: bool,
) -> anyhow::Result<()> {
    if !has_table(conn, "messages")? {
        return Ok(());
    }
    if !target.exists() {
        let partial = target.with_extension("db.moving");
        let _ = std::fs::remove_file(&partial);
        let h = Connection::open(&partial)?;
        h.execute_batch(&[history::SCHEMA, history_follower::SCHEMA].concat())?;
        drop(h);
        conn.execute("ATTACH DATABASE ?1 AS h", [partial.to_string_lossy()])?;
        let tx = conn.unchecked_transaction()?;
        for table in HISTORY_TABLES {
            copy_table(&tx, table, "main", "h")?;
        }
        if !imported {
            for p in 0..partitions {
                tx.execute(
                    "INSERT INTO h.history_applied(topic, partition, next)
                     SELECT ?1, ?2, coalesce(max(offset) + 1, 0) FROM main.records
                     WHERE topic = ?1 AND partition = ?2",
                    rusqlite::params![ROOM_EVENTS_TOPIC, p],
                )?;
            }
        }
        tx.commit()?;
        conn.execute_batch("DETACH DATABASE h")?;
        std::fs::rename(&partial, target)?;
        tracing::info!(file = %target.display(), "The message history moved out of the single file into a file of its own.");
    }
    let tx = conn.unchecked_transaction()?;
    for table in HISTORY_TABLES {
        tx.execute_batch(&format!("DROP TABLE IF EXISTS main.{table}"))?;
    }
    tx.commit()?;
    Ok(())
}

/// The files of a data directory written before the single file.
const SEPARATE_FILES: [(&str, &[&str]); 3] = [
    (
        "directory.db",
        &[
            "users",
            "sessions",
            "rooms",
            "memberships",
            "join_requests",
            "notifications",
            "outbox",
        ],
    ),
    ("log.db", &["records", "group_offsets"]),
    ("history.db", &["messages"]),
];

/// Copies a data directory kept in separate files (`directory.db`, `log.db`, `history.db`)
/// into the single file, once: into a temporary file renamed into place when complete (a crash
/// midway leaves the old files as they were), then the old files are renamed `*.imported`.
/// Returns whether it imported anything.
fn import_separate_files(dir: &Path, schema: &str) -> anyhow::Result<bool> {
    let target = EmbeddedStore::path(dir);
    if target.exists() || !dir.join(SEPARATE_FILES[0].0).exists() {
        return Ok(false);
    }
    let partial = dir.join(format!("{}.importing", EmbeddedStore::FILE));
    let _ = std::fs::remove_file(&partial);
    let conn = Connection::open(&partial)?;
    conn.execute_batch(schema)?;
    for (file, tables) in SEPARATE_FILES {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        conn.execute("ATTACH DATABASE ?1 AS old", [path.to_string_lossy()])?;
        for table in tables {
            copy_table(&conn, table, "old", "main")?;
        }
        conn.execute_batch("DETACH DATABASE old")?;
    }
    drop(conn);
    std::fs::rename(&partial, &target)?;
    for (file, _) in SEPARATE_FILES {
        for suffix in ["", "-wal", "-shm"] {
            let old = dir.join(format!("{file}{suffix}"));
            if old.exists() {
                std::fs::rename(&old, dir.join(format!("{file}{suffix}.imported")))?;
            }
        }
    }
    tracing::info!(file = %target.display(), "Data directory imported into the single file; the old files are kept as *.imported.");
    Ok(true)
}

/// Copies the rows of `table` from the attached database `from` into `to`, by the columns the
/// source has (a file from before a later column lacks it; the target's default fills it).
/// Nothing when the source has no such table.
fn copy_table(conn: &Connection, table: &str, from: &str, to: &str) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM {from}.pragma_table_info('{table}')"
        ))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if columns.is_empty() {
        return Ok(());
    }
    let cols = columns.join(", ");
    conn.execute_batch(&format!(
        "INSERT OR IGNORE INTO {to}.{table}({cols}) SELECT {cols} FROM {from}.{table}"
    ))
}

/// After an import, brings the store to where the old pipeline would have gone: the outbox
/// records not yet relayed go into the log, and the log records the old notifications consumer
/// had not handled yet are applied to the notifications now kept inline (again idempotently, by
/// id; the history's follower applies the whole log again, see [`move_history_out`]).
fn catch_up(conn: &Connection, log: &SqliteLog) -> anyhow::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let pending: Vec<OutboxRecord> = tx
        .prepare("SELECT event_id, topic, key, payload, created_at FROM outbox ORDER BY pos")?
        .query_map([], |r| {
            Ok(OutboxRecord {
                event_id: uuid_col(r, 0)?,
                topic: r.get(1)?,
                key: r.get(2)?,
                payload: r.get(3)?,
                created_at_ms: r.get(4)?,
                headers: Vec::new(),
                event: None,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // From the earlier of the two old groups' positions in each partition.
    let unhandled: Vec<OutboxRecord> = tx
        .prepare(
            "SELECT r.key, r.payload, r.ts FROM records r
             WHERE r.topic = ?1 AND r.offset >= (
               SELECT coalesce(min(g.next), 0) FROM group_offsets g
               WHERE g.grp IN ('history', 'notifications') AND g.topic = r.topic
                 AND g.partition = r.partition)
             ORDER BY r.partition, r.offset",
        )?
        .query_map([ROOM_EVENTS_TOPIC], |r| {
            Ok(OutboxRecord {
                event_id: uuid::Uuid::nil(),
                topic: ROOM_EVENTS_TOPIC.to_string(),
                key: r.get(0)?,
                payload: r.get(1)?,
                created_at_ms: r.get(2)?,
                headers: Vec::new(),
                event: None,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let announcements = log.inline_apply(&tx, &unhandled)?;
    log.append_in(&tx, pending.into_iter().chain(announcements).collect())?;
    tx.execute_batch(
        "DELETE FROM outbox; DELETE FROM group_offsets WHERE grp IN ('history', 'notifications');",
    )?;
    tx.commit()?;
    Ok(())
}
