//! The memcached cache adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up memcached`; address in `LIVECHAT_MEMCACHED`).
#![cfg(feature = "memcached")]

use livechat_sinks::memcached::{MemcachedCache, MemcachedConfig};

/// Connects to the servers named by the environment. Without them the test is skipped with a
/// note, except under CI, where a missing server is a failure.
async fn memcached() -> Option<MemcachedCache> {
    let Ok(servers) = std::env::var("LIVECHAT_MEMCACHED") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide LIVECHAT_MEMCACHED (scripts/dev-services up memcached)"
        );
        eprintln!("skipped: LIVECHAT_MEMCACHED is not set (run scripts/dev-services up memcached)");
        return None;
    };
    let cfg = MemcachedConfig {
        servers: servers.split(',').map(|s| s.trim().to_string()).collect(),
        ..MemcachedConfig::default()
    };
    Some(MemcachedCache::connect(&cfg).expect("memcached client"))
}

macro_rules! memcached_checks {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(cache) = memcached().await {
                    livechat_conformance::cache::$check(&cache).await;
                }
            }
        )*
    };
}

memcached_checks!(get_after_set_and_miss_after_delete, entries_expire);
