//! The log's producer (`EventLog::append`: outbox relays, the ingress's message commands), and
//! its replacement when it stops sending while the broker answers.
//!
//! After a restart of the only broker, the fault suite saw the idempotent producer, in about
//! one run in fifteen, send nothing more — no produce, no metadata request — while every other
//! client of the process (consumers, the sequencer's transactional producer) carried on: each
//! record handed to it timed out, and so did every send of every client, for good (its last
//! statistics then: idempotence `Assigned`, its broker connection left in `INIT`). A producer
//! whose records time out (or that reports a fatal error) while the broker answers a metadata
//! request is therefore closed and made again; what timed out is answered `unavailable`, and a
//! client's retry with the same `client_msg_id` is deduplicated by the sequencer as always.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};

use super::requests::{counted, RequestCounts};
use super::ReaderContext;

/// librdkafka gives up on a record after this (`message.timeout.ms`, unless the operator sets
/// it): below the ingress's 30 s receipt deadline, so that a failure is seen (and acted on)
/// before the send that waits for it is dropped.
pub(super) const RECORD_TIMEOUT: Duration = Duration::from_secs(15);
/// The append's own deadline for its deliveries, for a producer that fails nothing at all.
pub(super) const DELIVERY_DEADLINE: Duration = Duration::from_secs(20);
/// Replaced at most this often: a broker that answers metadata yet times out records for
/// another reason (overloaded) is not helped by new producers one after the other.
const REPLACE_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// How long the broker is given to answer the metadata request that tells a stuck producer
/// from a broker that is away.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A producer, and its state as of librdkafka's last statistics report (for the log).
pub(super) struct LogProducer {
    pub(super) producer: FutureProducer<RequestCounts>,
    state: Arc<Mutex<String>>,
}

pub(super) struct Producing {
    config: ClientConfig,
    current: RwLock<Arc<LogProducer>>,
    replaced: Mutex<Option<Instant>>,
    replacements: AtomicU64,
    /// Asks the broker for metadata (is it there?).
    probe: Arc<Mutex<BaseConsumer<ReaderContext>>>,
}

impl Producing {
    /// `config`: the producer's properties, kept to make it again.
    pub(super) fn new(
        config: ClientConfig,
        probe: Arc<Mutex<BaseConsumer<ReaderContext>>>,
    ) -> anyhow::Result<Producing> {
        let producer = create(&config)?;
        Ok(Producing {
            config,
            current: RwLock::new(Arc::new(producer)),
            replaced: Mutex::new(None),
            replacements: AtomicU64::new(0),
            probe,
        })
    }

    /// How many times the producer was replaced.
    pub(super) fn replacements(&self) -> u64 {
        self.replacements.load(Ordering::Relaxed)
    }

    /// The producer to send with (the same one for the whole of a batch).
    pub(super) fn current(&self) -> Arc<LogProducer> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a batch sent with `used` failed with `error`: if the producer may be the one at
    /// fault (see the module's doc), checks in the background whether the broker answers and
    /// replaces the producer if it does. The batch's error is what the caller reports, at once.
    pub(super) fn after_failure(self: &Arc<Self>, used: &Arc<LogProducer>, error: &KafkaError) {
        let fatal = used.producer.client().fatal_error();
        let timed_out = matches!(
            error,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
        );
        if fatal.is_none() && !timed_out {
            return;
        }
        {
            let mut replaced = self.replaced.lock().unwrap_or_else(|p| p.into_inner());
            if replaced.is_some_and(|at| at.elapsed() < REPLACE_AT_MOST_EVERY) {
                return;
            }
            // One check at a time, and none again for a while whatever it finds: during an
            // outage every batch fails.
            *replaced = Some(Instant::now());
        }
        let (me, used, error) = (self.clone(), used.clone(), error.to_string());
        tokio::spawn(async move { me.replace_if_broker_answers(used, error, fatal).await });
    }

    async fn replace_if_broker_answers(
        &self,
        used: Arc<LogProducer>,
        error: String,
        fatal: Option<(RDKafkaErrorCode, String)>,
    ) {
        let probe = self.probe.clone();
        let reachable = tokio::task::spawn_blocking(move || {
            probe
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .fetch_metadata(None, PROBE_TIMEOUT)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        if !reachable {
            tracing::debug!(
                error,
                "Records not delivered; the Kafka broker does not answer."
            );
            return;
        }
        let fresh = match create(&self.config) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "Making a new Kafka producer failed."
                );
                return;
            }
        };
        let old = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            if !Arc::ptr_eq(&current, &used) {
                return; // replaced meanwhile
            }
            std::mem::replace(&mut *current, fresh)
        };
        self.replacements.fetch_add(1, Ordering::Relaxed);
        let state = used.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        tracing::warn!(
            error,
            fatal = ?fatal,
            state,
            "The Kafka producer's records failed while the broker answers; replaced the producer."
        );
        drop(used);
        // Closing purges what it still holds and waits for its threads: not on a runtime
        // thread (the last batch that sent with it may still hold it; then it closes there).
        tokio::task::spawn_blocking(move || drop(old));
    }
}

fn create(config: &ClientConfig) -> anyhow::Result<LogProducer> {
    let context = RequestCounts::new("producer");
    let state = context.state();
    let producer = counted(&mut config.clone())
        .create_with_context(context)
        .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
    Ok(LogProducer { producer, state })
}
