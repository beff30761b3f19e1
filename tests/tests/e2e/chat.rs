//! Messaging over the native protocol: order, resume, idempotent sends, edits and deletes.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn two_users_chat_and_both_see_every_message_in_order() {
    let app = App::spawn(&[]).await;
    let pair = app.pair("pair").await;
    let (mut wa, mut wb) = pair.subscribed(&app).await;
    let Pair { alice, room, .. } = pair;
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
        assert_eq!(seqs(&got), (1..=20).collect::<Vec<_>>());
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
    let hist = alice.wait_for_history(&room, 20).await;
    assert_eq!(hist[19]["content"], "b19");
}

#[tokio::test]
async fn sends_written_without_waiting_keep_their_order_in_each_room_and_a_later_frame_waits() {
    pipelined_sends(&App::spawn(&[]).await).await;
}

/// Sends written without waiting for their acks, to two rooms, then a ping: every ack comes
/// before the pong, and in each room the seqs and the history follow the order written.
pub async fn pipelined_sends(app: &App) {
    let pair = app.pair("pipelined").await;
    let (mut wa, _wb) = pair.subscribed(app).await;
    let Pair { alice, room, .. } = pair;
    let other = alice.create_room("pipelined-2", true).await;
    // 18 sends (within the default burst of 20), every third to the other room, none awaited;
    // then a ping, whose pong must come after every ack.
    let target = |i: usize| if i.is_multiple_of(3) { &other } else { &room };
    for i in 0..18 {
        let cid = format!("p{i}");
        wa.send(json!({"type": "send", "room_id": target(i), "content": cid, "client_msg_id": cid, "ref": cid}))
            .await;
    }
    wa.send(json!({"type": "ping", "ref": "after"})).await;
    let mut acks = std::collections::HashMap::new();
    let mut arrived = Vec::new();
    loop {
        let f = wa
            .wait_for("an ack or the pong", |v| {
                v["type"] == "ack" || v["type"] == "error" || v["type"] == "pong"
            })
            .await;
        if f["type"] == "pong" {
            break;
        }
        assert_eq!(f["type"], "ack", "{f}");
        let cid = f["client_msg_id"].as_str().unwrap().to_string();
        arrived.push((f["room_id"].as_str().unwrap().to_string(), cid.clone()));
        acks.insert(cid, f);
    }
    assert_eq!(acks.len(), 18, "every send acknowledged before the pong");
    // In each room the seqs, and the acks, follow the order the frames were written in.
    for (r, n) in [(&room, 12), (&other, 6)] {
        let written: Vec<String> = (0..18)
            .filter(|i| target(*i) == r)
            .map(|i| format!("p{i}"))
            .collect();
        let seqs: Vec<i64> = written
            .iter()
            .map(|c| acks[c]["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "room {r}");
        let acked: Vec<&String> = arrived
            .iter()
            .filter(|(room_id, _)| room_id == r)
            .map(|(_, c)| c)
            .collect();
        assert_eq!(
            acked,
            written.iter().collect::<Vec<_>>(),
            "acks of room {r} in order"
        );
    }
    let hist = alice.wait_for_history(&room, 12).await;
    let texts: Vec<&str> = hist
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let sent: Vec<String> = (0..18)
        .filter(|i: &usize| !i.is_multiple_of(3))
        .map(|i| format!("p{i}"))
        .collect();
    assert_eq!(texts, sent);
}

#[tokio::test]
async fn history_pages_over_the_socket_match_rest_and_see_the_sends_before_them() {
    history_over_the_socket(&App::spawn(&[]).await).await;
}

/// History pages over the socket, as over REST: a page asked for right after sends written
/// without waiting has them (the frame waits for the sends before it); both bounds at once are
/// refused, and so is a non-member.
pub async fn history_over_the_socket(app: &App) {
    let pair = app.pair("ws-history").await;
    let (mut wa, _wb) = pair.subscribed(app).await;
    let Pair { alice, room, .. } = pair;
    for i in 0..5 {
        let cid = format!("h{i}");
        wa.send(json!({"type": "send", "room_id": room, "content": cid, "client_msg_id": cid}))
            .await;
    }
    wa.send(json!({"type": "history", "room_id": room, "limit": 3, "ref": "newest"}))
        .await;
    let page = wa
        .wait_for("the newest page", |v| {
            v["ref"] == "newest" && (v["type"] == "history" || v["type"] == "error")
        })
        .await;
    assert_eq!(page["type"], "history", "{page}");
    assert_eq!(page["room_id"], room.as_str());
    let texts: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["h4", "h3", "h2"],
        "newest first, the sends included"
    );

    wa.send(json!({"type": "history", "room_id": room, "after_seq": 2, "ref": "after"}))
        .await;
    let page = wa
        .wait_for("the page after seq 2", |v| v["ref"] == "after")
        .await;
    assert_eq!(
        page["messages"],
        ok(alice.history(&room, 2, None).await, "get-messages"),
        "the same page as over REST"
    );

    wa.send(
        json!({"type": "history", "room_id": room, "after_seq": 1, "before_seq": 4, "ref": "both"}),
    )
    .await;
    let refused = wa.wait_for("both bounds", |v| v["ref"] == "both").await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("invalid")),
        "{refused}"
    );

    let stranger = app.user("ws-history-stranger").await;
    let mut ws = stranger.ws(app, None).await;
    ws.send(json!({"type": "history", "room_id": room, "ref": "stranger"}))
        .await;
    let refused = ws
        .wait_for("a non-member", |v| v["ref"] == "stranger")
        .await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden")),
        "{refused}"
    );
}

