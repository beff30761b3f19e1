//! The shared consumer loop: join the processor's consumer group, poll, decode, handle, commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::error::StoreResult;
use livechat_core::keyring::Keyring;
use livechat_core::model::{LogEntry, OutboxRecord};
pub use livechat_core::ports::StartAt;
use livechat_core::ports::{EventLog, GroupConsumer};
use livechat_schemas::{codec, TopicEvent, DEAD_LETTER_TOPIC};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A log record with its decoded event.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub entry: LogEntry,
    pub event: Arc<TopicEvent>,
}

impl Decoded {
    /// The record's event: the one it carries from this process's append (decoded once, shared
    /// by every consumer), or decoded from its payload.
    pub fn of(mut entry: LogEntry) -> Result<Decoded, Box<(LogEntry, codec::CodecError)>> {
        let event = match entry.event.take() {
            Some(ev) => ev,
            None => match codec::decode(&entry.payload) {
                Ok(ev) => Arc::new(ev),
                Err(e) => return Err(Box::new((entry, e))),
            },
        };
        Ok(Decoded { entry, event })
    }

    /// Opens what the batch's events hold sealed, with their subjects' keys (fetched for the
    /// lot when they are not held). An event whose key is erased stays shut: its text is gone.
    pub async fn open_all(batch: &mut [Decoded], keyring: &Keyring) -> StoreResult<()> {
        keyring
            .fetch_for(batch.iter().map(|d| d.event.as_ref()))
            .await?;
        for d in batch {
            // A record read back from the log is this batch's own copy; one appended here
            // carries its event with the text in clear already.
            if let Some(ev) = Arc::get_mut(&mut d.event) {
                keyring.open_event(ev);
            }
        }
        Ok(())
    }
}

/// A stream processor. `handle` must be idempotent: after a crash a batch may be handled again.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Also the consumer-group name.
    fn name(&self) -> &str;
    fn topics(&self) -> Vec<&'static str>;
    /// Where the group starts without committed offsets; `Latest` groups never commit.
    fn start_at(&self) -> StartAt {
        StartAt::Earliest
    }
    /// How long a batch may wait for more records once its first has arrived: a store that pays
    /// per write (a ClickHouse part, a MongoDB update per room, a Cassandra request) is written
    /// less often and with more at a time. Zero (the default) hands records on as they come.
    fn gather(&self) -> Duration {
        Duration::ZERO
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()>;
}

/// Records handed to a processor at once, at most: what a gathering processor collects in its
/// window under heavy load (a quarter second at ~16 k sends/s) goes into one write. With 500,
/// the search index wrote an FTS5 segment (merged again later) and analytics a transaction for
/// every 500 sends; with 4,000 a send costs the server ~10 % less CPU under durable ingest
/// (bench/README.md, "Batches of 4,000").
const BATCH: usize = 4000;
const POLL: Duration = Duration::from_millis(500);
/// Longest a group keeps handled offsets uncommitted while records keep coming.
const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Failed attempts on a batch before it is retried record by record (isolating a poison record).
const BATCH_ATTEMPTS: u32 = 3;
const RECORD_ATTEMPTS: u32 = 3;
const COMMIT_ATTEMPTS: u32 = 5;
/// Longest a stopping processor keeps draining the log.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

async fn backoff(attempt: u32, shutdown: &CancellationToken) {
    let ms = (100u64 << attempt.min(6)).min(5_000);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        _ = shutdown.cancelled() => {}
    }
}

async fn join(
    log: &dyn EventLog,
    p: &dyn Processor,
    shutdown: &CancellationToken,
) -> Option<Box<dyn GroupConsumer>> {
    let topics = p.topics();
    let mut attempt = 0;
    loop {
        match log.join_group(p.name(), &topics, p.start_at()).await {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::warn!(processor = p.name(), error = %e, "Cannot join the consumer group; retrying.");
                if shutdown.is_cancelled() {
                    return None;
                }
                backoff(attempt, shutdown).await;
                attempt += 1;
            }
        }
    }
}

/// Runs the processor until `shutdown`; the batch in hand is finished and committed first.
/// `keyring` opens the sealed events it reads back.
pub async fn run(
    log: Arc<dyn EventLog>,
    keyring: Arc<Keyring>,
    p: Arc<dyn Processor>,
    shutdown: CancellationToken,
) {
    run_with_ready(log, keyring, p, shutdown, None).await
}

