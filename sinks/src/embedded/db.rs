//! A SQLite database file shared by async code, without a thread hop per query:
//! - writes go to the file's **committer**, a long-lived thread that owns the write connection
//!   and commits every write waiting in its queue in one transaction (group commit: one fsync
//!   for many writes), each in a savepoint of its own so a failing write rolls back alone;
//!   a write is answered only once its transaction is committed;
//! - reads run on the calling thread with a pooled read-only connection (WAL lets readers run
//!   beside the writer): an indexed read from the page cache takes microseconds, less than a
//!   hand-off to another thread would; scans and aggregates use [`Db::read_blocking`].

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use livechat_core::error::{StoreError, StoreResult};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

const MAX_IDLE_READERS: usize = 8;
/// Statements cached per connection (more than the adapters use, so none is evicted).
const STATEMENT_CACHE: usize = 128;
/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Idle checkpoints (1 s) after which a file's WAL is emptied.
const TRUNCATE_AFTER_IDLE: u32 = 5;
/// WAL pages after which a commit checkpoints by itself: only when the background checkpointer
/// falls far behind (SQLite's default, 1,000, would put a checkpoint with its fsyncs on the
/// commit path every few thousand writes; the profile showed 12 % of CPU there).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 20_000;

pub struct Db {
    path: PathBuf,
    jobs: SyncSender<Job>,
    /// Set once the committer sees a commit by another connection (another process, or
    /// another handle on the file).
    shared: Arc<AtomicBool>,
    /// How many of the committer's transactions failed (rolled back) so far.
    rollbacks: Arc<AtomicU64>,
    /// Idle read-only connections (std Mutex: held only to pop or push one).
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// Writes waiting for the committer; beyond this a write is refused with `Unavailable` (the
/// ingress answers 503) instead of queueing without bound.
const QUEUE: usize = 8192;
/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;

/// What a write reports once its transaction is committed (or failed).
type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
/// A write's work: says whether it failed, and what to do once the transaction's outcome is known.
type Work = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;
/// A write: says whether it failed, and hands back what to do once the outcome of the whole
/// transaction is known.
struct Job {
    run: Work,
    /// Runs in a savepoint of its own, so its failure rolls back only itself. An unguarded
    /// write (one that fails only when the database does: a send, whose checks come before any
    /// change) spares the savepoint's cost; if it fails, its whole transaction is rolled back.
    guarded: bool,
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
    // What a delete or an edit removes (an erased account, a deleted message) is overwritten,
    // not left readable in the file's free space.
    conn.pragma_update(None, "secure_delete", "ON")?;
    tune(conn)
}

/// Checkpoints the WAL from a connection of its own every [`CHECKPOINT_EVERY`] (PASSIVE: never
/// waits for, nor blocks, the writer and readers), until the database is dropped. Once the file
/// has been idle for [`TRUNCATE_AFTER_IDLE`] checkpoints, the WAL is emptied too (see
/// [`truncate_wal`]).
fn spawn_checkpointer(db: Weak<Db>, durability: Durability) {
    let spawned = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut conn: Option<Connection> = None;
            // Checkpoints in a row that found the WAL whole in the file and unchanged.
            let (mut idle, mut last_log) = (0u32, 0i64);
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
                    let frames = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    match frames {
                        Ok((log, done)) => {
                            idle = if log > 0 && log == done && log == last_log {
                                idle + 1
                            } else {
                                0
                            };
                            last_log = log;
                            if idle > 0 && idle % TRUNCATE_AFTER_IDLE == 0 {
                                truncate_wal(c, &path);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, path = %path.display(), "WAL checkpoint failed");
                            conn = None;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no checkpointer thread: commits checkpoint by themselves");
    }
}

/// Empties an idle file's WAL, now wholly checkpointed: the frames it keeps until they are
/// written over hold older versions of pages, with what deletes and erasures removed since (the
/// file itself has them overwritten: `secure_delete`). Never waits: tried again at the next idle
/// spell when a reader or the writer is busy.
fn truncate_wal(conn: &Connection, path: &Path) {
    let _ = conn.busy_timeout(Duration::ZERO);
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::debug!(error = %e, path = %path.display(), "WAL not truncated (busy)");
    }
    let _ = conn.busy_timeout(Duration::from_secs(10));
}

/// Every connection: memory-mapped reads (no pread per page), a larger page cache, temporary
/// data (the savepoints' sub-journal of each write) in memory rather than in temporary files,
/// and room for every statement the adapters cache (a statement evicted from the cache is
/// parsed again at its next use).
///
/// Queries bind no `LIMIT ?`: SQLite prepares a statement again whenever the value bound to a
/// `LIMIT` parameter changes, so they take rows from the iterator instead (rows are computed
/// one step at a time; the query stops where the caller stops).
fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    conn.pragma_update(None, "cache_size", -8000)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // SQLite's lower() folds ASCII only: search compares Unicode lowercase ("Ünï" is found by
    // "ünï"), as the MongoDB adapter's case-insensitive match does.
    conn.create_scalar_function(
        "unicode_lower",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
    )?;
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

