//! Durability: SIGKILL with sends in flight loses no acknowledged message; SIGTERM drains.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

const CLIENTS: usize = 10;
const PER_CLIENT: usize = 100;

#[tokio::test]
async fn sigkill_with_1000_sends_in_flight_loses_no_acknowledged_message() {
    let mut app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let room = alice.create_room("crash", true).await;
    let acked: Arc<Mutex<HashMap<String, (i64, String)>>> = Arc::default();

    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut ws = alice.ws(&app, None).await;
        let (room, acked) = (room.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            // Pipeline every send without waiting, then collect acks until the socket dies. The
            // kill may come while a client is still writing: its unwritten sends are simply
            // not sent (they are retried below like every unacknowledged one).
            for i in 0..PER_CLIENT {
                let cid = format!("c{c}-{i}");
                let frame = json!({"type": "send", "room_id": room, "content": format!("body {cid}"), "client_msg_id": cid});
                if ws.ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                    break;
                }
            }
            while let Some(Ok(m)) = ws.ws.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["type"] == "ack" {
                        let cid = v["client_msg_id"].as_str().unwrap().to_string();
                        let seq = v["seq"].as_i64().unwrap();
                        let mid = v["message_id"].as_str().unwrap().to_string();
                        acked.lock().unwrap().insert(cid, (seq, mid));
                    }
                }
            }
        }));
    }
    // Kill once some, but not all, sends are acknowledged.
    eventually("first acks", || async {
        (acked.lock().unwrap().len() >= 150).then_some(())
    })
    .await;
    app.kill9().await;
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() < CLIENTS * PER_CLIENT,
        "the kill should interrupt the sends ({} acked)",
        acked.len()
    );

    app.restart().await;
    // Every acknowledged message is in history exactly once, with its seq; seqs are dense.
    let hist = alice.wait_for_history_at_least(&room, acked.len()).await;
    assert_eq!(
        seqs(&hist),
        (1..=hist.len() as i64).collect::<Vec<_>>(),
        "dense seqs"
    );
    let by_cid: HashMap<String, &Value> = hist
        .iter()
        .map(|m| (m["client_msg_id"].as_str().unwrap().to_string(), m))
        .collect();
    assert_eq!(by_cid.len(), hist.len(), "no message stored twice");
    for (cid, (seq, mid)) in &acked {
        let m = by_cid
            .get(cid)
            .unwrap_or_else(|| panic!("acknowledged {cid} lost"));
        assert_eq!(m["seq"].as_i64().unwrap(), *seq);
        assert_eq!(m["id"].as_str().unwrap(), mid);
    }

    // Clients retry what was not acknowledged, with the same ids: the total is exactly 1000.
    let mut ws = alice.ws(&app, None).await;
    for c in 0..CLIENTS {
        for i in 0..PER_CLIENT {
            let cid = format!("c{c}-{i}");
            if !acked.contains_key(&cid) {
                let ack = ws.send_msg(&room, &format!("body {cid}"), &cid).await;
                assert_eq!(ack["type"], "ack", "{ack}");
            }
        }
    }
    let hist = alice
        .wait_for_history_at_least(&room, CLIENTS * PER_CLIENT)
        .await;
    assert_eq!(hist.len(), CLIENTS * PER_CLIENT);
    let distinct: HashSet<&str> = hist
        .iter()
        .map(|m| m["client_msg_id"].as_str().unwrap())
        .collect();
    assert_eq!(distinct.len(), CLIENTS * PER_CLIENT);
    let total = alice.wait_for_room_stats(&room, 1000).await;
    assert_eq!(
        total["total_messages"], 1000,
        "analytics counts each message once despite the crash"
    );
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_data_survives() {
    let mut app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let room = alice.create_room("term", true).await;
    let mut ws = alice.ws(&app, None).await;
    ws.send_numbered(&room, "t", 0..10).await;
    let status = app.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        ws.closed_with().await,
        Some(1001),
        "sockets are told the server is going away"
    );
    app.restart().await;
    let hist = alice.wait_for_history(&room, 10).await;
    assert_eq!(hist[9]["content"], "t9");
    // The session survived the restart too.
    assert_eq!(alice.me().await.0, 200);
}
