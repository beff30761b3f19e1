//! Every bad input gets its specific status or close code, and changes nothing.

use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::*;

enum Auth {
    Valid,
    None,
    Garbage,
    Unknown,
}

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<String>,
    auth: Auth,
    status: u16,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<String>,
    auth: Auth,
    status: u16,
) -> Case {
    Case {
        name,
        method,
        path,
        body,
        auth,
        status,
    }
}

/// What must not change when a bad request is refused.
async fn snapshot(owner: &User, room: &str) -> Value {
    json!({
        "rooms": owner.my_rooms().await.1,
        "messages": owner.history(room, 0, None).await.1,
        "members": owner.members(room).await.1,
    })
}

#[tokio::test]
async fn bad_rest_input_gets_a_clear_status_and_changes_nothing() {
    let app = App::spawn(&[]).await;
    let owner = app.user("owner").await;
    let other = app.user("other").await;
    let room = owner.create_room("guarded", false).await;
    let mut ws = owner.ws(&app, None).await;
    ws.send_msg(&room, "keep me", "k").await;
    owner.wait_for_history(&room, 1).await;
    let before = snapshot(&owner, &room).await;
    let missing = uuid::Uuid::new_v4();
    let long = "x".repeat(4001);
    let msg = |c: &str| Some(json!({"content": c}).to_string());
    let cases = vec![
        case(
            "bad JSON",
            "POST",
            format!("/api/messages/create-message/{room}"),
            Some("{not json".into()),
            Auth::Valid,
            422,
        ),
        case(
            "wrong field type",
            "POST",
            "/api/rooms/create-room".into(),
            Some(r#"{"name": 5}"#.into()),
            Auth::Valid,
            422,
        ),
        case(
            "missing field",
            "POST",
            format!("/api/messages/create-message/{room}"),
            Some("{}".into()),
            Auth::Valid,
            422,
        ),
        case(
            "oversize body",
            "POST",
            format!("/api/messages/create-message/{room}"),
            msg(&"y".repeat(70_000)),
            Auth::Valid,
            413,
        ),
        case(
            "over-long message",
            "POST",
            format!("/api/messages/create-message/{room}"),
            msg(&long),
            Auth::Valid,
            422,
        ),
        case(
            "empty message",
            "POST",
            format!("/api/messages/create-message/{room}"),
            msg("   "),
            Auth::Valid,
            422,
        ),
        case(
            "control characters",
            "POST",
            format!("/api/messages/create-message/{room}"),
            msg("a\u{0007}b"),
            Auth::Valid,
            422,
        ),
        case(
            "over-long room name",
            "POST",
            "/api/rooms/create-room".into(),
            Some(json!({"name": "n".repeat(33)}).to_string()),
            Auth::Valid,
            422,
        ),
        case(
            "empty room name",
            "POST",
            "/api/rooms/create-room".into(),
            Some(json!({"name": ""}).to_string()),
            Auth::Valid,
            422,
        ),
        case(
            "over-long description",
            "POST",
            "/api/rooms/create-room".into(),
            Some(json!({"name": "ok", "description": "d".repeat(1001)}).to_string()),
            Auth::Valid,
            422,
        ),
        case(
            "room name of only a text-direction override",
            "POST",
            "/api/rooms/create-room".into(),
            Some(json!({"name": "\u{202E}", "is_public": true}).to_string()),
            Auth::Valid,
            422,
        ),
        case(
            "room name hiding a zero-width space",
            "POST",
            "/api/rooms/create-room".into(),
            Some(json!({"name": "gen\u{200B}eral", "is_public": true}).to_string()),
            Auth::Valid,
            422,
        ),
        case(
            "bad username",
            "POST",
            "/api/users/register-user".into(),
            Some(json!({"username": "a b", "password": PASSWORD}).to_string()),
            Auth::None,
            422,
        ),
        case(
            "short password",
            "POST",
            "/api/users/register-user".into(),
            Some(json!({"username": "newuser", "password": "x"}).to_string()),
            Auth::None,
            422,
        ),
        case(
            "unknown room",
            "POST",
            format!("/api/messages/create-message/{missing}"),
            msg("hi"),
            Auth::Valid,
            404,
        ),
        case(
            "unknown room page",
            "GET",
            format!("/api/rooms/get-room/{missing}"),
            None,
            Auth::Valid,
            404,
        ),
        case(
            "bad UUID in path",
            "GET",
            "/api/rooms/get-room/not-a-uuid".into(),
            None,
            Auth::Valid,
            422,
        ),
        case(
            "bad UUID in body",
            "POST",
            "/api/rooms/create-join-request".into(),
            Some(json!({"room_id": "nope"}).to_string()),
            Auth::Valid,
            422,
        ),
        case(
            "bad UUID in query",
            "GET",
            "/api/analytics/get-room-stats?room_id=nope".into(),
            None,
            Auth::Valid,
            422,
        ),
        case(
            "bad limit",
            "GET",
            "/api/rooms/get-top-rooms?limit=0".into(),
            None,
            Auth::Valid,
            422,
        ),
        case(
            "negative limit",
            "GET",
            "/api/rooms/get-top-rooms?limit=-5".into(),
            None,
            Auth::Valid,
            422,
        ),
        case(
            "bad before",
            "GET",
            format!("/api/messages/get-recent-messages/{room}?before=yesterday"),
            None,
            Auth::Valid,
            422,
        ),
        case(
            "no session",
            "GET",
            "/api/rooms/get-rooms".into(),
            None,
            Auth::None,
            401,
        ),
        case(
            "garbage cookie",
            "GET",
            "/api/rooms/get-rooms".into(),
            None,
            Auth::Garbage,
            401,
        ),
        case(
            "unknown session",
            "POST",
            format!("/api/messages/create-message/{room}"),
            msg("hi"),
            Auth::Unknown,
            401,
        ),
        case(
            "unknown route",
            "GET",
            "/api/no/such/route".into(),
            None,
            Auth::Valid,
            404,
        ),
    ];
    for c in &cases {
        let mut req = app
            .http
            .request(c.method.parse().unwrap(), app.url(&c.path));
        req = match c.auth {
            Auth::Valid => req.header("cookie", &owner.cookie),
            Auth::None => req,
            Auth::Garbage => req.header("cookie", "session_id=%%%garbage"),
            Auth::Unknown => req.header("cookie", format!("session_id={}", uuid::Uuid::new_v4())),
        };
        if let Some(b) = &c.body {
            req = req
                .header("content-type", "application/json")
                .body(b.clone());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, c.status, "{}: {body}", c.name);
        assert!(
            body["detail"].is_string() || body["detail"].is_array(),
            "{}: JSON error body, got {body}",
            c.name
        );
    }
    // Non-member actions on the private room.
    assert_eq!(
        other.join_with_message(&room, &"m".repeat(501)).await.0,
        422
    );
    assert!(owner.join_requests_of_room_ok(&room).await.is_empty());
    assert_eq!(other.send_rest(&room, "intrude", None).await.0, 403);
    assert_eq!(other.recent_messages(&room).await.0, 403);
    assert_eq!(other.delete_room(&room).await.0, 403);
    assert_eq!(other.set_room_public(&room, true).await.0, 403);
    assert_eq!(
        owner.set_room_public(&room, false).await.0,
        400,
        "no change"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        snapshot(&owner, &room).await,
        before,
        "refused requests changed nothing"
    );
}

async fn upgrade_status(app: &App, query: &str, cookie: Option<&str>, origin: Option<&str>) -> u16 {
    let mut req = app.ws_url(query).into_client_request().unwrap();
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", HeaderValue::from_str(c).unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error: {e}"),
    }
}

