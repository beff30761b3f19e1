//! Messaging over the native protocol: order, resume, idempotent sends, edits and deletes.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn two_users_chat_and_both_see_every_message_in_order() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("pair", true).await;
    assert_eq!(
        bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
            .await
            .0,
        200
    );
    let mut wa = alice.ws(&app, None).await;
    let mut wb = bob.ws(&app, None).await;
    assert_eq!(wa.subscribe(&room, None).await["type"], "subscribed");
    assert_eq!(wb.subscribe(&room, None).await["type"], "subscribed");
    for i in 0..20 {
        let (w, who) = if i % 2 == 0 {
            (&mut wa, "a")
        } else {
            (&mut wb, "b")
        };
        let ack = w
            .send_msg(&room, &format!("{who}{i}"), &format!("c{i}"))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["seq"], i + 1);
    }
    for w in [&mut wa, &mut wb] {
        let got = w.messages(&room, 20).await;
        let seqs: Vec<i64> = got.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        let texts: Vec<&str> = got
            .iter()
            .map(|f| f["payload"]["message"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..20)
            .map(|i| format!("{}{i}", if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        assert_eq!(texts, expected);
    }
    // History agrees with what was delivered live.
    let hist = eventually("history", || async {
        let (_, h) = alice
            .get(&format!(
                "/api/messages/get-messages/{room}?after_seq=0&limit=200"
            ))
            .await;
        (h.as_array()?.len() == 20).then_some(h)
    })
    .await;
    assert_eq!(hist[19]["content"], "b19");
}

#[tokio::test]
async fn a_client_resumes_with_since_seq_and_gets_exactly_the_missed_messages() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("resume", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wa = alice.ws(&app, None).await;
    wa.subscribe(&room, None).await;
    wa.send_msg(&room, "before", "b0").await;
    let mut wb = bob.ws(&app, None).await;
    wb.subscribe(&room, Some(0)).await;
    let first = wb.messages(&room, 1).await;
    let last_seen = first[0]["seq"].as_i64().unwrap();
    drop(wb); // bob disconnects

    for i in 0..100 {
        let ack = wa.send_msg(&room, &format!("m{i}"), &format!("k{i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let mut wb = bob.ws(&app, None).await;
    let sub = wb.subscribe(&room, Some(last_seen)).await;
    assert_eq!(sub["last_seq"], 101);
    let got = wb.messages(&room, 100).await;
    let seqs: Vec<i64> = got.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (2..=101).collect::<Vec<_>>());
    let texts: Vec<String> = got
        .iter()
        .map(|f| f["payload"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, (0..100).map(|i| format!("m{i}")).collect::<Vec<_>>());
    wb.wait_for("resumed", |v| v["type"] == "resumed").await;
    // Nothing more, and live messages continue after the resumed ones without a duplicate.
    wa.send_msg(&room, "live", "live-1").await;
    let next = wb.messages(&room, 1).await;
    assert_eq!(next[0]["seq"], 102);
}

#[tokio::test]
async fn a_retried_client_msg_id_stores_one_message() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let room = alice.create_room("idem", true).await;
    let mut w1 = alice.ws(&app, None).await;
    let a1 = w1.send_msg(&room, "once", "same-id").await;
    assert_eq!(a1["duplicate"], false);
    let a2 = w1.send_msg(&room, "once", "same-id").await;
    // A retry on a new connection, and over REST, returns the same message and seq.
    let mut w2 = alice.ws(&app, None).await;
    let a3 = w2.send_msg(&room, "once", "same-id").await;
    let (s, rest) = alice
        .post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "once", "client_msg_id": "same-id"}),
        )
        .await;
    assert_eq!(s, 200);
    for a in [&a2, &a3] {
        assert_eq!(a["duplicate"], true);
        assert_eq!(a["message_id"], a1["message_id"]);
        assert_eq!(a["seq"], a1["seq"]);
    }
    assert_eq!(rest["id"], a1["message_id"]);
    let hist = eventually("history", || async {
        let (_, h) = alice
            .get(&format!("/api/messages/get-messages/{room}?after_seq=0"))
            .await;
        (h.as_array().map(|a| a.len()) == Some(1)).then_some(h)
    })
    .await;
    assert_eq!(hist[0]["seq"], 1);
    // Still exactly one after the pipeline settled.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, h) = alice
        .get(&format!("/api/messages/get-recent-messages/{room}"))
        .await;
    assert_eq!(h.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn edits_and_deletes_reach_history_and_live_subscribers() {
    let app = App::spawn(&[]).await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let room = owner.create_room("edits", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wo = owner.ws(&app, None).await;
    wo.subscribe(&room, None).await;
    let mut wb = bob.ws(&app, None).await;
    let m = wb.send_msg(&room, "tpyo", "e1").await;
    let mid = m["message_id"].as_str().unwrap().to_string();
    wo.messages(&room, 1).await;
    // Wait until history has it, then edit.
    eventually("message in history", || async {
        (bob.get(&format!("/api/messages/get-recent-messages/{room}"))
            .await
            .1
            .as_array()?
            .len()
            == 1)
            .then_some(())
    })
    .await;
    let (s, edited) = bob
        .call(
            "PUT",
            &format!("/api/messages/update-message/{mid}"),
            Some(json!({"new_content": "typo"})),
        )
        .await;
    assert_eq!(s, 200, "{edited}");
    assert_eq!(edited["edited"], true);
    let ev = wo
        .wait_for("MESSAGE_EDITED", |v| v["event_type"] == "MESSAGE_EDITED")
        .await;
    assert_eq!(ev["payload"]["message"], "typo");
    // Others may not edit; the room owner may delete anyone's message.
    assert_eq!(
        owner
            .call(
                "PUT",
                &format!("/api/messages/update-message/{mid}"),
                Some(json!({"new_content": "x"}))
            )
            .await
            .0,
        403
    );
    assert_eq!(
        owner
            .call(
                "DELETE",
                &format!("/api/messages/delete-message/{mid}"),
                None
            )
            .await
            .0,
        200
    );
    wo.wait_for("MESSAGE_DELETED", |v| v["event_type"] == "MESSAGE_DELETED")
        .await;
    let hist = eventually("tombstone", || async {
        let (_, h) = owner
            .get(&format!("/api/messages/get-messages/{room}?after_seq=0"))
            .await;
        (h[0]["deleted"] == true).then_some(h)
    })
    .await;
    assert_eq!(hist[0]["content"], "");
    assert_eq!(
        owner
            .get(&format!("/api/messages/get-recent-messages/{room}"))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn typing_reaches_others_but_not_the_typist() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("typing", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wa = alice.ws(&app, None).await;
    let mut wb = bob.ws(&app, None).await;
    wa.subscribe(&room, None).await;
    wb.subscribe(&room, None).await;
    wa.send(json!({"type": "typing", "room_id": room, "is_typing": true}))
        .await;
    let t = wb
        .wait_for("USER_TYPING", |v| v["event_type"] == "USER_TYPING")
        .await;
    assert_eq!(t["payload"]["user_id"], alice.id);
    assert_eq!(t["payload"]["is_typing"], "True");
    assert_eq!(t["is_typing"], true);
    // Alice gets no echo: the next frame she sees is her own ping reply.
    wa.send(json!({"type": "ping"})).await;
    let f = wa
        .wait_for("pong", |v| {
            v["type"] == "pong" || v["event_type"] == "USER_TYPING"
        })
        .await;
    assert_eq!(f["type"], "pong");
}

#[tokio::test]
async fn read_markers_drive_unread_counts() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("unread", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wa = alice.ws(&app, None).await;
    for i in 0..5 {
        wa.send_msg(&room, &format!("n{i}"), &format!("u{i}")).await;
    }
    let (_, mine) = alice.get("/api/rooms/get-rooms").await;
    assert_eq!(mine[0]["unread_count"], 0, "your own messages are read");
    let (_, rooms) = bob.get("/api/rooms/get-rooms").await;
    assert_eq!(rooms[0]["unread_count"], 5);
    let mut wb = bob.ws(&app, None).await;
    wb.send(json!({"type": "read", "room_id": room, "seq": 3, "ref": "r"}))
        .await;
    let ack = wb.wait_for("read_ack", |v| v["type"] == "read_ack").await;
    assert_eq!(ack["unread_count"], 2);
    // Markers never move backwards.
    let (_, r) = bob
        .call(
            "PUT",
            &format!("/api/rooms/read-marker/{room}"),
            Some(json!({"seq": 1})),
        )
        .await;
    assert_eq!(r["last_read_seq"], 3);
    let (_, rooms) = bob.get("/api/rooms/get-rooms").await;
    assert_eq!(rooms[0]["unread_count"], 2);
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_without_stalling_others_and_resumes() {
    const TOTAL: usize = 300;
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__OUTBOUND_QUEUE_FRAMES", "64"),
        ("LIVECHAT_LIMITS__MAX_MESSAGE_CHARS", "60000"),
        ("LIVECHAT_LIMITS__MAX_WS_MESSAGE_BYTES", "262144"),
        ("LIVECHAT_LIMITS__MAX_WS_FRAME_BYTES", "262144"),
        ("LIVECHAT_LIMITS__MAX_BODY_BYTES", "262144"),
    ])
    .await;
    let alice = app.user("alice").await;
    let slow = app.user("slow").await;
    let room = alice.create_room("firehose", true).await;
    slow.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut stuck = slow.ws(&app, None).await;
    stuck.subscribe(&room, None).await;
    let mut healthy = alice.ws(&app, None).await;
    healthy.subscribe(&room, None).await;
    // ~18 MB of messages: more than the kernel buffers of a socket nobody reads, plus its queue.
    let big = "x".repeat(59_000);
    let sender = {
        let mut w = alice.ws(&app, None).await;
        let (room, big) = (room.clone(), big.clone());
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let ack = w
                    .send_msg(&room, &format!("{i} {big}"), &format!("s{i}"))
                    .await;
                assert_eq!(ack["type"], "ack");
            }
        })
    };
    // The healthy reader keeps receiving everything while the slow one is stuck.
    let got = healthy.messages(&room, TOTAL).await;
    assert_eq!(got.last().unwrap()["seq"], TOTAL as i64);
    sender.await.unwrap();
    // The stuck socket was cut off: reading it now ends before all 200 messages arrive.
    let mut seen: i64 = 0;
    while let Some(f) = stuck.next_within(std::time::Duration::from_secs(5)).await {
        if f["event_type"] == "MESSAGE_CREATED" {
            seen += 1;
        }
    }
    assert!(
        seen < TOTAL as i64,
        "the slow reader should have been disconnected (saw {seen})"
    );
    // It resumes from its last seq with nothing missing.
    let mut again = slow.ws(&app, None).await;
    again.subscribe(&room, Some(seen)).await;
    let rest = again.messages(&room, TOTAL - seen as usize).await;
    let seqs: Vec<i64> = rest.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, ((seen + 1)..=TOTAL as i64).collect::<Vec<_>>());
}
