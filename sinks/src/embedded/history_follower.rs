//! The embedded store's message history, kept right behind its log in `history.db`, a file of
//! its own: a follower thread applies each committed room event with the history processor's
//! mapping, and stores how far it got (the next offset of each partition) in the same
//! transaction, so the rows and the position never disagree.
//!
//! Why behind and not in the send's transaction: every history row lands in a B-tree keyed by
//! room, so each send dirtied a page of its own in the commit it waited for, and the writes and
//! fsyncs of those pages were the largest part of a send's cost (bench/README.md, "What each
//! statement of a send costs"). Here they leave the acknowledgement's path, commit in batches of
//! whatever is waiting (many sends to a page), on another core, without an fsync: the file is a
//! read model, and after a crash the follower applies again what its position says is missing.
//!
//! Read-your-writes holds all the same: every read of the history first waits until the
//! follower has applied everything the log held when the read began, in the read's room (or in
//! every partition for a read by message id). A write acknowledged before the read is in the log
//! by then, so the read sees it. When the follower keeps up, that is a comparison of two numbers
//! in memory; when it lags, the read waits for its next commit (at most [`CATCH_UP_WAIT`], then
//! `503`).
//!
//! Several processes on one data directory each run a follower; a batch reads the file's
//! position inside its transaction and applies only what comes after it, so two followers
//! never apply an event twice (the history's changes are idempotent anyway).

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::keyring::Keyring;
use livechat_core::model::{Checksum, HistoryOp, MessageId, RoomId, StoredMessage, UserId};
use livechat_core::ports::{EventLog, MessageStore};
use livechat_schemas::{TopicEvent, ROOM_EVENTS_TOPIC};
use rusqlite::{params, Connection};
use tokio::sync::{watch, Notify};

use super::db::Db;
use super::history::{self, SqliteHistory};
use super::inline::HistoryMapping;
use super::log::{kafka_partition, SqliteLog};

/// The follower's position, in `history.db`.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS history_applied(
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
  PRIMARY KEY(topic, partition)) WITHOUT ROWID;
"#;

/// Most log entries in one batch of the follower.
const MAX_BATCH: usize = 4096;
/// How long a read waits for the follower before answering that the history is unavailable.
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);
/// How long the follower gathers new entries before a batch when no read waits for them: the
/// more sends a batch takes, the more of them share each page it writes.
const GATHER: Duration = Duration::from_millis(50);
/// How often an idle follower looks at the file anyway (appends by other processes signal
/// nothing here).
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// What the reads and the follower share.
struct Shared {
    log: SqliteLog,
    history: SqliteHistory,
    map: HistoryMapping,
    /// Opens the sealed events read back from the log (the ones appended here carry theirs).
    keyring: Arc<Keyring>,
    partitions: u32,
    /// The next offset to apply, per partition of the room events, as of the last batch.
    applied: watch::Sender<Vec<i64>>,
    /// Wakes the follower (a read waiting, or appends by another process).
    nudge: Arc<Notify>,
}

/// The history as the store's reads see it: [`SqliteHistory`] in `history.db`, each read after
/// the follower has caught up with the log. Cheap to clone.
#[derive(Clone)]
pub struct FollowedHistory {
    history: SqliteHistory,
    /// None when nothing follows the log into it (changes are applied directly).
    follower: Option<Arc<Shared>>,
}

impl FollowedHistory {
    /// Starts following `log` into `history` (whose file holds [`SCHEMA`]) on a thread of its
    /// own, which ends once the last handle on the history is dropped.
    pub(super) fn start(
        log: SqliteLog,
        history: SqliteHistory,
        map: HistoryMapping,
        keyring: Arc<Keyring>,
    ) -> anyhow::Result<FollowedHistory> {
        let partitions = log.partitions(ROOM_EVENTS_TOPIC);
        let applied = positions(history.db(), partitions)?;
        let shared = Arc::new(Shared {
            log,
            history: history.clone(),
            map,
            keyring,
            partitions,
            applied: watch::channel(applied).0,
            nudge: Arc::new(Notify::new()),
        });
        let (weak, nudge) = (Arc::downgrade(&shared), shared.nudge.clone());
        let signal = shared.log.append_signal();
        std::thread::Builder::new()
            .name("follow-history".into())
            .spawn(move || follow(weak, nudge, signal))?;
        Ok(FollowedHistory {
            history,
            follower: Some(shared),
        })
    }

