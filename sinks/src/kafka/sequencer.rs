//! The distributed sequencer: the single writer of each room's seqs, with no database on the way.
//!
//! Sequencers form one consumer group on `chat.message-commands.v1` (keyed by room), so each
//! partition, and every room in it, has one owner. For a batch of sends the owner assigns the
//! seqs ([`RoomSeqs`]) and, in one Kafka transaction, appends the sequenced events to
//! `chat.room-events.v1`, each send's receipt to `chat.message-receipts.v1`, and the commands'
//! offsets: all of it is committed, or none. Every [`STATE_EVERY`] a transaction also writes each
//! room's latest event to the compacted `chat.sequencer-state.v1`, with a checkpoint per
//! partition: the room events offset below which every room's last seq is there.
//!
//! Fencing: the offsets go into the transaction with the consumer's group generation, so a
//! sequencer that lost its partitions (paused past its session timeout, cut off) cannot commit
//! again: its transaction fails and is aborted, and nothing it wrote becomes visible to
//! `read_committed` readers. The assignment is eager, so a partition changes owner only once
//! the old owner has given it up or been expelled; a new owner asks for the committed offsets,
//! which the broker answers only once no transaction holding them is pending (KIP-447), waits
//! for the transactions still open in the partition's room events and state to end (the
//! offsets may be marked committed before the events are), and then reads the partition's state: every room's last seq from the state topic, then the room
//! events from the checkpoint (rooms whose state was not written yet) or from the start of the
//! dedup window (`dedup_window_secs`) if that is earlier (to answer a retried `client_msg_id`). A
//! room the state topic does not have yet takes its last seq from the directory (rooms whose
//! messages were sequenced there).
//!
//! Every process keeps its identity across restarts (`instance`): its producers' transactional
//! ids and its static membership of the group. A process SIGKILLed inside a transaction and
//! started again therefore aborts that transaction at once (instead of every reader of its
//! partitions waiting for the broker's transaction timeout) and takes its partitions back
//! without a rebalance. The price of static membership: a process that stops for good keeps its
//! partitions until its session times out (6 s), as a crashed one always did.
//!
//! A broker crash can leave the transaction it interrupted hanging: open in the partitions it
//! wrote and in the group's offsets, unknown to the transaction coordinator, so nothing ends it.
//! When a watcher finds an output partition stuck behind such a transaction, or a session finds
//! the group's offsets unreadable for [`HANGING_AFTER`], the session ends it with an aborted
//! transaction of the same producer id ([`Session::abort_hanging`]).
//!
//! Any failure drops the whole session (consumer, producers, state; the clients are closed on a
//! thread of their own, see the `closing` module) and starts a new one from the committed
//! offsets; librdkafka's calls block, so it runs on a thread of its own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use livechat_core::model::LogEntry;
use livechat_core::ports::Directory;
use livechat_core::sequencing::{RoomSeqs, Sequenced};
use livechat_core::trace;
use livechat_schemas::{
    cloudevents, codec, RoomEvent, RoomEventType, TopicEvent, MESSAGE_COMMANDS_TOPIC,
    MESSAGE_RECEIPTS_TOPIC, ROOM_EVENTS_TOPIC, SEQUENCER_STATE_TOPIC,
};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use super::closing::ClosedApart;
use super::hanging::{open_partitions, spawn_watcher, Ends, HANGING_AFTER};
use super::requests::{counted, RequestCounts};
use super::sends::{DUPLICATE, REPLY_TO, REQUEST};
use super::{entry_of, from_registry, KafkaLog, ReaderContext};

/// The sequencers' consumer group (and transactional id prefix).
const GROUP: &str = "sequencer";
/// Most sends in one transaction.
const MAX_BATCH: usize = 2048;
/// How often the rooms' latest events go to the state topic. librdkafka sends one produce
/// request per partition (and the broker verifies each against the transaction), so writing
/// the state with every transaction doubled the partitions a transaction writes.
const STATE_EVERY: Duration = Duration::from_secs(5);
/// Key of a state partition's checkpoint: the offset of the room events partition below which
/// every room's last seq is in the state topic.
const CHECKPOINT_KEY: &str = "livechat-sequencer-checkpoint";
/// How long the first send of a batch is waited for.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// A transaction left open by a sequencer that stopped is aborted by the broker after this;
/// until then the partition's new owner waits to read its state.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest [`Session::flush`] waits for the producer's out queue to empty once its records are
/// delivered (its thread serves what is left there within microseconds).
const OUT_QUEUE_WAIT: Duration = Duration::from_millis(20);
/// How long a call inside a transaction (adding the offsets, committing, aborting) may take: no
/// longer than the transaction itself may stay open, since the broker aborts it after that
/// anyway. Waiting longer only delays the new session after a broker crash (measured with the
/// broker SIGKILLed and back 21 s later: the first send acknowledged again 30 s after its return
/// with the 30 s timeout).
const IN_TRANSACTION_TIMEOUT: Duration = TRANSACTION_TIMEOUT;
/// A session that polls nothing for this long while sends wait unsequenced (in its partitions
/// beyond the group's committed offset, or, while it has none assigned, anywhere the committed
/// offset stands still) ends with the reason and a new one starts (offsets that cannot be read
/// are given [`HANGING_AFTER`], then swept): after a broker outage the client can stay stuck
/// without reporting an error (seen in CI and in local runs: partitions assigned, then no send
/// sequenced within 120 s of the broker's return, nothing logged; and a new session whose
/// consumer was never assigned a partition).
const STALL_AFTER: Duration = Duration::from_secs(20);
/// Header of the records of the aborted transaction that ends hanging ones (never committed, so
/// `read_committed` readers never see them).
const SWEEP_HEADER: &str = "livechat_sweep";
/// How often an idle session looks for waiting sends once `STALL_AFTER` has passed, and how long
/// each lookup may take.
const STALL_CHECK: Duration = Duration::from_secs(5);