#[tokio::test]
async fn bad_websocket_input_gets_a_clear_status_error_frame_or_close_code() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__SEND_RATE_PER_SEC", "1"),
        ("LIVECHAT_LIMITS__SEND_BURST", "2"),
        ("LIVECHAT_LIMITS__MAX_RATE_VIOLATIONS", "3"),
    ])
    .await;
    let owner = app.user("owner").await;
    let other = app.user("other").await;
    let room = owner.create_room("ws-guard", false).await;
    let me = format!("http://{}", app.addr);
    let c = Some(owner.cookie.as_str());
    assert_eq!(
        upgrade_status(&app, "", c, Some("https://evil.example")).await,
        403,
        "wrong Origin"
    );
    assert_eq!(
        upgrade_status(&app, "", None, Some(&me)).await,
        401,
        "no session"
    );
    assert_eq!(
        upgrade_status(&app, "", Some("session_id=garbage"), Some(&me)).await,
        401,
        "bad cookie"
    );
    assert_eq!(
        upgrade_status(&app, "?room_id=nope", c, Some(&me)).await,
        422,
        "bad room id"
    );
    assert_eq!(
        upgrade_status(
            &app,
            &format!("?room_id={}", uuid::Uuid::new_v4()),
            c,
            Some(&me)
        )
        .await,
        404,
        "unknown room"
    );
    assert_eq!(
        upgrade_status(
            &app,
            &format!("?room_id={room}"),
            Some(&other.cookie),
            Some(&me)
        )
        .await,
        403,
        "non-member"
    );
    assert_eq!(
        upgrade_status(&app, &format!("?room_id={room}"), c, Some(&me)).await,
        101
    );

    let mut ws = owner.ws(&app, None).await;
    ws.ws.send(Message::Text("{oops".into())).await.unwrap();
    assert_eq!(ws.wait_type("error").await["code"], "bad_json");
    ws.send(json!({"type": "launch_missiles", "ref": 1})).await;
    let e = ws.wait_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_i64()),
        (Some("bad_frame"), Some(1))
    );
    ws.send(json!({"type": "send", "room_id": "nope", "content": "x"}))
        .await;
    assert_eq!(ws.wait_type("error").await["code"], "invalid");
    ws.send(json!({"type": "send", "room_id": room, "content": "x".repeat(4001)}))
        .await;
    assert_eq!(ws.wait_type("error").await["code"], "invalid");
    ws.ws
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(ws.wait_type("error").await["code"], "unsupported");
    let mut ow = other.ws(&app, None).await;
    ow.send(json!({"type": "send", "room_id": room, "content": "intrude"}))
        .await;
    assert_eq!(ow.wait_type("error").await["code"], "forbidden");
    ow.send(json!({"type": "subscribe", "room_id": room})).await;
    assert_eq!(ow.wait_type("error").await["code"], "forbidden");

    // Rate limit (per user): the burst passes, then error frames, then a policy close.
    let mut ws = owner.ws(&app, None).await;
    let mut codes = Vec::new();
    for i in 0..6 {
        ws.send(json!({"type": "send", "room_id": room, "content": format!("r{i}"), "ref": i}))
            .await;
        let f = ws.wait_for("reply", |v| v["ref"] == i).await;
        codes
            .push(f["type"].as_str().unwrap().to_string() + ":" + f["code"].as_str().unwrap_or(""));
        if i >= 4 {
            break;
        }
    }
    assert_eq!(&codes[..2], &["ack:".to_string(), "ack:".to_string()]);
    assert!(
        codes[2..].iter().all(|c| c == "error:rate_limited"),
        "{codes:?}"
    );
    ws.send(json!({"type": "send", "room_id": room, "content": "again"}))
        .await;
    assert_eq!(ws.closed_with().await, Some(1008));

    // An oversize frame closes the socket with 1009.
    let mut big = owner.ws(&app, None).await;
    let _ = big.ws.send(Message::Text("z".repeat(100_000).into())).await;
    assert_eq!(big.closed_with().await, Some(1009));
    // Nothing was stored by the refused sends.
    let (_, hist) = owner.history(&room, 0, None).await;
    let stored = owner.wait_for_history(&room, 2).await;
    assert!(hist.is_array());
    assert_eq!(stored.len(), 2);
}

