//! `FileStore`: a put is read back whole, replaced whole, and gone after a delete; keys are
//! kept apart, and many writers of one key leave one of their files, never a mix.

use bytes::Bytes;
use livechat_core::ports::FileStore;
use uuid::Uuid;

fn key(name: &str) -> String {
    format!("conformance/{}/{name}", Uuid::new_v4().simple())
}

pub async fn a_file_is_read_back_replaced_and_deleted(files: &dyn FileStore) {
    let k = key("a.json");
    assert_eq!(files.get(&k).await.unwrap(), None);
    assert!(!files.exists(&k).await.unwrap());
    files.put(&k, Bytes::from_static(b"first")).await.unwrap();
    assert!(files.exists(&k).await.unwrap());
    assert_eq!(files.get(&k).await.unwrap().as_deref(), Some(&b"first"[..]));
    files
        .put(&k, Bytes::from_static(b"second, longer"))
        .await
        .unwrap();
    assert_eq!(
        files.get(&k).await.unwrap().as_deref(),
        Some(&b"second, longer"[..])
    );
    let other = key("a.json");
    assert_eq!(files.get(&other).await.unwrap(), None, "keys are apart");
    files.delete(&k).await.unwrap();
    assert_eq!(files.get(&k).await.unwrap(), None);
    assert!(!files.exists(&k).await.unwrap());
    files.delete(&k).await.unwrap(); // deleting what is not there is fine
}

pub async fn large_files_come_back_byte_for_byte(files: &dyn FileStore) {
    let k = key("blob");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    files.put(&k, Bytes::from(bytes.clone())).await.unwrap();
    assert_eq!(files.get(&k).await.unwrap().unwrap(), bytes);
}

pub async fn concurrent_writers_of_a_key_leave_one_whole_file(files: &dyn FileStore) {
    let k = key("raced");
    let versions: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 200_000]).collect();
    let puts = versions
        .iter()
        .map(|v| files.put(&k, Bytes::from(v.clone())));
    for r in futures::future::join_all(puts).await {
        r.unwrap();
    }
    let got = files.get(&k).await.unwrap().unwrap();
    assert!(versions.contains(&got.to_vec()), "one writer's file, whole");
}

pub async fn keys_cannot_leave_the_store(files: &dyn FileStore) {
    for bad in ["../escape", "a/../../b", "/abs", "", "a//b", ".hidden"] {
        assert!(
            files.put(bad, Bytes::from_static(b"x")).await.is_err(),
            "{bad:?} refused"
        );
    }
}