    /// Runs a data migration (what a later column needs filled) in one write transaction on a
    /// connection of its own: safe when several processes open the file at once.
    pub fn migrate(
        &self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> anyhow::Result<()> {
        let conn = Connection::open(&self.path)
            .and_then(|c| {
                c.busy_timeout(std::time::Duration::from_secs(10))
                    .map(|()| c)
            })
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", self.path.display()))?;
        let run = || -> rusqlite::Result<()> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let done = f(&conn);
            conn.execute_batch(if done.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            done
        };
        run().map_err(|e| anyhow::anyhow!("{what} in {}: {e}", self.path.display()))
    }

    /// Opens (creating if needed) the file, applies `schema` (idempotent DDL) and starts its
    /// committer thread (it ends when the last handle is dropped).
    pub fn open_with(path: &Path, schema: &str, durability: Durability) -> anyhow::Result<Arc<Db>> {
        let writer = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        configure(&writer, durability)
            .map_err(|e| anyhow::anyhow!("configuring {}: {e}", path.display()))?;
        writer
            .execute_batch(schema)
            .map_err(|e| anyhow::anyhow!("applying schema to {}: {e}", path.display()))?;
        add_later_columns(&writer)
            .map_err(|e| anyhow::anyhow!("adding columns to {}: {e}", path.display()))?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
            .map_err(|e| anyhow::anyhow!("configuring {}: {e}", path.display()))?;
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        let shared = Arc::new(AtomicBool::new(false));
        let seen = shared.clone();
        let rollbacks = Arc::new(AtomicU64::new(0));
        let failed = rollbacks.clone();
        let file = path
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("db")
            .to_string();
        let name = format!("commit-{}", file.trim_end_matches(".db"));
        std::thread::Builder::new()
            .name(name)
            .spawn(move || commit_loop(writer, rx, seen, failed, file))
            .map_err(|e| anyhow::anyhow!("starting the committer of {}: {e}", path.display()))?;
        let db = Arc::new(Db {
            path: path.to_path_buf(),
            jobs,
            shared,
            rollbacks,
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

    /// Becomes true once another connection has committed to the file.
    pub fn shared_flag(&self) -> Arc<AtomicBool> {
        self.shared.clone()
    }

    /// Counts the committer's failed transactions: state kept beside the file from what its
    /// writes did (see `retries.rs`) is rebuilt when the count moves.
    pub(super) fn rollback_count(&self) -> Arc<AtomicU64> {
        self.rollbacks.clone()
    }

    /// Runs `f` in a savepoint of the committer's next transaction; answers once that
    /// transaction is committed (so the write is durable as the file's [`Durability`] says).
    pub async fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.write_then(f, |_| {}).await
    }

    /// Like [`Db::write`], and runs `after` on the committer thread once the transaction is
    /// committed, before any later write's: committed writes are announced in commit order.
    /// `after` may take what it announces out of the result (it is not cloned).
    pub async fn write_then<R, F, A>(&self, f: F, after: A) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        A: FnOnce(&mut R) + Send + 'static,
    {
        self.submit(f, after, true).await
    }

    /// Like [`Db::write`] without a savepoint (see [`Db::queue_unguarded_then`]).
    pub async fn write_unguarded<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        self.submit(f, |_| {}, false).await
    }

    /// Like [`Db::write_then`] without a savepoint, for a write that can fail only when the
    /// database does (every check that may refuse it runs before it changes anything). If it
    /// fails anyway, its whole transaction is rolled back: the writes that ran before it in
    /// that transaction are refused, the ones after it run in the next.
    ///
    /// The write is queued when this returns, and the future answers once it is committed.
    /// The committer runs its queue in order, so writes queued one after another run in that
    /// order (a room's sends take their seqs in it) whenever their answers are awaited.
    pub fn queue_unguarded_then<R, F, A>(
        &self,
        f: F,
        after: A,
    ) -> StoreResult<impl std::future::Future<Output = StoreResult<R>>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        A: FnOnce(&mut R) + Send + 'static,
    {
        self.queue(f, after, false)
    }

    async fn submit<R, F, A>(&self, f: F, after: A, guarded: bool) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        A: FnOnce(&mut R) + Send + 'static,
    {
        self.queue(f, after, guarded)?.await
    }

    fn queue<R, F, A>(
        &self,
        f: F,
        after: A,
        guarded: bool,
    ) -> StoreResult<impl std::future::Future<Output = StoreResult<R>>>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
        A: FnOnce(&mut R) + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<StoreResult<R>>();
        let run = Box::new(move |conn: &Connection| {
            let out = f(conn).map_err(store_err);
            let failed = out.is_err();
            let finish: Finish = Box::new(move |committed: Result<(), &StoreError>| {
                let result = match (committed, out) {
                    (Ok(()), Ok(mut r)) => {
                        after(&mut r);
                        Ok(r)
                    }
                    (_, Err(e)) => Err(e),
                    (Err(e), Ok(_)) => Err(refused_by(e)),
                };
                let _ = reply.send(result);
            });
            (failed, finish)
        });
        match self.jobs.try_send(Job { run, guarded }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(StoreError::Unavailable(anyhow::anyhow!(
                    "{}: write queue full",
                    self.path.display()
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "{}: committer stopped",
                    self.path.display()
                )))
            }
        }
        let path = self.path.clone();
        Ok(async move {
            answer.await.map_err(|_| {
                StoreError::Other(anyhow::anyhow!(
                    "{}: committer dropped a write",
                    path.display()
                ))
            })?
        })
    }

