//! The log on any Kafka-API broker (Redpanda in production, Apache Kafka in tests), via rdkafka.
//!
//! - Producer: idempotent (`acks=all`), `partitioner=murmur2_random` so every Kafka client agrees
//!   on a room's partition, key = room id (or user id), an `event_id` header on every record.
//! - Topics are created by LiveChat with a fixed partition count, `cleanup.policy=delete` and
//!   `retention.ms=-1`: messages are never compacted and replay from offset 0 is a promise.
//! - Consumer groups: `cooperative-sticky` assignment, `auto.offset.reset=earliest`, no
//!   auto-commit: offsets are committed only after the processor's sink write.
//! - librdkafka's calls block, so they run on the blocking pool.
//! - With `schema_registry_url` set, LiveChat's schemas are registered there and records carry
//!   the registry's schema ids on the broker; the translation is done here, at the edge, so the
//!   rest of LiveChat keeps the embedded ids ([`registry`]).
//! - Record headers: `event_id` on every record, then the record's own (`OutboxRecord::headers`);
//!   reads return them all.

mod closing;
mod hanging;
mod producer;
pub mod registry;
mod requests;
mod sends;
mod sequencer;

pub use sends::KafkaSends;
pub use sequencer::spawn_sequencer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::model::{LogEntry, OutboxRecord};
use livechat_core::ports::{EventLog, GroupConsumer, Placed, StartAt};
use livechat_schemas::cloudevents;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use self::producer::Producing;
use self::registry::{RegistryClient, SchemaIds};
use self::requests::{counted, RequestCounts};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long an append waits before offering a record again to a producer whose queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(10);

pub use crate::config::KafkaConfig;

fn unavailable(e: KafkaError) -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("kafka: {e}"))
}

fn blocking_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other(anyhow::anyhow!("kafka task failed: {e}"))
}

pub struct KafkaLog {
    cfg: KafkaConfig,
    partitions: u32,
    producer: Arc<Producing>,
    admin: AdminClient<DefaultClientContext>,
    /// Assign-only consumer for random reads (replay, tests): used by one call at a time.
    reader: Arc<Mutex<BaseConsumer<ReaderContext>>>,
    /// Group-scoped consumers for `committed`/`commit` outside a running group.
    offset_clients: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    topics: Mutex<HashSet<String>>,
    appended: watch::Sender<u64>,
    /// Schema id translation, when a schema registry is configured.
    ids: Option<Arc<SchemaIds>>,
}

impl KafkaLog {
    fn client(&self) -> ClientConfig {
        client_config(&self.cfg)
    }

    /// The broker-side name of a topic or group (`namespace` prefix; several deployments or test
    /// runs can share a cluster).
    fn phys(&self, name: &str) -> String {
        format!("{}{name}", self.cfg.namespace)
    }

    /// Connects and creates LiveChat's topics if they do not exist.
    pub async fn connect(cfg: KafkaConfig, partitions: u32) -> anyhow::Result<KafkaLog> {
        let base = client_config(&cfg);
        let admin: AdminClient<DefaultClientContext> = base
            .create()
            .map_err(|e| anyhow::anyhow!("creating the Kafka admin client: {e}"))?;
        let reader: BaseConsumer<ReaderContext> = base
            .clone()
            .set("group.id", "livechat-reader")
            .set("enable.auto.commit", "false")
            // A read ends at the partition's end: offsets are not all records (a transaction's
            // commit marker takes one, and aborted records are skipped).
            .set("enable.partition.eof", "true")
            .create_with_context(ReaderContext)
            .map_err(|e| anyhow::anyhow!("creating the Kafka reader: {e}"))?;
        let reader = Arc::new(Mutex::new(reader));
        let mut producer_config = base.clone();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            // A send waits for its command to be produced: by default 1 ms instead of
            // librdkafka's 5 ms of lingering; under load records still gather while a request
            // is in flight.
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("compression.type", "lz4")
            // Below the ingress's receipt deadline, so that a send's records fail (and a stuck
            // producer is noticed, see `producer`) before the client's answer is given up on.
            .set(
                "message.timeout.ms",
                producer::RECORD_TIMEOUT.as_millis().to_string(),
            );
        // The operator's properties win over these defaults, as they do for every client.
        for (k, v) in &cfg.client {
            producer_config.set(k, v);
        }
        let producer = Arc::new(Producing::new(producer_config, reader.clone())?);
        let ids = match &cfg.schema_registry_url {
            None => None,
            Some(url) => {
                let client = RegistryClient::new(url)
                    .map_err(|e| anyhow::anyhow!("schema registry {url}: {e}"))?;
                let ids = SchemaIds::register_all(client, &cfg.namespace)
                    .await
                    .map_err(|e| anyhow::anyhow!("registering LiveChat's schemas at {url}: {e}"))?;
                Some(Arc::new(ids))
            }
        };
        let log = KafkaLog {
            cfg,
            partitions: partitions.max(1),
            producer,
            admin,
            reader,
            offset_clients: Mutex::new(HashMap::new()),
            topics: Mutex::new(HashSet::new()),
            appended: watch::channel(0).0,
            ids,
        };
        let own = [
            livechat_schemas::ROOM_EVENTS_TOPIC,
            livechat_schemas::USER_EVENTS_TOPIC,
            livechat_schemas::DEAD_LETTER_TOPIC,
        ];
        log.ensure_topics(&own)
            .await
            .map_err(|e| anyhow::anyhow!("creating LiveChat's topics: {e}"))?;
        Ok(log)
    }

