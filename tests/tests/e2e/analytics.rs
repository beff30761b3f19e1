//! The seven analytics views reflect the events, at event time, with authorization.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn analytics_views_reflect_the_events() {
    let app = App::spawn(&[]).await;
    let Pair { alice, bob, room } = app.pair("stats").await;
    let outsider = app.user("out").await;
    let hidden = alice.create_room("hidden", false).await;
    let mut wa = alice.ws(&app, None).await;
    let mut wb = bob.ws(&app, None).await;
    wa.send_numbered(&room, "a", 0..6).await;
    wb.send_numbered(&room, "b", 0..4).await;
    let m = wa.send_msg(&hidden, "private", "h1").await;
    let mid = m["message_id"].as_str().unwrap().to_string();
    alice.wait_for_recent_messages(&hidden, 1).await;
    assert_eq!(alice.edit_message(&mid, "edited").await.0, 200);

    let stats = bob.wait_for_room_stats(&room, 10).await;
    assert_eq!(stats["users_amount"], 2);
    assert!(stats["last_updated"].is_string());
    let n = bob.messages_per_minute(&room, 5).await.1;
    assert_eq!(n, 10);

    let act = bob.user_activity(&bob.id).await.1;
    assert_eq!(act, json!({"messages": 4, "rooms_joined": 1}));
    assert_eq!(bob.user_activity(&alice.id).await.0, 403);

    let top = outsider.top_active_rooms(10).await.1;
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
    assert_eq!(outsider.room_stats(&hidden).await.0, 403);

    let ratio = eventually("edit counted", || async {
        let (_, r) = alice.edit_delete_ratio().await;
        (r["edit_ratio"].as_f64()? > 0.0).then_some(r)
    })
    .await;
    assert!(
        (ratio["edit_ratio"].as_f64().unwrap() - 1.0 / 11.0).abs() < 1e-9,
        "{ratio}"
    );
    assert_eq!(ratio["delete_ratio"], 0.0);

    let retention = alice.user_retention(Some(30)).await.1;
    assert_eq!(
        retention.as_f64().unwrap(),
        100.0,
        "all three users logged in"
    );
    let social = alice.top_social_users(Some(10)).await.1;
    let first = &social.as_array().unwrap()[0];
    assert_eq!(first["user_id"], alice.id.as_str());
    assert_eq!(first["messages"], 7);

    for (bad, (status, body)) in [
        ("retention over 0 days", alice.user_retention(Some(0)).await),
        ("retention without days", alice.user_retention(None).await),
        (
            "top social without a limit",
            alice.top_social_users(None).await,
        ),
        (
            "top social over the maximum limit",
            alice.top_social_users(Some(100_000)).await,
        ),
        (
            "messages per minute of a bad room id",
            alice.messages_per_minute("nope", 5).await,
        ),
    ] {
        assert_eq!(status, 422, "{bad}: {body}");
    }
}