/// A 422 for a query parameter locates it under `query`, as FastAPI does (the original client
/// shows `loc` to say which field is wrong).
#[tokio::test]
async fn query_parameter_errors_are_located_in_the_query() {
    let app = App::spawn(&[]).await;
    let alice = app.user("loc").await;
    for (path, field) in [
        ("/api/rooms/get-top-rooms?limit=0", "limit"),
        ("/api/rooms/get-search-rooms?text=", "text"),
        ("/api/analytics/get-user-retention?days=0", "days"),
        ("/api/analytics/get-top-active-rooms?limit=5000", "limit"),
    ] {
        let (status, body) = alice.get(path).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["query", field]), "{path}");
    }
}

#[tokio::test]
async fn every_wrong_field_of_a_form_is_named_at_once() {
    let app = App::spawn(&[]).await;
    let resp = app.register("a", "short").await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    let located: Vec<_> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"].clone())
        .collect();
    assert_eq!(
        located,
        vec![json!(["body", "username"]), json!(["body", "password"])],
        "{body}"
    );

    let alice = app.user("forms").await;
    let (status, body) = alice
        .post(
            "/api/rooms/create-room",
            json!({"name": "", "description": "d".repeat(1001)}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<_> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"][1].clone())
        .collect();
    assert_eq!(fields, vec![json!("name"), json!("description")], "{body}");
    let (_, mine) = alice.get("/api/rooms/get-rooms").await;
    assert_eq!(mine, json!([]), "no room created");
}