#[tokio::test]
async fn messages_sent_just_before_the_client_closes_are_stored() {
    sent_just_before_close(&App::spawn(&[]).await).await;
}

/// A client that writes its sends and closes at once, without waiting for the acks: every
/// message is stored (the sends read before the close are completed).
pub async fn sent_just_before_close(app: &App) {
    let Pair { alice, room, .. } = app.pair("close-after-send").await;
    let other = alice.create_room("close-after-send-2", true).await;
    let mut w = alice.ws(app, None).await;
    // Two rooms (sends that run side by side) and a second send to the first (behind the first).
    for (i, r) in [&room, &other, &room].into_iter().enumerate() {
        w.send(json!({"type": "send", "room_id": r, "content": format!("bye{i}"), "client_msg_id": format!("bye{i}")}))
            .await;
    }
    w.ws.close(None).await.expect("close");
    let texts = |h: Vec<serde_json::Value>| -> Vec<String> {
        h.iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        texts(alice.wait_for_history(&room, 2).await),
        ["bye0", "bye2"]
    );
    assert_eq!(texts(alice.wait_for_history(&other, 1).await), ["bye1"]);
}

#[tokio::test]
async fn a_client_resumes_with_since_seq_and_gets_exactly_the_missed_messages() {
    let app = App::spawn(&[]).await;
    let Pair { alice, bob, room } = app.pair("resume").await;
    let mut wa = alice.subscribed_ws(&app, &room).await;
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
    assert_eq!(seqs(&got), (2..=101).collect::<Vec<_>>());
    let texts: Vec<String> = got
        .iter()
        .map(|f| f["payload"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, (0..100).map(|i| format!("m{i}")).collect::<Vec<_>>());
    wb.wait_type("resumed").await;
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
    let (s, rest) = alice.send_rest(&room, "once", Some("same-id")).await;
    assert_eq!(s, 200);
    for a in [&a2, &a3] {
        assert_eq!(a["duplicate"], true);
        assert_eq!(a["message_id"], a1["message_id"]);
        assert_eq!(a["seq"], a1["seq"]);
    }
    assert_eq!(rest["id"], a1["message_id"]);
    let hist = alice.wait_for_history(&room, 1).await;
    assert_eq!(hist[0]["seq"], 1);
    // Still exactly one after the pipeline settled.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(alice.recent_messages_ok(&room).await.len(), 1);
}

#[tokio::test]
async fn edits_and_deletes_reach_history_and_live_subscribers() {
    let app = App::spawn(&[]).await;
    let Pair {
        alice: owner,
        bob,
        room,
    } = app.pair("edits").await;
    let mut wo = owner.subscribed_ws(&app, &room).await;
    let mut wb = bob.ws(&app, None).await;
    let m = wb.send_msg(&room, "tpyo", "e1").await;
    let mid = m["message_id"].as_str().unwrap().to_string();
    wo.messages(&room, 1).await;
    // Wait until history has it, then edit.
    bob.wait_for_recent_messages(&room, 1).await;
    let (s, edited) = bob.edit_message(&mid, "typo").await;
    assert_eq!(s, 200, "{edited}");
    assert_eq!(edited["edited"], true);
    let ev = wo.wait_event("MESSAGE_EDITED").await;
    assert_eq!(ev["payload"]["message"], "typo");
    // Others may not edit; the room owner may delete anyone's message.
    assert_eq!(owner.edit_message(&mid, "x").await.0, 403);
    assert_eq!(owner.delete_message(&mid).await.0, 200);
    // The frame is built from the delete's log record: neither carries the deleted text.
    let ev = wo.wait_event("MESSAGE_DELETED").await;
    assert_eq!(ev["payload"]["message_id"], mid.as_str());
    assert_eq!(ev["payload"]["message"], "");
    let hist = owner
        .history_until("tombstone", &room, |h| {
            h.first().is_some_and(|m| m["deleted"] == true)
        })
        .await;
    assert_eq!(hist[0]["content"], "");
    assert_eq!(owner.recent_messages_ok(&room).await.len(), 0);
}

#[tokio::test]
async fn typing_reaches_others_but_not_the_typist() {
    let app = App::spawn(&[]).await;
    let pair = app.pair("typing").await;
    let (mut wa, mut wb) = pair.subscribed(&app).await;
    let Pair { alice, room, .. } = pair;
    wa.send(json!({"type": "typing", "room_id": room, "is_typing": true}))
        .await;
    let t = wb.wait_event("USER_TYPING").await;
    assert_eq!(t["payload"]["user_id"], alice.id);
    assert_eq!(t["payload"]["is_typing"], "True");
    assert_eq!(t["is_typing"], true);
    // Alice gets no echo: the next frame she sees is her own ping reply.
    assert_eq!(wa.ping_or("USER_TYPING").await["type"], "pong");
}

#[tokio::test]
async fn read_markers_drive_unread_counts() {
    let app = App::spawn(&[]).await;
    let Pair { alice, bob, room } = app.pair("unread").await;
    let mut wa = alice.ws(&app, None).await;
    for i in 0..5 {
        wa.send_msg(&room, &format!("n{i}"), &format!("u{i}")).await;
    }
    let mine = alice.my_rooms_ok().await;
    assert_eq!(mine[0]["unread_count"], 0, "your own messages are read");
    let rooms = bob.my_rooms_ok().await;
    assert_eq!(rooms[0]["unread_count"], 5);
    let mut wb = bob.ws(&app, None).await;
    wb.send(json!({"type": "read", "room_id": room, "seq": 3, "ref": "r"}))
        .await;
    let ack = wb.wait_type("read_ack").await;
    assert_eq!(ack["unread_count"], 2);
    // Markers never move backwards.
    let (_, r) = bob.read_marker(&room, 1).await;
    assert_eq!(r["last_read_seq"], 3);
    let rooms = bob.my_rooms_ok().await;
    assert_eq!(rooms[0]["unread_count"], 2);
    // The room's own page says the same to a member, and nothing of it to a non-member.
    let (_, one) = bob.room(&room).await;
    assert_eq!(
        (one["last_read_seq"].clone(), one["unread_count"].clone()),
        (json!(3), json!(2))
    );
    let carol = app.user("carol").await;
    let (_, theirs) = carol.room(&room).await;
    assert!(theirs.get("unread_count").is_none() && theirs.get("last_read_seq").is_none());
}

#[tokio::test]
async fn deleted_messages_are_not_counted_unread() {
    let app = App::spawn(&[]).await;
    let Pair { alice, bob, room } = app.pair("unread-deleted").await;
    let mut wa = alice.ws(&app, None).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let ack = wa.send_msg(&room, &format!("d{i}"), &format!("d{i}")).await;
        ids.push(ack["message_id"].as_str().expect("message_id").to_string());
    }
    // Seqs 2 and 5 deleted: bob has 3 unread, in his room list and on the room's page.
    alice.delete_message_ok(&ids[1]).await;
    alice.delete_message_ok(&ids[4]).await;
    assert_eq!(bob.my_rooms_ok().await[0]["unread_count"], 3);
    assert_eq!(bob.room(&room).await.1["unread_count"], 3);
    // Read up to seq 3: seq 4 is left (5 is deleted).
    let (_, r) = bob.read_marker(&room, 3).await;
    assert_eq!(
        (r["last_read_seq"].clone(), r["unread_count"].clone()),
        (json!(3), json!(1))
    );
    let mut wb = bob.ws(&app, None).await;
    wb.send(json!({"type": "read", "room_id": room, "seq": 4, "ref": "r"}))
        .await;
    assert_eq!(wb.wait_type("read_ack").await["unread_count"], 0);
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
    let Pair {
        alice,
        bob: slow,
        room,
    } = app.pair("firehose").await;
    let mut stuck = slow.subscribed_ws(&app, &room).await;
    let mut healthy = alice.subscribed_ws(&app, &room).await;
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
    // The stuck socket was cut off: reading it now ends before all the messages arrive.
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
    assert_eq!(seqs(&rest), ((seen + 1)..=TOTAL as i64).collect::<Vec<_>>());
}