    /// Runs `f` on a read-only connection, on the calling thread (for indexed reads: a page or
    /// a row; use [`Db::read_blocking`] for scans).
    pub async fn read<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R>,
    {
        self.read_now(f)
    }

    /// [`Db::read`] of several statements that must see one state of the file (a page of
    /// messages and their reactions): one read transaction around them, which also takes the
    /// file's read lock once instead of once per statement.
    pub async fn read_snapshot<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R>,
    {
        self.read_now(|c| {
            c.prepare_cached("BEGIN")?.execute([])?;
            match f(c) {
                Ok(out) => {
                    c.prepare_cached("COMMIT")?.execute([])?;
                    Ok(out)
                }
                Err(e) => {
                    // The read's error is the one to report; a connection whose rollback
                    // failed too stays in its transaction and is not pooled again (`read_now`).
                    let _ = c.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
                    Err(e)
                }
            }
        })
    }

    /// Runs `f` on a read-only connection on the blocking pool (scans, aggregates, checksums).
    pub async fn read_blocking<R, F>(self: &Arc<Self>, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_now(f))
            .await
            .map_err(|e| StoreError::Other(anyhow::anyhow!("sqlite task failed: {e}")))?
    }

    fn read_now<R, F>(&self, f: F) -> StoreResult<R>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<R>,
    {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader().map_err(store_err)?,
        };
        let out = f(&conn).map_err(store_err);
        if !conn.is_autocommit() {
            // Still inside a transaction (one whose end failed): not for another reader.
            return out;
        }
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_secs(10))?;
        tune(&c)?;
        Ok(c)
    }
}

