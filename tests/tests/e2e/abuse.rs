//! A client that misuses the protocol costs the server no more than one that does not.

use futures::SinkExt;
use serde_json::json;

use crate::harness::*;

/// The connections recorded in the log (`livechat replay --dry-run` counts records by type).
fn connections_recorded(app: &App) -> u64 {
    let out = std::process::Command::new(binary())
        .args(["replay", "--store", "analytics", "--dry-run", "--data-dir"])
        .arg(app.data.path())
        .output()
        .expect("run livechat replay");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("USER_CONNECTED: "))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn subscribing_again_to_a_room_is_not_another_connection() {
    let mut app = App::spawn(&[]).await;
    let u = app.user("resub").await;
    let room = u.create_room("resub", true).await;
    let mut ws = u.subscribed_ws(&app, &room).await;
    for i in 0..150 {
        ws.send(json!({"type": "subscribe", "room_id": room, "ref": i}))
            .await;
    }
    // Every one answered (a resume of the same subscription), none refused by the limit yet.
    for i in 0..150 {
        let f = ws
            .wait_for("subscribed", |v| v["ref"] == i && v["type"] == "subscribed")
            .await;
        assert_eq!(f["room_id"], room.as_str());
    }
    drop(ws);
    assert!(app.terminate().await.success());
    assert_eq!(connections_recorded(&app), 1, "one socket in one room");
}

#[tokio::test]
async fn subscribe_frames_are_rate_limited() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__SUBSCRIBE_RATE_PER_SEC", "1"),
        ("LIVECHAT_LIMITS__SUBSCRIBE_BURST", "5"),
    ])
    .await;
    let u = app.user("subflood").await;
    let room = u.create_room("subflood", true).await;
    let mut ws = u.ws(&app, None).await;
    for i in 0..10 {
        ws.send(json!({"type": "subscribe", "room_id": room, "ref": i}))
            .await;
    }
    let mut answered = 0;
    let mut limited = 0;
    for i in 0..10 {
        let f = ws
            .wait_for("an answer", |v| {
                v["ref"] == i && (v["type"] == "subscribed" || v["type"] == "error")
            })
            .await;
        match f["type"].as_str() {
            Some("subscribed") => answered += 1,
            _ => {
                assert_eq!(f["code"], "rate_limited", "{f}");
                limited += 1;
            }
        }
    }
    assert_eq!((answered, limited), (5, 5), "the burst, then refusals");
}

#[tokio::test]
async fn the_longest_message_fits_a_frame_however_it_is_escaped() {
    let app = App::spawn(&[]).await;
    let u = app.user("escaped").await;
    let room = u.create_room("escaped", true).await;
    let mut ws = u.subscribed_ws(&app, &room).await;
    // 4,000 characters (the default limit), each written as a JSON escape: 24 KB of frame.
    let escaped = "\\u00e9".repeat(4000);
    let frame = format!(
        r#"{{"type":"send","room_id":"{room}","content":"{escaped}","client_msg_id":"e","ref":"e"}}"#
    );
    ws.ws
        .send(tokio_tungstenite::tungstenite::Message::Text(frame.into()))
        .await
        .unwrap();
    let ack = ws
        .wait_for("ack", |v| {
            v["ref"] == "e" && (v["type"] == "ack" || v["type"] == "error")
        })
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let stored = u.wait_for_history(&room, 1).await;
    assert_eq!(stored[0]["content"], "é".repeat(4000));
}
