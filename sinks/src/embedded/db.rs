//! A SQLite database file shared by async code: one writer connection and a small pool of
//! readers (WAL lets readers run beside the writer), all used from the blocking thread pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use livechat_core::error::{StoreError, StoreResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

const MAX_IDLE_READERS: usize = 8;
/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL pages after which a commit checkpoints by itself: only when the background checkpointer
/// falls far behind (SQLite's default, 1,000, would put a checkpoint with its fsyncs on the
/// commit path every few thousand writes; the profile showed 12 % of CPU there).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 20_000;

#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    // std Mutexes: only locked inside spawn_blocking closures, never across an .await.
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync at every commit: survives power loss. For the sources of truth (directory with its
    /// outbox, the log).
    Full,
    /// WAL `synchronous=NORMAL`: survives a process crash; a power loss may lose the last
    /// commits. For read models rebuilt from the log (`livechat replay`): history, analytics.
    Normal,
    /// No journal, no fsync: for a new file that `livechat replay --into` fills from scratch
    /// (a crash leaves a file to delete and rebuild; the next normal open switches to WAL).
    Bulk,
}

fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let journal = if durability == Durability::Bulk {
        "OFF"
    } else {
        "WAL"
    };
    conn.pragma_update(None, "journal_mode", journal)?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
        Durability::Bulk => "OFF",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    tune(conn)
}

/// Checkpoints the WAL from a connection of its own every [`CHECKPOINT_EVERY`] (PASSIVE: never
/// waits for, nor blocks, the writer and readers), until the database is dropped.
fn spawn_checkpointer(db: Weak<Db>, durability: Durability) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut conn: Option<Connection> = None;
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                let Some(path) = db.upgrade().map(|d| d.path.clone()) else {
                    return;
                };
                if conn.is_none() {
                    conn = Connection::open(&path)
                        .and_then(|c| configure(&c, durability).map(|()| c))
                        .map_err(|e| tracing::warn!(error = %e, path = %path.display(), "checkpointer cannot open the database"))
                        .ok();
                }
                if let Some(c) = &conn {
                    if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, path = %path.display(), "WAL checkpoint failed");
                        conn = None;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no checkpointer thread: commits checkpoint by themselves");
    }
}

/// Memory-mapped reads (no pread per page) and a larger page cache, for every connection.
fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -8000)?;
    Ok(())
}

/// Translates SQLite errors at the adapter edge.
pub fn store_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) if f.code == ErrorCode::ConstraintViolation => {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| "unique constraint".into()))
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::DiskFull
                    | ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(anyhow::anyhow!(e))
        }
        _ => StoreError::Other(anyhow::anyhow!(e)),
    }
}

impl Db {
    /// Opens (creating if needed) the file with full durability and applies `schema`.
    pub fn open(path: &Path, schema: &str) -> anyhow::Result<Arc<Db>> {
        Db::open_with(path, schema, Durability::Full)
    }

    /// Opens (creating if needed) the file and applies `schema` (idempotent DDL).
    pub fn open_with(path: &Path, schema: &str, durability: Durability) -> anyhow::Result<Arc<Db>> {
        let writer = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        configure(&writer, durability)
            .map_err(|e| anyhow::anyhow!("configuring {}: {e}", path.display()))?;
        writer
            .execute_batch(schema)
            .map_err(|e| anyhow::anyhow!("applying schema to {}: {e}", path.display()))?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(|e| anyhow::anyhow!("configuring {}: {e}", path.display()))?;
        let db = Arc::new(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        });
        if durability != Durability::Bulk {
            spawn_checkpointer(Arc::downgrade(&db), durability);
        }
        Ok(db)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction (committed if `f` returns Ok).
    pub async fn write<R, F>(self: &Arc<Self>, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<R> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.writer.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let out = f(&tx).map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Other(anyhow::anyhow!("sqlite task failed: {e}")))?
    }

    /// Runs `f` with the writer connection on the calling (blocking) thread.
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut Connection) -> R) -> R {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// Runs `f` on a reader connection.
    pub async fn read<R, F>(self: &Arc<Self>, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = db.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &db.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(store_err)?;
                    c.busy_timeout(std::time::Duration::from_secs(10))
                        .map_err(store_err)?;
                    tune(&c).map_err(store_err)?;
                    c
                }
            };
            let out = f(&conn).map_err(store_err);
            let mut pool = db.readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Other(anyhow::anyhow!("sqlite task failed: {e}")))?
    }
}

/// Parses a UUID column.
pub fn uuid_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<uuid::Uuid> {
    let s: String = row.get(idx)?;
    uuid::Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub fn opt_uuid_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<uuid::Uuid>> {
    let s: Option<String> = row.get(idx)?;
    match s {
        None => Ok(None),
        Some(s) => uuid::Uuid::parse_str(&s).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

pub fn ts_col(
    row: &rusqlite::Row<'_>,
    idx: usize,
) -> rusqlite::Result<chrono::DateTime<chrono::Utc>> {
    Ok(livechat_core::from_ms(row.get(idx)?))
}

/// SHA-256 over the rows of `sql` (every column rendered as text, `|`-separated, one row per
/// line), in the order the query gives.
pub fn checksum_query(
    conn: &rusqlite::Connection,
    sql: &str,
) -> rusqlite::Result<livechat_core::model::Checksum> {
    use rusqlite::types::Value;
    use sha2::{Digest, Sha256};
    let mut stmt = conn.prepare(sql)?;
    let cols = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        for i in 0..cols {
            let text = match row.get::<_, Value>(i)? {
                Value::Null => "\\N".to_string(),
                Value::Integer(i) => i.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(t) => t,
                Value::Blob(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            };
            hasher.update(text.as_bytes());
            hasher.update(if i + 1 == cols { b"\n" } else { b"|" });
        }
        n += 1;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(livechat_core::model::Checksum { rows: n, sha256 })
}

/// Wraps a non-SQLite failure raised inside a transaction closure.
pub fn user_err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}