/// Starts a sequencer on a thread of its own; it stops when `stop` is set. `instance` is the
/// process's identity kept across its restarts, unique among live sequencers.
pub fn spawn_sequencer(
    log: Arc<KafkaLog>,
    directory: Arc<dyn Directory>,
    instance: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let sweep = Arc::new(AtomicBool::new(false));
    let ends = Arc::new(Ends::new(&log)?);
    spawn_watcher(log.clone(), ends.clone(), sweep.clone(), stop.clone())?;
    let ctx = Ctx {
        transactional_id: format!("{}-{instance}", log.phys(GROUP)),
        sweep,
        ends,
        log,
        directory,
        rt: tokio::runtime::Handle::current(),
        stop,
    };
    std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || ctx.run())
        .context("starting the sequencer thread")
}

struct Ctx {
    /// The same for every session of this process and for the process that restarts in its
    /// place (its two producers' transactional ids are this one and this one with `-2`): a new
    /// session's `init_transactions` then fences the last session's producers and aborts the
    /// transaction they left open (a broker crash midway, or the process SIGKILLed) instead of
    /// leaving it to the broker's timeout, while every `read_committed` reader waits in front
    /// of it — and they are the producer ids whose hanging transactions
    /// `Session::abort_hanging` can end. Also the consumer's `group.instance.id` (static
    /// membership): a restart takes its partitions back without a rebalance.
    transactional_id: String,
    /// Set by the hang watcher: the session ends this producer's hanging transactions before
    /// its next poll.
    sweep: Arc<AtomicBool>,
    /// Shared with the hang watcher.
    ends: Arc<Ends>,
    log: Arc<KafkaLog>,
    directory: Arc<dyn Directory>,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(&self) {
        tracing::info!("Sequencer started.");
        while !self.stopped() {
            let outcome = Session::open(self).and_then(|mut s| s.run());
            match outcome {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "Sequencer session ended; starting a new one from the committed offsets."
                    );
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        tracing::info!("Sequencer stopped.");
    }
}

/// Notes that the assignment changed: the state of every partition is then read again.
struct Rebalances {
    changed: AtomicBool,
    /// The group expelled this member (its session timed out: the process was paused, or cut
    /// off from the coordinator) and its partitions went to others while it was away.
    lost: AtomicBool,
    requests: RequestCounts,
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: Statistics) {
        self.requests.record(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            // The commands topic created a moment ago, not yet in this client's metadata.
            KafkaError::Global(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                tracing::debug!(reason, "Commands topic not visible yet.");
            }
            e => tracing::error!(error = %e, reason, "Sequencer's Kafka client error."),
        }
    }
}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, _: &Rebalance<'_>) {
        if consumer.assignment_lost() {
            self.lost.store(true, Ordering::SeqCst);
        }
        self.changed.store(true, Ordering::SeqCst);
    }

    /// Logged: after a broker outage, which commands partitions this process sequences (or
    /// that it has none) is the first thing to know.
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &rdkafka::TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| e.partition())
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "Sequencer assigned commands partitions.")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "Sequencer's commands partitions revoked.")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "Sequencer rebalance failed."),
        }
    }
}

/// The sequencer producer's records not yet delivered (its own thread serves the delivery
/// reports), so a transaction waits for exactly its records, woken by the last.
struct Deliveries {
    /// (records sent and not yet reported, reports of failed deliveries)
    pending: std::sync::Mutex<(u64, u64)>,
    delivered: std::sync::Condvar,
    /// The room events topic (its broker-side name) and, per partition, the offset after the
    /// last event delivered there.
    room_events: String,
    events_end: std::sync::Mutex<HashMap<u32, i64>>,
    requests: RequestCounts,
}

impl Deliveries {
    fn new(room_events: String) -> Deliveries {
        Deliveries {
            pending: Default::default(),
            delivered: Default::default(),
            room_events,
            events_end: Default::default(),
            requests: RequestCounts::new("sequencer producer"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called before a record is handed to the producer (its report may come at once).
    fn sending(&self) {
        self.lock().0 += 1;
    }

    /// The record was refused: no report will come.
    fn not_sent(&self) {
        let mut p = self.lock();
        p.0 = p.0.saturating_sub(1);
    }

    /// Until every record sent is delivered; an error if one failed, or after `timeout`.
    fn wait(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut p = self.lock();
        while p.0 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{} records still undelivered after {timeout:?}",
                p.0
            );
            p = self
                .delivered
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        anyhow::ensure!(p.1 == 0, "{} records of the transaction failed", p.1);
        Ok(())
    }
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: Statistics) {
        self.requests.record(&statistics);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            if m.topic() == self.room_events {
                let mut ends = self.events_end.lock().unwrap_or_else(|p| p.into_inner());
                let end = ends.entry(m.partition() as u32).or_insert(0);
                *end = (*end).max(m.offset() + 1);
            }
        }
        let mut p = self.lock();
        p.0 = p.0.saturating_sub(1);
        if let Err((e, _)) = result {
            tracing::warn!(error = %e, "A record of the sequencer's transaction was not delivered.");
            p.1 += 1;
        }
        if p.0 == 0 {
            self.delivered.notify_all();
        }
    }
}

