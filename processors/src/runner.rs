//! The shared consumer loop: one task per (topic, partition) of each processor.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use livechat_core::model::{LogEntry, OutboxRecord};
use livechat_core::ports::EventLog;
use livechat_schemas::{codec, TopicEvent, DEAD_LETTER_TOPIC};
use tokio_util::sync::CancellationToken;

/// A log record with its decoded event.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub entry: LogEntry,
    pub event: TopicEvent,
}

/// Where a processor starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// From offset 0 (every durable sink: replay from the beginning is always possible).
    Earliest,
    /// From the end, never committing (live delivery: clients resume from history instead).
    LatestUncommitted,
}

/// A stream processor. `handle` must be idempotent: after a crash a batch may be handled again.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Also the consumer-group name.
    fn name(&self) -> &str;
    fn topics(&self) -> Vec<&'static str>;
    fn start_at(&self) -> StartAt {
        StartAt::Earliest
    }
    async fn handle(&self, batch: &[Decoded]) -> anyhow::Result<()>;
}

const BATCH: u32 = 500;
const POLL: Duration = Duration::from_millis(500);
/// Failed attempts on a batch before it is retried record by record (isolating a poison record).
const BATCH_ATTEMPTS: u32 = 3;
const RECORD_ATTEMPTS: u32 = 3;

/// Runs the processor on every partition of its topics until `shutdown`; each partition task
/// finishes its current batch and commits before returning.
pub async fn run(
    log: Arc<dyn EventLog>,
    processor: Arc<dyn Processor>,
    shutdown: CancellationToken,
) {
    let mut tasks = Vec::new();
    for topic in processor.topics() {
        for partition in 0..log.partitions(topic) {
            let (log, p, s) = (log.clone(), processor.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                run_partition(log, p, topic, partition, s).await
            }));
        }
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "Processor partition task panicked.");
        }
    }
}

async fn backoff(attempt: u32, shutdown: &CancellationToken) {
    let ms = (100u64 << attempt.min(6)).min(5_000);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        _ = shutdown.cancelled() => {}
    }
}

async fn start_offset(
    log: &dyn EventLog,
    p: &dyn Processor,
    topic: &str,
    partition: u32,
    shutdown: &CancellationToken,
) -> Option<i64> {
    let mut attempt = 0;
    loop {
        let r = match p.start_at() {
            StartAt::LatestUncommitted => log.end_offset(topic, partition).await,
            StartAt::Earliest => log
                .committed(p.name(), topic, partition)
                .await
                .map(|c| c.unwrap_or(0)),
        };
        match r {
            Ok(o) => return Some(o),
            Err(e) => {
                tracing::warn!(processor = p.name(), topic, partition, error = %e, "Cannot read the start offset; retrying.");
                if shutdown.is_cancelled() {
                    return None;
                }
                backoff(attempt, shutdown).await;
                attempt += 1;
            }
        }
    }
}

async fn run_partition(
    log: Arc<dyn EventLog>,
    p: Arc<dyn Processor>,
    topic: &'static str,
    partition: u32,
    shutdown: CancellationToken,
) {
    let mut signal = log.append_signal();
    let Some(mut next) = start_offset(log.as_ref(), p.as_ref(), topic, partition, &shutdown).await
    else {
        return;
    };
    let commits = p.start_at() == StartAt::Earliest;
    let mut attempt = 0u32;
    while !shutdown.is_cancelled() {
        // Mark the signal seen before reading, so an append racing with the read wakes us.
        signal.borrow_and_update();
        let entries = match log.read(topic, partition, next, BATCH).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(processor = p.name(), topic, partition, error = %e, "Log read failed; retrying.");
                backoff(attempt, &shutdown).await;
                attempt += 1;
                continue;
            }
        };
        attempt = 0;
        let Some(last) = entries.last().map(|e| e.offset) else {
            tokio::select! {
                _ = signal.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        };
        let mut batch = Vec::with_capacity(entries.len());
        for entry in entries {
            match codec::decode(&entry.payload) {
                Ok(event) => batch.push(Decoded { entry, event }),
                Err(e) => dead_letter(log.as_ref(), p.name(), &entry, &e.to_string()).await,
            }
        }
        if !handle_batch(log.as_ref(), p.as_ref(), &batch, &shutdown).await {
            return; // shutting down mid-retry: leave the batch uncommitted for the next run
        }
        next = last + 1;
        if commits {
            let mut attempt = 0;
            while let Err(e) = log.commit(p.name(), topic, partition, next).await {
                tracing::warn!(processor = p.name(), topic, partition, error = %e, "Offset commit failed; retrying.");
                if shutdown.is_cancelled() {
                    return;
                }
                backoff(attempt, &shutdown).await;
                attempt += 1;
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
                    dead_letter(log, p.name(), &rec.entry, &format!("{e:#}")).await;
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

/// Sends a record to the dead-letter topic with where it came from and why it failed.
async fn dead_letter(log: &dyn EventLog, processor: &str, entry: &LogEntry, error: &str) {
    tracing::error!(processor, topic = %entry.topic, partition = entry.partition, offset = entry.offset, error, "Record dead-lettered.");
    let body = serde_json::json!({
        "orig_topic": entry.topic,
        "orig_partition": entry.partition,
        "orig_offset": entry.offset,
        "orig_key": entry.key,
        "error": error,
        "processor": processor,
        "failed_at": livechat_core::now().timestamp_millis(),
        "payload_hex": entry.payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    });
    let rec = OutboxRecord {
        event_id: uuid::Uuid::new_v4(),
        topic: DEAD_LETTER_TOPIC.to_string(),
        key: entry.key.clone(),
        payload: body.to_string().into_bytes(),
        created_at_ms: livechat_core::now().timestamp_millis(),
    };
    if let Err(e) = log.append(&[rec]).await {
        tracing::error!(error = %e, "Dead-letter append failed; the record is skipped.");
    }
}
