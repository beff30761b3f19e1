//! The MongoDB directory adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up mongo`: FerretDB; URI in `LIVECHAT_MONGO_URI`). Each test gets a
//! database of its own, so the outbox checks see only their own records.
#![cfg(feature = "mongo")]

use std::sync::Arc;

use livechat_sinks::mongo::{MongoConfig, MongoDirectory};

/// Connects to the server named by the environment. Without it the test is skipped with a
/// note, except under CI, where a missing server is a failure.
async fn mongo() -> Option<Arc<MongoDirectory>> {
    let Ok(uri) = std::env::var("LIVECHAT_MONGO_URI") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide LIVECHAT_MONGO_URI (scripts/dev-services up mongo)"
        );
        eprintln!("skipped: LIVECHAT_MONGO_URI is not set (run scripts/dev-services up mongo)");
        return None;
    };
    let cfg = MongoConfig {
        uri,
        database: format!(
            "conformance_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
    };
    Some(
        MongoDirectory::connect(&cfg)
            .await
            .expect("MongoDB directory"),
    )
}

macro_rules! mongo_checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(d) = mongo().await {
                    livechat_conformance::directory::$check(&d).await;
                }
            }
        )*
    };
}

mongo_checks!(
    usernames_and_room_names_are_unique,
    memberships_count_participants_once,
    join_requests_are_unique_and_handled_once,
    concurrent_sends_get_dense_unique_seqs,
    concurrent_joins_are_all_kept,
    a_repeated_client_msg_id_returns_the_first_receipt,
    outbox_holds_the_records_of_each_change_in_order,
    notifications_are_idempotent_and_owned,
    read_markers_only_move_forward,
    deleting_a_room_removes_its_memberships_and_requests,
    search_is_literal_and_hides_private_rooms,
    sessions_can_be_created_extended_and_deleted,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_share_one_dense_seq() {
    let Some(a) = mongo().await else { return };
    let b = MongoDirectory::connect(&MongoConfig {
        uri: std::env::var("LIVECHAT_MONGO_URI").unwrap(),
        database: a.database_name().to_string(),
    })
    .await
    .expect("second MongoDB handle");
    livechat_conformance::directory::two_writers_share_one_dense_seq(&a, &b).await;
}

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
    let b = MongoDirectory::connect(&MongoConfig {
        uri: std::env::var("LIVECHAT_MONGO_URI").unwrap(),
        database: a.database_name().to_string(),
    })
    .await
    .unwrap();
    let rest = b.pending(1000).await.unwrap();
    assert_eq!(bodies(rest.clone()), vec!["three"]);
    b.remove(&rest.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(a.pending(1000).await.unwrap().is_empty());
    assert!(b.pending(1000).await.unwrap().is_empty());
}
