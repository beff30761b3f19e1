//! The seven analytics views reflect the events, at event time, with authorization.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn analytics_views_reflect_the_events() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let outsider = app.user("out").await;
    let room = alice.create_room("stats", true).await;
    let hidden = alice.create_room("hidden", false).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wa = alice.ws(&app, None).await;
    let mut wb = bob.ws(&app, None).await;
    for i in 0..6 {
        wa.send_msg(&room, &format!("a{i}"), &format!("a{i}")).await;
    }
    for i in 0..4 {
        wb.send_msg(&room, &format!("b{i}"), &format!("b{i}")).await;
    }
    let m = wa.send_msg(&hidden, "private", "h1").await;
    let mid = m["message_id"].as_str().unwrap().to_string();
    eventually("hidden message stored", || async {
        (alice
            .get(&format!("/api/messages/get-recent-messages/{hidden}"))
            .await
            .1
            .as_array()?
            .len()
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        alice
            .call(
                "PUT",
                &format!("/api/messages/update-message/{mid}"),
                Some(json!({"new_content": "edited"}))
            )
            .await
            .0,
        200
    );

    let stats = eventually("room stats", || async {
        let (_, s) = bob
            .get(&format!("/api/analytics/get-room-stats?room_id={room}"))
            .await;
        (s["total_messages"] == 10).then_some(s)
    })
    .await;
    assert_eq!(stats["users_amount"], 2);
    assert!(stats["last_updated"].is_string());
    let n = bob
        .get(&format!(
            "/api/analytics/get-message-per-minutes?room_id={room}&since_minutes=5"
        ))
        .await
        .1;
    assert_eq!(n, 10);

    let act = bob
        .get(&format!(
            "/api/analytics/get-user-activity?user_id={}",
            bob.id
        ))
        .await
        .1;
    assert_eq!(act, json!({"messages": 4, "rooms_joined": 1}));
    assert_eq!(
        bob.get(&format!(
            "/api/analytics/get-user-activity?user_id={}",
            alice.id
        ))
        .await
        .0,
        403
    );

    let top = outsider
        .get("/api/analytics/get-top-active-rooms?limit=10")
        .await
        .1;
    let ids: Vec<&str> = top
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&room.as_str()));
    assert!(
        !ids.contains(&hidden.as_str()),
        "private rooms are hidden from non-members"
    );
    assert_eq!(
        outsider
            .get(&format!("/api/analytics/get-room-stats?room_id={hidden}"))
            .await
            .0,
        403
    );

    let ratio = eventually("edit counted", || async {
        let (_, r) = alice
            .get("/api/analytics/get-message-edit-delete-ratio")
            .await;
        (r["edit_ratio"].as_f64()? > 0.0).then_some(r)
    })
    .await;
    assert!(
        (ratio["edit_ratio"].as_f64().unwrap() - 1.0 / 11.0).abs() < 1e-9,
        "{ratio}"
    );
    assert_eq!(ratio["delete_ratio"], 0.0);

    let retention = alice
        .get("/api/analytics/get-user-retention?days=30")
        .await
        .1;
    assert_eq!(
        retention.as_f64().unwrap(),
        100.0,
        "all three users logged in"
    );
    let social = alice
        .get("/api/analytics/get-top-social-users?limit=10")
        .await
        .1;
    let first = &social.as_array().unwrap()[0];
    assert_eq!(first["user_id"], alice.id.as_str());
    assert_eq!(first["messages"], 7);

    for bad in [
        "/api/analytics/get-user-retention?days=0",
        "/api/analytics/get-user-retention",
        "/api/analytics/get-top-social-users",
        "/api/analytics/get-top-social-users?limit=100000",
        "/api/analytics/get-message-per-minutes?since_minutes=5&room_id=nope",
    ] {
        assert_eq!(alice.get(bad).await.0, 422, "{bad}");
    }
}
