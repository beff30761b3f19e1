//! The ClickHouse analytics adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up clickhouse`; HTTP address in `LIVECHAT_CLICKHOUSE_URL`).
#![cfg(feature = "clickhouse")]

use livechat_sinks::clickhouse::{ClickHouseAnalytics, ClickHouseConfig};
use livechat_sinks::embedded::SqliteAnalytics;

async fn connect(url: String, database: &str) -> ClickHouseAnalytics {
    let cfg = ClickHouseConfig {
        url,
        database: database.into(),
        ..ClickHouseConfig::default()
    };
    ClickHouseAnalytics::connect(cfg)
        .await
        .expect("connect to ClickHouse")
}

fn url() -> Option<String> {
    livechat_conformance::server_env("LIVECHAT_CLICKHOUSE_URL", "clickhouse")
}

/// The shared database of the checks that make their own ids.
async fn clickhouse() -> Option<ClickHouseAnalytics> {
    Some(connect(url()?, "livechat_conformance").await)
}

/// A database of its own, emptied first: global views and the checksum cover a whole store.
async fn empty_clickhouse() -> Option<ClickHouseAnalytics> {
    let url = url()?;
    let database = "livechat_conformance_reference";
    clickhouse::Client::default()
        .with_url(&url)
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .expect("drop the check's database");
    Some(connect(url, database).await)
}

/// The embedded adapter fed the same events is the reference.
async fn reference() -> SqliteAnalytics {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    SqliteAnalytics::open(&dir.join("analytics.db")).unwrap()
}

livechat_conformance::analytics_suite!(clickhouse(), empty_clickhouse(), reference());
