//! The Cassandra history adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up cassandra`; contact points in `LIVECHAT_CASSANDRA_NODES`).
#![cfg(feature = "cassandra")]

use livechat_sinks::cassandra::{CassandraConfig, CassandraHistory};

/// The nodes named by the environment. Without them the test is skipped with a note, except
/// under CI, where a missing server is a failure.
fn nodes() -> Option<Vec<String>> {
    let Ok(nodes) = std::env::var("LIVECHAT_CASSANDRA_NODES") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide LIVECHAT_CASSANDRA_NODES (scripts/dev-services up cassandra)"
        );
        eprintln!(
            "skipped: LIVECHAT_CASSANDRA_NODES is not set (run scripts/dev-services up cassandra)"
        );
        return None;
    };
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

macro_rules! cassandra_checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = cassandra().await {
                    livechat_conformance::history::$check(&store).await;
                }
            }
        )*
    };
}

cassandra_checks!(
    inserts_are_idempotent,
    pages_by_seq_in_both_directions,
    edits_and_deletes_are_idempotent_and_keep_seqs_dense,
    rooms_are_isolated_and_purge_removes_one_room,
    pages_cross_partition_boundaries,
);

/// The checksum covers the whole store, so this check gets a keyspace of its own, emptied
/// first; the SQLite adapter built from the same log is the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_matches_the_reference_and_survives_replay() {
    let Some(nodes) = nodes() else { return };
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
    let store = connect(nodes, keyspace).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let reference =
        livechat_sinks::embedded::SqliteHistory::open(&dir.path().join("history.db")).unwrap();
    livechat_conformance::history::checksum_matches_the_reference_and_survives_replay(
        &store, &reference,
    )
    .await;
}