/// One consumer, two transactional producers taking turns, and the state of the partitions
/// they own.
struct Session<'a> {
    ctx: &'a Ctx,
    consumer: ClosedApart<BaseConsumer<Rebalances>>,
    /// Transactional; each one's own thread serves its delivery reports ([`Deliveries`]). They
    /// take turns, a transaction each: once a commit is accepted the broker still writes that
    /// transaction's markers, and until it has, the same producer's next transaction is
    /// answered "concurrent transactions" and retried (measured: ~6 ms of each ~10 ms batch
    /// at 16 sends in flight); the other producer's next transaction is not held up. One
    /// transaction is open at a time, so the events stay in the order they were sequenced.
    producers: [ClosedApart<ThreadedProducer<Deliveries>>; 2],
    /// The producer of the next transaction.
    turn: usize,
    /// Reads partitions of the state and event topics when a partition is taken over.
    reader: ClosedApart<BaseConsumer<ReaderContext>>,
    parts: HashMap<u32, RoomSeqs>,
    /// Each room's latest event not yet in the state topic: (payload, time).
    unrecorded: HashMap<String, (Vec<u8>, i64)>,
    /// Per partition owned: the room events offset below which every event's room is in the
    /// state topic once `unrecorded` is written (the checkpoint written with it).
    events_end: HashMap<u32, i64>,
    /// When the state topic was last written; `None`: with the next transaction.
    recorded: Option<Instant>,
}

/// What [`Session::waiting_sends`] found.
#[derive(Debug, PartialEq)]
struct Waiting {
    sends: i64,
    /// Whether the sends are in partitions assigned to this session.
    assigned: bool,
}

/// A commands partition as the group sees it: the next offset to sequence, and its end.
struct Position {
    partition: i32,
    next: i64,
    high: i64,
}

/// The sends that wait unsequenced: all of them in partitions assigned to this session (`mine`);
/// while none is assigned, only those in partitions whose next offset is where the last look
/// (`last`, updated) found it — another session may be sequencing the rest.
fn unsequenced(mine: bool, positions: &[Position], last: &mut HashMap<i32, i64>) -> Waiting {
    let mut sends = 0;
    for p in positions {
        if mine || last.get(&p.partition) == Some(&p.next) {
            sends += (p.high - p.next).max(0);
        }
    }
    *last = match mine {
        true => HashMap::new(),
        false => positions.iter().map(|p| (p.partition, p.next)).collect(),
    };
    Waiting {
        sends,
        assigned: mine,
    }
}

