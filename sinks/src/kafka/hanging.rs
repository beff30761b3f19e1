//! Finds transactions hanging in the sequencer's output partitions.
//!
//! A broker crash can leave the transaction it interrupted open in the partitions it wrote while
//! the transaction coordinator no longer knows it (seen on Apache Kafka 4.4 in about one broker
//! crash or restart in ten). Nothing ends it then: the partition's last stable offset stays where
//! the transaction began, and every `read_committed` reader — the ingress waiting for receipts,
//! the processors, a sequencer taking over — stops there for good. A watcher thread compares,
//! every few seconds, each output partition's last stable offset with its end; one that stays
//! behind for [`HANGING_AFTER`] (longer than any transaction the broker still ends: it aborts
//! an open one after the transaction timeout, looking every 10 s by default) asks the sequencer
//! to end its own hanging transactions (`Session::abort_hanging`). One of another producer is
//! named in the log with the command that ends it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use livechat_schemas::{MESSAGE_RECEIPTS_TOPIC, ROOM_EVENTS_TOPIC, SEQUENCER_STATE_TOPIC};
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::{KafkaLog, ReaderContext};

/// How long a partition's last stable offset may stay behind its end before its transaction is
/// taken for hanging.
pub const HANGING_AFTER: Duration = Duration::from_secs(30);
const CHECK_EVERY: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The partitions the sequencer's transactions write.
const WATCHED: [&str; 3] = [
    ROOM_EVENTS_TOPIC,
    MESSAGE_RECEIPTS_TOPIC,
    SEQUENCER_STATE_TOPIC,
];

/// Starts the watcher; it sets `sweep` when the sequencer should end its hanging transactions,
/// and stops with `stop`.
pub fn spawn_watcher(
    log: Arc<KafkaLog>,
    ends: Arc<Ends>,
    sweep: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("sequencer-hangs".into())
        .spawn(move || {
            let mut watch = Watch::default();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECK_EVERY);
                match watch.check(&log, &ends) {
                    Ok(true) => sweep.store(true, Ordering::SeqCst),
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = format!("{e:#}"), "Hang check failed."),
                }
            }
        })
        .context("starting the hang watcher")?;
    Ok(())
}

/// Where a partition's committed records end, and where its records end.
pub struct Ends {
    stable: BaseConsumer<ReaderContext>,
    end: BaseConsumer<ReaderContext>,
}

impl Ends {
    pub fn new(log: &KafkaLog) -> anyhow::Result<Ends> {
        // librdkafka asks for the end with the client's isolation level: the last stable offset
        // for `read_committed`, the high watermark for `read_uncommitted`.
        let client = |isolation: &str| -> anyhow::Result<BaseConsumer<ReaderContext>> {
            log.client()
                .set("isolation.level", isolation)
                .create_with_context(ReaderContext)
                .with_context(|| format!("creating a {isolation} client"))
        };
        Ok(Ends {
            stable: client("read_committed")?,
            end: client("read_uncommitted")?,
        })
    }

    /// The last stable offset and the end of a partition (broker-side topic name), when a
    /// transaction is open in it.
    pub fn behind(&self, name: &str, p: i32) -> anyhow::Result<Option<(i64, i64)>> {
        let (_, lso) = self.stable.fetch_watermarks(name, p, CALL_TIMEOUT)?;
        let (_, high) = self.end.fetch_watermarks(name, p, CALL_TIMEOUT)?;
        Ok((lso < high).then_some((lso, high)))
    }
}

/// An output partition with a transaction open in it.
#[derive(Debug)]
pub struct Open {
    /// The topic's name in docs/topics.md (without the namespace).
    pub topic: &'static str,
    pub partition: i32,
    /// The last stable offset: where the open transaction began.
    pub stable: i64,
    pub end: i64,
}

/// The output partitions with a transaction open in them.
pub fn open_partitions(log: &KafkaLog, ends: &Ends) -> anyhow::Result<Vec<Open>> {
    let mut open = Vec::new();
    for topic in WATCHED {
        let name = log.phys(topic);
        for partition in 0..log.partitions as i32 {
            if let Some((stable, end)) = ends.behind(&name, partition)? {
                open.push(Open {
                    topic,
                    partition,
                    stable,
                    end,
                });
            }
        }
    }
    Ok(open)
}

/// Partitions whose last stable offset is behind their end: since when, at which offset.
#[derive(Default)]
struct Watch {
    behind: HashMap<(&'static str, i32), (i64, Instant)>,
    /// (topic, partition, stable offset) already reported: a sweep is asked once for each.
    reported: HashSet<(&'static str, i32, i64)>,
}

impl Watch {
    /// True when some partition newly counts as hanging.
    fn check(&mut self, log: &KafkaLog, ends: &Ends) -> anyhow::Result<bool> {
        let open = open_partitions(log, ends)?;
        self.behind
            .retain(|(t, p), _| open.iter().any(|o| o.topic == *t && o.partition == *p));
        let mut hanging = false;
        for o in open {
            let (at, since) = *self
                .behind
                .entry((o.topic, o.partition))
                .and_modify(|e| {
                    if e.0 != o.stable {
                        *e = (o.stable, Instant::now())
                    }
                })
                .or_insert((o.stable, Instant::now()));
            if since.elapsed() >= HANGING_AFTER && self.reported.insert((o.topic, o.partition, at))
            {
                let (name, p) = (log.phys(o.topic), o.partition);
                tracing::warn!(
                    partition = format!("{name}/{p}"),
                    stable_offset = at,
                    end = o.end,
                    stuck_s = since.elapsed().as_secs(),
                    if_it_stays = format!(
                        "kafka-transactions.sh --bootstrap-server <broker> abort --topic {name} --partition {p} --start-offset {at}"
                    ),
                    "A transaction hangs in a partition; the sequencer ends its own. If the partition stays stuck, the transaction is another producer's: end it with the command given."
                );
                hanging = true;
            }
        }
        Ok(hanging)
    }
}
