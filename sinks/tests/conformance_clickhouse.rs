//! The ClickHouse analytics adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up clickhouse`; HTTP address in `LIVECHAT_CLICKHOUSE_URL`).
#![cfg(feature = "clickhouse")]

use livechat_sinks::clickhouse::{ClickHouseAnalytics, ClickHouseConfig};

/// The server named by the environment. Without one the test is skipped with a note, except
/// under CI, where a missing server is a failure.
fn url() -> Option<String> {
    let Ok(url) = std::env::var("LIVECHAT_CLICKHOUSE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide LIVECHAT_CLICKHOUSE_URL (scripts/dev-services up clickhouse)"
        );
        eprintln!(
            "skipped: LIVECHAT_CLICKHOUSE_URL is not set (run scripts/dev-services up clickhouse)"
        );
        return None;
    };
    Some(url)
}

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

/// The shared database of the checks that make their own ids.
async fn clickhouse() -> Option<ClickHouseAnalytics> {
    Some(connect(url()?, "livechat_conformance").await)
}

macro_rules! clickhouse_checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = clickhouse().await {
                    livechat_conformance::analytics::$check(&store).await;
                }
            }
        )*
    };
}

clickhouse_checks!(
    an_event_counts_once_however_often_it_is_inserted,
    room_and_user_views,
    global_views_are_well_formed,
);

/// Global views and the checksum cover the whole store, so this check gets a database of its
/// own, emptied first; the SQLite adapter fed the same events is the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_and_checksum_match_the_reference() {
    let Some(url) = url() else { return };
    let database = "livechat_conformance_reference";
    clickhouse::Client::default()
        .with_url(&url)
        .query(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .expect("drop the check's database");
    let store = connect(url, database).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let reference =
        livechat_sinks::embedded::SqliteAnalytics::open(&dir.path().join("analytics.db")).unwrap();
    livechat_conformance::analytics::views_and_checksum_match_the_reference(&store, &reference)
        .await;
}