    /// Creates topics that are not known to exist yet (idempotent).
    pub async fn ensure_topics(&self, topics: &[&str]) -> StoreResult<()> {
        let missing: Vec<String> = {
            let known = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            topics
                .iter()
                .map(|t| self.phys(t))
                .filter(|t| !known.contains(t))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                let plain = t.strip_prefix(&self.cfg.namespace).unwrap_or(t);
                let (policy, retention) = retention_of(plain);
                NewTopic::new(
                    t,
                    self.partitions as i32,
                    TopicReplication::Fixed(self.cfg.replication_factor),
                )
                .set("cleanup.policy", policy)
                .set("retention.ms", retention)
            })
            .collect();
        let results = self
            .admin
            .create_topics(&new, &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
            .await
            .map_err(unavailable)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(StoreError::Other(anyhow::anyhow!(
                        "creating topic {t}: {code}"
                    )))
                }
            }
        }
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(missing);
        Ok(())
    }

    /// How many times the producer was replaced (records failed while the broker answered).
    pub fn producer_replacements(&self) -> u64 {
        self.producer.replacements()
    }

    /// The schema registry's id of an embedded schema id (None without a registry).
    pub fn registry_schema_id(&self, embedded_id: u32) -> Option<u32> {
        self.ids.as_ref()?.registry_id(embedded_id)
    }

    /// The schema registry client (None without a registry).
    pub fn registry(&self) -> Option<&RegistryClient> {
        self.ids.as_deref().map(SchemaIds::client)
    }

    fn offset_client(&self, group: &str) -> StoreResult<Arc<BaseConsumer>> {
        let mut map = self
            .offset_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(group) {
            return Ok(c.clone());
        }
        let c: BaseConsumer = self
            .client()
            .set("group.id", self.phys(group))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(unavailable)?;
        let c = Arc::new(c);
        map.insert(group.to_string(), c.clone());
        Ok(c)
    }
}

/// A topic's `cleanup.policy` and `retention.ms`: the event topics keep everything (replay from
/// offset 0 is a promise); the latest-state tables (rooms, users, memberships) are compacted to each key's
/// newest record; the sequencer's internal topics keep what it needs: its state compacted to
/// each room's latest, the sends for a week, the receipts for an hour.
fn retention_of(topic: &str) -> (&'static str, &'static str) {
    match topic {
        livechat_schemas::SEQUENCER_STATE_TOPIC => ("compact", "-1"),
        t if livechat_schemas::TABLE_TOPICS.contains(&t) => ("compact", "-1"),
        livechat_schemas::MESSAGE_COMMANDS_TOPIC => ("delete", "604800000"),
        livechat_schemas::MESSAGE_RECEIPTS_TOPIC => ("delete", "3600000"),
        _ => ("delete", "-1"),
    }
}

/// The context of a consumer that reads partitions to their end: the end-of-partition event of
/// a partition it has just stopped reading arrives as a client error, and is expected.
struct ReaderContext;

impl rdkafka::client::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::trace!(reason, "End of a partition no longer read.");
            }
            e => tracing::error!(error = %e, reason, "Kafka client error."),
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "livechat");
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c
}

