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

/// The process's peak resident memory, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .expect("VmHWM in /proc/<pid>/status")
}

#[tokio::test]
async fn concurrent_registrations_hash_a_few_at_a_time() {
    let app = App::spawn(&[]).await;
    // Each argon2 hash takes ~19 MiB; 60 at once, unbounded, would take over a gigabyte.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let http = app.http.clone();
            let url = app.url("/api/users/register-user");
            tokio::spawn(async move {
                let name = format!(
                    "many_{i}_{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..6]
                );
                http.post(url)
                    .json(&json!({"username": name, "password": "pw-secret-1"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let peak = peak_rss_mib(app.pid());
    assert!(peak < 120, "peak RSS {peak} MiB");
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE", "3")]).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = app
            .register(
                &format!(
                    "reg_{i}_{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                ),
                "pw-secret-1",
            )
            .await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}
