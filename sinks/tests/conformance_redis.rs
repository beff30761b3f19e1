//! The Redis sessions and presence adapters against the shared conformance suite, on a real
//! server (`scripts/dev-services up redis`; URL in `LIVECHAT_REDIS_URL`).
#![cfg(feature = "redis")]

use std::sync::Arc;

use livechat_sinks::embedded::SqliteDirectory;
use livechat_sinks::redis::{Redis, RedisConfig, RedisPresence, RedisSessions};

/// Connects to the server named by the environment, with a namespace of its own. Without it
/// the test is skipped with a note, except under CI, where a missing server is a failure.
async fn redis() -> Option<Redis> {
    let Ok(url) = std::env::var("LIVECHAT_REDIS_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide LIVECHAT_REDIS_URL (scripts/dev-services up redis)"
        );
        eprintln!("skipped: LIVECHAT_REDIS_URL is not set (run scripts/dev-services up redis)");
        return None;
    };
    let cfg = RedisConfig {
        url,
        namespace: format!("conformance:{}:", uuid::Uuid::new_v4().simple()),
    };
    Some(Redis::connect(&cfg).await.expect("Redis"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_can_be_created_extended_and_deleted() {
    let Some(r) = redis().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(SqliteDirectory::open(&dir.path().join("directory.db")).unwrap());
    let sessions = Arc::new(RedisSessions::new(r, outbox));
    livechat_conformance::directory::sessions_can_be_created_extended_and_deleted(&sessions).await;
}

macro_rules! presence_checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(r) = redis().await {
                    livechat_conformance::presence::$check(&RedisPresence::new(r)).await;
                }
            }
        )*
    };
}

presence_checks!(
    published_users_are_online_until_withdrawn,
    entries_of_a_silent_process_expire,
);
