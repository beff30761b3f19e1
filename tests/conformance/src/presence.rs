//! `Presence`: what one process publishes the others see, withdrawn users go at once, and a
//! process that stops refreshing fades out after its TTL.

use std::time::Duration;

use livechat_core::ports::Presence;
use uuid::Uuid;

pub async fn published_users_are_online_until_withdrawn<P: Presence>(p: &P) {
    let (room, node_a, node_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    p.publish(node_a, &[(room, vec![alice])], &[], 30_000)
        .await
        .unwrap();
    p.publish(node_b, &[(room, vec![alice, bob])], &[], 30_000)
        .await
        .unwrap();
    let mut both = vec![alice, bob];
    both.sort();
    assert_eq!(p.online(room).await.unwrap(), both, "one entry per user");
    // Bob leaves node B: gone at once. Alice leaves node B but is still on node A.
    p.publish(node_b, &[], &[(room, vec![alice, bob])], 30_000)
        .await
        .unwrap();
    assert_eq!(p.online(room).await.unwrap(), vec![alice]);
    assert!(p.online(Uuid::new_v4()).await.unwrap().is_empty());
}

pub async fn entries_of_a_silent_process_expire<P: Presence>(p: &P) {
    let (room, node) = (Uuid::new_v4(), Uuid::new_v4());
    let user = Uuid::new_v4();
    p.publish(node, &[(room, vec![user])], &[], 300)
        .await
        .unwrap();
    assert_eq!(p.online(room).await.unwrap(), vec![user]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        p.online(room).await.unwrap().is_empty(),
        "not refreshed within its TTL: offline"
    );
}
