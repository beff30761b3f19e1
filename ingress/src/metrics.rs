//! `GET /metrics` in the Prometheus text format: everything the process records through the
//! `metrics` crate's macros (requests, sends, WebSocket upgrades and closes, processor batches,
//! dead letters), plus gauges computed when scraped: open sockets, and each consumer group's lag
//! per partition (end offset minus committed offset), the number an operator watches to know the
//! processors keep up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use livechat_core::ports::EventLog;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use serde_json::json;

use crate::{AppState, MetricsAccess};

/// What the metrics endpoint reads: the log and the groups that commit offsets on it.
#[derive(Clone)]
pub struct LagSource {
    pub log: Arc<dyn EventLog>,
    /// (group, topics)
    pub groups: Vec<(String, Vec<&'static str>)>,
    /// Also the groups of the Kafka listener's clients (`kafka/<group>`), found at each scrape.
    pub kafka_api_groups: bool,
}

impl LagSource {
    /// Every group to report, with its topics: the fixed ones, then the listener's clients'.
    async fn all_groups(&self) -> Vec<(String, Vec<&'static str>)> {
        let mut all = self.groups.clone();
        if self.kafka_api_groups {
            if let Ok(stored) = self.log.groups().await {
                all.extend(
                    stored
                        .into_iter()
                        .filter(|g| g.starts_with(crate::kafka_api::CLIENT_GROUP_PREFIX))
                        .map(|g| (g, crate::kafka_api::SERVED_TOPICS.to_vec())),
                );
            }
        }
        all
    }
}

/// Histogram buckets for durations, in seconds (100 µs to 10 s).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide recorder (once; later calls return the same handle) and keeps its
/// histograms trimmed in the background.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .map_err(|e| anyhow::anyhow!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Counts every API request by route, method and status, and times it.
pub async fn track_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("livechat_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("livechat_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

pub async fn render(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let refused = match st.config.metrics {
        MetricsAccess::Public => None,
        MetricsAccess::Loopback if peer.ip().is_loopback() => None,
        MetricsAccess::Loopback => Some((
            StatusCode::FORBIDDEN,
            "Metrics are served to this host only (ingress.metrics = \"loopback\")",
        )),
        MetricsAccess::Off => Some((
            StatusCode::NOT_FOUND,
            "Metrics are off (ingress.metrics = \"off\")",
        )),
    };
    if let Some((status, detail)) = refused {
        return (status, Json(json!({ "detail": detail }))).into_response();
    }
    metrics::gauge!("livechat_websocket_connections").set(st.hub.connection_count() as f64);
    if let Some(src) = &st.lag {
        for (group, topics) in src.all_groups().await {
            for topic in topics {
                for p in 0..src.log.partitions(topic) {
                    let (Ok(end), Ok(committed)) = (
                        src.log.end_offset(topic, p).await,
                        src.log.committed(&group, topic, p).await,
                    ) else {
                        continue;
                    };
                    let committed = committed.unwrap_or(0);
                    let labels = [
                        ("group", group.clone()),
                        ("topic", topic.to_string()),
                        ("partition", p.to_string()),
                    ];
                    metrics::gauge!("livechat_consumer_lag", &labels)
                        .set((end - committed).max(0) as f64);
                    // Its rate is the group's throughput on the partition.
                    metrics::gauge!("livechat_consumer_offset", &labels).set(committed as f64);
                }
            }
        }
    }
    let body = st.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Describes the metrics (the `# HELP` lines) once the recorder is installed.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "livechat_websocket_connections",
        "Open WebSocket connections."
    );
    describe_gauge!(
        "livechat_consumer_lag",
        "Records appended but not yet committed by the group."
    );
    describe_gauge!(
        "livechat_consumer_offset",
        "The group's committed offset (the next record it reads): its rate is the group's throughput."
    );
    describe_counter!(
        "livechat_kafka_api_requests_total",
        "Requests to the Kafka listener, by API."
    );
    describe_counter!(
        "livechat_http_requests_total",
        "API requests by route, method and status."
    );
    describe_histogram!(
        "livechat_http_request_duration_seconds",
        Unit::Seconds,
        "API request duration by route and method."
    );
    describe_counter!(
        "livechat_websocket_upgrades_refused_total",
        "WebSocket upgrades refused, by reason."
    );
    describe_counter!(
        "livechat_websocket_closes_total",
        "WebSocket connections closed by the server, by close code."
    );
    describe_counter!(
        "livechat_messages_sent_total",
        "Messages stored and acknowledged (retries of a client_msg_id not counted)."
    );
    describe_histogram!(
        "livechat_commit_batch_size",
        "Writes committed together in one transaction (group commit), by SQLite file."
    );
    describe_histogram!(
        "livechat_commit_seconds",
        Unit::Seconds,
        "Time to run and commit one transaction of writes (group commit), by SQLite file."
    );
    describe_counter!(
        "livechat_processor_records_total",
        "Records handled by each processor (its consumer group), by topic and partition."
    );
    describe_histogram!(
        "livechat_processor_batch_seconds",
        Unit::Seconds,
        "Time to handle and commit one batch, by processor."
    );
    describe_counter!(
        "livechat_dead_letters_total",
        "Records sent to the dead-letter topic, by processor and error class."
    );
    describe_counter!(
        "livechat_outbox_relayed_total",
        "Outbox records appended to the log by the relay."
    );
}
