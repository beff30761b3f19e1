//! How many requests each Kafka client sends, by type (`livechat_kafka_requests_total{client,
//! request}`), from librdkafka's statistics. A broker's cost is per request far more than per
//! record, so requests per message name what to batch next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;

/// How often librdkafka reports its statistics (each report is a JSON document of a few KiB
/// per partition the client serves, parsed here).
const INTERVAL_MS: &str = "5000";

/// Turns on the statistics a [`RequestCounts`] reads, every [`INTERVAL_MS`] unless the
/// operator's `[log.kafka] client` properties chose another interval. Only for clients whose
/// context counts: rdkafka's default context logs every report.
pub(super) fn counted(cfg: &mut ClientConfig) -> &mut ClientConfig {
    if cfg.get("statistics.interval.ms").is_none() {
        cfg.set("statistics.interval.ms", INTERVAL_MS);
    }
    cfg
}

/// Adds each report's new requests to the counters of one client.
pub(super) struct RequestCounts {
    client: String,
    /// The totals of the last report, per (broker, request type): librdkafka reports totals
    /// since the client started.
    seen: Mutex<HashMap<(String, String), i64>>,
    /// The client's state as of its last report, in a line for the log (see [`state_line`]).
    state: Arc<Mutex<String>>,
}

impl RequestCounts {
    pub(super) fn new(client: impl Into<String>) -> RequestCounts {
        RequestCounts {
            client: client.into(),
            seen: Mutex::new(HashMap::new()),
            state: Arc::new(Mutex::new("no statistics reported yet".into())),
        }
    }

    /// Where the client's state as of its last report (every few seconds) is kept: readable
    /// after the context is handed to the client.
    pub(super) fn state(&self) -> Arc<Mutex<String>> {
        self.state.clone()
    }

    pub(super) fn record(&self, stats: &Statistics) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state_line(stats);
        for (request, n) in self.since_last(stats) {
            metrics::counter!(
                "livechat_kafka_requests_total",
                "client" => self.client.clone(),
                "request" => request
            )
            .increment(n);
        }
    }

    /// The requests of each type sent since the last report.
    fn since_last(&self, stats: &Statistics) -> HashMap<String, u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = HashMap::new();
        for (broker, b) in &stats.brokers {
            for (request, &total) in &b.req {
                let last = seen.entry((broker.clone(), request.clone())).or_insert(0);
                if total > *last {
                    *new.entry(request.clone()).or_insert(0) += (total - *last) as u64;
                    *last = total;
                }
            }
        }
        new
    }
}

/// What a stuck client is waiting for: its queued records, its idempotent producer's state
/// (librdkafka's `eos` section), and each broker connection's state with its queued requests.
fn state_line(stats: &Statistics) -> String {
    let mut line = format!("{} records queued", stats.msg_cnt);
    if let Some(eos) = &stats.eos {
        line += &format!(
            "; idempotence {} for {} ms (producer id {}, epoch {})",
            eos.idemp_state, eos.idemp_stateage, eos.producer_id, eos.producer_epoch
        );
    }
    let mut brokers: Vec<_> = stats.brokers.values().collect();
    brokers.sort_by(|a, b| a.name.cmp(&b.name));
    for b in brokers {
        line += &format!(
            "; {} {} ({} requests to send, {} awaiting answers)",
            b.name, b.state, b.outbuf_cnt, b.waitresp_cnt
        );
    }
    line
}

impl ClientContext for RequestCounts {
    fn stats(&self, statistics: Statistics) {
        self.record(&statistics);
    }
}

impl ConsumerContext for RequestCounts {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of one broker's request totals.
    fn report(produce: i64, fetch: i64) -> Statistics {
        let broker = rdkafka::statistics::Broker {
            req: HashMap::from([
                ("Produce".to_string(), produce),
                ("Fetch".to_string(), fetch),
                ("Metadata".to_string(), 0),
            ]),
            ..Default::default()
        };
        Statistics {
            brokers: HashMap::from([("b:9092/1".to_string(), broker)]),
            ..Default::default()
        }
    }

    #[test]
    fn an_interval_the_operator_chose_is_kept() {
        let mut cfg = ClientConfig::new();
        assert_eq!(
            counted(&mut cfg).get("statistics.interval.ms"),
            Some(INTERVAL_MS)
        );
        let mut cfg = ClientConfig::new();
        cfg.set("statistics.interval.ms", "1000");
        assert_eq!(
            counted(&mut cfg).get("statistics.interval.ms"),
            Some("1000")
        );
    }

    #[test]
    fn each_report_adds_only_the_requests_sent_since_the_last() {
        let counts = RequestCounts::new("producer");
        let first = counts.since_last(&report(5, 2));
        assert_eq!(first.get("Produce"), Some(&5));
        assert_eq!(first.get("Fetch"), Some(&2));
        assert_eq!(first.get("Metadata"), None, "no request, nothing to add");
        let second = counts.since_last(&report(12, 2));
        assert_eq!(second.get("Produce"), Some(&7));
        assert_eq!(second.get("Fetch"), None, "no fetch since the last report");
    }
}
