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
    drop_keyspace(&nodes, keyspace).await;
    Some(connect(nodes, keyspace).await)
}

/// Drops a check's keyspace, so it starts from nothing; the session stays for raw CQL.
async fn drop_keyspace(nodes: &[String], keyspace: &str) -> scylla::client::session::Session {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes)
        .build()
        .await
        .expect("connect to Cassandra");
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await
        .expect("drop the check's keyspace");
    session
}

/// The embedded adapter built from the same log is the reference.
async fn reference() -> SqliteHistory {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    SqliteHistory::open(&dir.join("history.db")).unwrap()
}

livechat_conformance::history_suite!(cassandra(), empty_cassandra(), reference());

/// A store written before `author_rooms` existed: a process connecting to it indexes the
/// authors of every stored message in the background, and an erasure's listing then reads only
/// the rooms the user wrote in — finding every message of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_the_author_index_is_indexed_once_and_listed_by_it() {
    use livechat_core::model::HistoryOp;
    use livechat_core::ports::MessageStore;
    let Some(nodes) = nodes() else { return };
    let keyspace = "livechat_conformance_authors";
    let session = drop_keyspace(&nodes, keyspace).await;
    let first = connect(nodes.clone(), keyspace).await;
    let author = uuid::Uuid::new_v4();
    let mut rooms = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    rooms.sort_by_key(|r| r.to_string());
    let mut ops = Vec::new();
    let mut theirs = Vec::new();
    for room in rooms {
        for seq in 1..=3 {
            let mut m = livechat_conformance::message(room, seq, "indexed later");
            if seq != 2 {
                m.user_id = author;
                theirs.push((room, seq));
            }
            ops.push(HistoryOp::Insert(m));
        }
    }
    first.apply(&ops).await.unwrap();
    // As a store of an earlier version: no entries, no record of the backfill.
    for cql in [
        format!("TRUNCATE {keyspace}.author_rooms"),
        format!("DELETE FROM {keyspace}.backfills WHERE name = 'author_rooms'"),
    ] {
        session.query_unpaged(cql, ()).await.unwrap();
    }

    let second = connect(nodes, keyspace).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !second.author_index_complete() {
        assert!(std::time::Instant::now() < deadline, "not indexed in 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let indexed: Vec<(uuid::Uuid,)> = session
        .query_unpaged(
            format!("SELECT room_id FROM {keyspace}.author_rooms WHERE user_id = ?"),
            (author,),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(uuid::Uuid,)>()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut indexed: Vec<uuid::Uuid> = indexed.into_iter().map(|(r,)| r).collect();
    indexed.sort_by_key(|r| r.to_string());
    assert_eq!(indexed, rooms);
    let listed: Vec<(uuid::Uuid, i64)> = second
        .by_author(author, None, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.room_id, m.seq))
        .collect();
    assert_eq!(listed, theirs);
}
