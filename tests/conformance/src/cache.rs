//! `Cache`: set/get/delete; a miss is `None`.

use livechat_core::ports::Cache;
use uuid::Uuid;

pub async fn get_after_set_and_miss_after_delete(cache: &dyn Cache) {
    let key = format!("conformance:{}", Uuid::new_v4());
    assert_eq!(cache.get(&key), None);
    cache.set(&key, b"value".to_vec(), 60);
    assert_eq!(cache.get(&key), Some(b"value".to_vec()));
    cache.set(&key, b"other".to_vec(), 60);
    assert_eq!(cache.get(&key), Some(b"other".to_vec()));
    cache.delete(&key);
    assert_eq!(cache.get(&key), None);
    cache.delete(&key); // deleting a missing key is fine
}

pub async fn entries_expire(cache: &dyn Cache) {
    let key = format!("conformance:{}", Uuid::new_v4());
    cache.set(&key, b"v".to_vec(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(cache.get(&key), None);
}
