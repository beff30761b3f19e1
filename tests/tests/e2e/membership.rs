//! Private rooms, join requests with live notifications, removal, visibility.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn private_room_request_accept_and_reject_with_live_notifications() {
    let app = App::spawn(&[]).await;
    let owner = app.user("owner").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let room = owner.create_room("secret", false).await;
    let mut wo = owner.ws(&app, None).await;
    let mut wc = carol.ws(&app, None).await;
    let mut wd = dave.ws(&app, None).await;

    // Non-members can neither see nor find the private room.
    assert_eq!(
        carol.get(&format!("/api/rooms/get-room/{room}")).await.0,
        403
    );
    let (_, found) = carol.get("/api/rooms/get-search-rooms?text=secret").await;
    assert!(found.as_array().unwrap().iter().all(|r| r["id"] != room));
    assert_eq!(wc.subscribe(&room, None).await["code"], "forbidden");

    assert_eq!(
        carol
            .post(
                "/api/rooms/create-join-request",
                json!({"room_id": room, "message": "let me in"})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        carol
            .post("/api/rooms/create-join-request", json!({"room_id": room}))
            .await
            .0,
        400,
        "duplicate request"
    );
    let n = wo
        .wait_for("join request notification", |v| {
            v["event_type"] == "NOTIFICATION"
        })
        .await;
    assert_eq!(n["payload"]["notification_type"], "JOIN_REQUEST_CREATED");
    assert_eq!(n["notification"]["payload"]["message"], "let me in");
    assert_eq!(
        dave.post("/api/rooms/create-join-request", json!({"room_id": room}))
            .await
            .0,
        200
    );
    wo.wait_for("second request", |v| v["event_type"] == "NOTIFICATION")
        .await;

    let (s, reqs) = owner
        .get(&format!("/api/rooms/get-join-requests-by-room/{room}"))
        .await;
    assert_eq!(s, 200);
    let reqs = reqs.as_array().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        carol
            .get(&format!("/api/rooms/get-join-requests-by-room/{room}"))
            .await
            .0,
        403
    );
    let id_of = |name: &str| {
        reqs.iter().find(|r| r["username"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (carol_req, dave_req) = (id_of(&carol.name), id_of(&dave.name));
    assert_eq!(
        carol
            .post(
                &format!("/api/rooms/handle-join-request/{carol_req}?accept=true"),
                json!({})
            )
            .await
            .0,
        403
    );
    assert_eq!(
        owner
            .post(
                &format!("/api/rooms/handle-join-request/{carol_req}?accept=true"),
                json!({})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        owner
            .post(
                &format!("/api/rooms/handle-join-request/{dave_req}?accept=false"),
                json!({})
            )
            .await
            .0,
        200
    );
    assert_eq!(
        owner
            .post(
                &format!("/api/rooms/handle-join-request/{dave_req}?accept=false"),
                json!({})
            )
            .await
            .0,
        404,
        "already handled"
    );

    let nc = wc
        .wait_for("accepted", |v| v["event_type"] == "NOTIFICATION")
        .await;
    assert_eq!(nc["payload"]["notification_type"], "JOIN_REQUEST_ACCEPTED");
    let nd = wd
        .wait_for("rejected", |v| v["event_type"] == "NOTIFICATION")
        .await;
    assert_eq!(nd["payload"]["notification_type"], "JOIN_REQUEST_REJECTED");
    assert_eq!(wc.subscribe(&room, None).await["type"], "subscribed");
    assert_eq!(
        dave.get(&format!("/api/rooms/get-users/{room}")).await.0,
        403
    );
    let (_, members) = owner.get(&format!("/api/rooms/get-users/{room}")).await;
    assert_eq!(members.as_array().unwrap().len(), 2);
    let (_, count) = carol
        .get("/api/notifications/get-notifications-count-unread")
        .await;
    assert_eq!(count["unread_count"], 1);

    // A request after a rejection notifies the owner again (the original dropped it, B5).
    assert_eq!(
        dave.post("/api/rooms/create-join-request", json!({"room_id": room}))
            .await
            .0,
        200
    );
    wo.wait_for("repeat request", |v| {
        v["event_type"] == "NOTIFICATION" && v["notification"]["payload"]["username"] == dave.name
    })
    .await;
}

#[tokio::test]
async fn a_removed_member_stream_stops_at_once() {
    let app = App::spawn(&[]).await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let room = owner.create_room("kick", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut native = bob.ws(&app, None).await;
    native.subscribe(&room, None).await;
    let mut legacy = bob.ws(&app, Some(&room)).await;
    let mut wo = owner.ws(&app, None).await;
    wo.send_msg(&room, "before", "k1").await;
    native.messages(&room, 1).await;

    assert_eq!(
        owner
            .call(
                "DELETE",
                &format!("/api/rooms/remove-user/{room}/{}", bob.id),
                None
            )
            .await
            .0,
        200
    );
    let u = native
        .wait_for("unsubscribed", |v| v["type"] == "unsubscribed")
        .await;
    assert_eq!(u["reason"], "removed");
    assert_eq!(legacy.closed_with().await, Some(4403));
    wo.send_msg(&room, "after removal", "k2").await;
    // Bob's native socket stays open but gets nothing more of the room.
    native.send(json!({"type": "ping"})).await;
    let f = native
        .wait_for("pong", |v| {
            v["type"] == "pong" || v["event_type"] == "MESSAGE_CREATED"
        })
        .await;
    assert_eq!(f["type"], "pong");
    assert_eq!(
        bob.get(&format!("/api/messages/get-recent-messages/{room}"))
            .await
            .0,
        403
    );
    // The owner cannot remove themself, nor a non-member.
    assert_eq!(
        owner
            .call(
                "DELETE",
                &format!("/api/rooms/remove-user/{room}/{}", owner.id),
                None
            )
            .await
            .0,
        400
    );
    assert_eq!(
        owner
            .call(
                "DELETE",
                &format!("/api/rooms/remove-user/{room}/{}", bob.id),
                None
            )
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn presence_and_owner_leaving_deletes_the_room() {
    let app = App::spawn(&[]).await;
    let owner = app.user("owner").await;
    let bob = app.user("bob").await;
    let room = owner.create_room("presence", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wo = owner.ws(&app, None).await;
    wo.subscribe(&room, None).await;
    let mut wb = bob.ws(&app, Some(&room)).await;
    let on = wo
        .wait_for("online", |v| {
            v["event_type"] == "ROOM_USER_ONLINE" && v["payload"]["user_id"] == bob.id
        })
        .await;
    assert_eq!(on["payload"]["user_id"], bob.id);
    let (_, online) = owner
        .get(&format!("/api/ws/get-active-user-ids/{room}"))
        .await;
    assert_eq!(online.as_array().unwrap().len(), 2);
    drop(wb.ws.close(None).await);
    let off = wo
        .wait_for("offline", |v| v["event_type"] == "ROOM_USER_OFFLINE")
        .await;
    assert_eq!(off["payload"]["user_id"], bob.id);

    assert_eq!(
        owner
            .call("DELETE", &format!("/api/rooms/leave-room/{room}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        owner.get(&format!("/api/rooms/get-room/{room}")).await.0,
        404
    );
    let u = wo
        .wait_for("unsubscribed", |v| v["type"] == "unsubscribed")
        .await;
    assert_eq!(u["reason"], "room_deleted");
    let (_, rooms) = bob.get("/api/rooms/get-rooms").await;
    assert!(rooms.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn mentions_notify_members_live() {
    let app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let outsider = app.user("out").await;
    let room = alice.create_room("mentions", true).await;
    bob.post("/api/rooms/create-join-request", json!({"room_id": room}))
        .await;
    let mut wb = bob.ws(&app, None).await;
    let mut wa = alice.ws(&app, None).await;
    wa.send_msg(
        &room,
        &format!("hey @{} and @{}", bob.name, outsider.name),
        "m1",
    )
    .await;
    let n = wb
        .wait_for("mention", |v| v["event_type"] == "NOTIFICATION")
        .await;
    assert_eq!(n["payload"]["notification_type"], "MENTION");
    assert_eq!(n["notification"]["payload"]["username"], alice.name);
    let (_, list) = outsider.get("/api/notifications/get-notifications").await;
    assert!(
        list.as_array().unwrap().is_empty(),
        "non-members are not notified"
    );
    let (_, list) = bob.get("/api/notifications/get-notifications").await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        alice
            .call(
                "PUT",
                &format!("/api/notifications/update-notification/{id}"),
                None
            )
            .await
            .0,
        403
    );
    assert_eq!(
        bob.call(
            "PUT",
            &format!("/api/notifications/update-notification/{id}"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        bob.get("/api/notifications/get-notifications-count-unread")
            .await
            .1["unread_count"],
        0
    );
    assert_eq!(
        bob.call(
            "DELETE",
            &format!("/api/notifications/delete-notification/{id}"),
            None
        )
        .await
        .0,
        200
    );
    assert!(bob
        .get("/api/notifications/get-notifications")
        .await
        .1
        .as_array()
        .unwrap()
        .is_empty());
}