/// The error each write of a failed transaction gets.
fn refused_by(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(_) => {
            StoreError::Unavailable(anyhow::anyhow!("commit failed: {e}"))
        }
        _ => StoreError::Other(anyhow::anyhow!("commit failed: {e}")),
    }
}

/// Runs one of the savepoint statements (cached: they run for every write).
fn savepoint_step(tx: &Connection, sql: &str) -> StoreResult<()> {
    tx.prepare_cached(sql)
        .and_then(|mut st| st.execute([]))
        .map(|_| ())
        .map_err(store_err)
}

/// The committer: takes every write waiting, runs each in its own savepoint of one
/// transaction, commits once, then reports to each in order. Ends when every handle is gone.
fn commit_loop(
    mut conn: Connection,
    rx: Receiver<Job>,
    shared: Arc<AtomicBool>,
    rollbacks: Arc<AtomicU64>,
    file: String,
) {
    let batch_size = metrics::histogram!("livechat_commit_batch_size", "file" => file.clone());
    let commit_seconds = metrics::histogram!("livechat_commit_seconds", "file" => file);
    let mut leftover: Vec<Job> = Vec::new();
    // `PRAGMA data_version` changes only when another connection commits to the file.
    let mut version: Option<i64> = None;
    loop {
        let mut batch = std::mem::take(&mut leftover);
        if batch.is_empty() {
            match rx.recv() {
                Ok(first) => batch.push(first),
                Err(_) => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let _span = tracing::debug_span!("commit", writes = batch.len()).entered();
        if !shared.load(Ordering::Relaxed) {
            let now: Option<i64> = conn
                .prepare_cached("PRAGMA data_version")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .ok();
            if version.is_some() && now != version {
                tracing::info!(file = %conn.path().unwrap_or_default(), "Another connection writes this file; reads no longer rely on what this process wrote.");
                shared.store(true, Ordering::Relaxed);
            }
            version = now;
        }
        let started = Instant::now();
        let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
        let committed = run_batch(&mut conn, batch, &mut finishes, &mut leftover);
        match &committed {
            Ok(()) => {
                batch_size.record(finishes.len() as f64);
                commit_seconds.record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                rollbacks.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "Commit failed; its writes are refused.")
            }
        }
        for finish in finishes {
            finish(committed.as_ref().map(|_| ()));
        }
    }
}

/// One transaction, a savepoint per guarded write. An error here means nothing was committed;
/// the writes not yet run are handed back in `leftover` for the next transaction.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<Job>,
    finishes: &mut Vec<Finish>,
    leftover: &mut Vec<Job>,
) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(store_err)?;
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        if job.guarded {
            savepoint_step(&tx, "SAVEPOINT w")?;
        }
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| (job.run)(&tx)));
        let (failed, finish) = match ran {
            Ok(r) => r,
            Err(_) => {
                tracing::error!("A write panicked; it is rolled back and refused.");
                let finish: Finish = Box::new(|_| {});
                (true, finish)
            }
        };
        finishes.push(finish);
        if job.guarded {
            if failed {
                savepoint_step(&tx, "ROLLBACK TO w")?;
            }
            savepoint_step(&tx, "RELEASE w")?;
        } else if failed {
            leftover.extend(jobs);
            return Err(StoreError::Other(anyhow::anyhow!(
                "a write failed midway; its transaction is rolled back"
            )));
        }
    }
    tx.commit().map_err(store_err)
}