/// Like [`run`], and tells `ready` once the processor has joined its consumer group (a live
/// delivery group must be in place before the process takes connections).
pub async fn run_with_ready(
    log: Arc<dyn EventLog>,
    keyring: Arc<Keyring>,
    p: Arc<dyn Processor>,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let Some(mut consumer) = join(log.as_ref(), p.as_ref(), &shutdown).await else {
        return;
    };
    if let Some(r) = ready {
        let _ = r.send(());
    }
    let commits = p.start_at() == StartAt::Earliest;
    let mut attempt = 0u32;
    // Offsets handled but not yet committed, committed at most every COMMIT_EVERY (and when
    // the log is idle, and before stopping): handling is idempotent, so a crash in between only
    // hands the records again, and a commit is not a write of its own per batch.
    let mut uncommitted: BTreeMap<(String, u32), i64> = BTreeMap::new();
    let mut last_commit = tokio::time::Instant::now();
    // On shutdown the processor drains: it handles what the log already holds (bounded in
    // time), commits, and only then stops, so a restart has nothing left to redo.
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        if drain_until.is_none() && shutdown.is_cancelled() {
            drain_until = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
        }
        let entries = match drain_until {
            Some(deadline) => {
                let polled = if tokio::time::Instant::now() >= deadline {
                    Ok(Vec::new())
                } else {
                    consumer.poll(BATCH, Duration::from_millis(200)).await
                };
                match polled {
                    Ok(e) if e.is_empty() => {
                        if commits {
                            commit(consumer.as_mut(), p.name(), &mut uncommitted, &shutdown).await;
                        }
                        return;
                    }
                    other => other,
                }
            }
            // Never abandoned half-way for a shutdown: an adapter's poll may already have taken
            // records (Kafka's runs on a blocking thread that goes on), and records taken but
            // never handed out would be skipped by the next commit. It ends within POLL.
            None => consumer.poll(BATCH, POLL).await,
        };
        let entries = match entries {
            Ok(e) if !e.is_empty() && drain_until.is_none() => {
                gather(consumer.as_mut(), p.gather(), e).await
            }
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(processor = p.name(), error = %e, "Polling the log failed; retrying.");
                backoff(attempt, &shutdown).await;
                attempt += 1;
                continue;
            }
        };
        attempt = 0;
        if entries.is_empty() {
            if commits && !uncommitted.is_empty() {
                commit(consumer.as_mut(), p.name(), &mut uncommitted, &shutdown).await;
                last_commit = tokio::time::Instant::now();
            }
            continue;
        }
        let started = std::time::Instant::now();
        let records = entries.len();
        // Per partition: the first offset, the next one, and how many records (offsets may
        // skip: transaction markers, compaction). A batch spans few partitions, so a list
        // searched by reference copies each topic name once per partition, not per record.
        let mut found: Vec<(&str, u32, i64, i64, u64)> = Vec::new();
        for entry in &entries {
            match found
                .iter_mut()
                .find(|(t, p, ..)| *p == entry.partition && *t == &*entry.topic)
            {
                Some((.., next, n)) => {
                    *next = entry.offset + 1;
                    *n += 1;
                }
                None => found.push((
                    &entry.topic,
                    entry.partition,
                    entry.offset,
                    entry.offset + 1,
                    1,
                )),
            }
        }
        let parts: BTreeMap<(String, u32), (i64, i64, u64)> = found
            .into_iter()
            .map(|(t, p, first, next, n)| ((t.to_string(), p), (first, next, n)))
            .collect();
        // One span per batch: which records of which partitions it covers.
        let offsets: Vec<String> = parts
            .iter()
            .map(|((t, p), (first, next, _))| format!("{t}/{p}:{first}..{}", next - 1))
            .collect();
        let span = tracing::info_span!("batch", processor = p.name(), records, offsets = %offsets.join(","));
        let done = process_batch(log.as_ref(), &keyring, p.as_ref(), entries, &shutdown)
            .instrument(span)
            .await;
        if !done {
            // Shutting down mid-retry: the batch stays uncommitted for the next run.
            if commits {
                commit(consumer.as_mut(), p.name(), &mut uncommitted, &shutdown).await;
            }
            return;
        }
        // Per partition, so a hot partition shows (its rate beside its lag, in both modes).
        for ((topic, partition), (_, _, n)) in &parts {
            metrics::counter!("livechat_processor_records_total", "processor" => p.name().to_string(),
                "topic" => topic.clone(), "partition" => partition.to_string())
            .increment(*n);
        }
        metrics::histogram!("livechat_processor_batch_seconds", "processor" => p.name().to_string())
            .record(started.elapsed().as_secs_f64());
        if commits {
            uncommitted.extend(parts.into_iter().map(|(k, (_, next, _))| (k, next)));
            if last_commit.elapsed() >= COMMIT_EVERY {
                commit(consumer.as_mut(), p.name(), &mut uncommitted, &shutdown).await;
                last_commit = tokio::time::Instant::now();
            }
        }
    }
}

