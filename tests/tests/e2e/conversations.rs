//! Replies and reactions through the whole pipeline: the REST routes and the socket's frames,
//! live frames to the room, history that shows them the instant they are acknowledged, and
//! every wrong input answered with its error and nothing changed.

use serde_json::{json, Value};

use crate::harness::*;

/// Different emojis a message may carry, lowered so the limit is reached in a few requests.
pub const LIMIT_ENV: (&str, &str) = ("LIVECHAT_LIMITS__MAX_REACTION_EMOJIS", "3");

#[tokio::test]
async fn replies_and_reactions() {
    let app = App::spawn(&[LIMIT_ENV]).await;
    replies_and_reactions_across(&app, &app).await;
}

/// The reactions of a message as `(emoji, count, [user ids])`.
fn reactions(m: &Value) -> Vec<(String, i64, Vec<String>)> {
    m["reactions"]
        .as_array()
        .unwrap_or_else(|| panic!("no reactions in {m}"))
        .iter()
        .map(|r| {
            let users = r["user_ids"].as_array().unwrap();
            (
                r["emoji"].as_str().unwrap().to_string(),
                r["count"].as_i64().unwrap(),
                users
                    .iter()
                    .map(|u| u.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The message with this seq in the room's history, read once (no waiting).
async fn at_seq(user: &User, room: &str, seq: i64) -> Value {
    let page = ok(user.history(room, seq - 1, Some(1)).await, "get-messages");
    page[0].clone()
}

/// Alice sends on `send_to`; Bob reads, replies and reacts on `read_from` (the same process, or
/// another ingress of the same deployment); every read right after a change sees it.
pub async fn replies_and_reactions_across(send_to: &App, read_from: &App) {
    let alice = send_to.user("alice").await;
    let bob = read_from.user("bob").await;
    let carol = read_from.user("carol").await;
    let room = alice.create_room("convo", true).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let mut bob_ws = bob.subscribed_ws(read_from, &room).await;
    let mut alice_ws = alice.ws(send_to, None).await;
    let ack = alice_ws.send_msg(&room, "what's for lunch?", "q1").await;
    let first = ack["message_id"].as_str().unwrap().to_string();
    let first_seq = ack["seq"].as_i64().unwrap();

    // A reply names the seq it quotes; the live frame and history carry it.
    let reply = ok(
        bob.reply_rest(&room, "pizza", first_seq).await,
        "create-message with reply_to_seq",
    );
    assert_eq!(reply["reply_to_seq"], first_seq, "{reply}");
    assert_eq!(reply["reactions"], json!([]));
    let live = bob_ws
        .wait_for("the reply live", |f| {
            f["event_type"] == "MESSAGE_CREATED" && f["message"]["id"] == reply["id"]
        })
        .await;
    assert_eq!(live["message"]["reply_to_seq"], first_seq, "{live}");
    let stored = at_seq(&bob, &room, reply["seq"].as_i64().unwrap()).await;
    assert_eq!(stored["reply_to_seq"], first_seq, "{stored}");
    // Over the socket too.
    bob_ws
        .send(
            json!({"type": "send", "room_id": room, "content": "or sushi",
                     "client_msg_id": "b2", "reply_to_seq": first_seq, "ref": 7}),
        )
        .await;
    let ack = bob_ws.wait_type("ack").await;
    let sushi_seq = ack["seq"].as_i64().unwrap();
    assert_eq!(
        at_seq(&bob, &room, sushi_seq).await["reply_to_seq"],
        first_seq
    );

    // Replies to nothing are refused, and nothing is stored.
    for bad in [0, -1, 999] {
        let (status, body) = bob.reply_rest(&room, "to nothing", bad).await;
        assert_eq!(status, 422, "reply_to_seq {bad}: {body}");
        assert!(body.to_string().contains("reply_to_seq"), "{body}");
    }
    let (status, _) = carol.reply_rest(&room, "not a member", first_seq).await;
    assert_eq!(status, 403);
    let last = bob.full_history(&room).await;
    assert_eq!(
        seqs(&last),
        (1..=sushi_seq).collect::<Vec<_>>(),
        "no refused reply stored"
    );

    // Reactions: idempotent per user and emoji, a shortcode is its emoji, readable at once.
    let (aid, bid) = (alice.id.clone(), bob.id.clone());
    let m = ok(bob.react(&first, "👍", true).await, "add-reaction");
    assert_eq!(reactions(&m), vec![("👍".into(), 1, vec![bid.clone()])]);
    let m = ok(bob.react(&first, "👍", true).await, "add-reaction again");
    assert_eq!(reactions(&m), vec![("👍".into(), 1, vec![bid.clone()])]);
    let m = ok(
        alice.via(read_from).react(&first, ":+1:", true).await,
        "by shortcode",
    );
    assert_eq!(
        reactions(&m),
        vec![("👍".into(), 2, vec![bid.clone(), aid.clone()])]
    );
    let stored = at_seq(&bob, &room, first_seq).await;
    assert_eq!(
        reactions(&stored),
        reactions(&m),
        "history at once: {stored}"
    );
    let recent = ok(bob.recent_messages(&room).await, "get-recent-messages");
    let in_recent = recent
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == first.as_str())
        .unwrap()
        .clone();
    assert_eq!(reactions(&in_recent), reactions(&m));
    let added = bob_ws.wait_event("MESSAGE_REACTION_ADDED").await;
    assert_eq!(added["reaction"]["emoji"], "👍", "{added}");
    assert_eq!(added["reaction"]["message_id"], first.as_str());
    assert_eq!(added["payload"]["seq"], first_seq.to_string());

    // Over the socket: a react frame answered with the reactions as they are now.
    alice_ws
        .send(json!({"type": "react", "message_id": first, "emoji": "🎉", "ref": 9}))
        .await;
    let ack = alice_ws.wait_type("react_ack").await;
    assert_eq!(ack["ref"], 9);
    assert_eq!(ack["reactions"].as_array().unwrap().len(), 2, "{ack}");

    // Wrong input: a clear error, nothing changed.
    for bad in ["not an emoji", "👍👍", "", ":nope:", "a"] {
        let (status, body) = bob.react(&first, bad, true).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert!(body.to_string().contains("emoji"), "{body}");
    }
    let (status, _) = carol.react(&first, "👍", true).await;
    assert_eq!(status, 403, "a non-member");
    let (status, _) = bob
        .react(&uuid::Uuid::new_v4().to_string(), "👍", true)
        .await;
    assert_eq!(status, 404, "an unknown message");
    let (status, _) = bob.react("not-a-uuid", "👍", true).await;
    assert_eq!(status, 422);
    // At most 3 different emojis here (LIMIT_ENV): a third is fine, a fourth refused, while
    // one more user on an emoji already there is not a new one.
    ok(bob.react(&first, "❤️", true).await, "third emoji");
    let (status, body) = bob.react(&first, "🍕", true).await;
    assert_eq!(status, 422, "{body}");
    ok(
        alice.via(read_from).react(&first, "❤", true).await,
        "❤ is ❤️",
    );
    let now = at_seq(&bob, &room, first_seq).await;
    let emojis: Vec<String> = reactions(&now).into_iter().map(|r| r.0).collect();
    assert_eq!(emojis, vec!["👍", "🎉", "❤️"], "{now}");

    // Taking one back; taking back what is not there is not an error.
    let m = ok(bob.react(&first, "👍", false).await, "remove-reaction");
    assert_eq!(reactions(&m)[0], ("👍".into(), 1, vec![aid.clone()]));
    let again = ok(
        bob.react(&first, "👍", false).await,
        "remove-reaction again",
    );
    assert_eq!(reactions(&again), reactions(&m));
    let removed = bob_ws.wait_event("MESSAGE_REACTION_REMOVED").await;
    assert_eq!(removed["reaction"]["user_id"], bid.as_str(), "{removed}");
    assert_eq!(
        reactions(&at_seq(&bob, &room, first_seq).await),
        reactions(&m)
    );

    // A deleted message keeps none, and takes none.
    alice.via(read_from).delete_message_ok(&first).await;
    let gone = at_seq(&bob, &room, first_seq).await;
    assert_eq!(gone["deleted"], true);
    assert_eq!(gone["reactions"], json!([]), "{gone}");
    let (status, _) = bob.react(&first, "👍", true).await;
    assert_eq!(status, 404);
    // A reply to it now is refused too.
    let (status, _) = bob.reply_rest(&room, "late", first_seq).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn direct_conversations() {
    let app = App::spawn(&[]).await;
    direct_conversations_across(&app, &app).await;
}

/// `u` opens (or finds) the direct conversation with `names`.
async fn open(u: &User, names: Vec<&str>) -> Resp {
    u.post("/api/rooms/create-direct", json!({"usernames": names}))
        .await
}

/// Alice opens direct conversations on `one`; Bob and Carol answer on `other`.
pub async fn direct_conversations_across(one: &App, other: &App) {
    let alice = one.user("alice").await;
    let bob = other.user("bob").await;
    let carol = other.user("carol").await;

    // One room per pair, whoever opens it, named for each by the other person.
    let dm = ok(open(&alice, vec![&bob.name]).await, "create-direct");
    assert_eq!(dm["visibility"], "direct", "{dm}");
    assert_eq!(dm["name"], bob.name.as_str());
    assert_eq!(dm["participants_count"], 2);
    let room = dm["id"].as_str().unwrap().to_string();
    let upper = bob.name.to_uppercase();
    let again = ok(open(&alice, vec![&upper]).await, "create-direct again");
    assert_eq!(
        again["id"],
        room.as_str(),
        "the same room, names in any case"
    );
    let theirs = ok(open(&bob, vec![&alice.name]).await, "create-direct by Bob");
    assert_eq!(theirs["id"], room.as_str());
    assert_eq!(theirs["name"], alice.name.as_str());
    let listed = bob.my_rooms_ok().await;
    let mine = listed.iter().find(|r| r["id"] == room.as_str()).unwrap();
    assert_eq!(mine["name"], alice.name.as_str());
    assert_eq!(
        ok(bob.room(&room).await, "get-room")["name"],
        alice.name.as_str()
    );
    // Bob is told he was added (the notification carries the room).
    let note = eventually("Bob's notification of the conversation", || async {
        bob.notifications_ok()
            .await
            .into_iter()
            .find(|n| n["type"] == "ADDED_TO_ROOM" && n["payload"]["room_id"] == room.as_str())
    })
    .await;
    assert_eq!(note["source_id"], alice.id.as_str());

    // They talk; it reads like any room to its members.
    let mut ws = alice.ws(one, None).await;
    let ack = ws.send_msg(&room, "psst", "dm1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let hist = ok(bob.history(&room, 0, None).await, "history");
    assert_eq!(hist[0]["content"], "psst");

    // Nobody else finds, joins or reads it.
    for text in [alice.name.as_str(), bob.name.as_str()] {
        let found = ok(carol.search_rooms(text).await, "search");
        assert!(
            found
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["id"] != room.as_str()),
            "{found}"
        );
    }
    let top = ok(
        carol
            .get("/api/rooms/get-top-rooms?limit=100&only_public=false")
            .await,
        "top",
    );
    assert!(top
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != room.as_str()));
    // To anyone else it does not exist (its id is computable from its members' ids).
    assert_eq!(carol.join(&room).await.0, 404);
    assert_eq!(carol.room(&room).await.0, 404);
    assert_eq!(carol.history(&room, 0, None).await.0, 404);
    assert_eq!(carol.members(&room).await.0, 404);

    // Nothing about it changes but its messages and who is in it.
    assert_eq!(
        alice
            .update_room(&room, json!({"description": "x"}))
            .await
            .0,
        400
    );
    assert_eq!(alice.delete_room(&room).await.0, 400);
    assert_eq!(alice.remove_member(&room, &bob.id).await.0, 400);
    let bob_msg = ok(bob.send_rest(&room, "mine", None).await, "send");
    let (status, _) = alice.delete_message(bob_msg["id"].as_str().unwrap()).await;
    assert_eq!(
        status, 403,
        "the opener does not moderate the other's messages"
    );
    let (status, body) = alice
        .post(
            "/api/rooms/create-room",
            json!({"name": "sneaky", "visibility": "direct"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // Leaving hides it; opening it again brings everyone back, history kept.
    assert_eq!(bob.leave(&room).await.0, 200);
    assert!(bob
        .my_rooms_ok()
        .await
        .iter()
        .all(|r| r["id"] != room.as_str()));
    assert_eq!(
        ok(alice.room(&room).await, "get-room")["participants_count"],
        1
    );
    let back = ok(open(&alice, vec![&bob.name]).await, "reopen");
    assert_eq!(back["participants_count"], 2);
    assert_eq!(
        ok(bob.history(&room, 0, None).await, "history")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Leaving it as its opener does not delete it.
    assert_eq!(alice.leave(&room).await.0, 200);
    assert_eq!(
        ok(bob.room(&room).await, "get-room")["participants_count"],
        1
    );

    // A group conversation is another room, named by the others.
    let group = ok(open(&alice, vec![&carol.name, &bob.name]).await, "group");
    assert_ne!(group["id"], room.as_str());
    let mut others = [bob.name.clone(), carol.name.clone()];
    others.sort();
    assert_eq!(group["name"], others.join(", "));
    assert_eq!(group["participants_count"], 3);

    // Wrong input.
    for (names, status) in [
        (vec![], 422),
        (vec![alice.name.as_str()], 422),
        (vec!["nobody-by-this-name"], 404),
        (vec!["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"], 422),
    ] {
        let (got, body) = open(&alice, names.clone()).await;
        assert_eq!(got, status, "{names:?}: {body}");
    }
}

/// Pins a room holds at once, lowered so the limit is reached in a few requests.
pub const PIN_LIMIT_ENV: (&str, &str) = ("LIVECHAT_LIMITS__MAX_PINNED_PER_ROOM", "2");

#[tokio::test]
async fn pinned_messages() {
    let app = App::spawn(&[PIN_LIMIT_ENV]).await;
    pinned_messages_across(&app, &app).await;
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Alice sends on `send_to`; Bob pins and reads on `read_from`; every read follows at once.
pub async fn pinned_messages_across(send_to: &App, read_from: &App) {
    let alice = send_to.user("alice").await;
    let bob = read_from.user("bob").await;
    let carol = read_from.user("carol").await;
    let room = alice.create_room("pins", true).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let mut bob_ws = bob.subscribed_ws(read_from, &room).await;
    let mut ws = alice.ws(send_to, None).await;
    let mut msgs = Vec::new();
    for i in 1..=3 {
        let ack = ws.send_msg(&room, &format!("m{i}"), &format!("p{i}")).await;
        msgs.push(ack["message_id"].as_str().unwrap().to_string());
    }

    let m = ok(bob.pin(&msgs[0], true).await, "pin-message");
    assert_eq!(m["pinned_by"], bob.id.as_str(), "{m}");
    let at = m["pinned_at"].clone();
    assert!(at.is_string(), "{m}");
    let again = ok(bob.pin(&msgs[0], true).await, "pin again");
    assert_eq!(
        again["pinned_at"], at,
        "pinning a pinned message changes nothing"
    );
    assert_eq!(
        ids(&ok(bob.pinned(&room).await, "get-pinned")),
        vec![msgs[0].clone()]
    );
    let frame = bob_ws.wait_event("MESSAGE_PINNED").await;
    assert_eq!(frame["pin"]["message_id"], msgs[0].as_str(), "{frame}");
    assert_eq!(frame["pin"]["pinned"], true);
    let stored = ok(bob.history(&room, 0, Some(1)).await, "history");
    assert_eq!(
        stored[0]["pinned_by"],
        bob.id.as_str(),
        "history at once: {stored}"
    );

    ok(alice.via(read_from).pin(&msgs[1], true).await, "second pin");
    assert_eq!(
        ids(&ok(bob.pinned(&room).await, "get-pinned")),
        vec![msgs[1].clone(), msgs[0].clone()],
        "the latest pinned first"
    );
    // At most 2 here (PIN_LIMIT_ENV).
    let (status, body) = bob.pin(&msgs[2], true).await;
    assert_eq!(status, 400, "{body}");
    // Unpinning makes room; history shows it unpinned at once.
    let m = ok(bob.pin(&msgs[0], false).await, "unpin-message");
    assert_eq!(m["pinned_by"], Value::Null, "{m}");
    assert_eq!(
        bob_ws.wait_event("MESSAGE_UNPINNED").await["pin"]["pinned"],
        false
    );
    assert_eq!(
        ok(bob.history(&room, 0, Some(1)).await, "history")[0]["pinned_at"],
        Value::Null
    );
    ok(bob.pin(&msgs[2], true).await, "third, after an unpin");
    assert_eq!(
        ids(&ok(bob.pinned(&room).await, "get-pinned")),
        vec![msgs[2].clone(), msgs[1].clone()]
    );
    // Pinned again after an unpin: a later pin wins.
    ok(bob.pin(&msgs[1], false).await, "unpin");
    ok(bob.pin(&msgs[0], true).await, "pin again after an unpin");
    assert_eq!(
        ids(&ok(bob.pinned(&room).await, "get-pinned")),
        vec![msgs[0].clone(), msgs[2].clone()]
    );

    // Not a member, not a message.
    assert_eq!(carol.pinned(&room).await.0, 403);
    assert_eq!(carol.pin(&msgs[0], true).await.0, 403);
    assert_eq!(
        bob.pin(&uuid::Uuid::new_v4().to_string(), true).await.0,
        404
    );
    // A deleted message is no longer pinned.
    alice.via(read_from).delete_message_ok(&msgs[0]).await;
    assert_eq!(
        ids(&ok(bob.pinned(&room).await, "get-pinned")),
        vec![msgs[2].clone()]
    );
}

#[tokio::test]
async fn message_search() {
    let app = App::spawn(&[]).await;
    message_search_across(&app, &app).await;
}

/// The message ids of search results, and each one's matches.
fn found(results: &Value) -> Vec<(String, Value)> {
    results
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {results}"))
        .iter()
        .map(|r| {
            (
                r["message"]["id"].as_str().unwrap().to_string(),
                r["highlights"].clone(),
            )
        })
        .collect()
}

/// Alice sends on `send_to`; Bob searches on `read_from` (the search index follows the log, so
/// each search waits until it has what was sent).
pub async fn message_search_across(send_to: &App, read_from: &App) {
    let alice = send_to.user("alice").await;
    let bob = read_from.user("bob").await;
    let carol = read_from.user("carol").await;
    let room = alice.create_room("search", true).await;
    let other = alice.create_room("elsewhere", true).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let mut ws = alice.ws(send_to, None).await;
    let mut ids = Vec::new();
    for (i, text) in [
        "Pizza tonight at the LiveChat office?",
        "東京で会いましょう",
        "pizza, PIZZA and more pizza",
        "Ünïcode works",
    ]
    .iter()
    .enumerate()
    {
        let ack = ws.send_msg(&room, text, &format!("s{i}")).await;
        ids.push(ack["message_id"].as_str().unwrap().to_string());
    }
    ws.send_msg(&other, "pizza where Bob is not", "s-other")
        .await;

    // Until the room's last message is found: the index takes a room's messages in order, so
    // every one before it is in too.
    let got = eventually("the index to have every message of the room", || async {
        let (status, last) = bob.search("works", &format!("&room_id={room}")).await;
        let last_in = status == 200 && last.as_array().is_some_and(|a| !a.is_empty());
        let (status, body) = bob.search("pizza", "").await;
        (last_in && status == 200 && body.as_array().is_some_and(|a| a.len() == 2)).then_some(body)
    })
    .await;
    let hits = found(&got);
    assert_eq!(
        hits.iter().map(|h| h.0.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[0].clone()],
        "newest first, and only Bob's rooms: {got}"
    );
    assert_eq!(
        hits[0].1,
        json!([[0, 5], [7, 12], [22, 27]]),
        "where it matches"
    );
    let best = ok(bob.search("pizza", "&order=best").await, "best first");
    assert_eq!(found(&best)[0].0, ids[2]);
    let paged = ok(bob.search("pizza", "&limit=1&offset=1").await, "paged");
    assert_eq!(
        found(&paged)
            .iter()
            .map(|h| h.0.clone())
            .collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    for (text, id) in [
        ("会い", &ids[1]),
        ("東京", &ids[1]),
        ("ÜNÏCODE", &ids[3]),
        ("chat office", &ids[0]),
    ] {
        let r = ok(
            bob.search(text, &format!("&room_id={room}")).await,
            "search",
        );
        assert_eq!(
            found(&r).iter().map(|h| h.0.clone()).collect::<Vec<_>>(),
            vec![id.clone()],
            "{text}"
        );
    }
    // Alice sees her other room too (another partition of the log: waited for on its own).
    let alice_there = alice.via(read_from);
    eventually("Alice's other room in the index", || async {
        let mine = ok(alice_there.search("pizza", "").await, "alice");
        (mine.as_array().unwrap().len() == 3).then_some(())
    })
    .await;

    // Edits and deletes are followed.
    alice
        .via(read_from)
        .edit_message_ok(&ids[0], "sushi tonight")
        .await;
    alice.via(read_from).delete_message_ok(&ids[2]).await;
    // What no longer matches is left out at once (results are read from the history); the new
    // text is found once the index has the edit.
    assert_eq!(ok(bob.search("pizza", "").await, "search"), json!([]));
    let sushi = eventually("the edit in the index", || async {
        let body = ok(bob.search("sushi", "").await, "search");
        (!body.as_array().unwrap().is_empty()).then_some(body)
    })
    .await;
    assert_eq!(found(&sushi)[0].0, ids[0]);

    // Wrong input, and other people's rooms.
    assert_eq!(
        carol.search("pizza", &format!("&room_id={room}")).await.0,
        403
    );
    assert_eq!(ok(carol.search("pizza", "").await, "no rooms"), json!([]));
    for bad in ["", "   ", "a b c d e f g h i"] {
        let (status, body) = bob.search(bad, "").await;
        assert_eq!(status, 422, "{bad:?}: {body}");
    }
    assert_eq!(bob.search("pizza", "&order=random").await.0, 422);
    assert_eq!(bob.search("pizza", "&offset=5000").await.0, 422);
    assert_eq!(bob.search("pizza", "&room_id=nope").await.0, 422);
}

#[tokio::test]
async fn threads() {
    let app = App::spawn(&[]).await;
    threads_across(&app, &app).await;
}

/// The seqs of a list of messages.
fn seqs_of(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Alice starts a thread on `send_to`; Bob replies in it and reads it on `read_from`; the root's
/// summary, the thread's pages and the history follow every acknowledged change at once.
pub async fn threads_across(send_to: &App, read_from: &App) {
    let alice = send_to.user("alice").await;
    let bob = read_from.user("bob").await;
    let carol = read_from.user("carol").await;
    let room = alice.create_room("threads", true).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let mut bob_ws = bob.subscribed_ws(read_from, &room).await;
    let mut ws = alice.ws(send_to, None).await;
    let root = ws.send_msg(&room, "shall we ship friday?", "t0").await;
    let root_seq = root["seq"].as_i64().unwrap();

    // A thread reply over the socket; its live frame names the root.
    ws.send(
        json!({"type": "send", "room_id": room, "content": "I think so",
                   "client_msg_id": "t1", "thread_root_seq": root_seq, "ref": "t1"}),
    )
    .await;
    let first = ws.wait_for("ack t1", |f| f["ref"] == "t1").await;
    assert_eq!(first["type"], "ack", "{first}");
    let live = bob_ws
        .wait_for("the thread reply live", |f| {
            f["event_type"] == "MESSAGE_CREATED" && f["message"]["seq"] == first["seq"]
        })
        .await;
    assert_eq!(live["message"]["thread_root_seq"], root_seq, "{live}");

    // Bob replies over REST on the other process, naming the first reply: threads are one
    // level deep, so his reply goes under the same root.
    let second = ok(
        bob.post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "after the tests pass", "thread_root_seq": first["seq"]}),
        )
        .await,
        "create-message with thread_root_seq",
    );
    assert_eq!(second["thread_root_seq"], root_seq, "{second}");
    // The root's author is told of Bob's reply, never of her own.
    let replies = eventually("alice told of bob's thread reply", || async {
        let n: Vec<Value> = alice
            .notifications_ok()
            .await
            .into_iter()
            .filter(|n| n["type"] == "REPLY")
            .collect();
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    let p = &replies[0]["payload"];
    assert_eq!(p["username"], bob.name.as_str(), "{p}");
    assert_eq!(p["seq"], second["seq"].to_string(), "{p}");
    assert_eq!(p["thread_root_seq"], root_seq.to_string(), "{p}");
    assert!(bob
        .notifications_ok()
        .await
        .iter()
        .all(|n| n["type"] != "REPLY"));
    let other = ws.send_msg(&room, "lunch?", "t2").await;

    // Read at once: the thread, the root's summary in history.
    let thread = ok(
        bob.get(&format!("/api/messages/get-thread/{room}/{root_seq}"))
            .await,
        "get-thread",
    );
    assert_eq!(thread["root"]["seq"], root_seq, "{thread}");
    assert_eq!(
        seqs_of(&thread["replies"]),
        vec![
            first["seq"].as_i64().unwrap(),
            second["seq"].as_i64().unwrap()
        ]
    );
    let summary = &thread["root"]["thread"];
    assert_eq!(summary["reply_count"], 2, "{thread}");
    assert_eq!(summary["last_reply_seq"], second["seq"]);
    assert!(summary["last_reply_at"].is_string(), "{summary}");
    let stored = at_seq(&bob, &room, root_seq).await;
    assert_eq!(stored["thread"]["reply_count"], 2, "{stored}");
    let plain = at_seq(&bob, &room, other["seq"].as_i64().unwrap()).await;
    assert_eq!(
        (plain["thread"].clone(), plain["thread_root_seq"].clone()),
        (Value::Null, Value::Null)
    );
    // Each reader's own place in the thread: a reply marks its thread read for its author, so
    // Bob (who wrote the last reply) has read it all and Alice has a reply to read.
    let (s1, s2) = (
        first["seq"].as_i64().unwrap(),
        second["seq"].as_i64().unwrap(),
    );
    assert_eq!(thread["read_seq"], s2, "{thread}");
    let path = format!("/api/messages/get-thread/{room}/{root_seq}");
    assert_eq!(ok(alice.get(&path).await, "get-thread")["read_seq"], s1);
    assert_eq!(
        at_seq(&alice, &room, root_seq).await["thread"]["read_seq"],
        s1
    );
    assert_eq!(stored["thread"]["read_seq"], s2, "{stored}");
    let read_path = |root: i64| format!("/api/messages/thread-read-marker/{room}/{root}");
    let set = ok(
        alice
            .via(read_from)
            .put(&read_path(root_seq), Some(json!({"seq": 1_000_000})))
            .await,
        "thread-read-marker",
    );
    assert_eq!(set["read_seq"], s2, "clamped to the last reply: {set}");
    let set = ok(
        alice
            .put(&read_path(root_seq), Some(json!({"seq": s1})))
            .await,
        "thread-read-marker lower",
    );
    assert_eq!(set["read_seq"], s2, "never moves back: {set}");
    assert_eq!(
        at_seq(&alice, &room, root_seq).await["thread"]["read_seq"],
        s2
    );
    assert_eq!(
        alice
            .put(&read_path(root_seq), Some(json!({"seq": -1})))
            .await
            .0,
        422
    );
    assert_eq!(
        alice.put(&read_path(s2), Some(json!({"seq": s2}))).await.0,
        404,
        "a reply is no root"
    );
    assert_eq!(
        carol
            .put(&read_path(root_seq), Some(json!({"seq": s2})))
            .await
            .0,
        403
    );

    // Paged, oldest first.
    let page = ok(
        bob.get(&format!(
            "/api/messages/get-thread/{room}/{root_seq}?after_seq={}&limit=1",
            first["seq"]
        ))
        .await,
        "get-thread page",
    );
    assert_eq!(
        seqs_of(&page["replies"]),
        vec![second["seq"].as_i64().unwrap()]
    );

    // A deleted reply leaves the thread and its count.
    alice
        .via(read_from)
        .delete_message_ok(first["message_id"].as_str().unwrap())
        .await;
    let thread = ok(
        bob.get(&format!("/api/messages/get-thread/{room}/{root_seq}"))
            .await,
        "get-thread after a delete",
    );
    assert_eq!(
        seqs_of(&thread["replies"]),
        vec![second["seq"].as_i64().unwrap()]
    );
    assert_eq!(thread["root"]["thread"]["reply_count"], 1, "{thread}");

    // Wrong inputs: nothing stored, nothing shown.
    let before = bob.full_history(&room).await;
    for bad in [json!(0), json!(999)] {
        let (status, body) = bob
            .post(
                &format!("/api/messages/create-message/{room}"),
                json!({"content": "into nothing", "thread_root_seq": bad}),
            )
            .await;
        assert_eq!(status, 422, "thread_root_seq {bad}: {body}");
        assert!(body.to_string().contains("thread_root_seq"), "{body}");
    }
    let deleted_root = first["seq"].as_i64().unwrap();
    let (status, body) = bob
        .post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "under a deleted message", "thread_root_seq": deleted_root}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        bob.full_history(&room).await,
        before,
        "no refused reply stored"
    );
    // A reply is no root; a seq without a message is none; not a number is 422.
    let path = |root: &str| format!("/api/messages/get-thread/{room}/{root}");
    assert_eq!(bob.get(&path(&second["seq"].to_string())).await.0, 404);
    assert_eq!(bob.get(&path("999")).await.0, 404);
    assert_eq!(bob.get(&path("x")).await.0, 422);
    // Not a member: neither reads nor replies.
    assert_eq!(carol.get(&path(&root_seq.to_string())).await.0, 403);
    let (status, _) = carol
        .post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "me too", "thread_root_seq": root_seq}),
        )
        .await;
    assert_eq!(status, 403);

    // Who replied follows the thread: Alice's next reply there tells Bob.
    ws.send(
        json!({"type": "send", "room_id": room, "content": "tests are green",
                   "client_msg_id": "t3", "thread_root_seq": root_seq, "ref": "t3"}),
    )
    .await;
    let third = ws.wait_for("ack t3", |f| f["ref"] == "t3").await;
    assert_eq!(third["type"], "ack", "{third}");
    let told = eventually("bob told of a reply in a thread he replied in", || async {
        bob.notifications_ok()
            .await
            .into_iter()
            .find(|n| n["type"] == "REPLY")
    })
    .await;
    assert_eq!(told["payload"]["seq"], third["seq"].to_string(), "{told}");
    assert_eq!(
        told["payload"]["thread_root_seq"],
        root_seq.to_string(),
        "{told}"
    );

    // Following is each member's choice: Bob stops, Carol (who never replied) starts.
    let follow = |root: i64| format!("/api/messages/thread-follow/{room}/{root}");
    let following = |who: &User| {
        let path = format!("/api/messages/get-thread/{room}/{root_seq}");
        let who = who.via(read_from);
        async move { ok(who.get(&path).await, "get-thread")["following"].clone() }
    };
    assert_eq!(following(&alice).await, true, "the root's author follows");
    assert_eq!(following(&bob).await, true, "who replied follows");
    let past_his_reply = format!("/api/messages/get-thread/{room}/{root_seq}?after_seq=100000");
    assert_eq!(
        ok(
            bob.via(read_from).get(&past_his_reply).await,
            "get-thread after"
        )["following"],
        true,
        "who replied follows, on a page without his reply"
    );
    assert_eq!(
        carol
            .put(&follow(root_seq), Some(json!({"follow": true})))
            .await
            .0,
        403,
        "not a member"
    );
    let set = ok(
        bob.put(&follow(root_seq), Some(json!({"follow": false})))
            .await,
        "thread-follow false",
    );
    assert_eq!(set["following"], false, "{set}");
    assert_eq!(following(&bob).await, false);
    assert_eq!(carol.join(&room).await.0, 200);
    assert_eq!(following(&carol).await, false, "a member who never replied");
    let page = ok(
        bob.get(&format!("/api/messages/get-thread/{room}/{root_seq}"))
            .await,
        "get-thread",
    );
    assert_eq!(page["follow_choice"], false, "bob's own choice: {page}");
    ok(
        carol
            .put(&follow(root_seq), Some(json!({"follow": true})))
            .await,
        "thread-follow true",
    );
    assert_eq!(following(&carol).await, true);
    for bad in [json!({}), json!({"follow": "yes"})] {
        assert_eq!(carol.put(&follow(root_seq), Some(bad)).await.0, 422);
    }
    assert_eq!(
        carol
            .put(
                &follow(third["seq"].as_i64().unwrap()),
                Some(json!({"follow": true}))
            )
            .await
            .0,
        404,
        "a reply is no thread"
    );
    ws.send(
        json!({"type": "send", "room_id": room, "content": "shipping now",
                   "client_msg_id": "t4", "thread_root_seq": root_seq, "ref": "t4"}),
    )
    .await;
    let fourth = ws.wait_for("ack t4", |f| f["ref"] == "t4").await;
    let carols = eventually(
        "carol told of a reply in the thread she follows",
        || async {
            carol
                .notifications_ok()
                .await
                .into_iter()
                .find(|n| n["type"] == "REPLY")
        },
    )
    .await;
    assert_eq!(
        carols["payload"]["seq"],
        fourth["seq"].to_string(),
        "{carols}"
    );
    // The same event told Carol: had it told Bob, his notification would be there too.
    let bobs: Vec<Value> = bob
        .notifications_ok()
        .await
        .into_iter()
        .filter(|n| n["type"] == "REPLY")
        .collect();
    assert_eq!(
        bobs.len(),
        1,
        "bob, who unfollowed, is not told again: {bobs:?}"
    );
    // The room's unread count leaves thread replies out: Bob's marker is at his own reply, after
    // which came one message in the timeline and two replies in the thread.
    let unread = eventually("bob's marker at his own reply", || async {
        let mine = bob.my_rooms_ok().await;
        let r = mine.into_iter().find(|r| r["id"] == room.as_str())?;
        (r["last_read_seq"] == second["seq"]).then_some(r["unread_count"].clone())
    })
    .await;
    assert_eq!(unread, 1, "only \"lunch?\" is unread in the room");
}