/// A record as the port sees it: the topic without the namespace prefix.
fn entry_of(m: &rdkafka::message::BorrowedMessage<'_>, namespace: &str) -> LogEntry {
    LogEntry {
        topic: m
            .topic()
            .strip_prefix(namespace)
            .unwrap_or(m.topic())
            .into(),
        partition: m.partition() as u32,
        offset: m.offset(),
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into())
            .unwrap_or_default(),
        payload: m
            .payload()
            .map(bytes::Bytes::copy_from_slice)
            .unwrap_or_default(),
        timestamp_ms: m.timestamp().to_millis().unwrap_or_default(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        event: None,
    }
}

/// Turns the registry's schema ids of read records back into embedded ids. With `patient`
/// (group polls, whose records cannot be read again) an unreachable registry is retried, and
/// then the record is left as it is (the codec dead-letters it) rather than lost.
async fn from_registry(
    ids: Option<&SchemaIds>,
    mut entries: Vec<LogEntry>,
    patient: bool,
) -> StoreResult<Vec<LogEntry>> {
    let Some(ids) = ids else {
        return Ok(entries);
    };
    for e in &mut entries {
        // Not shared yet (just read): taken out and put back without a copy.
        let mut payload = Vec::from(std::mem::take(&mut e.payload));
        let mut attempt = 0;
        loop {
            match ids.incoming(&mut payload).await {
                Ok(()) => break,
                Err(err) if !patient => {
                    return Err(StoreError::Unavailable(anyhow::anyhow!("{err}")))
                }
                Err(err) if attempt >= 2 => {
                    tracing::error!(topic = %e.topic, partition = e.partition, offset = e.offset, error = %err,
                        "Cannot resolve the record's schema id; it is passed on untranslated, for the codec to refuse.");
                    ids.unresolved(&mut payload);
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Schema registry call failed; retrying.");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
            }
        }
        e.payload = payload.into();
    }
    Ok(entries)
}

impl KafkaLog {
    /// The end offset of a partition, waiting (up to the client timeout) for a topic created a
    /// moment ago, or a partition whose leader moved, to show its leader to this client: its
    /// metadata is asked for again between tries (the client's cache may still say the topic
    /// has no partitions, or name a broker that no longer leads it: "Not leader for partition").
    async fn end_offset_settled(&self, topic: &str, partition: u32) -> StoreResult<i64> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.high_watermark(topic, partition).await {
                Ok(end) => return Ok(end),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(topic, partition, error = %e, "Partition not ready; retrying.");
                    let reader = self.reader.clone();
                    let name = self.phys(topic);
                    let _ = tokio::task::spawn_blocking(move || {
                        let c = reader.lock().unwrap_or_else(|p| p.into_inner());
                        c.fetch_metadata(Some(&name), Duration::from_secs(2))
                            .map(|_| ())
                    })
                    .await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl KafkaLog {
    /// The partition's high watermark, as this client's metadata locates its leader.
    async fn high_watermark(&self, topic: &str, partition: u32) -> StoreResult<i64> {
        self.ensure_topics(&[topic]).await?;
        let reader = self.reader.clone();
        let topic = self.phys(topic);
        tokio::task::spawn_blocking(move || {
            let c = reader.lock().unwrap_or_else(|p| p.into_inner());
            c.fetch_watermarks(&topic, partition as i32, TIMEOUT)
                .map(|(_, high)| high)
                .map_err(unavailable)
        })
        .await
        .map_err(blocking_err)?
    }

    /// Adds `partitions` of `topic` at their end offsets read now. "Latest" means the end when
    /// this returns, so a record appended afterwards is seen (a group subscription would resolve
    /// "latest" only at its first fetch, after a rebalance of unknown length, and skip what was
    /// appended meanwhile).
    async fn add_ends(
        &self,
        tpl: &mut TopicPartitionList,
        topic: &str,
        partitions: &[u32],
    ) -> StoreResult<()> {
        for &p in partitions {
            let end = self.end_offset_settled(topic, p).await?;
            tpl.add_partition_offset(&self.phys(topic), p as i32, Offset::Offset(end))
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// A consumer of `partitions` of `topic` from their end, outside any group (it commits nothing).
    pub(crate) async fn tail(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> StoreResult<Box<dyn GroupConsumer>> {
        self.ensure_topics(&[topic]).await?;
        let consumer: BaseConsumer<RequestCounts> = counted(&mut self.client())
            .set(
                "group.id",
                format!("{}-tail-{}", self.phys(topic), uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(RequestCounts::new(format!("tail {topic}")))
            .map_err(unavailable)?;
        let mut tpl = TopicPartitionList::new();
        self.add_ends(&mut tpl, topic, partitions).await?;
        consumer.assign(&tpl).map_err(unavailable)?;
        Ok(Box::new(KafkaGroupConsumer {
            consumer: Arc::new(consumer),
            namespace: self.cfg.namespace.clone(),
            ids: self.ids.clone(),
            handed_out: HashMap::new(),
            committed: HashMap::new(),
        }))
    }
}

/// The CloudEvents headers of a record (docs/topics.md).
fn cloud_event_headers(r: &OutboxRecord) -> Option<[(&'static str, String); 7]> {
    cloudevents::of_record(&r.topic, r.event.as_deref(), &r.payload).map(|(h, _)| h)
}

fn one_partition(topic: &str, partition: u32, offset: Offset) -> StoreResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, offset)
        .map_err(unavailable)?;
    Ok(tpl)
}

impl KafkaLog {
    /// [`EventLog::append`], telling `placed` once the producer holds every record: records
    /// appended after that land behind them in their partitions (the producer is idempotent,
    /// so it keeps each partition's order through its retries). The exception is a producer
    /// replaced as stuck (see `producer`): what the old one still held may land after what the
    /// new one sends.
    pub(super) async fn append_placed(
        &self,
        records: &[OutboxRecord],
        placed: &mut Placed,
    ) -> StoreResult<()> {
        let topics: HashSet<&str> = records.iter().map(|r| r.topic.as_str()).collect();
        self.ensure_topics(&topics.into_iter().collect::<Vec<_>>())
            .await?;
        // Queue all, then wait for every acknowledgement: the batch is durable when this returns.
        let producer = self.producer.current();
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let name = self.phys(&r.topic);
            let payload = match &self.ids {
                Some(ids) => ids.outgoing(&r.payload),
                None => std::borrow::Cow::Borrowed(r.payload.as_slice()),
            };
            let id = r.event_id.to_string();
            let mut headers = OwnedHeaders::new_with_capacity(8 + r.headers.len()).insert(Header {
                key: "event_id",
                value: Some(id.as_bytes()),
            });
            for (k, v) in cloud_event_headers(r).iter().flatten() {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            for (k, v) in &r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            let mut rec = FutureRecord::to(&name)
                .key(&r.key)
                .headers(headers)
                .timestamp(r.created_at_ms);
            // An empty value is a compacted topic's tombstone: on Kafka, a record without one.
            if !payload.is_empty() {
                rec = rec.payload(payload.as_ref());
            }
            // A full queue empties as the producer sends; wait for room, up to TIMEOUT.
            let queued_by = Instant::now() + TIMEOUT;
            let delivery = loop {
                match producer.producer.send_result(rec) {
                    Ok(delivery) => break delivery,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < queued_by =>
                    {
                        rec = back;
                        tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                    }
                    Err((e, _)) => {
                        self.producer.after_failure(&producer, &e);
                        return Err(unavailable(e));
                    }
                }
            };
            deliveries.push(async {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e),
                    Err(_) => Err(KafkaError::Canceled),
                }
            });
        }
        placed.now();
        // librdkafka fails a record after `message.timeout.ms`; a producer that no longer runs
        // its timers would not, so the wait has its own deadline, which counts as a timeout.
        let delivered = tokio::time::timeout(
            producer::DELIVERY_DEADLINE,
            futures::future::try_join_all(deliveries),
        )
        .await
        .unwrap_or(Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        )));
        if let Err(e) = delivered {
            self.producer.after_failure(&producer, &e);
            return Err(unavailable(e));
        }
        self.appended.send_modify(|v| *v = v.wrapping_add(1));
        Ok(())
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn partitions(&self, _topic: &str) -> u32 {
        self.partitions
    }

    async fn append(&self, records: &[OutboxRecord]) -> StoreResult<()> {
        self.append_placed(records, &mut Placed::default()).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: i64,
        max: u32,
    ) -> StoreResult<Vec<LogEntry>> {
        // A topic created a moment ago may have no leader in this client's metadata yet (seen:
        // "Not leader for partition" on a read right after the first append).
        let end = self.end_offset_settled(topic, partition).await?;
        if from >= end || max == 0 {
            return Ok(Vec::new());
        }
        let want = ((end - from) as usize).min(max as usize);
        let reader = self.reader.clone();
        let ns = self.cfg.namespace.clone();
        let topic = self.phys(topic);
        let entries = tokio::task::spawn_blocking(move || {
            let consumer = reader.lock().unwrap_or_else(|p| p.into_inner());
            consumer
                .assign(&one_partition(&topic, partition, Offset::Offset(from))?)
                .map_err(unavailable)?;
            let deadline = Instant::now() + TIMEOUT;
            let mut out = Vec::with_capacity(want);
            while out.len() < want && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) if m.offset() >= from => out.push(entry_of(&m, &ns)),
                    Some(Ok(_)) => {}
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => return Err(unavailable(e)),
                    None => {}
                }
            }
            let _ = consumer.unassign();
            Ok(out)
        })
        .await
        .map_err(blocking_err)??;
        from_registry(self.ids.as_deref(), entries, false).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> StoreResult<i64> {
        self.end_offset_settled(topic, partition).await
    }

    async fn offset_for_time(&self, topic: &str, partition: u32, ts_ms: i64) -> StoreResult<i64> {
        let end = self.end_offset(topic, partition).await?;
        let reader = self.reader.clone();
        let topic = self.phys(topic);
        tokio::task::spawn_blocking(move || {
            let c = reader.lock().unwrap_or_else(|p| p.into_inner());
            let found = c
                .offsets_for_times(
                    one_partition(&topic, partition, Offset::Offset(ts_ms))?,
                    TIMEOUT,
                )
                .map_err(unavailable)?;
            Ok(match found.elements().first().map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => o,
                _ => end,
            })
        })
        .await
        .map_err(blocking_err)?
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> StoreResult<Option<i64>> {
        self.ensure_topics(&[topic]).await?;
        let c = self.offset_client(group)?;
        let topic = self.phys(topic);
        tokio::task::spawn_blocking(move || {
            let tpl = c
                .committed_offsets(one_partition(&topic, partition, Offset::Invalid)?, TIMEOUT)
                .map_err(unavailable)?;
            Ok(match tpl.elements().first().map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            })
        })
        .await
        .map_err(blocking_err)?
    }

    /// Retried until the client timeout: a group's first commit can meet its coordinator still
    /// loading or moving (the test suite saw one fail while other tests made their topics). A
    /// commit sets the offset, so trying it again is harmless.
    async fn commit(&self, group: &str, topic: &str, partition: u32, next: i64) -> StoreResult<()> {
        self.ensure_topics(&[topic]).await?;
        let c = self.offset_client(group)?;
        let topic = self.phys(topic);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (c, name) = (c.clone(), topic.clone());
            let done = tokio::task::spawn_blocking(move || {
                c.commit(
                    &one_partition(&name, partition, Offset::Offset(next))?,
                    CommitMode::Sync,
                )
                .map_err(unavailable)
            })
            .await
            .map_err(blocking_err)?;
            match done {
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(topic, partition, error = %e, "Offset commit failed; retrying.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    fn append_signal(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    async fn join_group(
        &self,
        group: &str,
        topics: &[&str],
        start: StartAt,
    ) -> StoreResult<Box<dyn GroupConsumer>> {
        self.ensure_topics(topics).await?;
        let mut cfg = self.client();
        counted(&mut cfg);
        match start {
            // A processor (history, analytics, notifications) is not on the path of an
            // acknowledgement: the broker holds its fetch until 64 KiB are waiting or 100 ms
            // passed, so it reads in batches instead of one fetch per record (each fetch costs
            // the broker as much as a small produce).
            StartAt::Earliest => {
                cfg.set("group.id", self.phys(group))
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.min.bytes", "65536")
                    .set("fetch.wait.max.ms", "100");
            }
            // Live delivery: every process must see every record, so each gets its own group.
            StartAt::Latest => {
                cfg.set(
                    "group.id",
                    format!("{}-{}", self.phys(group), uuid::Uuid::new_v4()),
                )
                .set("auto.offset.reset", "latest");
            }
        }
        let consumer: BaseConsumer<RequestCounts> = cfg
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // A crashed member's partitions move to the others within seconds, not 45 s.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.partition.eof", "false")
            .create_with_context(RequestCounts::new(group))
            .map_err(unavailable)?;
        match start {
            StartAt::Earliest => {
                let names: Vec<String> = topics.iter().map(|t| self.phys(t)).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                consumer.subscribe(&names).map_err(unavailable)?;
            }
            StartAt::Latest => {
                let all: Vec<u32> = (0..self.partitions).collect();
                let mut tpl = TopicPartitionList::new();
                for topic in topics {
                    self.add_ends(&mut tpl, topic, &all).await?;
                }
                consumer.assign(&tpl).map_err(unavailable)?;
            }
        }
        Ok(Box::new(KafkaGroupConsumer {
            consumer: Arc::new(consumer),
            namespace: self.cfg.namespace.clone(),
            ids: self.ids.clone(),
            handed_out: HashMap::new(),
            committed: HashMap::new(),
        }))
    }
}

struct KafkaGroupConsumer {
    consumer: Arc<BaseConsumer<RequestCounts>>,
    namespace: String,
    ids: Option<Arc<SchemaIds>>,
    /// Per (topic, partition): the offset after the last record `poll` handed out, and the
    /// offset last committed.
    handed_out: HashMap<(String, u32), i64>,
    committed: HashMap<(String, u32), i64>,
}

#[async_trait]
impl GroupConsumer for KafkaGroupConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> StoreResult<Vec<LogEntry>> {
        let consumer = self.consumer.clone();
        let ns = self.namespace.clone();
        let entries = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let deadline = Instant::now() + wait;
            while out.len() < max {
                // Wait for the first record; then take only what is already there.
                let timeout = if out.is_empty() {
                    deadline.saturating_duration_since(Instant::now())
                } else {
                    Duration::ZERO
                };
                match consumer.poll(timeout) {
                    Some(Ok(m)) => out.push(entry_of(&m, &ns)),
                    Some(Err(e)) if out.is_empty() => return Err(unavailable(e)),
                    Some(Err(_)) | None => break,
                }
            }
            Ok(out)
        })
        .await
        .map_err(blocking_err)??;
        for e in &entries {
            self.handed_out
                .insert((e.topic.to_string(), e.partition), e.offset + 1);
        }
        if entries.is_empty() {
            self.commit_past_markers().await;
        }
        from_registry(self.ids.as_deref(), entries, true).await
    }

    async fn commit(&mut self, next: &[(String, u32, i64)]) -> StoreResult<()> {
        // One entry per partition: the highest next offset given for it.
        let mut highest: HashMap<(&str, u32), i64> = HashMap::new();
        for (t, p, o) in next {
            let e = highest.entry((t.as_str(), *p)).or_insert(*o);
            *e = (*e).max(*o);
        }
        // Entries name topics without the namespace (see `entry_of`); the broker knows them with it.
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &highest {
            tpl.add_partition_offset(
                &format!("{}{t}", self.namespace),
                *p as i32,
                Offset::Offset(*o),
            )
            .map_err(unavailable)?;
        }
        let done: Vec<((String, u32), i64)> = highest
            .iter()
            .map(|((t, p), o)| ((t.to_string(), *p), *o))
            .collect();
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            consumer.commit(&tpl, CommitMode::Sync).map_err(unavailable)
        })
        .await
        .map_err(blocking_err)??;
        self.committed.extend(done);
        Ok(())
    }
}

