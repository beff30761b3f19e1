//! A user's own data as a file (the right of access): everything they wrote in their rooms,
//! nobody else's words, their rooms and notifications — in both modes.

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn a_user_exports_their_own_data() {
    let app = App::spawn(&[]).await;
    export_holds_what_the_user_wrote(&app, &app).await;
}

/// Alice writes in two rooms on `send_to` (one message deleted), Bob writes beside her and
/// mentions her on `read_from`; Alice's export has her messages, tombstone included, none of
/// Bob's, both rooms with her role, and Bob's mention.
pub async fn export_holds_what_the_user_wrote(send_to: &App, read_from: &App) {
    let alice = send_to.user("alice").await;
    let bob = read_from.user("bob").await;
    let (a, b) = (
        alice.create_room("export-a", true).await,
        alice.create_room("export-b", false).await,
    );
    assert_eq!(bob.join(&a).await.0, 200);
    let send = |who: &User, room: &str, text: &str| {
        let path = format!("/api/messages/create-message/{room}");
        let (who, text) = (who.via(send_to), text.to_string());
        async move {
            ok(
                who.post(&path, json!({ "content": text })).await,
                "create-message",
            )
        }
    };
    let mut mine = Vec::new();
    for text in ["first in a", "second in a", "a typo"] {
        mine.push(send(&alice, &a, text).await);
    }
    send(&bob, &a, &format!("hello @{}", alice.name)).await;
    send(&bob, &a, "bob's own words").await;
    mine.push(send(&alice, &b, "alone in b").await);
    alice
        .delete_message_ok(mine[2]["id"].as_str().unwrap())
        .await;

    // The mention reaches Alice's notifications through the log.
    eventually("bob's mention in alice's notifications", || async {
        let n = alice.notifications_ok().await;
        n.iter().any(|n| n["type"] == "MENTION").then_some(())
    })
    .await;
    let resp = alice.via(read_from).export_response().await;
    assert_eq!(resp.status(), 200);
    let disposition = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"livechat-")
            && disposition.ends_with(".json\""),
        "{disposition}"
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = serde_json::from_str(&resp.text().await.unwrap()).expect("a whole JSON file");
    assert_eq!(doc["format"], "livechat-export");
    assert_eq!(doc["user"]["username"], alice.name.as_str(), "{doc}");
    assert!(
        doc["user"].get("password_hash").is_none(),
        "no secret in the export"
    );
    let mut rooms: Vec<(String, String)> = doc["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["room"]["id"].as_str().unwrap().to_string(),
                r["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rooms.sort();
    let mut want = vec![
        (a.clone(), "OWNER".to_string()),
        (b.clone(), "OWNER".to_string()),
    ];
    want.sort();
    assert_eq!(rooms, want);
    let messages = doc["messages"].as_array().unwrap();
    let got: Vec<(&str, bool)> = messages
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["deleted"].as_bool().unwrap()))
        .collect();
    let mut expected: Vec<(&str, bool)> = mine
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["id"] == mine[2]["id"]))
        .collect();
    // Room by room, oldest first: the export's room order is the directory's.
    let mut got_sorted = got.clone();
    got_sorted.sort();
    expected.sort();
    assert_eq!(
        got_sorted, expected,
        "her messages, the deleted one as a tombstone"
    );
    assert!(
        messages.iter().all(|m| m["user_id"] == alice.id.as_str()),
        "nobody else's messages"
    );
    assert!(doc["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["type"] == "MENTION"));

    // Only with a session.
    let no_session = bob.with_cookie("");
    assert_eq!(no_session.get("/api/users/export-my-data").await.0, 401);
}