/// A UUID column, parsed from the row's text where it lies (no copy).
pub fn uuid_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<uuid::Uuid> {
    opt_uuid_col(row, idx)?.ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(idx, "a UUID".into(), rusqlite::types::Type::Null)
    })
}

pub fn opt_uuid_col(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<uuid::Uuid>> {
    match row.get_ref(idx)?.as_str_or_null()? {
        None => Ok(None),
        Some(s) => uuid::Uuid::parse_str(s).map(Some).map_err(|e| {
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
/// Columns added to tables after files with those tables were written: `(table, column,
/// declaration)`. A new file gets them from its schema.
const LATER_COLUMNS: &[(&str, &str, &str)] = &[
    // A JSON array of `[key, value]` pairs, NULL for none.
    ("records", "headers", "TEXT"),
    // A deleted notification's tombstone.
    ("notifications", "deleted", "INTEGER NOT NULL DEFAULT 0"),
    // Left out of search and top rooms.
    ("rooms", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
    // The username's key (case-folded confusable skeleton), unique: see `key_usernames`.
    ("users", "name_key", "TEXT"),
    // A direct conversation.
    ("rooms", "direct", "INTEGER NOT NULL DEFAULT 0"),
    // The seq of the message a reply quotes.
    ("messages", "reply_to_seq", "INTEGER"),
    // The seq of the root of the thread a reply is in.
    ("messages", "thread_root_seq", "INTEGER"),
    // The files shared with a message: a JSON array, NULL for none.
    ("messages", "attachments", "TEXT"),
];

/// Indexes on [`LATER_COLUMNS`], made once the columns are there: `(table, statement)`.
const LATER_INDEXES: &[(&str, &str)] = &[(
    "messages",
    // Only thread replies are in it: a message outside threads costs no index entry.
    "CREATE INDEX IF NOT EXISTS messages_by_thread ON messages(room_id, thread_root_seq, seq)
     WHERE thread_root_seq IS NOT NULL",
)];

/// Adds the [`LATER_COLUMNS`] a file's existing tables lack, and the [`LATER_INDEXES`]. Idempotent, and safe when several
/// processes open the file at once (the check and the change run in one write transaction).
fn add_later_columns(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let added = (|| {
        for (table, column, decl) in LATER_COLUMNS {
            let columns: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            if !columns.is_empty() && !columns.iter().any(|c| c == column) {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
                tracing::info!(
                    table,
                    column,
                    "Column added to a file written before it existed."
                );
            }
        }
        for (table, index) in LATER_INDEXES {
            let exists: i64 = conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )?;
            if exists > 0 {
                conn.execute_batch(index)?;
            }
        }
        Ok(())
    })();
    conn.execute_batch(if added.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    added
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &Connection) -> rusqlite::Result<i64> {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
    }

    /// A snapshot read that fails after it has read leaves no transaction behind on the pooled
    /// connection: the next read on it sees what was written since.
    #[tokio::test]
    async fn a_failed_snapshot_read_leaves_no_snapshot_behind() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), "CREATE TABLE t(x INTEGER);").unwrap();
        db.write(|c| c.execute("INSERT INTO t VALUES (1)", []))
            .await
            .unwrap();
        let failed = db
            .read_snapshot(|c| {
                assert_eq!(count(c)?, 1);
                c.query_row("SELECT no_such_column FROM t", [], |r| r.get::<_, i64>(0))
            })
            .await;
        assert!(failed.is_err());
        db.write(|c| c.execute("INSERT INTO t VALUES (2)", []))
            .await
            .unwrap();
        assert_eq!(db.read(count).await.unwrap(), 2);
        let (first, second) = db
            .read_snapshot(|c| Ok((count(c)?, count(c)?)))
            .await
            .unwrap();
        assert_eq!((first, second), (2, 2));
    }
}
