//! The pipeline on a real Kafka broker (`scripts/dev-services up kafka`): two LiveChat processes
//! share the directory and the log; Kafka consumer groups split the processors' partitions
//! between them, and each process delivers live to its own sockets.

use serde_json::json;

use crate::harness::*;

fn brokers() -> Option<String> {
    match std::env::var("LIVECHAT_KAFKA_BROKERS") {
        Ok(b) => Some(b),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide LIVECHAT_KAFKA_BROKERS (scripts/dev-services up kafka)"
            );
            eprintln!("skipped: LIVECHAT_KAFKA_BROKERS is not set");
            None
        }
    }
}

/// Settings that put a process on Kafka under a namespace of its own: tests running at once
/// must not share consumer groups.
fn kafka_env(brokers: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LIVECHAT_LOG__KIND", "kafka".to_string()),
        ("LIVECHAT_LOG__KAFKA__BROKERS", brokers.to_string()),
        (
            "LIVECHAT_LOG__KAFKA__NAMESPACE",
            format!("t{}.", uuid::Uuid::new_v4().simple()),
        ),
    ]
}

#[tokio::test]
async fn two_processes_on_kafka_deliver_in_order_and_survive_a_sigkill() {
    let Some(brokers) = brokers() else { return };
    let owned = kafka_env(&brokers);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let mut b = App::spawn_beside(&a, &env).await;
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let room = alice.create_room("kafka", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;

    // Alice writes through process A, Bob reads through process B.
    let mut wa = alice.ws(&a, None).await;
    let mut wb = bob.ws(&b, None).await;
    wb.subscribe(&room, None).await;
    for i in 0..30 {
        let ack = wa.send_msg(&room, &format!("k{i}"), &format!("k{i}")).await;
        assert_eq!(ack["seq"], i + 1);
    }
    let got = wb.messages(&room, 30).await;
    let seqs: Vec<i64> = got.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());

    // More rooms, so that some of them live on partitions B's processors own.
    let mut rooms = vec![room.clone()];
    for i in 0..7 {
        rooms.push(alice.create_room(&format!("kafka{i}"), true).await);
    }
    // Kill B (its processors' partitions move to A), keep sending through A.
    b.kill9().await;
    for r in &rooms {
        let start = if *r == room { 30 } else { 0 };
        for i in start..start + 30 {
            wa.send_msg(r, &format!("k{i}"), &format!("k{i}")).await;
        }
    }
    for r in &rooms {
        let want = if *r == room { 60 } else { 30 };
        let hist = eventually("history from Kafka after the kill", || async {
            let all = full_history(&alice, r).await;
            (all.len() == want).then_some(all)
        })
        .await;
        let seqs: Vec<i64> = hist.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=want as i64).collect::<Vec<_>>(),
            "every message once, dense"
        );
    }
    let stats = eventually("analytics from Kafka", || async {
        let (_, s) = alice
            .get(&format!("/api/analytics/get-room-stats?room_id={room}"))
            .await;
        (s["total_messages"] == 60).then_some(s)
    })
    .await;
    assert_eq!(stats["users_amount"], 1);
    // B comes back and resumes Bob from his last seq.
    b.restart().await;
    let mut wb = bob.ws(&b, None).await;
    wb.subscribe(&room, Some(30)).await;
    let rest = wb.messages(&room, 30).await;
    assert_eq!(rest.last().unwrap()["seq"], 60);
}

#[tokio::test]
async fn separate_ingress_and_processor_processes_on_kafka() {
    let Some(brokers) = brokers() else { return };
    let owned = kafka_env(&brokers);
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn_role(&["ingress"], &env).await;
    let b = App::spawn_role_beside(&a, &["ingress"], &env).await;
    let mut history = App::spawn_role_beside(&a, &["processor", "history"], &env).await;
    let _notifications = App::spawn_role_beside(&a, &["processor", "notifications"], &env).await;
    let _analytics = App::spawn_role_beside(&a, &["processor", "analytics"], &env).await;

    let owner = a.user("owner").await;
    let guest = b.user("guest").await;
    let room = owner.create_room("split", false).await;
    // The owner listens on ingress B; the request is made through ingress A.
    let mut wo = owner.ws(&b, None).await;
    wo.subscribe(&room, None).await;
    assert_eq!(
        guest
            .post(
                "/api/rooms/create-join-request",
                json!({"room_id": room, "message": "hi"})
            )
            .await
            .0,
        200
    );
    let n = wo
        .wait_for_within(
            "live notification across processes",
            std::time::Duration::from_secs(30),
            |v| v["event_type"] == "NOTIFICATION",
        )
        .await;
    assert_eq!(n["payload"]["notification_type"], "JOIN_REQUEST_CREATED");
    let (_, reqs) = owner
        .get(&format!("/api/rooms/get-join-requests-by-room/{room}"))
        .await;
    let req = reqs[0]["id"].as_str().unwrap().to_string();
    owner
        .post(
            &format!("/api/rooms/handle-join-request/{req}?accept=true"),
            json!({}),
        )
        .await;

    // A message sent through A reaches the subscriber on B in order, with its seq.
    let mut wg = guest.ws(&a, None).await;
    for i in 0..20 {
        wg.send_msg(&room, &format!("s{i}"), &format!("s{i}")).await;
    }
    let got = wo.messages(&room, 20).await;
    assert_eq!(
        got.iter()
            .map(|f| f["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );

    // The history processor is killed and restarted: nothing lost, nothing doubled.
    history.kill9().await;
    for i in 20..40 {
        wg.send_msg(&room, &format!("s{i}"), &format!("s{i}")).await;
    }
    history.restart().await;
    let hist = eventually("history after the processor restart", || async {
        let h = full_history(&owner, &room).await;
        (h.len() >= 40).then_some(h)
    })
    .await;
    assert_eq!(
        hist.iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>()
    );
    let stats = eventually("analytics", || async {
        let (_, s) = owner
            .get(&format!("/api/analytics/get-room-stats?room_id={room}"))
            .await;
        (s["total_messages"] == 40).then_some(s)
    })
    .await;
    assert_eq!(stats["users_amount"], 1);
}
