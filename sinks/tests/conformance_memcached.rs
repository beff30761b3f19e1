//! The memcached cache adapter against the shared conformance suite, on a real server
//! (`scripts/dev-services up memcached`; address in `LIVECHAT_MEMCACHED`).
#![cfg(feature = "memcached")]

use livechat_sinks::memcached::{MemcachedCache, MemcachedConfig};

async fn memcached() -> Option<MemcachedCache> {
    let servers = livechat_conformance::server_env("LIVECHAT_MEMCACHED", "memcached")?;
    let cfg = MemcachedConfig {
        servers: servers.split(',').map(|s| s.trim().to_string()).collect(),
        ..MemcachedConfig::default()
    };
    Some(MemcachedCache::connect(&cfg).expect("memcached client"))
}

livechat_conformance::cache_suite!(memcached());
