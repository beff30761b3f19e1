//! A client written for the original works unchanged: `?room_id=` sockets, its event envelope,
//! PING/PONG, USER_TYPING, and its REST routes.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn original_client_socket_and_routes_work_unchanged() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__PING_INTERVAL_SECS", "1")]).await;
    let Pair { alice, bob, room } = app.pair("legacy").await;
    let mut wa = alice.ws(&app, Some(&room)).await;
    let mut wb = bob.ws(&app, Some(&room)).await;
    // The original server pinged with {"type":"PING"} and expected PONG.
    wa.wait_type("PING").await;
    wa.send(json!({"type": "PONG"})).await;

    let (s, msg) = bob.send_rest(&room, "hi from REST", None).await;
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
    let ev = wa.wait_event("MESSAGE_CREATED").await;
    for key in ["message", "message_id", "user_id", "username"] {
        assert!(ev["payload"][key].is_string(), "payload field {key}: {ev}");
    }
    assert!(ev["timestamp"].is_string());
    assert_eq!(ev["payload"]["message"], "hi from REST");

    wa.send(json!({"type": "USER_TYPING", "username": alice.name, "is_typing": true}))
        .await;
    let t = wb.wait_event("USER_TYPING").await;
    assert_eq!(t["payload"]["is_typing"], "True");
    // A typing frame with someone else's username is refused.
    wa.send(json!({"type": "USER_TYPING", "username": bob.name, "is_typing": true}))
        .await;
    let e = wa.wait_type("error").await;
    assert_eq!(e["code"], "forbidden");

    let page = eventually("history", || async {
        let (_, p) = alice.recent_messages_page(&room, None, Some(200)).await;
        (p.as_array()?.len() == 1).then_some(p)
    })
    .await;
    assert!(page.is_array());
    let created = page[0]["created_at"].as_str().unwrap().to_string();
    assert!(
        created.ends_with('Z'),
        "timestamps carry their UTC offset: {created}"
    );
    let (_, older) = alice
        .recent_messages_page(&room, Some(&created), None)
        .await;
    assert!(older.as_array().unwrap().is_empty());

    // Logout ends the session everywhere it is used.
    let (s, _) = alice.logout().await;
    assert_eq!(s, 200);
    assert_eq!(wa.closed_with().await, Some(4401));
    assert_eq!(alice.me().await.0, 401);
    assert_eq!(alice.logout().await.0, 401);
}

