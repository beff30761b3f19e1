//! `GET /metrics`: Prometheus text format. Gauges are computed when scraped (no counters on
//! the hot path): open sockets, and each consumer group's lag per partition (end offset minus
//! committed offset), the number an operator watches to know the processors keep up.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use livechat_core::ports::EventLog;

use crate::AppState;

/// What the metrics endpoint reads: the log and the groups that commit offsets on it.
#[derive(Clone)]
pub struct LagSource {
    pub log: Arc<dyn EventLog>,
    /// (group, topics)
    pub groups: Vec<(String, Vec<&'static str>)>,
}

pub async fn render(State(st): State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP livechat_websocket_connections Open WebSocket connections."
    );
    let _ = writeln!(out, "# TYPE livechat_websocket_connections gauge");
    let _ = writeln!(
        out,
        "livechat_websocket_connections {}",
        st.hub.connection_count()
    );
    if let Some(src) = &st.lag {
        let _ = writeln!(
            out,
            "# HELP livechat_consumer_lag Records appended but not yet committed by the group."
        );
        let _ = writeln!(out, "# TYPE livechat_consumer_lag gauge");
        for (group, topics) in &src.groups {
            for topic in topics {
                for p in 0..src.log.partitions(topic) {
                    let (Ok(end), Ok(committed)) = (
                        src.log.end_offset(topic, p).await,
                        src.log.committed(group, topic, p).await,
                    ) else {
                        continue;
                    };
                    let lag = (end - committed.unwrap_or(0)).max(0);
                    let _ = writeln!(out, "livechat_consumer_lag{{group=\"{group}\",topic=\"{topic}\",partition=\"{p}\"}} {lag}");
                }
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
