//! In-process adapters for the embedded profile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use livechat_core::ports::Cache;

/// A bounded in-memory cache with per-entry TTL. When full, expired entries are dropped first,
/// then everything (a cache miss is always safe).
#[derive(Debug)]
pub struct MemoryCache {
    max_entries: usize,
    // std Mutex: never held across an .await.
    entries: Mutex<HashMap<String, (Instant, Vec<u8>)>>,
}

impl MemoryCache {
    pub fn new(max_entries: usize) -> Self {
        MemoryCache {
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl Cache for MemoryCache {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(exp, _)| *exp > Instant::now())
            .map(|(_, v)| v.clone())
    }

    fn set(&self, key: &str, value: Vec<u8>, ttl_secs: u64) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_entries {
            let now = Instant::now();
            map.retain(|_, (exp, _)| *exp > now);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(
            key.to_string(),
            (Instant::now() + Duration::from_secs(ttl_secs), value),
        );
    }

    fn delete(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_set_delete_and_bound() {
        let c = MemoryCache::new(2);
        assert_eq!(c.get("a"), None);
        c.set("a", b"1".to_vec(), 60);
        assert_eq!(c.get("a"), Some(b"1".to_vec()));
        c.delete("a");
        assert_eq!(c.get("a"), None);
        c.set("a", b"1".to_vec(), 0);
        assert_eq!(c.get("a"), None, "expired");
        c.set("b", vec![], 60);
        c.set("c", vec![], 60);
        c.set("d", vec![], 60);
        assert!(c.entries.lock().unwrap().len() <= 2);
    }
}
