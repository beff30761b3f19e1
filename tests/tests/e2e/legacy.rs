//! A client written for the original works unchanged: `?room_id=` sockets, its event envelope,
//! PING/PONG, USER_TYPING, and its REST routes.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn original_client_socket_and_routes_work_unchanged() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__PING_INTERVAL_SECS", "1")]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("legacy", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wa = alice.ws(&app, Some(&room)).await;
    let mut wb = bob.ws(&app, Some(&room)).await;
    // The original server pinged with {"type":"PING"} and expected PONG.
    wa.wait_for("PING", |v| v["type"] == "PING").await;
    wa.send(json!({"type": "PONG"})).await;

    let (s, msg) = bob
        .post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "hi from REST"}),
        )
        .await;
    assert_eq!(s, 200);
    for key in [
        "room_id",
        "user_id",
        "username",
        "content",
        "edited",
        "id",
        "created_at",
    ] {
        assert!(msg.get(key).is_some(), "MessagePublic field {key}");
    }
    let ev = wa
        .wait_for("MESSAGE_CREATED", |v| v["event_type"] == "MESSAGE_CREATED")
        .await;
    for key in ["message", "message_id", "user_id", "username"] {
        assert!(ev["payload"][key].is_string(), "payload field {key}: {ev}");
    }
    assert!(ev["timestamp"].is_string());
    assert_eq!(ev["payload"]["message"], "hi from REST");

    wa.send(json!({"type": "USER_TYPING", "username": alice.name, "is_typing": true}))
        .await;
    let t = wb
        .wait_for("typing", |v| v["event_type"] == "USER_TYPING")
        .await;
    assert_eq!(t["payload"]["is_typing"], "True");
    // A typing frame with someone else's username is refused.
    wa.send(json!({"type": "USER_TYPING", "username": bob.name, "is_typing": true}))
        .await;
    let e = wa.wait_for("error", |v| v["type"] == "error").await;
    assert_eq!(e["code"], "forbidden");

    let page = eventually("history", || async {
        let (_, p) = alice
            .get(&format!(
                "/api/messages/get-recent-messages/{room}?limit=200"
            ))
            .await;
        (p.as_array()?.len() == 1).then_some(p)
    })
    .await;
    assert!(page.is_array());
    let created = page[0]["created_at"].as_str().unwrap().to_string();
    assert!(
        created.ends_with('Z'),
        "timestamps carry their UTC offset (B27): {created}"
    );
    let (_, older) = alice
        .get(&format!(
            "/api/messages/get-recent-messages/{room}?before={created}"
        ))
        .await;
    assert!(older.as_array().unwrap().is_empty());

    // Logout ends the session everywhere it is used.
    let (s, _) = alice.post("/api/users/logout-user", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(wa.closed_with().await, Some(4401));
    assert_eq!(alice.get("/api/users/get-me").await.0, 401);
    assert_eq!(alice.post("/api/users/logout-user", json!({})).await.0, 401);
}

#[tokio::test]
async fn sessions_rotate_and_logins_are_throttled() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__LOGIN_FAILURES_BEFORE_BACKOFF", "3")]).await;
    let u = app.user("carol").await;
    let login = |pw: &'static str| {
        let (http, url, name) = (
            app.http.clone(),
            app.url("/api/users/login-user"),
            u.name.clone(),
        );
        async move {
            http.post(url)
                .json(&json!({"username": name, "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = login("pw-secret").await;
    let second = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        second.contains("HttpOnly") && second.contains("SameSite=Lax"),
        "{second}"
    );
    assert!(
        !second.contains(&u.cookie),
        "a new session id at every login"
    );
    for _ in 0..3 {
        assert_eq!(login("wrong").await.status(), 401);
    }
    let r = login("wrong").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    // Even the right password waits out the backoff.
    assert_eq!(login("pw-secret").await.status(), 429);
}

#[tokio::test]
async fn session_expiry_slides_with_activity_and_reissues_the_cookie() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__SESSION_IDLE_SECS", "4")]).await;
    let u = app.user("slide").await;
    // Keep using the session past its original 4 s lifetime: each use slides it.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let r = app
            .http
            .get(app.url("/api/users/get-me"))
            .header("cookie", &u.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let set = r
            .headers()
            .get("set-cookie")
            .expect("cookie re-issued as the expiry slides")
            .to_str()
            .unwrap();
        assert!(set.contains(&u.cookie) && set.contains("Max-Age="), "{set}");
    }
    // Idle for longer than the timeout: the session is gone.
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    assert_eq!(u.get("/api/users/get-me").await.0, 401);
}

#[tokio::test]
async fn health_openapi_and_swagger_ui_are_served() {
    let app = App::spawn(&[]).await;
    let r = app.http.get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = app
        .http
        .get(app.url("/api/internal/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/rooms/create-join-request"]["post"].is_object());
    let ui = app
        .http
        .get(app.url("/api/internal/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
    let init = app
        .http
        .get(app.url("/api/internal/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/internal/openapi.json"));
}

#[tokio::test]
async fn cors_allows_only_configured_origins_and_large_responses_are_gzipped() {
    let app = App::spawn(&[(
        "LIVECHAT_INGRESS__ALLOWED_ORIGINS",
        "[http://localhost:5173]",
    )])
    .await;
    let pre = |origin: &'static str| {
        let (http, url) = (app.http.clone(), app.url("/api/rooms/get-rooms"));
        async move {
            http.request(reqwest::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .send()
                .await
                .unwrap()
        }
    };
    let ok = pre("http://localhost:5173").await;
    assert_eq!(
        ok.headers().get("access-control-allow-origin").unwrap(),
        "http://localhost:5173"
    );
    assert_eq!(
        ok.headers()
            .get("access-control-allow-credentials")
            .unwrap(),
        "true"
    );
    let evil = pre("https://evil.example").await;
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let doc = app
        .http
        .get(app.url("/api/internal/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        doc.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}

#[tokio::test]
async fn metrics_report_sockets_and_consumer_lag() {
    let app = App::spawn(&[]).await;
    let u = app.user("metrics").await;
    let room = u.create_room("m", true).await;
    let mut ws = u.ws(&app, None).await;
    ws.send_msg(&room, "hello", "m1").await;
    let text = eventually("lag back to zero", || async {
        let t = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let lags: Vec<i64> = t
            .lines()
            .filter(|l| l.starts_with("livechat_consumer_lag{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        (!lags.is_empty() && lags.iter().all(|l| *l == 0)).then_some(t)
    })
    .await;
    assert!(text.contains("livechat_websocket_connections 1"), "{text}");
    assert!(
        text.contains(r#"livechat_consumer_lag{group="history",topic="chat.room-events.v1""#),
        "{text}"
    );
}
