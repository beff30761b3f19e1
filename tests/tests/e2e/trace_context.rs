//! W3C Trace Context: a `traceparent` a client sends with a request or a send frame rides on the
//! topic records of the changes it makes (here: the embedded log's own records).

use serde_json::json;

use crate::harness::*;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The headers (JSON text, or None) of the room-events records whose payload contains `cid`
/// (a message's `client_msg_id`: its text is sealed).
fn headers_of(app: &App, cid: &str) -> Vec<Option<String>> {
    let db = rusqlite::Connection::open_with_flags(
        app.data.path().join("livechat.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = db
        .prepare("SELECT headers FROM records WHERE topic = 'chat.room-events.v1' AND instr(payload, CAST(?1 AS BLOB)) > 0")
        .unwrap();
    st.query_map([cid], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_clients_traceparent_rides_on_the_records_of_its_changes() {
    let app = App::spawn(&[]).await;
    let alice = app.user("tracer").await;
    let room = alice.create_room("traced", true).await;

    // REST, with a traceparent header.
    let (status, _) = alice
        .call_with(
            "POST",
            &format!("/api/messages/create-message/{room}"),
            Some(json!({"content": "over rest", "client_msg_id": "trace-rest"})),
            &[("traceparent", TRACE)],
        )
        .await;
    assert_eq!(status, 200);
    // A WebSocket send frame with its own.
    let mut ws = alice.subscribed_ws(&app, &room).await;
    ws.send(json!({"type": "send", "room_id": room, "content": "over the socket", "client_msg_id": "trace-socket", "ref": "t1", "traceparent": OTHER})).await;
    assert_eq!(ws.wait_type("ack").await["ref"], "t1");
    // Without one, and with a malformed one (dropped, as the specification asks).
    ws.send_msg(&room, "untraced", "trace-none").await;
    ws.send(json!({"type": "send", "room_id": room, "content": "badly traced", "client_msg_id": "trace-bad", "ref": "t3", "traceparent": "00-xyz"})).await;
    assert_eq!(ws.wait_type("ack").await["ref"], "t3");

    let carried = |cid: &str| -> Vec<Option<String>> {
        headers_of(&app, cid)
            .into_iter()
            .map(|h| {
                h.map(|h| {
                    let pairs: Vec<(String, String)> = serde_json::from_str(&h).unwrap();
                    pairs
                        .into_iter()
                        .find(|(k, _)| k == "traceparent")
                        .map(|(_, v)| v)
                        .unwrap_or_default()
                })
            })
            .collect()
    };
    assert_eq!(carried("trace-rest"), vec![Some(TRACE.to_string())]);
    assert_eq!(carried("trace-socket"), vec![Some(OTHER.to_string())]);
    assert_eq!(carried("trace-none"), vec![None]);
    assert_eq!(carried("trace-bad"), vec![None]);
}