    /// The history with nothing following the log into it.
    pub(super) fn unfollowed(history: SqliteHistory) -> FollowedHistory {
        FollowedHistory {
            history,
            follower: None,
        }
    }

    /// Waits until the follower has applied every room event the log holds now: in the room's
    /// partition, or in all of them.
    async fn caught_up(&self, room: Option<RoomId>) -> StoreResult<()> {
        let Some(s) = &self.follower else {
            return Ok(());
        };
        let parts: Vec<u32> = match room {
            Some(r) => vec![kafka_partition(&r.to_string(), s.partitions)],
            None => (0..s.partitions).collect(),
        };
        let mut ends = Vec::with_capacity(parts.len());
        for p in parts {
            let end = match s.log.known_end(ROOM_EVENTS_TOPIC, p) {
                Some(end) => end,
                None => s.log.end_offset(ROOM_EVENTS_TOPIC, p).await?,
            };
            ends.push((p as usize, end));
        }
        let done = |applied: &Vec<i64>| ends.iter().all(|&(p, end)| applied[p] >= end);
        let mut rx = s.applied.subscribe();
        if done(&rx.borrow_and_update()) {
            return Ok(());
        }
        s.nudge.notify_one();
        let waited = tokio::time::timeout(CATCH_UP_WAIT, rx.wait_for(done))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable(anyhow::anyhow!(
                "the message history is more than {} s behind the log",
                CATCH_UP_WAIT.as_secs()
            ))),
        }
    }
}

/// The follower's position as stored in `history.db` (0 where it has none).
fn positions(db: &Db, partitions: u32) -> anyhow::Result<Vec<i64>> {
    let read = || -> rusqlite::Result<Vec<i64>> {
        let conn = Connection::open(db.path())?;
        conn.busy_timeout(Duration::from_secs(10))?;
        read_positions(&conn, partitions)
    };
    read().map_err(|e| {
        anyhow::anyhow!(
            "reading the history's position in {}: {e}",
            db.path().display()
        )
    })
}

fn read_positions(conn: &Connection, partitions: u32) -> rusqlite::Result<Vec<i64>> {
    let mut next = vec![0; partitions as usize];
    let mut stmt =
        conn.prepare_cached("SELECT partition, next FROM history_applied WHERE topic = ?1")?;
    let rows = stmt.query_map([ROOM_EVENTS_TOPIC], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (p, n) = row?;
        if let Some(slot) = next.get_mut(p as usize) {
            *slot = n;
        }
    }
    Ok(next)
}

/// The follower's thread: a batch whenever the log has new entries, or a read is waiting.
fn follow(weak: Weak<Shared>, nudge: Arc<Notify>, mut signal: watch::Receiver<u64>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "The history follower cannot start; history reads will answer 503.");
            return;
        }
    };
    rt.block_on(async move {
        loop {
            let Some(shared) = weak.upgrade() else { return };
            let applied = match shared.batch().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "The history follower failed a batch; it tries again.");
                    0
                }
            };
            drop(shared);
            if applied == MAX_BATCH {
                continue;
            }
            tokio::select! {
                changed = signal.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep(IDLE_LOOK).await;
                        continue;
                    }
                    // New entries: gather more before the next batch, unless a read waits.
                    tokio::select! {
                        _ = nudge.notified() => {}
                        _ = tokio::time::sleep(GATHER) => {}
                    }
                }
                _ = nudge.notified() => {}
                _ = tokio::time::sleep(IDLE_LOOK) => {}
            }
        }
    });
}