#[tokio::test]
async fn registration_refuses_guessable_passwords_and_names_that_pass_for_others() {
    let app = App::spawn(&[]).await;
    let name = format!("dora_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // NIST SP 800-63B: at least 8 characters, nothing guessable, no control characters.
    let own = format!("{name}1");
    for (pw, why) in [
        ("abc12", "too short"),
        ("password", "common"),
        ("12345678", "a sequence"),
        (own.as_str(), "the username"),
        ("\0\0\0\0\0\0\0\0", "NULs"),
    ] {
        let r = app.register(&name, pw).await;
        assert_eq!(r.status(), 422, "{why}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "password"]),
            "{why}: {body}"
        );
    }
    assert_eq!(app.register(&name, PASSWORD).await.status(), 200);
    // The same name in other letters: another case, look-alike characters.
    for twin in [name.to_uppercase(), name.replace('o', "0")] {
        assert_eq!(app.register(&twin, PASSWORD).await.status(), 400, "{twin}");
    }
    // A Cyrillic letter among Latin ones.
    let mixed = name.replace('a', "\u{0430}");
    assert_eq!(app.register(&mixed, PASSWORD).await.status(), 422);
    // Signing in takes any case.
    assert_eq!(
        app.login(&name.to_uppercase(), PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn sessions_rotate_and_logins_are_throttled() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__LOGIN_FAILURES_BEFORE_BACKOFF", "3")]).await;
    let u = app.user("carol").await;
    let login = |pw| app.login(&u.name, pw);
    let r = login(PASSWORD).await;
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
    assert_eq!(login(PASSWORD).await.status(), 429);
}

#[tokio::test]
async fn logging_in_again_ends_the_session_presented() {
    let app = App::spawn(&[]).await;
    let u = app.user("relog").await;
    // Log in again from the same client, which presents its current session.
    let r = app
        .http
        .post(app.url("/api/users/login-user"))
        .header("cookie", &u.cookie)
        .json(&serde_json::json!({"username": u.name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh = r.headers()["set-cookie"].to_str().unwrap();
    let fresh = fresh.split(';').next().unwrap().to_string();
    assert_ne!(fresh, u.cookie);
    assert_eq!(u.me().await.0, 401, "the presented session ended");
    assert_eq!(u.with_cookie(&fresh).me().await.0, 200, "the new one works");
}

#[tokio::test]
async fn session_expiry_slides_with_activity_and_reissues_the_cookie() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__SESSION_IDLE_SECS", "4")]).await;
    let u = app.user("slide").await;
    // Keep using the session past its original 4 s lifetime: each use slides it.
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let r = u.me_response().await;
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
    assert_eq!(u.me().await.0, 401);
}

#[tokio::test]
async fn the_web_client_is_served_under_a_strict_policy_and_revalidated() {
    let app = App::spawn(&[]).await;
    let get = |path: &'static str, etag: Option<String>| {
        let mut req = app.http.get(app.url(path));
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        req.send()
    };
    let page = get("/", None).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    // Behind plain HTTP (secure_cookies off) no HSTS.
    assert!(page.headers().get("strict-transport-security").is_none());
    // Files are revalidated at every load, and unchanged ones cost a 304 without a body.
    let js = get("/app.js", None).await.unwrap();
    assert_eq!(js.headers()["cache-control"], "no-cache");
    let etag = js.headers()["etag"].to_str().unwrap().to_string();
    let again = get("/app.js", Some(etag.clone())).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let other = get("/app.js", Some("W/\"0\"".into())).await.unwrap();
    assert_eq!(other.status(), 200);
    // API answers are never stored.
    assert_eq!(app.health().await.headers()["cache-control"], "no-store");
    // Metrics: this host only by default (the tests run on it), and a setting turns them off.
    assert!(app.metrics().await.unwrap().contains("livechat_"));
    let secure = App::spawn(&[
        ("LIVECHAT_INGRESS__METRICS", "off"),
        ("LIVECHAT_INGRESS__SECURE_COOKIES", "true"),
    ])
    .await;
    let r = secure
        .http
        .get(secure.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
}

#[tokio::test]
async fn health_openapi_and_swagger_ui_are_served() {
    let app = App::spawn(&[]).await;
    assert_eq!(app.health().await.status(), 200);
    let doc: serde_json::Value = app.openapi(false).await.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/rooms/create-join-request"]["post"].is_object());
    let ui = app.docs("").await;
    assert_eq!(ui.status(), 200);
    // Every response: no sniffing, never framed elsewhere, no referrer.
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(ui.headers()[name], value, "{name}");
    }
    let csp = ui.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(ui.text().await.unwrap().contains("swagger"));
    let init = app
        .docs("swagger-initializer.js")
        .await
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
    let ok = app.preflight("http://localhost:5173").await;
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
    let evil = app.preflight("https://evil.example").await;
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let doc = app.openapi(true).await;
    assert_eq!(
        doc.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}

#[tokio::test]
async fn metrics_report_sockets_and_consumer_lag_and_throughput_per_partition() {
    let app = App::spawn(&[]).await;
    let u = app.user("metrics").await;
    let room = u.create_room("m", true).await;
    let mut ws = u.ws(&app, None).await;
    ws.send_msg(&room, "hello", "m1").await;
    let text = eventually("lag back to zero", || async {
        let t = app.metrics().await?;
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
        text.contains(r#"livechat_consumer_lag{group="analytics",topic="chat.room-events.v1""#),
        "{text}"
    );
    // The history's follower reports its lag as the history group's; the notifications are
    // kept inline by the embedded store: no group, no lag.
    assert!(
        text.contains(r#"livechat_consumer_lag{group="history",topic="chat.room-events.v1""#),
        "{text}"
    );
    assert!(!text.contains(r#"group="notifications""#), "{text}");
    // What each group handled, per topic and partition: here the room's creation and the
    // message, on the room's partition.
    let handled: Vec<(String, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("livechat_processor_records_total{")
                && l.contains(r#"processor="analytics""#)
                && l.contains(r#"topic="chat.room-events.v1""#)
        })
        .map(|l| {
            let (labels, value) = l.rsplit_once(' ').unwrap();
            (labels.to_string(), value.parse().unwrap())
        })
        .collect();
    assert_eq!(handled.len(), 1, "one partition of the room: {handled:?}");
    assert!(handled[0].0.contains(r#"partition=""#), "{handled:?}");
    assert!(handled[0].1 >= 2.0, "{handled:?}");
}

/// The original's `before=<created_at>` paging never skips messages that share a millisecond:
/// a full page takes in the rest of its oldest millisecond.
#[tokio::test]
async fn recent_message_pages_keep_messages_of_one_millisecond() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let room = alice.create_room("ties", true).await;
    let texts: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let sends = texts.iter().map(|t| alice.send_rest(&room, t, None));
    for (status, body) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{body}");
    }
    for limit in [7, 1] {
        let mut seen = std::collections::HashSet::new();
        let mut before: Option<String> = None;
        loop {
            let (status, page) = alice
                .recent_messages_page(&room, before.as_deref(), Some(limit))
                .await;
            assert_eq!(status, 200, "{page}");
            let page = page.as_array().unwrap().clone();
            for m in &page {
                assert!(
                    seen.insert(m["id"].as_str().unwrap().to_string()),
                    "twice: {m}"
                );
            }
            if page.len() < limit as usize {
                break;
            }
            before = Some(
                page.last().unwrap()["created_at"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(seen.len(), 300, "limit {limit}");
    }
}

/// `get-me` shows when the user was last active: signing in counts (the original's field was
/// always null).
#[tokio::test]
async fn get_me_shows_last_active_after_signing_in() {
    let app = App::spawn(&[]).await;
    let alice = app.user("active").await;
    let me = alice.me_ok().await;
    let at = me["last_active"].as_str().unwrap_or_else(|| panic!("{me}"));
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    let age = chrono::Utc::now().signed_duration_since(at);
    assert!(
        age.num_seconds().abs() < 60,
        "last_active {at} is not recent"
    );
}

/// A stranger's wrong passwords slow the stranger, not the account's owner signing in from
/// another address; successful logins do not use up an address's attempts.
#[tokio::test]
async fn a_stranger_cannot_lock_an_account_out() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__LOGIN_FAILURES_BEFORE_BACKOFF", "3"),
        ("LIVECHAT_LIMITS__LOGIN_ATTEMPTS_PER_IP_PER_MINUTE", "5"),
    ])
    .await;
    let u = app.user("dana").await;
    // Many successful logins from one address: none refused.
    for _ in 0..8 {
        assert_eq!(app.login(&u.name, PASSWORD).await.status(), 200);
    }
    let stranger = app.login_from(&u.name, "wrong", "127.0.0.2").await;
    assert_eq!(stranger.status(), 401);
    for _ in 0..2 {
        app.login_from(&u.name, "wrong", "127.0.0.2").await;
    }
    let r = app.login_from(&u.name, "wrong", "127.0.0.2").await;
    assert_eq!(r.status(), 429, "the stranger backs off");
    // The owner, from their own address, is let in at once.
    assert_eq!(app.login(&u.name, PASSWORD).await.status(), 200);
}
