//! `log.db`: a partitioned append-only log with consumer-group offsets, Kafka's model on SQLite.
//! Records are partitioned like Kafka's default partitioner (murmur2 of the key), so a room maps
//! to the same partition number here as on a Kafka topic with the same partition count.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use livechat_core::error::StoreResult;
use livechat_core::model::{LogEntry, OutboxRecord};
use livechat_core::ports::{EventLog, GroupConsumer, StartAt};
use livechat_schemas::TABLE_TOPICS;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::watch;

use super::db::Db;
use super::inline::InlineNotifications;
use super::tail::{FromTail, Tail};

/// The log's tables. Timestamps never decrease within a partition, so a time seek bisects the
/// primary key (files from before kept a time index; it is dropped: one B-tree less per record).
/// The latest-state tables ([`TABLE_TOPICS`]) keep each key's newest record only: `table_keys`
/// knows where it is, and an append deletes the one before (files from before, which kept every
/// version, are compacted once at their first open).
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS records(
  topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
  key TEXT NOT NULL, payload BLOB NOT NULL, ts INTEGER NOT NULL,
  headers TEXT,
  PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID;
DROP INDEX IF EXISTS records_by_time;
CREATE TABLE IF NOT EXISTS group_offsets(
  grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
  PRIMARY KEY(grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS table_keys(
  topic TEXT NOT NULL, partition INTEGER NOT NULL, key TEXT NOT NULL, offset INTEGER NOT NULL,
  PRIMARY KEY(topic, partition, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_upkeep(name TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT OR IGNORE INTO table_keys(topic, partition, key, offset)
  SELECT topic, partition, key, max(offset) FROM records
  WHERE topic IN ('chat.rooms.v1', 'chat.users.v1', 'chat.memberships.v1', 'chat.read-markers.v1')
    AND NOT EXISTS (SELECT 1 FROM log_upkeep WHERE name = 'tables compacted')
  GROUP BY topic, partition, key;
DELETE FROM records
  WHERE topic IN ('chat.rooms.v1', 'chat.users.v1', 'chat.memberships.v1', 'chat.read-markers.v1')
    AND NOT EXISTS (SELECT 1 FROM log_upkeep WHERE name = 'tables compacted')
    AND offset < (SELECT t.offset FROM table_keys t WHERE t.topic = records.topic
                  AND t.partition = records.partition AND t.key = records.key);
INSERT OR IGNORE INTO log_upkeep(name) VALUES ('tables compacted');
"#;

/// The first offset of a partition whose record is at `ts_ms` or later (its end if none is), on
/// `conn` (inside the caller's transaction, if it has one).
pub(super) fn offset_for_time_in(
    c: &Connection,
    topic: &str,
    partition: u32,
    ts_ms: i64,
) -> rusqlite::Result<i64> {
    let end: i64 = c
        .prepare_cached(
            "SELECT coalesce(max(offset) + 1, 0) FROM records WHERE topic = ?1 AND partition = ?2",
        )?
        .query_row(params![topic, partition], |r| r.get(0))?;
    // Timestamps never decrease within a partition: bisect the offsets (the time of the first
    // record at or after one: a compacted table has gaps).
    let mut ts_at = c.prepare_cached(
        "SELECT ts FROM records WHERE topic = ?1 AND partition = ?2 AND offset >= ?3
         ORDER BY offset LIMIT 1",
    )?;
    let (mut lo, mut hi) = (0i64, end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let ts: i64 = ts_at.query_row(params![topic, partition, mid], |r| r.get(0))?;
        if ts >= ts_ms {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Compaction at the append: a table's key keeps its newest record (`offset`), the one before
/// is deleted (and its bytes overwritten: `secure_delete`), as Kafka's compaction would, so a
/// changed profile or an ended membership is gone from the file. A tombstone stays, as the
/// key's newest record.
fn compact_key(
    c: &Connection,
    topic: &str,
    partition: u32,
    key: &str,
    offset: i64,
) -> rusqlite::Result<()> {
    let before: Option<i64> = c
        .prepare_cached(
            "SELECT offset FROM table_keys WHERE topic = ?1 AND partition = ?2 AND key = ?3",
        )?
        .query_row(params![topic, partition, key], |r| r.get(0))
        .optional()?;
    if let Some(before) = before.filter(|b| *b < offset) {
        c.prepare_cached(
            "DELETE FROM records WHERE topic = ?1 AND partition = ?2 AND offset = ?3",
        )?
        .execute(params![topic, partition, before])?;
    }
    c.prepare_cached(
        "INSERT INTO table_keys(topic, partition, key, offset) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(topic, partition, key) DO UPDATE SET offset = excluded.offset",
    )?
    .execute(params![topic, partition, key, offset])?;
    Ok(())
}

/// Hands `each` the (offset, time, payload) of a partition's records from offset `from`, in
/// order, on `conn`; returns the partition's end (the offset after the last one).
pub(super) fn scan_in(
    c: &Connection,
    topic: &str,
    partition: u32,
    from: i64,
    mut each: impl FnMut(i64, i64, &[u8]),
) -> rusqlite::Result<i64> {
    let mut stmt = c.prepare_cached(
        "SELECT offset, ts, payload FROM records WHERE topic = ?1 AND partition = ?2 AND offset >= ?3
         ORDER BY offset",
    )?;
    let mut rows = stmt.query(params![topic, partition, from])?;
    let mut end = from;
    while let Some(r) = rows.next()? {
        let offset: i64 = r.get(0)?;
        let payload = r.get_ref(2)?.as_blob()?;
        each(offset, r.get(1)?, payload);
        end = offset + 1;
    }
    Ok(end)
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), for key → partition agreement.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = len / 4;
    for i in 0..chunks {
        let mut k = u32::from_le_bytes([
            data[4 * i],
            data[4 * i + 1],
            data[4 * i + 2],
            data[4 * i + 3],
        ]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = &data[chunks * 4..];
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn kafka_partition(key: &str, partitions: u32) -> u32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// A text column as a shared string, copied once from the row.
fn shared_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Arc<str>> {
    let text = r.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(text.into())
}

fn headers_to_sql(headers: &[(String, String)]) -> Option<String> {
    (!headers.is_empty()).then(|| serde_json::to_string(headers).unwrap_or_default())
}

fn headers_from_sql(col: Option<String>) -> rusqlite::Result<Vec<(String, String)>> {
    match col {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                4, // the column of `headers` in read()'s SELECT
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        }),
    }
}

/// The log of a SQLite file: its own `log.db`, or the `records` table of the embedded store's
/// single file (then the directory appends in its own transactions and the notifications are
/// kept inline, see `inline.rs`). Cheap to clone.
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
    partitions: u32,
    appended: watch::Sender<u64>,
    /// The newest committed entries, for the consumers that keep up.
    tail: Tail,
    /// Notifications stored in the append's own transaction (the embedded store's file only).
    inline: Option<InlineNotifications>,
    /// One shared copy of each topic's name, for the entries (there are a handful of topics).
    topic_names: Mutex<HashSet<Arc<str>>>,
}

impl SqliteLog {
    /// The log in a file of its own.
    pub fn open(path: &Path, partitions: u32) -> anyhow::Result<Self> {
        Ok(SqliteLog::on(Db::open(path, SCHEMA)?, partitions, None))
    }

    /// The log in a file shared with other stores (its tables created by [`SCHEMA`]).
    pub(super) fn on(db: Arc<Db>, partitions: u32, inline: Option<InlineNotifications>) -> Self {
        SqliteLog {
            inner: Arc::new(Inner {
                partitions: partitions.max(1),
                appended: watch::channel(0).0,
                tail: Tail::new(db.shared_flag()),
                db,
                inline,
                topic_names: Mutex::default(),
            }),
        }
    }

    /// Appends records inside the caller's write (with the notifications kept inline, and
    /// their announcements); returns the entries to [`SqliteLog::published`] once committed.
    pub(super) fn append_in(
        &self,
        conn: &Connection,
        mut records: Vec<OutboxRecord>,
    ) -> rusqlite::Result<Vec<LogEntry>> {
        if let Some(inline) = &self.inner.inline {
            let more = inline.apply(conn, &records)?;
            records.extend(more);
        }
        let mut last = conn.prepare_cached(
            "SELECT offset, ts FROM records WHERE topic = ?1 AND partition = ?2 ORDER BY offset DESC LIMIT 1",
        )?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO records(topic, partition, offset, key, payload, ts, headers) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let now = livechat_core::now().timestamp_millis();
        // Next offset and latest time per partition, read once per write.
        let mut ends: HashMap<(Arc<str>, u32), (i64, i64)> = HashMap::new();
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let p = kafka_partition(&r.key, self.inner.partitions);
            let topic = self.topic_name(&r.topic);
            let end = match ends.get_mut(&(topic.clone(), p)) {
                Some(e) => e,
                None => {
                    let found: Option<(i64, i64)> = last
                        .query_row(params![r.topic, p], |row| Ok((row.get(0)?, row.get(1)?)))
                        .optional()?;
                    let (next, ts) = found.map(|(o, ts)| (o + 1, ts)).unwrap_or((0, 0));
                    ends.entry((topic.clone(), p)).or_insert((next, ts))
                }
            };
            // Timestamps never go back within a partition, so a time seek can bisect offsets.
            let ts = now.max(end.1);
            let offset = end.0;
            *end = (offset + 1, ts);
            insert.execute(params![
                r.topic,
                p,
                offset,
                r.key,
                r.payload,
                ts,
                headers_to_sql(&r.headers)
            ])?;
            if TABLE_TOPICS.contains(&r.topic.as_str()) {
                compact_key(conn, &r.topic, p, &r.key, offset)?;
            }
            entries.push(LogEntry {
                topic,
                partition: p,
                offset,
                key: r.key.into(),
                payload: r.payload.into(),
                timestamp_ms: ts,
                headers: r.headers,
                event: r.event,
            });
        }
        Ok(entries)
    }

    /// The shared copy of a topic's name.
    fn topic_name(&self, topic: &str) -> Arc<str> {
        let mut names = self
            .inner
            .topic_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(name) = names.get(topic) {
            return name.clone();
        }
        let name: Arc<str> = topic.into();
        names.insert(name.clone());
        name
    }

    /// Stores the notifications `records` create when they are kept inline (the embedded
    /// store); returns their announcements.
    pub(super) fn inline_apply(
        &self,
        conn: &Connection,
        records: &[OutboxRecord],
    ) -> rusqlite::Result<Vec<OutboxRecord>> {
        match &self.inner.inline {
            Some(inline) => inline.apply(conn, records),
            None => Ok(Vec::new()),
        }
    }

    /// Where a partition ends, when this process knows it without reading the file (no other
    /// connection writes the file, and the partition was appended to or read to its end).
    pub(super) fn known_end(&self, topic: &str, partition: u32) -> Option<i64> {
        self.inner.tail.end(topic, partition)
    }

    /// Announces committed entries: into the tail, and wakes the consumers.
    pub(super) fn published(&self, entries: Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        self.inner.tail.push(entries);
        self.inner.appended.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn read_stored(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        max: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        let topic = self.topic_name(topic);
        self.inner
            .db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT offset, key, payload, ts, headers FROM records WHERE topic = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset",
                )?;
                let rows = stmt.query_map(params![&*topic, partition, from], |r| {
                    Ok(LogEntry {
                        topic: topic.clone(),
                        partition,
                        offset: r.get(0)?,
                        key: shared_text(r, 1)?,
                        payload: r.get::<_, Vec<u8>>(2)?.into(),
                        timestamp_ms: r.get(3)?,
                        headers: headers_from_sql(r.get(4)?)?,
                        event: None,
                    })
                })?;
                rows.take(max as usize).collect()
            })
            .await
    }

    /// Up to `max` entries of a partition from `from`: from the tail when it has them, else
    /// from the file. [`EventLog::read`], callable without the trait's boxed future (a
    /// consumer's poll reads every partition).
    async fn read_entries(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        max: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        let mut entries = match self.inner.tail.read(topic, partition, from, max as usize) {
            FromTail::Complete(entries) => return Ok(entries),
            FromTail::Partial(entries) => entries,
        };
        let have = entries.len() as u32;
        let next = entries.last().map_or(from, |e| e.offset + 1);
        let stored = self.read_stored(topic, partition, next, max - have).await?;
        if (stored.len() as u32) < max - have {
            // Read to the end of the partition: the tail knows its end from now on.
            let end = stored.last().map_or(next, |e| e.offset + 1);
            self.inner.tail.ends_at(topic, partition, end);
        }
        entries.extend(stored);
        Ok(entries)
    }

    /// Commits several offsets of a group in one write.
    async fn commit_all(&self, group: &str, next: &[(String, u32, i64)]) -> StoreResult<()> {
        let group = group.to_string();
        let next = next.to_vec();
        self.inner
            .db
            .write(move |tx| {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO group_offsets(grp, topic, partition, next) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(grp, topic, partition) DO UPDATE SET next = excluded.next",
                )?;
                for (topic, p, offset) in &next {
                    stmt.execute(params![group, topic, p, offset])?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    fn partitions(&self, _topic: &str) -> u32 {
        self.inner.partitions
    }

    async fn append(&self, records: &[OutboxRecord]) -> StoreResult<()> {
        let records = records.to_vec();
        let (log, published) = (self.clone(), self.clone());
        self.inner
            .db
            .write_then(
                move |conn| log.append_in(conn, records),
                move |entries| published.published(std::mem::take(entries)),
            )
            .await?;
        Ok(())
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        max: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        self.read_entries(topic, partition, from, max).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> StoreResult<i64> {
        let topic = topic.to_string();
        self.inner
            .db
            .read(move |c| {
                c.prepare_cached("SELECT coalesce(max(offset) + 1, 0) FROM records WHERE topic = ?1 AND partition = ?2")?
                    .query_row(params![topic, partition], |r| r.get(0))
            })
            .await
    }

    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> StoreResult<i64> {
        let topic = topic.to_string();
        self.inner
            .db
            .read(move |c| offset_for_time_in(c, &topic, partition, ts_ms))
            .await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> StoreResult<Option<i64>> {
        let (group, topic) = (group.to_string(), topic.to_string());
        self.inner
            .db
            .read(move |c| {
                c.prepare_cached("SELECT next FROM group_offsets WHERE grp = ?1 AND topic = ?2 AND partition = ?3")?
                    .query_row(params![group, topic, partition], |r| r.get(0))
                    .optional()
            })
            .await
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next: i64) -> StoreResult<()> {
        self.commit_all(group, &[(topic.to_string(), partition, next)])
            .await
    }

    async fn groups(&self) -> StoreResult<Vec<String>> {
        self.inner
            .db
            .read(|c| {
                c.prepare_cached("SELECT DISTINCT grp FROM group_offsets ORDER BY grp")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .await
    }

    fn append_signal(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
        start: StartAt,
    ) -> StoreResult<Box<dyn GroupConsumer>> {
        // One process: the single member of the group is assigned every partition.
        let mut positions = Vec::new();
        for topic in topics {
            for p in 0..self.inner.partitions {
                let next = match start {
                    StartAt::Earliest => self.committed(group, topic, p).await?.unwrap_or(0),
                    StartAt::Latest => self.end_offset(topic, p).await?,
                };
                positions.push((topic.to_string(), p, next));
            }
        }
        Ok(Box::new(EmbeddedConsumer {
            log: self.clone(),
            group: group.to_string(),
            signal: self.inner.appended.subscribe(),
            positions,
            cursor: 0,
        }))
    }
}

/// The embedded group member: reads every partition from its own positions, round robin.
struct EmbeddedConsumer {
    log: SqliteLog,
    group: String,
    signal: watch::Receiver<u64>,
    /// (topic, partition, next offset to read)
    positions: Vec<(String, u32, i64)>,
    /// Where the next poll starts, so no partition starves the others.
    cursor: usize,
}

impl EmbeddedConsumer {
    async fn read_some(&mut self, max: usize) -> StoreResult<Vec<LogEntry>> {
        let mut out = Vec::new();
        let n = self.positions.len();
        for i in 0..n {
            if out.len() >= max {
                break;
            }
            let idx = (self.cursor + i) % n;
            let (topic, p, next) = &self.positions[idx];
            let got = self
                .log
                .read_entries(topic, *p, *next, (max - out.len()) as u32)
                .await?;
            if let Some(last) = got.last() {
                self.positions[idx].2 = last.offset + 1;
            }
            out.extend(got);
        }
        self.cursor = (self.cursor + 1) % n.max(1);
        Ok(out)
    }
}

#[async_trait]
impl GroupConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, wait: std::time::Duration) -> StoreResult<Vec<LogEntry>> {
        // Mark the signal seen before reading, so an append racing with the read wakes us.
        self.signal.borrow_and_update();
        let got = self.read_some(max).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        if tokio::time::timeout(wait, self.signal.changed())
            .await
            .is_err()
        {
            return Ok(Vec::new());
        }
        self.read_some(max).await
    }

    async fn commit(&mut self, next: &[(String, u32, i64)]) -> StoreResult<()> {
        self.log.commit_all(&self.group, next).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_record(topic: &str, key: &str, payload: &[u8]) -> OutboxRecord {
        OutboxRecord {
            event_id: uuid::Uuid::new_v4(),
            topic: topic.into(),
            key: key.into(),
            payload: payload.to_vec(),
            created_at_ms: 0,
            headers: Vec::new(),
            event: None,
        }
    }

    /// A table's key keeps its newest record, a tombstone included; offsets stay those the
    /// records were given (with gaps, as on a compacted Kafka topic), other keys and the event
    /// topics are untouched, and a time seek still finds its place across the gaps.
    #[tokio::test]
    async fn the_tables_keep_each_keys_newest_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let log = SqliteLog::open(&path, 1).unwrap();
        let users = livechat_schemas::USERS_TOPIC;
        for (key, payload) in [("a", &b"a1"[..]), ("b", b"b1"), ("a", b"a2"), ("a", b"")] {
            log.append(&[table_record(users, key, payload)])
                .await
                .unwrap();
        }
        log.append(&[
            table_record("events", "a", b"e1"),
            table_record("events", "a", b"e2"),
        ])
        .await
        .unwrap();
        // Read from the file (this handle's memory of its newest appends may still hold the
        // versions the file no longer has, as a Kafka consumer may read a key's older records
        // before the broker compacts them).
        let log = SqliteLog::open(&path, 1).unwrap();
        let kept: Vec<(i64, String, Vec<u8>)> = log
            .read(users, 0, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.offset, e.key.to_string(), e.payload.to_vec()))
            .collect();
        assert_eq!(
            kept,
            vec![(1, "b".into(), b"b1".to_vec()), (3, "a".into(), Vec::new())]
        );
        assert_eq!(log.end_offset(users, 0).await.unwrap(), 4);
        assert_eq!(log.read("events", 0, 0, 10).await.unwrap().len(), 2);
        let first_ts = log.read(users, 0, 0, 1).await.unwrap()[0].timestamp_ms;
        assert_eq!(log.offset_for_time(users, 0, first_ts).await.unwrap(), 0);
        assert_eq!(log.offset_for_time(users, 0, i64::MAX).await.unwrap(), 4);
        // The schema's one-time compaction names the same topics.
        for t in TABLE_TOPICS {
            assert!(SCHEMA.contains(&format!("'{t}'")), "{t}");
        }
    }

    /// A file from before the compaction, with every version of a table's keys, is compacted
    /// at its first open, once.
    #[tokio::test]
    async fn a_log_file_with_every_version_is_compacted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        drop(SqliteLog::open(&path, 1).unwrap());
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "DELETE FROM log_upkeep; DELETE FROM table_keys;
                 INSERT INTO records(topic, partition, offset, key, payload, ts) VALUES
                   ('chat.rooms.v1', 0, 0, 'r', x'01', 1), ('chat.rooms.v1', 0, 1, 'r', x'02', 2),
                   ('chat.rooms.v1', 0, 2, 's', x'03', 3);",
            )
            .unwrap();
        }
        for _ in 0..2 {
            let log = SqliteLog::open(&path, 1).unwrap();
            let kept: Vec<i64> = log
                .read(livechat_schemas::ROOMS_TOPIC, 0, 0, 10)
                .await
                .unwrap()
                .iter()
                .map(|e| e.offset)
                .collect();
            assert_eq!(kept, vec![1, 2]);
        }
    }

    #[tokio::test]
    async fn a_log_file_from_before_headers_is_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        {
            // The table as it was before the `headers` column, with one record in it.
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE records(
                   topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                   key TEXT NOT NULL, payload BLOB NOT NULL, ts INTEGER NOT NULL,
                   PRIMARY KEY(topic, partition, offset)) WITHOUT ROWID;
                 INSERT INTO records VALUES ('t', 0, 0, 'k', x'01', 5);",
            )
            .unwrap();
        }
        for _ in 0..2 {
            // Opening twice: the second open finds the column and changes nothing.
            let log = SqliteLog::open(&path, 1).unwrap();
            let old = log.read("t", 0, 0, 10).await.unwrap();
            assert_eq!(old[0].payload, vec![1]);
            assert!(old[0].headers.is_empty());
        }
        let log = SqliteLog::open(&path, 1).unwrap();
        let rec = OutboxRecord {
            event_id: uuid::Uuid::new_v4(),
            topic: "t".into(),
            key: "k".into(),
            payload: vec![2],
            created_at_ms: 6,
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            event: None,
        };
        log.append(std::slice::from_ref(&rec)).await.unwrap();
        let got = log.read("t", 0, 1, 10).await.unwrap();
        assert_eq!(got[0].headers, rec.headers);
    }

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's own UtilsTest (testMurmur2).
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