/// Adds to a batch what arrives within `window` of its first record, up to [`BATCH`] records; a
/// failed poll ends the gathering (the records in hand are handled, the next poll reports it).
/// Not cut short by a shutdown (see the poll in `run_with_ready`): it ends within `window`.
async fn gather(
    consumer: &mut dyn GroupConsumer,
    window: Duration,
    mut entries: Vec<LogEntry>,
) -> Vec<LogEntry> {
    let until = tokio::time::Instant::now() + window;
    while entries.len() < BATCH {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.poll(BATCH - entries.len(), left).await {
            Ok(more) if !more.is_empty() => entries.extend(more),
            _ => break,
        }
    }
    entries
}

/// Decodes (unless the record carries its event) and handles one batch; false if shutdown
/// interrupted it.
async fn process_batch(
    log: &dyn EventLog,
    keyring: &Keyring,
    p: &dyn Processor,
    entries: Vec<LogEntry>,
    shutdown: &CancellationToken,
) -> bool {
    let mut batch = Vec::with_capacity(entries.len());
    for entry in entries {
        match Decoded::of(entry) {
            Ok(d) => batch.push(d),
            Err(failed) => {
                let (entry, e) = *failed;
                let class = decode_error_class(&e);
                dead_letter(log, p.name(), &entry, class, &e.to_string()).await
            }
        }
    }
    // Keys that cannot be fetched now are waited for: a sealed event handled without its key
    // would be stored as erased.
    let mut attempt = 0;
    while let Err(e) = Decoded::open_all(&mut batch, keyring).await {
        if shutdown.is_cancelled() {
            return false;
        }
        tracing::warn!(processor = p.name(), error = %e, "Content keys unavailable; retrying.");
        backoff(attempt, shutdown).await;
        attempt += 1;
    }
    handle_batch(log, p, &batch, shutdown).await
}

/// Commits the handled offsets. A commit can fail for good when a rebalance moved the partition
/// away: then the new owner handles those records again from the last commit (idempotently).
async fn commit(
    consumer: &mut dyn GroupConsumer,
    processor: &str,
    uncommitted: &mut BTreeMap<(String, u32), i64>,
    shutdown: &CancellationToken,
) {
    if uncommitted.is_empty() {
        return;
    }
    let next: Vec<(String, u32, i64)> = std::mem::take(uncommitted)
        .into_iter()
        .map(|((t, p), o)| (t, p, o))
        .collect();
    for attempt in 0..COMMIT_ATTEMPTS {
        match consumer.commit(&next).await {
            Ok(()) => return,
            Err(e) if attempt + 1 == COMMIT_ATTEMPTS => {
                tracing::warn!(processor, error = %e, "Offset commit failed; the records may be handled again.");
            }
            Err(e) => {
                tracing::debug!(processor, error = %e, "Offset commit failed; retrying.");
                if shutdown.is_cancelled() && attempt > 1 {
                    return;
                }
                backoff(attempt, shutdown).await;
            }
        }
    }
}

/// Handles a batch, retrying it; if it keeps failing, handles its records one at a time and
/// dead-letters those that still fail, so one bad record never stalls the partition.
/// Returns false if shutdown interrupted the retries (nothing may be committed then).
async fn handle_batch(
    log: &dyn EventLog,
    p: &dyn Processor,
    batch: &[Decoded],
    shutdown: &CancellationToken,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    for attempt in 0..BATCH_ATTEMPTS {
        if attempt > 0 && shutdown.is_cancelled() {
            return false;
        }
        match p.handle(batch).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(processor = p.name(), error = %format!("{e:#}"), attempt, "Batch failed; retrying.");
                backoff(attempt, shutdown).await;
            }
        }
    }
    for rec in batch {
        let mut attempt = 0;
        loop {
            match p.handle(std::slice::from_ref(rec)).await {
                Ok(()) => break,
                Err(e) if attempt + 1 >= RECORD_ATTEMPTS => {
                    dead_letter(
                        log,
                        p.name(),
                        &rec.entry,
                        "PROCESSING_FAILED",
                        &format!("{e:#}"),
                    )
                    .await;
                    break;
                }
                Err(_) => {
                    backoff(attempt, shutdown).await;
                    if shutdown.is_cancelled() {
                        return false;
                    }
                    attempt += 1;
                }
            }
        }
    }
    true
}

