//! `AnalyticsStore`: an event id counts once; the seven views on a known fixture.

use livechat_core::model::AnalyticsEvent;
use livechat_core::ports::AnalyticsStore;
use uuid::Uuid;

use crate::at;

fn ev(kind: &str, user: Option<Uuid>, room: Option<Uuid>, ms_ago: i64) -> AnalyticsEvent {
    AnalyticsEvent {
        event_id: Uuid::new_v4(),
        event_type: kind.into(),
        user_id: user,
        room_id: room,
        occurred_at: at(-ms_ago),
        payload: "{}".into(),
    }
}

pub async fn an_event_counts_once_however_often_it_is_inserted(a: &dyn AnalyticsStore) {
    let (room, user) = (Uuid::new_v4(), Uuid::new_v4());
    let e = ev("MESSAGE_SENT", Some(user), Some(room), 0);
    a.insert(std::slice::from_ref(&e)).await.unwrap();
    a.insert(&[e.clone(), e]).await.unwrap();
    let s = a.room_stats(room).await.unwrap();
    assert_eq!((s.total_messages, s.users_amount), (1, 1));
}

pub async fn room_and_user_views(a: &dyn AnalyticsStore) {
    let (room, u1, u2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut evs = vec![
        ev("MESSAGE_SENT", Some(u1), Some(room), 10 * 60_000),
        ev("MESSAGE_SENT", Some(u1), Some(room), 1000),
        ev("MESSAGE_SENT", Some(u2), Some(room), 500),
        ev("USER_JOINED_ROOM", Some(u2), Some(room), 2000),
        ev(
            "JOIN_REQUEST_ACCEPTED",
            Some(u2),
            Some(Uuid::new_v4()),
            2000,
        ),
    ];
    evs.push(ev("MESSAGE_EDITED", Some(u1), Some(room), 100));
    a.insert(&evs).await.unwrap();
    let s = a.room_stats(room).await.unwrap();
    assert_eq!((s.total_messages, s.users_amount), (3, 2));
    assert_eq!(
        s.last_updated,
        Some(evs[2].occurred_at),
        "event time, not insert time"
    );
    assert_eq!(
        a.messages_since(room, at(-5 * 60_000)).await.unwrap(),
        2,
        "window on event time"
    );
    let act = a.user_activity(u2).await.unwrap();
    assert_eq!((act.messages, act.rooms_joined), (1, 2));
    let empty = a.room_stats(Uuid::new_v4()).await.unwrap();
    assert_eq!((empty.total_messages, empty.last_updated), (0, None));
    let top = a.top_active_rooms(100_000).await.unwrap();
    let mine = top
        .iter()
        .find(|r| r.room_id == room)
        .expect("room in the top list");
    assert_eq!(mine.total_messages, 3);
    let social = a.top_social_users(100_000).await.unwrap();
    let s2 = social
        .iter()
        .find(|s| s.user_id == u2)
        .expect("user in the list");
    assert_eq!((s2.rooms, s2.messages), (2, 1));
}

pub async fn global_views_are_well_formed(a: &dyn AnalyticsStore) {
    let u = Uuid::new_v4();
    a.insert(&[
        ev("USER_REGISTERED", Some(u), None, 0),
        ev("USER_LOGGED_IN", Some(u), None, 0),
        ev("MESSAGE_SENT", Some(u), Some(Uuid::new_v4()), 0),
    ])
    .await
    .unwrap();
    let r = a.retention(at(-60_000)).await.unwrap();
    assert!(r > 0.0 && r <= 100.0, "{r}");
    let ratio = a.edit_delete_ratio().await.unwrap();
    assert!(ratio.edit_ratio >= 0.0 && ratio.delete_ratio >= 0.0);
    assert!(a.top_social_users(1).await.unwrap().len() == 1);
}

/// Two stores fed the same events (each several times, in batches) answer the seven views alike
/// and have the same checksum. Both must be empty and used by this check alone (global views and
/// the checksum cover a whole store); `reference` is typically the embedded adapter.
pub async fn views_and_checksum_match_the_reference(
    a: &dyn AnalyticsStore,
    reference: &dyn AnalyticsStore,
) {
    let (r1, r2, r3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (u1, u2, u3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut evs = vec![
        ev("USER_REGISTERED", Some(u1), None, 90_000),
        ev("USER_REGISTERED", Some(u2), None, 80_000),
        ev("USER_REGISTERED", Some(u3), None, 70_000),
        ev("USER_LOGGED_IN", Some(u1), None, 30_000),
        ev("USER_LOGGED_IN", Some(u1), None, 20_000),
        ev("USER_LOGGED_IN", Some(u2), None, 120_000),
        ev("USER_JOINED_ROOM", Some(u1), Some(r1), 60_000),
        ev("USER_JOINED_ROOM", Some(u1), Some(r2), 60_000),
        ev("JOIN_REQUEST_ACCEPTED", Some(u2), Some(r2), 50_000),
        ev("USER_JOINED_ROOM", Some(u3), Some(r3), 50_000),
        ev("MESSAGE_EDITED", Some(u1), Some(r1), 5_000),
        ev("MESSAGE_DELETED", Some(u1), Some(r1), 4_000),
        ev("MESSAGE_DELETED", Some(u2), Some(r2), 4_000),
        // Rows with no user or no room never count as users or rooms.
        ev("MESSAGE_SENT", None, Some(r3), 1_000),
        ev("ROOM_CREATED", Some(u3), None, 1_000),
    ];
    evs[0].payload = r#"{"a": "x | y\nz"}"#.into();
    for (i, ms) in [40_000, 30_000, 20_000, 10_000].into_iter().enumerate() {
        evs.push(ev("MESSAGE_SENT", Some(u1), Some(r1), ms + i as i64));
    }
    for ms in [35_000, 25_000] {
        evs.push(ev("MESSAGE_SENT", Some(u2), Some(r2), ms));
    }
    evs.push(ev("MESSAGE_SENT", Some(u1), Some(r2), 15_000));
    for store in [a, reference] {
        store.insert(&evs).await.unwrap();
        store.insert(&evs[3..9]).await.unwrap();
        store.insert(&evs[10..]).await.unwrap();
    }
    for room in [r1, r2, r3, Uuid::new_v4()] {
        assert_eq!(
            a.room_stats(room).await.unwrap(),
            reference.room_stats(room).await.unwrap()
        );
        assert_eq!(
            a.messages_since(room, at(-27_000)).await.unwrap(),
            reference.messages_since(room, at(-27_000)).await.unwrap()
        );
    }
    for user in [u1, u2, u3, Uuid::new_v4()] {
        assert_eq!(
            a.user_activity(user).await.unwrap(),
            reference.user_activity(user).await.unwrap()
        );
    }
    assert_eq!(
        a.top_active_rooms(10).await.unwrap(),
        reference.top_active_rooms(10).await.unwrap()
    );
    assert_eq!(
        a.top_active_rooms(1).await.unwrap(),
        reference.top_active_rooms(1).await.unwrap()
    );
    assert_eq!(
        a.top_social_users(10).await.unwrap(),
        reference.top_social_users(10).await.unwrap()
    );
    assert_eq!(
        a.retention(at(-25_000)).await.unwrap(),
        reference.retention(at(-25_000)).await.unwrap()
    );
    assert_eq!(
        a.edit_delete_ratio().await.unwrap(),
        reference.edit_delete_ratio().await.unwrap()
    );
    let sum = a.checksum().await.unwrap();
    assert_eq!(sum.rows, evs.len() as u64);
    assert_eq!(sum, reference.checksum().await.unwrap());
}
