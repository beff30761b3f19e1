//! Private rooms, join requests with live notifications, removal, visibility.

use serde_json::{json, Value};

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

    // Non-members find the private room (search, popular rooms, its details), as the original
    // client expects in order to request it, but not its messages, members or stream.
    let (status, details) = carol.room(&room).await;
    assert_eq!(status, 200);
    assert_eq!(details["is_public"], false);
    assert_eq!(details["participants_count"], 1);
    let (_, found) = carol.search_rooms("secret").await;
    assert!(found.as_array().unwrap().iter().any(|r| r["id"] == room));
    let (_, top) = carol
        .get("/api/rooms/get-top-rooms?limit=100&only_public=false")
        .await;
    assert!(top.as_array().unwrap().iter().any(|r| r["id"] == room));
    let (_, top) = carol
        .get("/api/rooms/get-top-rooms?limit=100&only_public=true")
        .await;
    assert!(top.as_array().unwrap().iter().all(|r| r["id"] != room));
    assert_eq!(wc.subscribe(&room, None).await["code"], "forbidden");
    assert_eq!(carol.members(&room).await.0, 403);
    assert_eq!(
        carol
            .get(&format!("/api/messages/get-recent-messages/{room}"))
            .await
            .0,
        403
    );

    assert_eq!(carol.join_with_message(&room, "let me in").await.0, 200);
    assert_eq!(carol.join(&room).await.0, 400, "duplicate request");
    let n = wo.wait_event("NOTIFICATION").await;
    assert_eq!(n["payload"]["notification_type"], "JOIN_REQUEST_CREATED");
    assert_eq!(n["notification"]["payload"]["message"], "let me in");
    assert_eq!(dave.join(&room).await.0, 200);
    wo.wait_event("NOTIFICATION").await;

    let reqs = owner.join_requests_of_room_ok(&room).await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(carol.join_requests_of_room(&room).await.0, 403);
    let id_of = |name: &str| {
        reqs.iter().find(|r| r["username"] == name).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (carol_req, dave_req) = (id_of(&carol.name), id_of(&dave.name));
    assert_eq!(carol.accept_join_request(&carol_req).await.0, 403);
    assert_eq!(owner.accept_join_request(&carol_req).await.0, 200);
    assert_eq!(owner.reject_join_request(&dave_req).await.0, 200);
    assert_eq!(
        owner.reject_join_request(&dave_req).await.0,
        404,
        "already handled"
    );

    let nc = wc.wait_event("NOTIFICATION").await;
    assert_eq!(nc["payload"]["notification_type"], "JOIN_REQUEST_ACCEPTED");
    let nd = wd.wait_event("NOTIFICATION").await;
    assert_eq!(nd["payload"]["notification_type"], "JOIN_REQUEST_REJECTED");
    assert_eq!(wc.subscribe(&room, None).await["type"], "subscribed");
    assert_eq!(dave.members(&room).await.0, 403);
    assert_eq!(owner.members_ok(&room).await.len(), 2);
    assert_eq!(carol.unread_notifications_ok().await, 1);

    // A request after a rejection notifies the owner again (the original server did not).
    assert_eq!(dave.join(&room).await.0, 200);
    wo.wait_for("repeat request", |v| {
        v["event_type"] == "NOTIFICATION" && v["notification"]["payload"]["username"] == dave.name
    })
    .await;
}

#[tokio::test]
async fn a_removed_member_stream_stops_at_once() {
    let app = App::spawn(&[]).await;
    let pair = app.pair("kick").await;
    removal_ends_the_members_stream(&app, &app, &pair).await;
    let Pair {
        alice: owner,
        bob,
        room,
    } = pair;
    assert_eq!(bob.recent_messages(&room).await.0, 403);
    // The owner cannot remove themself, nor a non-member.
    assert_eq!(owner.remove_member(&room, &owner.id).await.0, 400);
    assert_eq!(owner.remove_member(&room, &bob.id).await.0, 404);
}