/// The `error.class` of a record that does not decode (the decoder error classes of the
/// Confluent wire format).
fn decode_error_class(e: &codec::CodecError) -> &'static str {
    match e {
        codec::CodecError::IncompleteHeader => "INCOMPLETE_HEADER",
        codec::CodecError::InvalidMagicByte(_) => "INVALID_MAGIC_BYTE",
        codec::CodecError::UnknownSchemaId(_) => "SCHEMA_ID_NOT_FOUND",
        codec::CodecError::NotAnEvent(_) => "NOT_AN_EVENT",
        codec::CodecError::Avro(_) => "AVRO_DECODE_FAILED",
    }
}

/// Sends a record to the dead-letter topic with where it came from and why it failed: in Kafka
/// headers (`orig.topic`, `orig.partition`, `orig.offset`, `error.class`, `error.msg`,
/// `processor`, `failed_at`), and the same in a JSON body for readability.
async fn dead_letter(
    log: &dyn EventLog,
    processor: &str,
    entry: &LogEntry,
    error_class: &str,
    error: &str,
) {
    tracing::error!(processor, topic = %entry.topic, partition = entry.partition, offset = entry.offset, error_class, error, "Record dead-lettered.");
    metrics::counter!("livechat_dead_letters_total", "processor" => processor.to_string(), "class" => error_class.to_string())
        .increment(1);
    let failed_at = livechat_core::now().timestamp_millis();
    let body = serde_json::json!({
        "orig_topic": &*entry.topic,
        "orig_partition": entry.partition,
        "orig_offset": entry.offset,
        "orig_key": &*entry.key,
        "error_class": error_class,
        "error": error,
        "processor": processor,
        "failed_at": failed_at,
        "payload_hex": entry.payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    });
    let headers = [
        ("orig.topic", entry.topic.to_string()),
        ("orig.partition", entry.partition.to_string()),
        ("orig.offset", entry.offset.to_string()),
        ("error.class", error_class.to_string()),
        ("error.msg", error.to_string()),
        ("processor", processor.to_string()),
        ("failed_at", failed_at.to_string()),
    ];
    let rec = OutboxRecord {
        event_id: uuid::Uuid::new_v4(),
        topic: DEAD_LETTER_TOPIC.to_string(),
        key: entry.key.to_string(),
        payload: body.to_string().into_bytes(),
        created_at_ms: failed_at,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        event: None,
    };
    if let Err(e) = log.append(&[rec]).await {
        tracing::error!(error = %e, "Dead-letter append failed; the record is skipped.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livechat_core::ports::StartAt;
    use livechat_sinks::embedded::SqliteLog;

    /// Every record of the dead-letter topic, from all its partitions.
    async fn dead_letters(log: &SqliteLog) -> Vec<LogEntry> {
        let mut all = Vec::new();
        for p in 0..log.partitions(DEAD_LETTER_TOPIC) {
            all.extend(log.read(DEAD_LETTER_TOPIC, p, 0, 100).await.unwrap());
        }
        all
    }

    #[tokio::test]
    async fn a_dead_letter_names_its_origin_in_headers_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteLog::open(&dir.path().join("log.db"), 4).unwrap();
        let entry = LogEntry {
            topic: "chat.room-events.v1".into(),
            partition: 3,
            offset: 42,
            key: "room-1".into(),
            payload: vec![0, 0, 0, 0, 99, 1].into(),
            timestamp_ms: 5,
            headers: Vec::new(),
            event: None,
        };
        let err = codec::decode(&entry.payload).unwrap_err();
        let class = decode_error_class(&err);
        dead_letter(&log, "history", &entry, class, &err.to_string()).await;
        let recs = dead_letters(&log).await;
        assert_eq!(recs.len(), 1);
        let rec = &recs[0];
        assert_eq!(&*rec.topic, DEAD_LETTER_TOPIC);
        assert_eq!(&*rec.key, "room-1");
        let h = |k: &str| {
            rec.headers
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("header {k} missing"))
        };
        assert_eq!(h("orig.topic"), "chat.room-events.v1");
        assert_eq!(h("orig.partition"), "3");
        assert_eq!(h("orig.offset"), "42");
        assert_eq!(h("error.class"), "SCHEMA_ID_NOT_FOUND");
        assert_eq!(h("error.msg"), "schema id 99 is not registered");
        assert_eq!(h("processor"), "history");
        let body: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap();
        assert_eq!(h("failed_at"), body["failed_at"].to_string());
        assert_eq!(body["orig_offset"], 42);
        assert_eq!(body["error_class"], "SCHEMA_ID_NOT_FOUND");
        assert_eq!(body["payload_hex"], "000000006301");
    }

    /// A log whose consumers take their records at once but answer a poll only later, as
    /// Kafka's poll does on its blocking thread: the runner must not drop a poll in flight.
    struct SlowAnswers(SqliteLog, Arc<tokio::sync::Notify>);

    struct SlowConsumer(Box<dyn GroupConsumer>, Arc<tokio::sync::Notify>);

    #[async_trait]
    impl GroupConsumer for SlowConsumer {
        async fn poll(&mut self, max: usize, wait: Duration) -> StoreResult<Vec<LogEntry>> {
            let taken = self.0.poll(max, wait).await?;
            if !taken.is_empty() {
                self.1.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(taken)
        }
        async fn commit(&mut self, next: &[(String, u32, i64)]) -> StoreResult<()> {
            self.0.commit(next).await
        }
    }

    #[async_trait]
    impl EventLog for SlowAnswers {
        fn partitions(&self, topic: &str) -> u32 {
            self.0.partitions(topic)
        }
        async fn append(&self, records: &[OutboxRecord]) -> StoreResult<()> {
            self.0.append(records).await
        }
        async fn read(
            &self,
            topic: &str,
            partition: u32,
            from: i64,
            max: u32,
        ) -> StoreResult<Vec<LogEntry>> {
            self.0.read(topic, partition, from, max).await
        }
        async fn end_offset(&self, topic: &str, partition: u32) -> StoreResult<i64> {
            self.0.end_offset(topic, partition).await
        }
        async fn offset_for_time(
            &self,
            topic: &str,
            partition: u32,
            ts_ms: i64,
        ) -> StoreResult<i64> {
            self.0.offset_for_time(topic, partition, ts_ms).await
        }
        async fn committed(
            &self,
            group: &str,
            topic: &str,
            partition: u32,
        ) -> StoreResult<Option<i64>> {
            self.0.committed(group, topic, partition).await
        }
        async fn commit(
            &self,
            group: &str,
            topic: &str,
            partition: u32,
            next: i64,
        ) -> StoreResult<()> {
            self.0.commit(group, topic, partition, next).await
        }
        fn append_signal(&self) -> tokio::sync::watch::Receiver<u64> {
            self.0.append_signal()
        }
        async fn join_group(
            &self,
            group: &str,
            topics: &[&str],
            start: StartAt,
        ) -> StoreResult<Box<dyn GroupConsumer>> {
            let inner = self.0.join_group(group, topics, start).await?;
            Ok(Box::new(SlowConsumer(inner, self.1.clone())))
        }
    }

    struct Counter(Arc<std::sync::atomic::AtomicUsize>);

    #[async_trait]
    impl Processor for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn topics(&self) -> Vec<&'static str> {
            vec![livechat_schemas::ROOM_EVENTS_TOPIC]
        }
        async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()> {
            self.0
                .fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_shutdown_during_a_poll_loses_none_of_the_records_it_took() {
        use livechat_core::events::{room_event, room_record};
        use livechat_schemas::RoomEventType;

        let dir = tempfile::tempdir().unwrap();
        let taken = Arc::new(tokio::sync::Notify::new());
        let log = Arc::new(SlowAnswers(
            SqliteLog::open(&dir.path().join("log.db"), 1).unwrap(),
            taken.clone(),
        ));
        let room = uuid::Uuid::new_v4();
        let records: Vec<_> = (0..5)
            .map(|_| {
                room_record(room_event(
                    RoomEventType::RoomUpdated,
                    room,
                    chrono::Utc::now(),
                ))
                .unwrap()
            })
            .collect();
        log.append(&records).await.unwrap();
        let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run(
            log.clone(),
            Keyring::complete(Vec::new()),
            Arc::new(Counter(handled.clone())),
            shutdown.clone(),
        ));
        // The consumer has taken the records and not answered yet: stop now.
        taken.notified().await;
        shutdown.cancel();
        runner.await.unwrap();
        assert_eq!(
            handled.load(std::sync::atomic::Ordering::SeqCst),
            5,
            "every record taken was handled"
        );
        let topic = livechat_schemas::ROOM_EVENTS_TOPIC;
        assert_eq!(
            log.committed("counter", topic, 0).await.unwrap(),
            Some(5),
            "and committed after"
        );
    }
}
