//! The Cassandra history adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up cassandra`; contact points in `LIVECHAT_CASSANDRA_NODES`).
#![cfg(feature = "cassandra")]

use livechat_sinks::cassandra::{CassandraConfig, CassandraHistory};
use livechat_sinks::embedded::SqliteHistory;

fn nodes() -> Option<Vec<String>> {
    let nodes = livechat_conformance::server_env("LIVECHAT_CASSANDRA_NODES", "cassandra")?;
    Some(nodes.split(',').map(|n| n.trim().to_string()).collect())
}

async fn connect(nodes: Vec<String>, keyspace: &str) -> CassandraHistory {
    let cfg = CassandraConfig {
        nodes,
        keyspace: keyspace.into(),
        ..CassandraConfig::default()
    };
    CassandraHistory::connect(cfg)
        .await
        .expect("connect to Cassandra")
}

/// The shared keyspace of the checks that make their own ids.
async fn cassandra() -> Option<CassandraHistory> {
    Some(connect(nodes()?, "livechat_conformance").await)
}

/// A keyspace of its own, emptied first: the checksum covers the whole store.
async fn empty_cassandra() -> Option<CassandraHistory> {
    let nodes = nodes()?;
    let keyspace = "livechat_conformance_replay";
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&nodes)
        .build()
        .await
        .expect("connect to Cassandra");
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .expect("drop the check's keyspace");
    Some(connect(nodes, keyspace).await)
}

/// The embedded adapter built from the same log is the reference.
async fn reference() -> SqliteHistory {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    SqliteHistory::open(&dir.join("history.db")).unwrap()
}

livechat_conformance::history_suite!(cassandra(), empty_cassandra(), reference());
