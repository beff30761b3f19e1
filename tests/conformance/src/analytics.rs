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