/// A producer of the sequencer's transactions, its earlier transactions fenced (see [`Ctx`]).
fn transactional_producer(
    log: &KafkaLog,
    transactional_id: String,
) -> anyhow::Result<ClosedApart<ThreadedProducer<Deliveries>>> {
    let producer: ThreadedProducer<Deliveries> = counted(&mut log.client())
        .set("transactional.id", &transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .set("compression.type", "lz4")
        // The broker answers "concurrent transactions" to the next transaction's first
        // request while it still writes the last one's markers: retried after the default
        // 100 ms backoff, that was most of each batch's time.
        .set("retry.backoff.ms", "5")
        .set("retry.backoff.max.ms", "50")
        .set(
            "transaction.timeout.ms",
            TRANSACTION_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(Deliveries::new(log.phys(ROOM_EVENTS_TOPIC)))
        .context("creating the sequencer's producer")?;
    let producer = ClosedApart::new(producer, "sequencer producer");
    producer
        .init_transactions(CALL_TIMEOUT)
        .context("initialising the sequencer's transactions")?;
    Ok(producer)
}

impl<'a> Session<'a> {
    fn open(ctx: &'a Ctx) -> anyhow::Result<Session<'a>> {
        let log = &ctx.log;
        ctx.rt
            .block_on(log.ensure_topics(&[
                MESSAGE_COMMANDS_TOPIC,
                MESSAGE_RECEIPTS_TOPIC,
                SEQUENCER_STATE_TOPIC,
                ROOM_EVENTS_TOPIC,
            ]))
            .context("creating the sequencer's topics")?;
        let consumer: BaseConsumer<Rebalances> = counted(&mut log.client())
            .set("group.id", log.phys(GROUP))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // Eager: a partition moves only once its owner gave it up (or was expelled).
            .set("partition.assignment.strategy", "range")
            .set("group.instance.id", &ctx.transactional_id)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.partition.eof", "false")
            .create_with_context(Rebalances {
                changed: AtomicBool::new(false),
                lost: AtomicBool::new(false),
                requests: RequestCounts::new("sequencer consumer"),
            })
            .context("creating the sequencer's consumer")?;
        let consumer = ClosedApart::new(consumer, "sequencer consumer");
        consumer
            .subscribe(&[&log.phys(MESSAGE_COMMANDS_TOPIC)])
            .context("subscribing to the message commands")?;
        let producers = [
            transactional_producer(log, ctx.transactional_id.clone())?,
            transactional_producer(log, format!("{}-2", ctx.transactional_id))?,
        ];
        let reader: BaseConsumer<ReaderContext> = log
            .client()
            .set(
                "group.id",
                format!("{}-reader-{}", log.phys(GROUP), Uuid::new_v4()),
            )
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            // The end is known by the end-of-partition event (a transaction's marker takes the
            // last offset, so no record has it); an empty fetch there returns at once.
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "5")
            .create_with_context(ReaderContext)
            .context("creating the sequencer's reader")?;
        let reader = ClosedApart::new(reader, "sequencer reader");
        Ok(Session {
            ctx,
            consumer,
            producers,
            turn: 0,
            reader,
            parts: HashMap::new(),
            unrecorded: HashMap::new(),
            events_end: HashMap::new(),
            recorded: None,
        })
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let (mut progress, mut checked) = (Instant::now(), Instant::now());
        // Committed offsets of the commands partitions at the last look, while none is assigned.
        let mut unassigned = HashMap::new();
        while !self.ctx.stopped() {
            if self.ctx.sweep.swap(false, Ordering::SeqCst) {
                self.abort_hanging()
                    .context("ending this producer's hanging transactions")?;
            }
            let batch = self.poll_batch()?;
            if batch.is_empty() {
                if !self.unrecorded.is_empty() && self.state_due() {
                    self.record_state_alone()
                        .context("writing the rooms' state")?;
                }
                if progress.elapsed() > STALL_AFTER && checked.elapsed() > STALL_CHECK {
                    checked = Instant::now();
                    let idle = progress.elapsed().as_secs();
                    match self.waiting_sends(&mut unassigned) {
                        Ok(Waiting { sends: 0, .. }) => {}
                        Ok(Waiting { sends, assigned: true }) => anyhow::bail!(
                            "stalled: {sends} send(s) wait in this session's partitions and none was polled for {idle} s"
                        ),
                        Ok(Waiting { sends, assigned: false }) => anyhow::bail!(
                            "stalled: no commands partition assigned to this session for {idle} s while {sends} send(s) wait where no one sequences them"
                        ),
                        Err(e) if progress.elapsed() >= HANGING_AFTER => {
                            let swept = match self.abort_hanging() {
                                Ok(()) => "ended this process's transactions that may hang with an aborted one".to_string(),
                                Err(abort) => format!("ending the transactions that may hang failed: {abort:#}"),
                            };
                            anyhow::bail!(
                                "stalled: nothing polled for {idle} s, and the commands partitions' positions cannot be read: {e:#}; {swept}"
                            )
                        }
                        Err(e) => tracing::warn!(
                            idle,
                            error = format!("{e:#}"),
                            "Sequencer polls nothing, and the commands partitions' positions cannot be read."
                        ),
                    }
                }
                continue;
            }
            progress = Instant::now();
            let batch =
                self.ctx
                    .rt
                    .block_on(from_registry(self.ctx.log.ids.as_deref(), batch, true))?;
            let _span = tracing::debug_span!("sequence", sends = batch.len()).entered();
            if let Err(e) = self.sequence(&batch) {
                // Nothing of the transaction is visible; the session restarts from the
                // committed offsets with its state read again.
                if let Err(abort) = self.producer().abort_transaction(IN_TRANSACTION_TIMEOUT) {
                    tracing::debug!(error = %abort, "Abort failed (the producer is fenced or gone).");
                }
                return Err(e.context("sequencing a batch"));
            }
        }
        Ok(())
    }

    /// Sends waiting in the commands partitions beyond the group's committed offsets: those
    /// assigned to this session, or — while it has none — those in partitions whose committed
    /// offset has not moved since the last look (`last`), which no other session sequences
    /// either. After a broker outage a new session's consumer has been seen to stay out of the
    /// group (no assignment, nothing logged) while the sends waited. An error when the offsets
    /// cannot be read (the broker is unreachable, or the committed offsets are held by a
    /// transaction: a new session fences it).
    fn waiting_sends(&self, last: &mut HashMap<i32, i64>) -> anyhow::Result<Waiting> {
        let assigned = self.consumer.assignment().context("the assignment")?;
        let mine = assigned.count() > 0;
        let watched = if mine {
            assigned
        } else {
            let commands = self.ctx.log.phys(MESSAGE_COMMANDS_TOPIC);
            let mut all = TopicPartitionList::new();
            for p in 0..self.ctx.log.partitions {
                all.add_partition(&commands, p as i32);
            }
            all
        };
        let committed = self
            .consumer
            .committed_offsets(watched, STALL_CHECK)
            .context("the group's committed offsets")?;
        let mut positions = Vec::new();
        for e in committed.elements() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(e.topic(), e.partition(), STALL_CHECK)
                .with_context(|| format!("the watermarks of partition {}", e.partition()))?;
            let next = match e.offset() {
                Offset::Offset(o) => o,
                _ => low, // nothing committed yet: the group starts at the earliest
            };
            positions.push(Position {
                partition: e.partition(),
                next,
                high,
            });
        }
        Ok(unsequenced(mine, &positions, last))
    }

    /// Ends, as aborted, a transaction of this process's producer left open by a broker crash
    /// without the transaction coordinator knowing it (see the `hanging` module: the coordinator
    /// finds the transactional id `Empty` while the partitions the transaction wrote, and the
    /// group's offsets, still hold it open — what `kafka-transactions.sh find-hanging` lists).
    /// A transaction of the same producer id that writes to every output partition with a
    /// transaction open and to the group's offsets, then aborts, puts an abort marker for that
    /// producer id in each: the marker ends the older transaction there too, as aborted. Nothing committed changes;
    /// the hanging transaction's sends are read again from the commands and sequenced anew.
    fn abort_hanging(&mut self) -> anyhow::Result<()> {
        // Either producer's transaction may be the one left hanging.
        for _ in 0..self.producers.len() {
            self.abort_hanging_of_turn()?;
            self.pass_turn();
        }
        Ok(())
    }

    /// [`Session::abort_hanging`] for the producer whose turn it is.
    fn abort_hanging_of_turn(&mut self) -> anyhow::Result<()> {
        let log = self.ctx.log.clone();
        // Only where a transaction is open: a record, even aborted, in a partition no one wrote
        // yet would leave its readers with nothing to commit past it.
        let open = open_partitions(&log, &self.ctx.ends)?;
        tracing::warn!(
            ?open,
            "Sequencer ends any transaction of its producer left hanging by a broker crash."
        );
        self.producer().begin_transaction()?;
        let now = chrono::Utc::now().timestamp_millis();
        for o in open {
            let headers = OwnedHeaders::new().insert(Header {
                key: SWEEP_HEADER,
                value: Some("1"),
            });
            self.produce_to(o.topic, Some(o.partition), "", &[], headers, now)?;
        }
        // The offsets are never committed: any will do, as long as the group's offsets
        // partition is written (librdkafka skips negative ones).
        let mut offsets = TopicPartitionList::new();
        let commands = log.phys(MESSAGE_COMMANDS_TOPIC);
        for p in 0..log.partitions {
            offsets.add_partition_offset(&commands, p as i32, Offset::Offset(0))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .context("the sequencer's group metadata")?;
        if let Err(e) =
            self.producer()
                .send_offsets_to_transaction(&offsets, &group, IN_TRANSACTION_TIMEOUT)
        {
            // Refused (e.g. a stale generation) after the offsets partition joined the
            // transaction: the abort below still reaches it.
            tracing::debug!(error = %e, "Offsets of the aborted transaction refused.");
        }
        self.flush()?;
        self.producer()
            .abort_transaction(IN_TRANSACTION_TIMEOUT)
            .context("aborting")?;
        Ok(())
    }

    /// Up to [`MAX_BATCH`] commands: waits for the first, then takes what is there. A rebalance
    /// while polling discards what was taken (it may belong to partitions given up) and the
    /// state of every partition.
    fn poll_batch(&mut self) -> anyhow::Result<Vec<LogEntry>> {
        let ns = &self.ctx.log.cfg.namespace;
        let deadline = Instant::now() + POLL_WAIT;
        let mut out = Vec::new();
        while out.len() < MAX_BATCH {
            let wait = if out.is_empty() {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let polled = self.consumer.poll(wait);
            // Rejoining with this session's consumer and producer has been seen to leave the
            // partitions it got back unpolled until the stall check fired (20 s and more): a
            // new session fences whatever this one left open and reads from the committed
            // offsets at once.
            anyhow::ensure!(
                !self.consumer.context().lost.load(Ordering::SeqCst),
                "this member's group session was lost (it was paused or cut off past the session timeout); its partitions may have moved"
            );
            if self
                .consumer
                .context()
                .changed
                .swap(false, Ordering::SeqCst)
            {
                // What was not recorded is read again by whoever owns the partition next.
                self.parts.clear();
                self.unrecorded.clear();
                self.events_end.clear();
                out.clear();
            }
            match polled {
                Some(Ok(m)) => out.push(entry_of(&m, ns)),
                // The commands topic created a moment ago, not yet in this client's metadata.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) => break,
                Some(Err(e)) => return Err(e).context("polling the message commands"),
                None => break,
            }
        }
        Ok(out)
    }

    fn sequence(&mut self, batch: &[LogEntry]) -> anyhow::Result<()> {
        let mut next: HashMap<u32, i64> = HashMap::new();
        let mut sends = Vec::with_capacity(batch.len());
        for e in batch {
            next.insert(e.partition, e.offset + 1);
            match codec::decode(&e.payload) {
                Ok(TopicEvent::Room(ev)) if ev.kind() == Some(RoomEventType::MessageSent) => {
                    let header = |name: &str| {
                        e.headers
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                    };
                    let (reply_to, traceparent) = (header(REPLY_TO), header(trace::HEADER));
                    sends.push((e.partition, ev, reply_to, traceparent));
                }
                other => tracing::error!(
                    partition = e.partition,
                    offset = e.offset,
                    ?other,
                    "A message command that is not a send; skipped."
                ),
            }
        }
        let partitions: HashSet<u32> = sends.iter().map(|(p, ..)| *p).collect();
        for p in partitions {
            if !self.parts.contains_key(&p) {
                let state = self.load(p)?;
                self.parts.insert(p, state);
            }
        }
        for (p, ev, ..) in &sends {
            if !self.parts[p].knows(&ev.room_id) {
                let last = self.last_seq_in_directory(&ev.room_id)?;
                if let Some(s) = self.parts.get_mut(p) {
                    s.raise(&ev.room_id, last);
                }
            }
        }

        let started = Instant::now();
        self.producer().begin_transaction()?;
        let now = chrono::Utc::now().timestamp_millis();
        for (p, cmd, reply_to, traceparent) in sends {
            let request = cmd.message_id.clone().unwrap_or_default();
            let state = self.parts.get_mut(&p).context("state of a partition")?;
            let (ev, duplicate) = match state.sequence(cmd, now) {
                Sequenced::New(ev) => (ev, false),
                Sequenced::Duplicate(ev) => (ev, true),
            };
            let payload = self.outgoing(&ev)?;
            if !duplicate {
                let mut headers = OwnedHeaders::new_with_capacity(8).insert(Header {
                    key: "event_id",
                    value: Some(ev.event_id.as_bytes()),
                });
                for (k, v) in &cloudevents::room(&ev) {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                if let Some(tp) = &traceparent {
                    headers = headers.insert(Header {
                        key: trace::HEADER,
                        value: Some(tp.as_bytes()),
                    });
                }
                self.produce(
                    ROOM_EVENTS_TOPIC,
                    &ev.room_id,
                    &payload,
                    headers,
                    ev.occurred_at,
                )?;
                self.unrecorded
                    .insert(ev.room_id.clone(), (payload.clone(), ev.occurred_at));
                metrics::counter!("livechat_sequencer_messages_total").increment(1);
            }
            if let Some(node) = reply_to {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: REPLY_TO,
                        value: Some(node.as_bytes()),
                    })
                    .insert(Header {
                        key: REQUEST,
                        value: Some(request.as_bytes()),
                    })
                    .insert(Header {
                        key: DUPLICATE,
                        value: Some(if duplicate { "1" } else { "0" }),
                    });
                self.produce(MESSAGE_RECEIPTS_TOPIC, &node, &payload, headers, now)?;
            }
        }
        let record = self.state_due();
        if record {
            self.record_state()?;
        }
        let mut offsets = TopicPartitionList::new();
        let topic = self.ctx.log.phys(MESSAGE_COMMANDS_TOPIC);
        for (p, o) in next {
            offsets.add_partition_offset(&topic, p as i32, Offset::Offset(o))?;
        }
        let group = self
            .consumer
            .group_metadata()
            .context("the sequencer's group metadata")?;
        self.producer()
            .send_offsets_to_transaction(&offsets, &group, IN_TRANSACTION_TIMEOUT)?;
        self.flush()?;
        self.producer().commit_transaction(IN_TRANSACTION_TIMEOUT)?;
        self.committed(record);
        metrics::histogram!("livechat_sequencer_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("livechat_sequencer_batch_size").record(batch.len() as f64);
        Ok(())
    }

    fn state_due(&self) -> bool {
        self.recorded.is_none_or(|at| at.elapsed() >= STATE_EVERY)
    }

    /// Queues, in the open transaction, every room's latest event not yet in the state topic and
    /// each owned partition's checkpoint. A partition's new owner reads the room events from its
    /// checkpoint on (see [`Session::load`]), so the rooms whose state was not written yet (at
    /// most [`STATE_EVERY`] of sends) are found there.
    ///
    /// The checkpoint is the end of the room events as of the last committed transaction: every
    /// event below it was sequenced by this session (and is in `unrecorded` until now) or read
    /// back when the partition was taken over (and put there then).
    fn record_state(&mut self) -> anyhow::Result<()> {
        for (room, (payload, at)) in &self.unrecorded {
            self.produce(
                SEQUENCER_STATE_TOPIC,
                room,
                payload,
                OwnedHeaders::new(),
                *at,
            )?;
        }
        let now = chrono::Utc::now().timestamp_millis();
        for (&p, end) in &self.events_end {
            self.produce_to(
                SEQUENCER_STATE_TOPIC,
                Some(p as i32),
                CHECKPOINT_KEY,
                end.to_string().as_bytes(),
                OwnedHeaders::new(),
                now,
            )?;
        }
        Ok(())
    }

    /// A transaction of the state alone, for the rooms of a session that has no sends waiting.
    fn record_state_alone(&mut self) -> anyhow::Result<()> {
        self.producer().begin_transaction()?;
        let written = self
            .record_state()
            .and_then(|()| self.flush())
            .and_then(|()| Ok(self.producer().commit_transaction(IN_TRANSACTION_TIMEOUT)?));
        if let Err(e) = written {
            if let Err(abort) = self.producer().abort_transaction(IN_TRANSACTION_TIMEOUT) {
                tracing::debug!(error = %abort, "Abort failed (the producer is fenced or gone).");
            }
            return Err(e);
        }
        self.committed(true);
        Ok(())
    }

    /// After a commit: the room events' ends move on, and what was recorded is no longer owed.
    fn committed(&mut self, recorded: bool) {
        if recorded {
            self.unrecorded.clear();
            self.recorded = Some(Instant::now());
        }
        // This transaction's producer's ends: the other one's were taken at its own last commit
        // (what it delivered since, in an aborted transaction, is taken at its next one; an end
        // taken late only makes a partition's new owner read a little more).
        let ends = self.producers[self.turn]
            .context()
            .events_end
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (p, end) in self.events_end.iter_mut() {
            if let Some(&e) = ends.get(p) {
                *end = (*end).max(e);
            }
        }
        drop(ends);
        self.pass_turn();
    }

    /// The producer whose turn it is.
    fn producer(&self) -> &ThreadedProducer<Deliveries> {
        &self.producers[self.turn]
    }

    /// Hands the next transaction to the other producer.
    fn pass_turn(&mut self) {
        self.turn = (self.turn + 1) % self.producers.len();
    }

    /// Waits until every record of the open transaction is delivered, bounded like every call
    /// of the transaction (after a broker crash the session then starts again).
    ///
    /// Not rdkafka's `flush` (nor `commit_transaction`'s own), which waits for delivery reports
    /// in polls that last their whole 100 ms (that was most of each batch's time), nor polls of
    /// a few ms here, which spin through their last millisecond (a fifth of this process's CPU
    /// under load): the producer's own thread serves the reports as they come and
    /// [`Deliveries`] wakes this one at the last.
    ///
    /// The last report stays in the client's out queue until the producer's thread has finished
    /// serving it, a moment after [`Deliveries`] counted it; `commit_transaction` begins with
    /// rdkafka's flush, which, finding anything there, polls for a whole 100 ms. So this also
    /// waits, briefly, for the out queue to empty (measured: one commit in eight took 100 ms,
    /// and the acknowledgement's p99 with one send in flight was 108 ms).
    fn flush(&self) -> anyhow::Result<()> {
        let producer = self.producer();
        producer
            .context()
            .wait(IN_TRANSACTION_TIMEOUT)
            .context("delivering the transaction's records")?;
        let until = Instant::now() + OUT_QUEUE_WAIT;
        while producer.in_flight_count() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    /// Queues one record of the open transaction, partitioned by its key.
    fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
        ts: i64,
    ) -> anyhow::Result<()> {
        self.produce_to(topic, None, key, payload, headers, ts)
    }

    /// Queues one record of the open transaction, into `partition` if given (waiting while the
    /// producer's queue is full).
    fn produce_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
        ts: i64,
    ) -> anyhow::Result<()> {
        let name = self.ctx.log.phys(topic);
        let mut record = BaseRecord::to(&name)
            .key(key)
            .payload(payload)
            .headers(headers)
            .timestamp(ts);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        let producer = self.producer();
        loop {
            producer.context().sending();
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    producer.context().not_sent();
                    record = r;
                    // The producer's thread serves the deliveries that make room.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    producer.context().not_sent();
                    return Err(e).with_context(|| format!("producing to {topic}"));
                }
            }
        }
    }

    /// A partition's state when it is taken over: the rooms' last seqs from the state topic, then
    /// the room events from its checkpoint (the rooms whose state was not written yet) or from
    /// the start of the dedup window if that is earlier (the sends a retry may repeat).
    fn load(&mut self, partition: u32) -> anyhow::Result<RoomSeqs> {
        let started = Instant::now();
        self.settle(ROOM_EVENTS_TOPIC, partition)?;
        self.settle(SEQUENCER_STATE_TOPIC, partition)?;
        let now = chrono::Utc::now().timestamp_millis();
        let window_ms = self.ctx.log.cfg.dedup_window_secs.saturating_mul(1000) as i64;
        let mut state = RoomSeqs::new(window_ms);
        let (records, _) = self.read_from(SEQUENCER_STATE_TOPIC, partition, 0)?;
        let (checkpoints, rooms): (Vec<LogEntry>, Vec<LogEntry>) =
            records.into_iter().partition(|e| &*e.key == CHECKPOINT_KEY);
        let checkpoint = checkpoints.last().and_then(|e| {
            std::str::from_utf8(&e.payload)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
        });
        let mut states = 0usize;
        for ev in self.decode(SEQUENCER_STATE_TOPIC, partition, rooms)? {
            if let Some(seq) = ev.seq {
                state.raise(&ev.room_id, seq);
                states += 1;
            }
        }
        let window = self.offset_at(ROOM_EVENTS_TOPIC, partition, now - window_ms)?;
        // Neither: nothing recent, and a state topic written with every transaction (before
        // checkpoints) holds every room.
        let from = match (checkpoint, window) {
            (Some(c), Some(w)) => c.min(w),
            (Some(c), None) => c,
            (None, Some(w)) => w,
            (None, None) => i64::MAX,
        };
        let (events, end) = self.read_from(ROOM_EVENTS_TOPIC, partition, from)?;
        let mut latest: HashMap<String, RoomEvent> = HashMap::new();
        let mut recent = 0usize;
        for ev in self.decode(ROOM_EVENTS_TOPIC, partition, events)? {
            if ev.kind() == Some(RoomEventType::MessageSent) {
                state.remember(&ev, now);
                recent += 1;
                latest.insert(ev.room_id.clone(), ev);
            }
        }
        // Owed to the state topic before this session's first checkpoint of the partition.
        for (room, ev) in latest {
            let payload = self.outgoing(&ev)?;
            self.unrecorded.insert(room, (payload, ev.occurred_at));
        }
        self.events_end.insert(partition, end);
        self.recorded = None;
        tracing::info!(
            partition,
            states,
            ?checkpoint,
            recent,
            ms = started.elapsed().as_millis() as u64,
            "Sequencer took over a partition."
        );
        Ok(state)
    }

    /// Waits until the transactions open now in a partition have ended, committed or aborted
    /// (its last stable offset reaches the end it has now). Reading stops at the last stable
    /// offset, and the group's offsets, which this owner waited for, may be marked committed
    /// before the last owner's room events are: without the wait, a transaction committed a
    /// moment ago could be missed and its seqs given again. A transaction its owner left open
    /// (SIGKILLed) is aborted by the broker after [`TRANSACTION_TIMEOUT`] (checked every 10 s),
    /// which the takeover then waits for; a process restarted in its place aborts it at once.
    fn settle(&self, topic: &str, partition: u32) -> anyhow::Result<()> {
        let name = self.ctx.log.phys(topic);
        self.ctx
            .ends
            .settled(&name, partition as i32, TRANSACTION_TIMEOUT * 3)
            .with_context(|| format!("{topic}/{partition}"))
    }

    /// A room event as the sequencer writes it (with the registry's schema id, if one is used).
    fn outgoing(&self, ev: &RoomEvent) -> anyhow::Result<Vec<u8>> {
        let payload = codec::encode_room_event(ev)?;
        Ok(match &self.ctx.log.ids {
            Some(ids) => ids.outgoing(&payload).into_owned(),
            None => payload,
        })
    }

    /// The first offset of a partition at or after a time (ms); `None` if nothing is that recent.
    fn offset_at(&self, topic: &str, partition: u32, ts: i64) -> anyhow::Result<Option<i64>> {
        let name = self.ctx.log.phys(topic);
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(&name, partition as i32, Offset::Offset(ts))?;
        let found = self
            .reader
            .offsets_for_times(at, CALL_TIMEOUT)
            .with_context(|| format!("the offset of {topic}/{partition} at {ts}"))?;
        Ok(match found.elements().first().map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        })
    }

    /// A partition's committed records from offset `start` to its end, and that end.
    fn read_from(
        &mut self,
        topic: &str,
        partition: u32,
        start: i64,
    ) -> anyhow::Result<(Vec<LogEntry>, i64)> {
        let name = self.ctx.log.phys(topic);
        let (_, high) = self
            .reader
            .fetch_watermarks(&name, partition as i32, CALL_TIMEOUT)
            .with_context(|| format!("the end of {topic}/{partition}"))?;
        if start >= high {
            return Ok((Vec::new(), high));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&name, partition as i32, Offset::Offset(start))?;
        self.reader.assign(&tpl)?;
        // Past the transaction timeout, a transaction left open by a stopped owner is aborted.
        let deadline = Instant::now() + TRANSACTION_TIMEOUT * 3;
        let mut entries = Vec::new();
        let ns = self.ctx.log.cfg.namespace.clone();
        let outcome = loop {
            if Instant::now() > deadline {
                break Err(anyhow::anyhow!(
                    "{topic}/{partition}: the end ({high}) not reached within {:?}",
                    TRANSACTION_TIMEOUT * 3
                ));
            }
            match self.reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => entries.push(entry_of(&m, &ns)),
                Some(Err(KafkaError::PartitionEOF(_))) => break Ok(()),
                Some(Err(e)) => break Err(anyhow::anyhow!("reading {topic}/{partition}: {e}")),
                None => {}
            }
        };
        let _ = self.reader.unassign();
        outcome?;
        Ok((entries, high))
    }

    /// The room events of records read back; an undecodable one is logged and skipped.
    fn decode(
        &self,
        topic: &str,
        partition: u32,
        entries: Vec<LogEntry>,
    ) -> anyhow::Result<Vec<RoomEvent>> {
        let entries =
            self.ctx
                .rt
                .block_on(from_registry(self.ctx.log.ids.as_deref(), entries, true))?;
        let mut events = Vec::with_capacity(entries.len());
        for e in entries {
            match codec::decode(&e.payload) {
                Ok(TopicEvent::Room(ev)) => events.push(ev),
                _ => tracing::warn!(
                    topic,
                    partition,
                    offset = e.offset,
                    "Undecodable record skipped while loading the sequencer's state."
                ),
            }
        }
        Ok(events)
    }

    /// The last seq the directory has for a room (rooms sequenced there before; 0 for a new one).
    fn last_seq_in_directory(&self, room: &str) -> anyhow::Result<i64> {
        let Ok(id) = Uuid::parse_str(room) else {
            return Ok(0);
        };
        let found = self
            .ctx
            .rt
            .block_on(self.ctx.directory.room(id))
            .map_err(|e| anyhow::anyhow!("reading room {room} from the directory: {e}"))?;
        Ok(found.map(|r| r.last_seq).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, next: i64, high: i64) -> Position {
        Position {
            partition,
            next,
            high,
        }
    }

    fn waiting(sends: i64, assigned: bool) -> Waiting {
        Waiting { sends, assigned }
    }

    #[test]
    fn sends_in_this_sessions_partitions_count_at_once() {
        let mut last = HashMap::new();
        let found = unsequenced(true, &[at(0, 5, 9), at(1, 3, 3)], &mut last);
        assert_eq!(found, waiting(4, true));
        assert!(last.is_empty());
    }

    #[test]
    fn without_partitions_only_sends_behind_an_offset_that_stood_still_count() {
        let mut last = HashMap::new();
        // First look: nothing to compare with.
        let first = unsequenced(false, &[at(0, 5, 9), at(1, 3, 8)], &mut last);
        assert_eq!(first, waiting(0, false));
        // Partition 0 moved on (someone sequences it); partition 1 stood still with 5 waiting.
        let second = unsequenced(false, &[at(0, 7, 12), at(1, 3, 8)], &mut last);
        assert_eq!(second, waiting(5, false));
        // Partition 1 caught up; partition 0 stands still, at its end.
        let third = unsequenced(false, &[at(0, 7, 7), at(1, 8, 8)], &mut last);
        assert_eq!(third, waiting(0, false));
    }
}
