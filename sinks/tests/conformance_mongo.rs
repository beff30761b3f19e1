//! The MongoDB directory adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up mongo`: SecantusDB; URI in `LIVECHAT_MONGO_URI`). Each test gets a
//! database of its own, so the outbox checks see only their own records.
#![cfg(feature = "mongo")]

use std::sync::Arc;

use livechat_conformance::server_env;
use livechat_sinks::mongo::{MongoConfig, MongoDirectory};

async fn connect(database: &str) -> Option<Arc<MongoDirectory>> {
    let uri = server_env("LIVECHAT_MONGO_URI", "mongo")?;
    let cfg = MongoConfig {
        uri,
        database: database.to_string(),
    };
    Some(
        MongoDirectory::connect(&cfg)
            .await
            .expect("MongoDB directory"),
    )
}

/// A handle on a database of its own.
async fn mongo() -> Option<Arc<MongoDirectory>> {
    connect(&format!(
        "conformance_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ))
    .await
}

livechat_conformance::directory_suite!(
    mongo(),
    |a: &Arc<MongoDirectory>| {
        let database = a.database_name().to_string();
        async move { connect(&database).await.expect("second MongoDB handle") }
    },
    livechat_conformance::directory::outbox_bodies
);
livechat_conformance::sessions_suite!(mongo());

/// The relay finds records through this process's write hints, and a fresh process (after a
/// crash of the writer) finds them by its start-up sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_found_by_hint_and_by_a_new_process_sweep() {
    use livechat_core::ports::{Directory, Outbox};
    let Some(a) = mongo().await else { return };
    assert!(
        a.pending(1000).await.unwrap().is_empty(),
        "start-up sweep of an empty database"
    );
    let topic = format!("conformance.{}", uuid::Uuid::new_v4().simple());
    for body in ["one", "two", "three"] {
        a.enqueue(vec![livechat_conformance::record(&topic, "k", body)])
            .await
            .unwrap();
    }
    let bodies = |v: Vec<(i64, livechat_core::model::OutboxRecord)>| -> Vec<String> {
        v.into_iter()
            .map(|(_, r)| String::from_utf8(r.payload).unwrap())
            .collect()
    };
    // Through the hints (the next sweep is seconds away).
    let first = a.pending(2).await.unwrap();
    assert_eq!(bodies(first.clone()), vec!["one", "two"]);
    a.remove(&first.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .await
        .unwrap();
    // A second process, as after a crash of the first: its sweep finds what is left.
    let b = connect(a.database_name()).await.unwrap();
    let rest = b.pending(1000).await.unwrap();
    assert_eq!(bodies(rest.clone()), vec!["three"]);
    b.remove(&rest.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(a.pending(1000).await.unwrap().is_empty());
    assert!(b.pending(1000).await.unwrap().is_empty());
}