impl Shared {
    /// Applies what the log holds past the follower's position; returns how many entries it read.
    #[tracing::instrument(name = "history_batch", skip_all, fields(entries))]
    async fn batch(&self) -> StoreResult<usize> {
        let from = self.applied.borrow().clone();
        let mut read = Vec::new();
        let mut total = 0;
        for (p, &at) in from.iter().enumerate() {
            if total >= MAX_BATCH {
                break;
            }
            let room = (MAX_BATCH - total) as u32;
            let entries = self.log.read(ROOM_EVENTS_TOPIC, p as u32, at, room).await?;
            total += entries.len();
            read.push(entries);
        }
        tracing::Span::current().record("entries", total);
        if total == 0 {
            self.report_lag(&from);
            return Ok(0);
        }
        // Each change with the partition and offset of the event it came from.
        let mut ops: Vec<(usize, i64, HistoryOp)> = Vec::with_capacity(total);
        let mut upto: Vec<(usize, i64, i64)> = Vec::new();
        for entries in &read {
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                continue;
            };
            upto.push((first.partition as usize, first.offset, last.offset + 1));
            for e in entries {
                let decoded;
                let ev = match e.event.as_deref() {
                    Some(TopicEvent::Room(ev)) => ev,
                    _ => match self.keyring.decode(&e.payload) {
                        Ok(d) => {
                            decoded = d;
                            match &decoded {
                                TopicEvent::Room(ev) => ev,
                                _ => continue,
                            }
                        }
                        Err(err) => {
                            // What the history processor would dead-letter: skipped, counted
                            // by `livechat replay` as undecodable.
                            tracing::warn!(partition = e.partition, offset = e.offset, error = %err, "Undecodable room event skipped by the history.");
                            continue;
                        }
                    },
                };
                match (self.map)(ev) {
                    Ok(Some(op)) => ops.push((e.partition as usize, e.offset, op)),
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(partition = e.partition, offset = e.offset, error = %err, "Room event the history cannot apply skipped.");
                    }
                }
            }
        }
        let partitions = self.partitions;
        let now = self
            .history
            .db()
            .write_unguarded(move |tx| {
                // Only what comes after the file's own position: another process's follower
                // may have applied some of it already.
                let stored = read_positions(tx, partitions)?;
                let fresh: Vec<HistoryOp> = ops
                    .into_iter()
                    .filter(|(p, offset, _)| {
                        let at = stored[*p];
                        *offset >= at && upto.iter().any(|u| u.0 == *p && u.1 <= at)
                    })
                    .map(|(_, _, op)| op)
                    .collect();
                history::apply_in(tx, &fresh)?;
                let mut set = tx.prepare_cached(
                    "INSERT INTO history_applied(topic, partition, next) VALUES (?1, ?2, ?3)
                     ON CONFLICT(topic, partition) DO UPDATE SET next = max(next, excluded.next)",
                )?;
                for &(p, first, next) in &upto {
                    // A position below what was read means the file was rebuilt meanwhile:
                    // leave it, and read again from there.
                    if stored[p] >= first {
                        set.execute(params![ROOM_EVENTS_TOPIC, p as i64, next])?;
                    }
                }
                drop(set);
                read_positions(tx, partitions)
            })
            .await?;
        self.report_lag(&now);
        self.applied.send_replace(now);
        Ok(total)
    }

    /// The follower's lag per partition in `/metrics`, as a consumer group's would be (group
    /// `history`): as of its last batch, at most [`IDLE_LOOK`] old. Left out while another
    /// process writes the log (this one does not know the ends then without a query).
    fn report_lag(&self, applied: &[i64]) {
        for (p, &at) in applied.iter().enumerate() {
            if let Some(end) = self.log.known_end(ROOM_EVENTS_TOPIC, p as u32) {
                metrics::gauge!("livechat_consumer_lag", "group" => "history", "topic" => ROOM_EVENTS_TOPIC, "partition" => p.to_string())
                    .set((end - at).max(0) as f64);
            }
        }
    }
}

#[async_trait]
impl MessageStore for FollowedHistory {
    async fn apply(&self, ops: &[HistoryOp]) -> StoreResult<()> {
        self.history.apply(ops).await
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<StoredMessage>> {
        self.caught_up(None).await?;
        self.history.message(id).await
    }

    async fn recent(
        &self,
        room: RoomId,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.caught_up(Some(room)).await?;
        self.history.recent(room, before, limit).await
    }

    async fn after_seq(
        &self,
        room: RoomId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.caught_up(Some(room)).await?;
        self.history.after_seq(room, after, limit).await
    }

    async fn before_seq(
        &self,
        room: RoomId,
        before: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.caught_up(Some(room)).await?;
        self.history.before_seq(room, before, limit).await
    }

    async fn pinned(&self, room: RoomId, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        self.caught_up(Some(room)).await?;
        self.history.pinned(room, limit).await
    }

    async fn thread(
        &self,
        room: RoomId,
        root_seq: i64,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.caught_up(Some(room)).await?;
        self.history.thread(room, root_seq, after, limit).await
    }

    async fn checksum(&self) -> StoreResult<Checksum> {
        self.caught_up(None).await?;
        self.history.checksum().await
    }

    async fn by_author(
        &self,
        user: UserId,
        after: Option<(RoomId, i64)>,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.caught_up(None).await?;
        self.history.by_author(user, after, limit).await
    }
}
