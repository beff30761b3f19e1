//! A client that misuses the protocol costs the server no more than one that does not.

use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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

/// A figure of the process's memory from `/proc/<pid>/status`, in MiB: `VmHWM` (peak resident)
/// or `VmRSS` (resident now).
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
}

#[tokio::test]
async fn concurrent_registrations_hash_a_few_at_a_time() {
    let app = App::spawn(&[]).await;
    let before = memory_mib(app.pid(), "VmRSS");
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
    // Measured above what the process held before (~50 MiB for a test build): two hashes at a
    // time and the requests waiting took 59-73 MiB more; unbounded, 60 hashes take ~1,100.
    let peak = memory_mib(app.pid(), "VmHWM");
    assert!(
        peak.saturating_sub(before) < 128,
        "peak RSS {peak} MiB, {before} MiB before the registrations"
    );
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

/// A client frame, built by hand: `first` is the FIN/RSV/opcode byte; masked unless `masked`
/// is false (short payloads only).
fn raw_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

#[tokio::test]
async fn protocol_errors_close_with_their_codes() {
    let app = App::spawn(&[]).await;
    let u = app.user("proto").await;
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "invalid UTF-8 text",
            raw_frame(0x81, &[0xff, 0xfe, 0xfd], true),
            1007,
        ),
        ("reserved opcode", raw_frame(0x83, b"x", true), 1002),
        (
            "RSV1 without an extension",
            raw_frame(0xC1, b"{}", true),
            1002,
        ),
        ("unmasked frame", raw_frame(0x81, b"{}", false), 1002),
        ("stray continuation", raw_frame(0x80, b"x", true), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut ws = u.ws(&app, None).await;
        ws.send_raw(&bytes).await;
        assert_eq!(ws.closed_with().await, Some(code), "{what}");
    }
}