#[tokio::test]
async fn presence_and_owner_leaving_deletes_the_room() {
    let app = App::spawn(&[]).await;
    let Pair {
        alice: owner,
        bob,
        room,
    } = app.pair("presence").await;
    let mut wo = owner.subscribed_ws(&app, &room).await;
    let mut wb = bob.ws(&app, Some(&room)).await;
    let on = wo
        .wait_for("online", |v| {
            v["event_type"] == "ROOM_USER_ONLINE" && v["payload"]["user_id"] == bob.id
        })
        .await;
    assert_eq!(on["payload"]["user_id"], bob.id);
    let (_, online) = owner.online_users(&room).await;
    assert_eq!(online.as_array().unwrap().len(), 2);
    drop(wb.ws.close(None).await);
    let off = wo.wait_event("ROOM_USER_OFFLINE").await;
    assert_eq!(off["payload"]["user_id"], bob.id);

    assert_eq!(owner.leave(&room).await.0, 200);
    assert_eq!(owner.room(&room).await.0, 404);
    let u = wo.wait_type("unsubscribed").await;
    assert_eq!(u["reason"], "room_deleted");
    assert!(bob.my_rooms_ok().await.is_empty());
}

#[tokio::test]
async fn mentions_notify_members_live() {
    let app = App::spawn(&[]).await;
    let Pair { alice, bob, room } = app.pair("mentions").await;
    let outsider = app.user("out").await;
    let mut wb = bob.ws(&app, None).await;
    let mut wa = alice.ws(&app, None).await;
    wa.send_msg(
        &room,
        // Mentions take any case.
        &format!("hey @{} and @{}", bob.name.to_uppercase(), outsider.name),
        "m1",
    )
    .await;
    let n = wb.wait_event("NOTIFICATION").await;
    assert_eq!(n["payload"]["notification_type"], "MENTION");
    assert_eq!(n["notification"]["payload"]["username"], alice.name);
    assert!(
        outsider.notifications_ok().await.is_empty(),
        "non-members are not notified"
    );
    let list = bob.notifications_ok().await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(alice.mark_notification_read(&id).await.0, 403);
    assert_eq!(bob.mark_notification_read(&id).await.0, 200);
    assert_eq!(bob.unread_notifications_ok().await, 0);
    assert_eq!(bob.delete_notification(&id).await.0, 200);
    assert!(bob.notifications_ok().await.is_empty());
}

/// An unlisted room is joined by request like a private one, but is never listed: only its
/// link (its id) leads to it. The original client's `is_public` switch leaves it unlisted.
#[tokio::test]
async fn an_unlisted_room_is_found_only_through_its_link() {
    let app = App::spawn(&[]).await;
    let owner = app.user("owner").await;
    let carol = app.user("carol").await;
    let (status, created) = owner
        .post(
            "/api/rooms/create-room",
            json!({"name": "hideout", "description": "by link only", "visibility": "unlisted"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["visibility"], "unlisted");
    assert_eq!(created["is_public"], false);
    let room = created["id"].as_str().unwrap().to_string();
    let listed = |rooms: &Value| rooms.as_array().unwrap().iter().any(|r| r["id"] == room);

    for who in [&owner, &carol] {
        assert!(!listed(&who.search_rooms("hideout").await.1));
        let (_, top) = who
            .get("/api/rooms/get-top-rooms?limit=100&only_public=false")
            .await;
        assert!(!listed(&top));
    }
    // The link: its details, and a request to join that the owner sees.
    let (status, details) = carol.room(&room).await;
    assert_eq!(status, 200);
    assert_eq!(details["visibility"], "unlisted");
    assert_eq!(
        carol.join_with_message(&room, "found your link").await.0,
        200
    );
    assert_eq!(
        carol.members(&room).await.0,
        403,
        "a request, not a membership"
    );
    assert_eq!(owner.join_requests_of_room_ok(&room).await.len(), 1);

    // The original client's switch: "not public" is already true, so nothing changes.
    assert_eq!(owner.set_room_public(&room, false).await.0, 400);
    assert_eq!(owner.room(&room).await.1["visibility"], "unlisted");
    // Made private, it is listed.
    let (status, updated) = owner
        .update_room(&room, json!({"visibility": "private"}))
        .await;
    assert_eq!(status, 200, "{updated}");
    assert!(listed(&carol.search_rooms("hideout").await.1));
    // And a bad visibility is a 422 naming the field.
    let (status, body) = owner
        .update_room(&room, json!({"visibility": "secret"}))
        .await;
    assert_eq!(status, 422, "{body}");
}