impl KafkaGroupConsumer {
    /// With nothing new to hand out: where every record handed out is committed and the
    /// consumer's position is further on, commits the position. What lies between is the
    /// markers that end the sequencer's transactions (an offset each, never handed out); without
    /// this a caught-up group would show a lag of 1 per partition, in `livechat_consumer_lag` as
    /// in Kafka's own tools. A partition this consumer never handed a record from is committed
    /// at its position too: all it passed was skipped (aborted records, markers). Partitions no
    /// longer assigned have no position and are left alone.
    async fn commit_past_markers(&mut self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        for e in positions.elements() {
            let Offset::Offset(at) = e.offset() else {
                continue;
            };
            let t = e.topic().strip_prefix(&self.namespace).unwrap_or(e.topic());
            let key = (t.to_string(), e.partition() as u32);
            let caught_up = match (self.handed_out.get(&key), self.committed.get(&key)) {
                (Some(h), Some(c)) => h == c && at > *c,
                (None, None) => at > 0,
                _ => false, // handed out, not yet committed
            };
            if caught_up
                && tpl
                    .add_partition_offset(e.topic(), e.partition(), Offset::Offset(at))
                    .is_ok()
            {
                moved.push((key, at));
            }
        }
        if moved.is_empty() {
            return;
        }
        let consumer = self.consumer.clone();
        let done =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        if let Ok(Ok(())) = done {
            for (k, at) in moved {
                self.handed_out.insert(k.clone(), at);
                self.committed.insert(k, at);
            }
        }
    }
}
