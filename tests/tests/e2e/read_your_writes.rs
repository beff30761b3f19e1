//! Read-your-writes: once a send is acknowledged, everything the client does next sees it. Each
//! follow-up below is issued the moment the ack arrives, with no wait of any kind.

use crate::harness::*;

/// Sends issued per kind of follow-up.
const PAIRS: usize = 1000;

#[tokio::test]
async fn every_follow_up_sees_an_acknowledged_send_at_once() {
    let app = App::spawn(&[]).await;
    read_your_writes(&app, &app).await;
}

/// Sends through a socket on `send_to`; edits, deletes and history reads go over REST to
/// `read_from` (the same process, or another ingress of the same deployment). Counts every
/// follow-up that did not see its send, and fails if any did not.
pub async fn read_your_writes(send_to: &App, read_from: &App) {
    let alice = send_to.user("ryw").await;
    let room = alice.create_room("ryw", true).await;
    let rest = alice.via(read_from);
    let mut ws = alice.ws(send_to, None).await;
    let mut failures: Vec<String> = Vec::new();

    for i in 0..PAIRS {
        let ack = ws
            .send_msg(&room, &format!("edit me {i}"), &format!("e{i}"))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let id = ack["message_id"].as_str().unwrap();
        let (status, body) = rest.edit_message(id, &format!("edited {i}")).await;
        if status != 200 {
            failures.push(format!("edit {i}: {status} {body}"));
        }
    }
    for i in 0..PAIRS {
        let ack = ws
            .send_msg(&room, &format!("delete me {i}"), &format!("d{i}"))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let id = ack["message_id"].as_str().unwrap();
        let (status, body) = rest.delete_message(id).await;
        if status != 200 {
            failures.push(format!("delete {i}: {status} {body}"));
        }
    }
    for i in 0..PAIRS {
        let content = format!("read me {i}");
        let ack = ws.send_msg(&room, &content, &format!("r{i}")).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let seq = ack["seq"].as_i64().unwrap();
        // By seq (the native route) and the newest page (the original's route).
        let (status, page) = rest.history(&room, seq - 1, Some(1)).await;
        let by_seq = page.as_array().and_then(|p| p.first()).cloned();
        if status != 200 || by_seq.as_ref().map(|m| &m["content"]) != Some(&content.clone().into())
        {
            failures.push(format!("history by seq {seq}: {status} {page}"));
        }
        let (status, recent) = rest.recent_messages(&room).await;
        let newest = recent.as_array().and_then(|p| p.first()).cloned();
        if status != 200 || newest.as_ref().map(|m| &m["seq"]) != Some(&seq.into()) {
            failures.push(format!("recent messages after seq {seq}: {status}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} follow-ups missed the acknowledged send; first: {:?}",
        failures.len(),
        4 * PAIRS,
        failures.iter().take(5).collect::<Vec<_>>()
    );
    // And what was read back is what history holds once everything settled.
    let history = rest.full_history(&room).await;
    assert_eq!(history.len(), 3 * PAIRS);
    assert_eq!(history[0]["content"], "edited 0");
    assert_eq!(history[PAIRS]["deleted"], true);
}
