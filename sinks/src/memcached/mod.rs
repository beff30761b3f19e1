//! The cache on memcached, with the synchronous `memcache` crate.
//!
//! The `Cache` port is synchronous and called from async code, and a cache must never fail:
//! - every call is bounded by a small timeout (connect, read and write);
//! - pools connect lazily, so a server that is down at start-up is only a miss;
//! - a connection failure opens a breaker for a second: gets and sets are skipped (misses)
//!   instead of each waiting for the timeout; deletes are always tried, since a skipped
//!   invalidation could leave a stale value for other processes;
//! - set and delete errors are logged and ignored; a failed set deletes the key, so an older
//!   value never outlives a newer one that could not be stored.
//!
//! The ASCII protocol is used (memcached deprecates the binary one); its `get` checks the key of
//! the answer, so a connection left half-read by a timeout cannot serve another key's value.
//! Keys are spread over the servers by a stable hash (FNV-1a), the same in every process.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livechat_core::ports::Cache;
use memcache::{Client, ConnectionManager, MemcacheError, Url};
use sha2::{Digest, Sha256};

pub use crate::config::MemcachedConfig;

/// How long calls are skipped after a connection failure.
const BREAKER: Duration = Duration::from_secs(1);
/// memcached reads an expiry above 30 days as an absolute Unix time.
const MAX_RELATIVE_TTL: u64 = 30 * 24 * 3600;
/// memcached's key limit is 250 bytes; longer keys (and keys with spaces or control characters,
/// which the ASCII protocol cannot carry) are replaced by a digest.
const MAX_KEY: usize = 250;

/// FNV-1a: stable across processes and Rust versions (unlike `DefaultHasher`), so every process
/// picks the same server for a key.
fn stable_hash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn wire_key(key: &str) -> String {
    if key.len() <= MAX_KEY && !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()) {
        key.to_string()
    } else {
        let digest: String = Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("livechat:sha256:{digest}")
    }
}

/// The memcached expiry for a TTL in seconds (0 never reaches here: it means "already expired").
fn expiry(ttl_secs: u64) -> u32 {
    if ttl_secs <= MAX_RELATIVE_TTL {
        return ttl_secs as u32;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(now.saturating_add(ttl_secs)).unwrap_or(u32::MAX)
}

/// Whether an error means the server cannot be reached (as opposed to a refused command).
fn is_outage(e: &MemcacheError) -> bool {
    matches!(e, MemcacheError::IOError(_) | MemcacheError::PoolError(_))
}

pub struct MemcachedCache {
    client: Client,
    /// Calls other than deletes are skipped until then.
    down_until: Mutex<Option<Instant>>,
}

impl MemcachedCache {
    /// Builds the client. Fails only on a malformed server address: no connection is made here.
    pub fn connect(cfg: &MemcachedConfig) -> anyhow::Result<MemcachedCache> {
        anyhow::ensure!(!cfg.servers.is_empty(), "memcached: no servers configured");
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let mut pools = Vec::new();
        for server in &cfg.servers {
            let url = format!(
                "memcache://{server}?protocol=ascii&tcp_nodelay=true&timeout={}",
                timeout.as_secs_f64()
            );
            let url = Url::parse(&url)
                .map_err(|e| anyhow::anyhow!("memcached server {server:?}: {e}"))?;
            anyhow::ensure!(
                url.host().is_some() && url.port().is_some(),
                "memcached server {server:?}: expected host:port"
            );
            // Lazy (`build_unchecked`): no connection until first use. `connection_timeout`
            // bounds the wait for a connection (r2d2 connects on its own threads), and the
            // check on checkout drops connections that broke since their last use.
            let pool = memcache::Pool::builder()
                .max_size(cfg.pool_size.max(1))
                .min_idle(Some(0))
                .connection_timeout(timeout)
                .test_on_check_out(true)
                .build_unchecked(ConnectionManager::new(url));
            pools.push(pool);
        }
        let mut client =
            Client::with_pools(pools).map_err(|e| anyhow::anyhow!("memcached: {e}"))?;
        client.hash_function = stable_hash;
        Ok(MemcachedCache {
            client,
            down_until: Mutex::new(None),
        })
    }

    fn is_down(&self) -> bool {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        match *down {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *down = None;
                false
            }
            None => false,
        }
    }

    /// Logs a failed call; an outage opens the breaker.
    fn failed(&self, what: &str, e: &MemcacheError) {
        if is_outage(e) {
            let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
            if down.is_none() {
                tracing::warn!(error = %e, "memcached unreachable ({what}); treating the cache as empty for {BREAKER:?}");
            }
            *down = Some(Instant::now() + BREAKER);
        } else {
            tracing::warn!(error = %e, "memcached {what} failed");
        }
    }

    fn remove(&self, key: &str) {
        if let Err(e) = self.client.delete(key) {
            self.failed("delete", &e);
        }
    }
}

impl Cache for MemcachedCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        if self.is_down() {
            return None;
        }
        match self.client.get::<Vec<u8>>(&wire_key(key)) {
            Ok(v) => v,
            Err(e) => {
                self.failed("get", &e);
                None
            }
        }
    }

    fn set(&self, key: &str, value: Vec<u8>, ttl_secs: u64) {
        let key = wire_key(key);
        if ttl_secs == 0 {
            // Expired at once (memcached would read 0 as "never expires").
            self.remove(&key);
            return;
        }
        if self.is_down() {
            return;
        }
        if let Err(e) = self.client.set(&key, value.as_slice(), expiry(ttl_secs)) {
            self.failed("set", &e);
            if !is_outage(&e) {
                // E.g. a value over the item size limit: drop the older value rather than keep it.
                self.remove(&key);
            }
        }
    }

    fn delete(&self, key: &str) {
        self.remove(&wire_key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_expiry() {
        assert_eq!(wire_key("user:1"), "user:1");
        let long = "k".repeat(300);
        assert!(wire_key(&long).starts_with("livechat:sha256:") && wire_key(&long).len() < 100);
        assert_ne!(wire_key("a b"), "a b");
        assert_ne!(wire_key("a b"), wire_key("a c"));
        assert_eq!(expiry(60), 60);
        assert!(expiry(MAX_RELATIVE_TTL + 1) > 1_600_000_000);
        assert_eq!(
            stable_hash("a"),
            0xaf63_dc4c_8601_ec8c,
            "FNV-1a test vector"
        );
    }

    #[test]
    fn an_unreachable_server_is_a_miss_and_quick() {
        // Port 1 on loopback: connection refused at once.
        let cfg = MemcachedConfig {
            servers: vec!["127.0.0.1:1".into()],
            timeout_ms: 100,
            pool_size: 2,
        };
        let cache = MemcachedCache::connect(&cfg).unwrap();
        let t = Instant::now();
        assert_eq!(cache.get("k"), None);
        cache.set("k", b"v".to_vec(), 60);
        cache.delete("k");
        for _ in 0..100 {
            assert_eq!(cache.get("k"), None);
            cache.set("k", b"v".to_vec(), 60);
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(MemcachedCache::connect(&MemcachedConfig {
            servers: vec!["no port".into()],
            ..cfg
        })
        .is_err());
    }
}