/// A socket that stops reading is closed (4008) as soon as its queue overflows, not when a
/// write to it times out (10 s).
#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_promptly() {
    let app = App::spawn(&[]).await;
    let Pair { alice, bob, room } = app.pair("slow").await;
    // Bob's socket is never read again: the kernel's buffers fill (loopback takes ~10 MB), then
    // the connection's write blocks, and then his queue (512 frames) overflows.
    let _stalled = bob.subscribed_ws(&app, &room).await;
    let texts: Vec<String> = (0..6000)
        .map(|i| format!("{i} {}", "x".repeat(3000)))
        .collect();
    for chunk in texts.chunks(100) {
        let sends = chunk.iter().map(|t| alice.send_rest(&room, t, None));
        for (status, body) in futures::future::join_all(sends).await {
            assert_eq!(status, 200, "{body}");
        }
    }
    let flooded = tokio::time::Instant::now();
    loop {
        let m = app.metrics().await.unwrap_or_default();
        if m.lines()
            .any(|l| l.starts_with(r#"livechat_websocket_closes_total{code="4008"}"#))
        {
            break;
        }
        assert!(
            flooded.elapsed() < Duration::from_secs(5),
            "the stalled socket is still open 5 s after the flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client that goes silent (no frames, no pongs) is closed with 4000 and shown offline within
/// the ping interval plus the idle timeout (here 1 + 2 s; 10 + 20 s by default).
#[tokio::test]
async fn a_silent_client_goes_offline_within_ping_and_idle_time() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__PING_INTERVAL_SECS", "1"),
        ("LIVECHAT_LIMITS__IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let Pair { alice, bob, room } = app.pair("silent").await;
    let mut wa = alice.subscribed_ws(&app, &room).await;
    let mut silent = bob.subscribed_ws(&app, &room).await;
    let went_silent = tokio::time::Instant::now();
    let off = wa.wait_event("ROOM_USER_OFFLINE").await;
    assert_eq!(off["payload"]["user_id"], bob.id.as_str(), "{off}");
    assert!(
        went_silent.elapsed() < Duration::from_secs(5),
        "offline after {:?}",
        went_silent.elapsed()
    );
    // The server closed it with 4000. (The client reads only now: the pong it owes for a
    // buffered ping may meet the reset of the closed connection before the close frame is read,
    // so the code is checked on the server's side.)
    let code = silent.closed_with().await;
    assert!(matches!(code, Some(4000) | None), "closed with {code:?}");
    let m = app.metrics().await.unwrap_or_default();
    assert!(
        m.lines()
            .any(|l| l.starts_with(r#"livechat_websocket_closes_total{code="4000"}"#)),
        "no close with 4000 counted:\n{m}"
    );
}

/// Sends are limited per user, whatever carries them: three sockets and REST share one budget.
#[tokio::test]
async fn sends_are_limited_per_user_across_sockets_and_rest() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__SEND_RATE_PER_SEC", "1"),
        ("LIVECHAT_LIMITS__SEND_BURST", "10"),
    ])
    .await;
    let u = app.user("budget").await;
    let room = u.create_room("budget", true).await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(u.ws(&app, None).await);
    }
    let mut accepted = 0;
    for (s, ws) in sockets.iter_mut().enumerate() {
        for i in 0..10 {
            let r = format!("{s}-{i}");
            ws.send(json!({"type": "send", "room_id": room, "content": "hi", "ref": r}))
                .await;
            let f = ws.wait_for("reply", |v| v["ref"] == r.as_str()).await;
            match f["type"].as_str() {
                Some("ack") => accepted += 1,
                _ => assert_eq!(f["code"], "rate_limited", "{f}"),
            }
        }
    }
    let mut refused_rest = 0;
    for _ in 0..10 {
        let r = app
            .http
            .post(app.url(&format!("/api/messages/create-message/{room}")))
            .header("cookie", &u.cookie)
            .json(&json!({"content": "rest"}))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => accepted += 1,
            429 => {
                assert!(r.headers().get("retry-after").is_some());
                refused_rest += 1;
            }
            other => panic!("status {other}"),
        }
    }
    // The burst of 10, and at most a few more refilled at 1 a second while this ran.
    assert!((10..=14).contains(&accepted), "{accepted} accepted");
    assert!(refused_rest > 0);
}

/// A client sending steadily faster than its limit gets some sends through, and is still closed
/// (1008) once its refusals pile up.
#[tokio::test]
async fn a_client_that_keeps_exceeding_its_rate_is_closed() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__SEND_RATE_PER_SEC", "10"),
        ("LIVECHAT_LIMITS__SEND_BURST", "5"),
        ("LIVECHAT_LIMITS__MAX_RATE_VIOLATIONS", "20"),
    ])
    .await;
    let u = app.user("flooder").await;
    let room = u.create_room("flood", true).await;
    let mut ws = u.ws(&app, None).await;
    // 50 a second for up to 5 s: 10 a second get through, 40 a second are refused.
    for i in 0..250 {
        if ws
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                json!({"type": "send", "room_id": room, "content": "x", "ref": i})
                    .to_string()
                    .into(),
            ))
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ws.closed_with().await, Some(1008));
}

/// Sockets per user are capped; the next upgrade is refused with 429 before it happens.
#[tokio::test]
async fn sockets_per_user_are_capped() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__MAX_SOCKETS_PER_USER", "3")]).await;
    let u = app.user("tabs").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut ws = u.ws(&app, None).await;
        // Answered once its connection runs, so the server counts it (the handshake alone
        // returns before the server has registered the socket).
        assert_eq!(ws.ping_or("none").await["type"], "pong");
        open.push(ws);
    }
    let mut req = app.ws_url("").into_client_request().unwrap();
    req.headers_mut()
        .insert("cookie", u.cookie.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429)
        }
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    // Closing one makes room for another.
    let mut first = open.remove(0);
    first.ws.close(None).await.unwrap();
    drop(first);
    eventually("a free socket", || async {
        let mut req = app.ws_url("").into_client_request().unwrap();
        req.headers_mut()
            .insert("cookie", u.cookie.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.ok().map(|_| ())
    })
    .await;
}
