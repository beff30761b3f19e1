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
/// How often [`Ends::settled`] looks whether a partition's open transactions have ended.
const SETTLE_CHECK: Duration = Duration::from_millis(20);
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

    /// Waits until the transactions open now in a partition (broker-side topic name) have
    /// ended, committed or aborted: its last stable offset reaches the end it has now. An error
    /// after `limit`.
    pub fn settled(&self, name: &str, p: i32, limit: Duration) -> anyhow::Result<()> {
        let Some((_, end)) = self.behind(name, p)? else {
            return Ok(());
        };
        let deadline = Instant::now() + limit;
        loop {
            std::thread::sleep(SETTLE_CHECK);
            match self.behind(name, p)? {
                Some((stable, _)) if stable < end => {}
                _ => return Ok(()),
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "a transaction open before offset {end} has not ended within {limit:?}"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::KafkaConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    /// A partition with a transaction open (as a sequencer's last owner may leave it, its
    /// commit marker not yet written) is waited for until the transaction ends, and no longer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_settles_once_its_open_transaction_ends() {
        let Some(brokers) = livechat_conformance::server_env("LIVECHAT_KAFKA_BROKERS", "kafka")
        else {
            return;
        };
        let cfg = KafkaConfig {
            brokers,
            namespace: format!("settle{}.", uuid::Uuid::new_v4().simple()),
            ..KafkaConfig::default()
        };
        let log = KafkaLog::connect(cfg, 1).await.expect("connect to Kafka");
        log.ensure_topics(&[ROOM_EVENTS_TOPIC]).await.unwrap();
        let name = log.phys(ROOM_EVENTS_TOPIC);
        let ends = Ends::new(&log).unwrap();
        let producer: BaseProducer = log
            .client()
            .set("transactional.id", log.phys("settle-test"))
            .create()
            .unwrap();
        let name2 = name.clone();
        let (waited, still_open) = tokio::task::spawn_blocking(move || {
            let t = Duration::from_secs(30);
            producer.init_transactions(t).unwrap();
            producer.begin_transaction().unwrap();
            producer
                .send(BaseRecord::to(&name2).key("room").payload("event"))
                .map_err(|(e, _)| e)
                .unwrap();
            producer.flush(t).unwrap();
            let still_open = ends.behind(&name2, 0).unwrap().is_some();
            let started = Instant::now();
            let commit = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                producer.commit_transaction(t).unwrap();
            });
            ends.settled(&name2, 0, t).unwrap();
            let waited = started.elapsed();
            commit.join().unwrap();
            assert!(
                ends.behind(&name2, 0).unwrap().is_none(),
                "settled with the transaction still open"
            );
            (waited, still_open)
        })
        .await
        .unwrap();
        assert!(
            still_open,
            "the open transaction holds the last stable offset"
        );
        assert!(
            waited >= Duration::from_millis(500),
            "settled after {waited:?}, before the commit"
        );
    }
}
