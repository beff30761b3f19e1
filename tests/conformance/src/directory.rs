//! `Directory`, `SessionStore` and `Outbox`: unique names, membership counting, join requests
//! handled once, dense seqs under concurrency, idempotent sends and notifications, and topic
//! records written atomically with the change they describe (into an outbox, or straight into a
//! log that shares the directory's file).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use livechat_core::error::StoreError;
use livechat_core::events::{room_event, room_record};
use livechat_core::model::*;
use livechat_schemas::RoomEventType;
use std::future::Future;

use livechat_core::ports::{
    Directory, EventLog, MessageEventsFn, NewMessage, Outbox, Placed, SessionStore,
};
use livechat_core::send_order::SendOrder;
use uuid::Uuid;

use crate::{at, record, room, user};

async fn owner_and_room<D: Directory + ?Sized>(d: &D, public: bool) -> (User, Room) {
    let owner = user("owner");
    d.create_user(&owner, vec![]).await.unwrap();
    let r = room(owner.id, public);
    d.create_room(&r, vec![]).await.unwrap();
    (owner, r)
}

fn new_message(room: RoomId, user: UserId, cid: Option<&str>) -> NewMessage {
    NewMessage {
        message_id: Uuid::new_v4(),
        room_id: room,
        user_id: user,
        content: "hi".into(),
        client_msg_id: cid.map(str::to_string),
        created_at: at(0),
    }
}

fn events_with_seq(topic: &str, key: String) -> MessageEventsFn {
    let topic = topic.to_string();
    Box::new(move |seq| Ok(vec![record(&topic, &key, &format!("seq={seq}"))]))
}

/// The records of a send as the service builds them (its MESSAGE_SENT room event, which an
/// adapter may answer retries from), and a record "seq=N" on `topic` for the test to count.
fn sent_events(topic: &str, msg: &NewMessage) -> MessageEventsFn {
    let (topic, msg) = (topic.to_string(), msg.clone());
    Box::new(move |seq| {
        let mut ev = room_event(RoomEventType::MessageSent, msg.room_id, msg.created_at);
        ev.actor_id = Some(msg.user_id.to_string());
        ev.message_id = Some(msg.message_id.to_string());
        ev.client_msg_id = msg.client_msg_id.clone();
        ev.seq = Some(seq);
        ev.content = Some(msg.content.clone());
        ev.message_created_at = Some(msg.created_at.timestamp_millis());
        Ok(vec![
            room_record(ev)?,
            record(&topic, &msg.room_id.to_string(), &format!("seq={seq}")),
        ])
    })
}

/// Sends `msg` with [`sent_events`].
async fn send<D: Directory + ?Sized>(d: &D, topic: &str, msg: NewMessage) -> Option<SendReceipt> {
    let events = sent_events(topic, &msg);
    d.send_message(msg, events, Placed::default())
        .await
        .unwrap()
}

pub async fn usernames_and_room_names_are_unique<D: Directory>(d: &Arc<D>) {
    let u = user("uniq");
    d.create_user(&u, vec![]).await.unwrap();
    let mut twin = user("uniq");
    twin.username = u.username.clone();
    assert!(matches!(
        d.create_user(&twin, vec![]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(d.user_by_name(&u.username).await.unwrap().unwrap().id, u.id);
    assert_eq!(
        d.user_by_id(u.id).await.unwrap().unwrap().username,
        u.username
    );
    // A name that differs only by case or by look-alike characters is the same name: it finds
    // the account (signing in, mentions) and cannot be registered again.
    let shouting = u.username.to_uppercase();
    assert_eq!(d.user_by_name(&shouting).await.unwrap().unwrap().id, u.id);
    let mut look_alike = user("uniq");
    look_alike.username = u.username.replace('i', "\u{0456}").to_uppercase();
    assert!(matches!(
        d.create_user(&look_alike, vec![]).await,
        Err(StoreError::Conflict(_))
    ));
    let found = d
        .users_by_names(&[shouting, u.username.clone()])
        .await
        .unwrap();
    assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), vec![u.id]);
    let r = room(u.id, true);
    d.create_room(&r, vec![]).await.unwrap();
    let mut r2 = room(u.id, true);
    r2.name = r.name.clone();
    assert!(matches!(
        d.create_room(&r2, vec![]).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn memberships_count_participants_once<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    assert_eq!(
        d.membership(r.id, owner.id).await.unwrap(),
        Some(Role::Owner)
    );
    let m = user("member");
    d.create_user(&m, vec![]).await.unwrap();
    assert!(d
        .add_member(r.id, m.id, Role::Member, vec![])
        .await
        .unwrap());
    assert!(
        !d.add_member(r.id, m.id, Role::Member, vec![])
            .await
            .unwrap(),
        "second add is a no-op"
    );
    assert_eq!(d.room(r.id).await.unwrap().unwrap().participants_count, 2);
    assert_eq!(d.members(r.id).await.unwrap().len(), 2);
    assert!(d.remove_member(r.id, m.id, vec![]).await.unwrap());
    assert!(!d.remove_member(r.id, m.id, vec![]).await.unwrap());
    assert_eq!(d.room(r.id).await.unwrap().unwrap().participants_count, 1);
    let rooms = d.rooms_of_user(owner.id).await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].1, Role::Owner);
}

pub async fn join_requests_are_unique_and_handled_once<D: Directory>(d: &Arc<D>) {
    let (_, r) = owner_and_room(d.as_ref(), false).await;
    let asker = user("asker");
    d.create_user(&asker, vec![]).await.unwrap();
    let req = JoinRequest {
        id: Uuid::new_v4(),
        room_id: r.id,
        user_id: asker.id,
        message: Some("pls".into()),
        created_at: at(0),
    };
    d.create_join_request(&req, vec![]).await.unwrap();
    let dup = JoinRequest {
        id: Uuid::new_v4(),
        ..req.clone()
    };
    assert!(matches!(
        d.create_join_request(&dup, vec![]).await,
        Err(StoreError::Conflict(_))
    ));
    let listed = d.join_requests_of_room(r.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].username.as_str(), listed[0].room_name.as_str()),
        (asker.username.as_str(), r.name.as_str())
    );
    assert_eq!(d.join_requests_of_user(asker.id).await.unwrap().len(), 1);
    assert!(d.handle_join_request(&req, true, vec![]).await.unwrap());
    assert!(
        !d.handle_join_request(&req, true, vec![]).await.unwrap(),
        "handled once"
    );
    assert_eq!(
        d.membership(r.id, asker.id).await.unwrap(),
        Some(Role::Member)
    );
    assert!(d.join_request(req.id).await.unwrap().is_none());
}

pub async fn concurrent_sends_get_dense_unique_seqs<D: Directory + 'static>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let cid = format!("c{i}");
            d.send_message(
                new_message(r.id, owner.id, Some(&cid)),
                events_with_seq("t", r.id.to_string()),
                Placed::default(),
            )
            .await
            .unwrap()
            .unwrap()
            .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    assert_eq!(d.room(r.id).await.unwrap().unwrap().last_seq, 40);
}

/// Sends started one after another, each once the store has placed the one before it (not
/// waiting for it to be durable), take their seqs in that order: how a socket keeps many sends
/// to one room in flight in the order its client wrote them.
pub async fn sends_each_started_once_the_previous_is_placed_keep_their_order<
    D: Directory + 'static,
>(
    d: &Arc<D>,
) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let mut turn = None;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (order, next) = SendOrder::after(turn.take());
        turn = Some(next);
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let placed = order.turn().await;
            let cid = format!("o{i}");
            d.send_message(
                new_message(r.id, owner.id, Some(&cid)),
                events_with_seq("t", r.id.to_string()),
                placed,
            )
            .await
            .unwrap()
            .unwrap()
            .seq
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    assert_eq!(
        seqs,
        (1..=30).collect::<Vec<_>>(),
        "seqs in the order the sends were started"
    );
}

pub async fn a_repeated_client_msg_id_returns_the_first_receipt<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let first = send(d.as_ref(), "t", new_message(r.id, owner.id, Some("same")))
        .await
        .unwrap();
    let again = send(d.as_ref(), "t", new_message(r.id, owner.id, Some("same")))
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(
        (again.message_id, again.seq, &again.content),
        (first.message_id, first.seq, &first.content)
    );
    let other = send(d.as_ref(), "t", new_message(r.id, owner.id, None))
        .await
        .unwrap();
    assert_eq!(other.seq, 2, "the duplicate consumed no seq");
    let stranger = user("stranger");
    d.create_user(&stranger, vec![]).await.unwrap();
    assert!(
        d.send_message(
            new_message(r.id, stranger.id, None),
            events_with_seq("t", r.id.to_string()),
            Placed::default()
        )
        .await
        .unwrap()
        .is_none(),
        "non-members cannot send"
    );
}

/// The records an adapter queued in its outbox for `topic` (in queue order; none removed).
pub async fn outbox_bodies<D: Outbox>(d: Arc<D>, topic: String) -> Vec<String> {
    d.pending(100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, rec)| rec.topic == topic)
        .map(|(_, rec)| String::from_utf8(rec.payload).unwrap())
        .collect()
}

/// The records of `topic` in a log (every partition, in offset order within each).
pub async fn log_bodies(log: &dyn EventLog, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..log.partitions(topic) {
        for e in log.read(topic, p, 0, 100_000).await.unwrap() {
            out.push(String::from_utf8(e.payload.to_vec()).unwrap());
        }
    }
    out
}

/// Every change's records are written with it (in the outbox, or straight into the log: the
/// adapter's `written` reads them back), in commit order, and a change that changes nothing
/// writes none.
pub async fn records_of_each_change_are_written_in_order<D, W, F>(d: &Arc<D>, written: W)
where
    D: Directory,
    W: Fn(Arc<D>, String) -> F,
    F: Future<Output = Vec<String>>,
{
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let topic = format!("conformance.{}", Uuid::new_v4().simple());
    d.enqueue(vec![record(&topic, "k", "first")]).await.unwrap();
    d.send_message(
        new_message(r.id, owner.id, None),
        events_with_seq(&topic, "k".into()),
        Placed::default(),
    )
    .await
    .unwrap();
    let m = user("joiner");
    d.create_user(&m, vec![]).await.unwrap();
    d.add_member(
        r.id,
        m.id,
        Role::Member,
        vec![record(&topic, "k", "joined")],
    )
    .await
    .unwrap();
    // A no-op change writes no record.
    d.add_member(
        r.id,
        m.id,
        Role::Member,
        vec![record(&topic, "k", "joined-again")],
    )
    .await
    .unwrap();
    // A read marker's record goes with a rise only: not with one that stays or would fall,
    // nor with a non-member's.
    let mark = |who: UserId, seq: i64| {
        let body = format!("{who}-read-{seq}");
        d.set_read_marker(who, r.id, seq, vec![record(&topic, "k", &body)])
    };
    assert_eq!(mark(m.id, 2).await.unwrap(), 2);
    assert_eq!(mark(m.id, 2).await.unwrap(), 2);
    assert_eq!(mark(m.id, 1).await.unwrap(), 2);
    assert_eq!(
        mark(owner.id, 1).await.unwrap(),
        1,
        "their own message is read"
    );
    let stranger = user("marks-nothing");
    d.create_user(&stranger, vec![]).await.unwrap();
    assert_eq!(mark(stranger.id, 3).await.unwrap(), 0);
    assert_eq!(
        written(d.clone(), topic.clone()).await,
        vec![
            "first".to_string(),
            "seq=1".into(),
            "joined".into(),
            format!("{}-read-2", m.id)
        ]
    );
}

pub async fn notifications_are_idempotent_and_owned<D: Directory>(d: &Arc<D>) {
    let u = user("notified");
    d.create_user(&u, vec![]).await.unwrap();
    let n = Notification {
        id: Uuid::new_v4(),
        user_id: u.id,
        kind: "MENTION".into(),
        payload: BTreeMap::from([("room_name".to_string(), "r".to_string())]),
        read: false,
        source_id: None,
        created_at: at(0),
    };
    assert!(d.insert_notification(&n).await.unwrap());
    assert!(
        !d.insert_notification(&n).await.unwrap(),
        "same id twice stores one"
    );
    assert_eq!(d.count_unread_notifications(u.id).await.unwrap(), 1);
    assert_eq!(
        d.notifications(u.id, true, 10).await.unwrap()[0].payload["room_name"],
        "r"
    );
    d.mark_notification_read(n.id, vec![]).await.unwrap();
    assert_eq!(d.count_unread_notifications(u.id).await.unwrap(), 0);
    assert_eq!(d.notifications(u.id, false, 10).await.unwrap().len(), 1);
    assert!(
        !d.delete_notification(n.id, Uuid::new_v4(), vec![])
            .await
            .unwrap(),
        "others cannot delete it"
    );
    assert!(d.delete_notification(n.id, u.id, vec![]).await.unwrap());
    assert!(!d.delete_notification(n.id, u.id, vec![]).await.unwrap());
    // The tombstone stays: the event that created it, redelivered, stores nothing.
    assert!(!d.insert_notification(&n).await.unwrap());
    assert!(d.notifications(u.id, false, 10).await.unwrap().is_empty());
    assert!(d.notification(n.id).await.unwrap().is_none());
    assert_eq!(d.count_unread_notifications(u.id).await.unwrap(), 0);
}

pub async fn mark_all_read_stops_at_its_time<D: Directory>(d: &Arc<D>) {
    let u = user("allread");
    d.create_user(&u, vec![]).await.unwrap();
    let t0 = at(0);
    let t = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let notification = |ms: i64| Notification {
        id: Uuid::new_v4(),
        user_id: u.id,
        kind: "MENTION".into(),
        payload: BTreeMap::new(),
        read: false,
        source_id: None,
        created_at: t(ms),
    };
    for n in [notification(0), notification(10), notification(20)] {
        d.insert_notification(&n).await.unwrap();
    }
    // As a replay applies it: the event of time 10 leaves the later notification unread.
    assert_eq!(
        d.mark_all_notifications_read(u.id, t(10), vec![])
            .await
            .unwrap(),
        2
    );
    assert_eq!(d.count_unread_notifications(u.id).await.unwrap(), 1);
    let before = d.notifications_checksum().await.unwrap();
    assert_eq!(
        d.mark_all_notifications_read(u.id, t(10), vec![])
            .await
            .unwrap(),
        0,
        "applied twice changes nothing"
    );
    assert_eq!(d.notifications_checksum().await.unwrap(), before);
}

pub async fn read_markers_only_move_forward<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    // Sending marks the author's own message read.
    let sent = d
        .send_message(
            new_message(r.id, owner.id, None),
            events_with_seq("t", r.id.to_string()),
            Placed::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.rooms_of_user(owner.id).await.unwrap()[0].2, sent.seq);
    assert_eq!(
        d.set_read_marker(owner.id, r.id, 5, vec![]).await.unwrap(),
        5
    );
    assert_eq!(
        d.set_read_marker(owner.id, r.id, 2, vec![]).await.unwrap(),
        5
    );
    assert_eq!(d.rooms_of_user(owner.id).await.unwrap()[0].2, 5);
    assert_eq!(d.read_marker(owner.id, r.id).await.unwrap(), Some(5));
    let stranger = user("not-a-member");
    d.create_user(&stranger, vec![]).await.unwrap();
    assert_eq!(d.read_marker(stranger.id, r.id).await.unwrap(), None);
}

/// A thread's read marker per user: raised, never lowered, kept apart per thread, user and room,
/// and gone with its room.
pub async fn thread_read_markers_only_move_forward_per_thread<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let (_, other_room) = owner_and_room(d.as_ref(), true).await;
    let reader = user("thread-reader");
    d.create_user(&reader, vec![]).await.unwrap();
    assert!(d
        .thread_reads(owner.id, r.id, &[1, 2])
        .await
        .unwrap()
        .is_empty());
    assert!(d
        .thread_reads(owner.id, r.id, &[])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(d.set_thread_read(owner.id, r.id, 1, 5).await.unwrap(), 5);
    assert_eq!(
        d.set_thread_read(owner.id, r.id, 1, 3).await.unwrap(),
        5,
        "never lowered"
    );
    assert_eq!(d.set_thread_read(owner.id, r.id, 2, 9).await.unwrap(), 9);
    assert_eq!(d.set_thread_read(reader.id, r.id, 1, 7).await.unwrap(), 7);
    assert_eq!(
        d.set_thread_read(owner.id, other_room.id, 1, 11)
            .await
            .unwrap(),
        11
    );
    let mine = d.thread_reads(owner.id, r.id, &[1, 2, 3]).await.unwrap();
    assert_eq!(mine, [(1, 5), (2, 9)].into_iter().collect());
    let theirs = d.thread_reads(reader.id, r.id, &[1, 2]).await.unwrap();
    assert_eq!(theirs, [(1, 7)].into_iter().collect());
    d.delete_room(r.id, vec![]).await.unwrap();
    assert!(d
        .thread_reads(owner.id, r.id, &[1, 2])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        d.thread_reads(owner.id, other_room.id, &[1]).await.unwrap(),
        [(1, 11)].into_iter().collect(),
        "another room's markers stay"
    );
}

/// Choices to follow a thread or not: the last one per user counts, kept per thread and room,
/// gone with the room.
pub async fn thread_follow_choices_are_per_thread_and_user<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let other = user("follower");
    d.create_user(&other, vec![]).await.unwrap();
    assert!(d.thread_follows(r.id, 1).await.unwrap().is_empty());
    d.set_thread_follow(owner.id, r.id, 1, false).await.unwrap();
    d.set_thread_follow(other.id, r.id, 1, true).await.unwrap();
    d.set_thread_follow(other.id, r.id, 2, false).await.unwrap();
    assert_eq!(
        d.thread_follows(r.id, 1).await.unwrap(),
        [(owner.id, false), (other.id, true)].into_iter().collect()
    );
    d.set_thread_follow(owner.id, r.id, 1, true).await.unwrap();
    d.set_thread_follow(other.id, r.id, 1, false).await.unwrap();
    assert_eq!(
        d.thread_follows(r.id, 1).await.unwrap(),
        [(owner.id, true), (other.id, false)].into_iter().collect(),
        "the last choice counts"
    );
    assert_eq!(
        d.thread_follows(r.id, 2).await.unwrap(),
        [(other.id, false)].into_iter().collect()
    );
    d.delete_room(r.id, vec![]).await.unwrap();
    assert!(d.thread_follows(r.id, 1).await.unwrap().is_empty());
}

pub async fn messages_sequenced_elsewhere_raise_seqs_and_markers<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let (other_owner, other) = owner_and_room(d.as_ref(), false).await;
    let stranger = user("stranger");
    d.create_user(&stranger, vec![]).await.unwrap();
    // Several rooms in one call, each raised to its own highest.
    d.messages_sequenced(&[
        (r.id, owner.id, 3),
        (other.id, other_owner.id, 5),
        (r.id, owner.id, 2),
        (r.id, stranger.id, 7),
    ])
    .await
    .unwrap();
    // Applied again, or lower: nothing moves back.
    d.messages_sequenced(&[(r.id, owner.id, 1), (other.id, other_owner.id, 4)])
        .await
        .unwrap();
    assert_eq!(d.room(r.id).await.unwrap().unwrap().last_seq, 7);
    assert_eq!(d.room(other.id).await.unwrap().unwrap().last_seq, 5);
    let mine = d.rooms_of_user(owner.id).await.unwrap();
    assert_eq!(mine[0].2, 3, "the author has read their own messages");
    let theirs = d.rooms_of_user(other_owner.id).await.unwrap();
    assert_eq!(theirs[0].2, 5);
    assert!(
        d.rooms_of_user(stranger.id).await.unwrap().is_empty(),
        "a non-member's message makes no membership"
    );
    assert!(d.membership(r.id, stranger.id).await.unwrap().is_none());
}

pub async fn deleting_a_room_removes_its_memberships_and_requests<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), false).await;
    let asker = user("asker");
    d.create_user(&asker, vec![]).await.unwrap();
    let req = JoinRequest {
        id: Uuid::new_v4(),
        room_id: r.id,
        user_id: asker.id,
        message: None,
        created_at: at(0),
    };
    d.create_join_request(&req, vec![]).await.unwrap();
    d.delete_room(r.id, vec![]).await.unwrap();
    assert!(d.room(r.id).await.unwrap().is_none());
    assert!(d.membership(r.id, owner.id).await.unwrap().is_none());
    assert!(d.join_requests_of_user(asker.id).await.unwrap().is_empty());
}

/// A content key is made once per account, whoever asks first (two at once get the same);
/// none for an unknown account; listed by user; gone with the account's erasure, which also
/// takes its profile, join requests and the notifications it got or caused, and is idempotent.
pub async fn content_keys_are_made_once_and_erased_with_the_account<D: Directory>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), false).await;
    let gone = user("erased");
    d.create_user(&gone, vec![]).await.unwrap();
    assert_eq!(
        d.content_key(Uuid::new_v4()).await.unwrap(),
        None,
        "no key for nobody"
    );
    let (a, b) = tokio::join!(d.content_key(gone.id), d.content_key(gone.id));
    let key = a.unwrap().expect("made for an account");
    assert_eq!(b.unwrap(), Some(key), "two first uses get one key");
    assert_eq!(d.content_key(gone.id).await.unwrap(), Some(key), "kept");
    let owners = d.content_key(owner.id).await.unwrap().unwrap();
    assert_ne!(owners, key, "a key per account");
    let listed = d
        .content_keys(Some(&[gone.id, owner.id, Uuid::new_v4()]))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&(gone.id, key)) && listed.contains(&(owner.id, owners)));
    assert!(d
        .content_keys(None)
        .await
        .unwrap()
        .contains(&(gone.id, key)));

    d.create_join_request(
        &JoinRequest {
            id: Uuid::new_v4(),
            room_id: r.id,
            user_id: gone.id,
            message: Some("let me in, I am the erased one".into()),
            created_at: at(0),
        },
        vec![],
    )
    .await
    .unwrap();
    let notification = |to: UserId, source: Option<UserId>| Notification {
        id: Uuid::new_v4(),
        user_id: to,
        kind: "MENTION".into(),
        payload: BTreeMap::from([("message".to_string(), "words of the erased".to_string())]),
        read: false,
        source_id: source,
        created_at: at(0),
    };
    let (theirs, caused, unrelated) = (
        notification(gone.id, None),
        notification(owner.id, Some(gone.id)),
        notification(owner.id, None),
    );
    for n in [&theirs, &caused, &unrelated] {
        assert!(d.insert_notification(n).await.unwrap());
    }
    for _ in 0..2 {
        d.erase_user(gone.id, vec![]).await.unwrap();
    }
    assert_eq!(
        d.content_key(gone.id).await.unwrap(),
        None,
        "not made again"
    );
    assert!(d.content_keys(Some(&[gone.id])).await.unwrap().is_empty());
    assert_eq!(
        d.content_key(owner.id).await.unwrap(),
        Some(owners),
        "others keep theirs"
    );
    assert!(d.user_by_id(gone.id).await.unwrap().is_none());
    assert!(d.join_requests_of_user(gone.id).await.unwrap().is_empty());
    assert!(d.join_requests_of_room(r.id).await.unwrap().is_empty());
    let listed = || async {
        let listed = d.notifications(owner.id, false, 10).await.unwrap();
        listed.iter().map(|n| n.id).collect::<Vec<Uuid>>()
    };
    assert_eq!(
        listed().await,
        vec![unrelated.id],
        "what the erased account caused is gone"
    );
    assert!(d
        .notifications(gone.id, false, 10)
        .await
        .unwrap()
        .is_empty());
    // A processor that read the erased account's words before the erasure stores its
    // notification after it (and again when the event is redelivered): never shown.
    let late = notification(owner.id, Some(gone.id));
    for _ in 0..2 {
        d.insert_notification(&late).await.unwrap();
    }
    let unread = d.count_unread_notifications(owner.id).await.unwrap();
    assert_eq!(
        (listed().await, unread),
        (vec![unrelated.id], 1),
        "a late quote of the erased account"
    );
    assert_eq!(d.notification(late.id).await.unwrap(), None);
    // Someone not erased is quoted as before, also with no key in this store (a store rebuilt
    // by a replay holds none).
    for author in [owner.id, Uuid::new_v4()] {
        let quoting = notification(Uuid::new_v4(), Some(author));
        assert!(d.insert_notification(&quoting).await.unwrap());
        let stored = d.notification(quoting.id).await.unwrap().unwrap();
        assert_eq!(stored.payload, quoting.payload);
    }
}

/// Search and top rooms list private rooms (their name, description and member count) like
/// public ones: "private" means joining needs the owner's approval, not hidden. Unlisted rooms
/// are never listed, and stay so through an update; read by id they keep their visibility.
pub async fn search_is_literal_and_lists_private_rooms<D: Directory>(d: &Arc<D>) {
    let (owner, mut public) = owner_and_room(d.as_ref(), true).await;
    public.description = Some(format!("needle.* {}", public.id));
    d.update_room(&public, vec![]).await.unwrap();
    let mut private = room(owner.id, false);
    private.description = public.description.clone();
    d.create_room(&private, vec![]).await.unwrap();
    let mut unlisted = room(owner.id, false);
    unlisted.description = public.description.clone();
    unlisted.set_visibility(Visibility::Unlisted);
    d.create_room(&unlisted, vec![]).await.unwrap();
    unlisted.updated_at = at(1);
    d.update_room(&unlisted, vec![]).await.unwrap();
    assert_eq!(
        d.room(unlisted.id).await.unwrap().unwrap().visibility(),
        Visibility::Unlisted
    );
    // A direct conversation is kept as one, and never listed either.
    let mut direct = room(owner.id, false);
    direct.description = public.description.clone();
    direct.set_visibility(Visibility::Direct);
    direct.name = Room::direct_name(&[owner.username.clone(), format!("x{}", direct.id.simple())]);
    d.create_room(&direct, vec![]).await.unwrap();
    let read = d.room(direct.id).await.unwrap().unwrap();
    assert_eq!(read.visibility(), Visibility::Direct);
    assert_eq!(read.name, direct.name);
    assert!(read.unlisted && !read.is_public);
    let text = format!("NEEDLE.* {}", public.id);
    let mut found: Vec<_> = d
        .search_rooms(&text, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    found.sort();
    let mut both = vec![public.id, private.id];
    both.sort();
    assert_eq!(
        found, both,
        "case-insensitive, literal, private rooms listed (they are found to be requested)"
    );
    assert!(
        d.search_rooms("needle.+", 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != public.id),
        "no regex"
    );
    // Case-insensitive beyond ASCII.
    let mut accented = room(owner.id, true);
    accented.name = format!("Ünïcode {}", &accented.id.simple().to_string()[..8]);
    d.create_room(&accented, vec![]).await.unwrap();
    let needle = accented.name.to_lowercase();
    let found = d.search_rooms(&needle, 10).await.unwrap();
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![accented.id]
    );
    let top = |only_public| async move {
        let rooms = d.top_rooms(1000, only_public).await.unwrap();
        rooms.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let all = top(false).await;
    assert!(all.contains(&public.id) && all.contains(&private.id));
    assert!(!all.contains(&unlisted.id) && !all.contains(&direct.id));
    let public_only = top(true).await;
    assert!(public_only.contains(&public.id) && !public_only.contains(&private.id));
}

pub async fn sessions_can_be_created_extended_and_deleted<S: SessionStore>(s: &Arc<S>) {
    let sess = Session {
        id: Uuid::new_v4(),
        user_id: Uuid::new_v4(),
        created_at: at(0),
        expires_at: at(60_000),
        absolute_expires_at: at(3_600_000),
    };
    s.create_session(&sess, vec![]).await.unwrap();
    assert_eq!(s.session(sess.id).await.unwrap(), Some(sess.clone()));
    s.extend_session(sess.id, at(120_000)).await.unwrap();
    assert!(s.session(sess.id).await.unwrap().unwrap().expires_at > sess.expires_at);
    assert!(s.delete_session(sess.id, vec![]).await.unwrap());
    assert!(!s.delete_session(sess.id, vec![]).await.unwrap());
    assert_eq!(
        s.session(sess.id).await.unwrap(),
        None,
        "a deleted session never comes back"
    );
}

/// Two handles on one store (two processes): concurrent sends to one room still get dense,
/// unique seqs with exactly one outbox record each, and a retry through the other handle is
/// recognised as a duplicate.
pub async fn two_writers_share_one_dense_seq<D, W, F>(a: &Arc<D>, b: &Arc<D>, written: W)
where
    D: Directory + 'static,
    W: Fn(Arc<D>, String) -> F,
    F: Future<Output = Vec<String>>,
{
    let (owner, r) = owner_and_room(a.as_ref(), true).await;
    let topic = format!("conformance.{}", Uuid::new_v4().simple());
    let mut tasks = Vec::new();
    for i in 0..60 {
        let d = if i % 2 == 0 { a.clone() } else { b.clone() };
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let msg = new_message(r.id, owner.id, Some(&format!("c{i}")));
            send(d.as_ref(), &topic, msg).await.unwrap()
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap());
    }
    let mut seqs: Vec<i64> = receipts.iter().map(|r| r.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    // c1 went through `b`; retried through `a` it is the same message.
    let again = send(a.as_ref(), &topic, new_message(r.id, owner.id, Some("c1")))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message_id, receipts[1].message_id);
    let mut bodies = written(a.clone(), topic.clone()).await;
    bodies.sort_by_key(|b| b.trim_start_matches("seq=").parse::<i64>().unwrap());
    let expected: Vec<String> = (1..=60).map(|s| format!("seq={s}")).collect();
    assert_eq!(
        bodies, expected,
        "one record per send, none for the duplicate"
    );
    assert_eq!(b.room(r.id).await.unwrap().unwrap().last_seq, 60);
}

/// Members joining one room at the same moment (and the owner sending meanwhile) are all kept
/// and counted: no update of the room is lost to another.
pub async fn concurrent_joins_are_all_kept<D: Directory + 'static>(d: &Arc<D>) {
    let (owner, r) = owner_and_room(d.as_ref(), true).await;
    let mut users = Vec::new();
    for _ in 0..24 {
        let u = user("joiner");
        d.create_user(&u, vec![]).await.unwrap();
        users.push(u.id);
    }
    let mut tasks = Vec::new();
    for (i, u) in users.iter().copied().enumerate() {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            assert!(d.add_member(r.id, u, Role::Member, vec![]).await.unwrap());
            if i % 4 == 0 {
                d.send_message(
                    new_message(r.id, owner.id, None),
                    events_with_seq("t", r.id.to_string()),
                    Placed::default(),
                )
                .await
                .unwrap()
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(d.room(r.id).await.unwrap().unwrap().participants_count, 25);
    assert_eq!(d.members(r.id).await.unwrap().len(), 25);
    for u in users {
        assert_eq!(d.membership(r.id, u).await.unwrap(), Some(Role::Member));
    }
}

/// Two handles on one store (two processes) changing one room at the same instant: members join
/// through both handles while the first also sends to the room and its relay removes relayed
/// records (from the room's own data where the adapter keeps them there). No change is lost to
/// another: every member is kept and counted, the room's `last_seq` is the last send's, and every
/// change's record comes out exactly once (through the relay, or read back through a third
/// handle afterwards).
pub async fn two_handles_keep_every_concurrent_change_to_one_room<D, W, F>(
    a: &Arc<D>,
    b: &Arc<D>,
    later: &Arc<D>,
    written: W,
) where
    D: Directory + Outbox + 'static,
    W: Fn(Arc<D>, String) -> F,
    F: Future<Output = Vec<String>>,
{
    const JOINERS: usize = 40;
    const SENDS: i64 = 20;
    let (owner, r) = owner_and_room(a.as_ref(), true).await;
    let topic = format!("conformance.{}", Uuid::new_v4().simple());
    let mut users = Vec::new();
    for _ in 0..JOINERS {
        let u = user("joiner");
        a.create_user(&u, vec![]).await.unwrap();
        users.push(u.id);
    }
    let payload = |rec: &OutboxRecord| String::from_utf8(rec.payload.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let relay = {
        let (a, stop, topic) = (a.clone(), stop.clone(), topic.clone());
        tokio::spawn(async move {
            let mut relayed = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let batch = a.pending(16).await.unwrap();
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                relayed.extend(
                    batch
                        .iter()
                        .filter(|(_, rec)| rec.topic == topic)
                        .map(|(_, rec)| payload(rec)),
                );
                let positions: Vec<i64> = batch.iter().map(|(p, _)| *p).collect();
                a.remove(&positions).await.unwrap();
            }
            relayed
        })
    };
    let mut tasks = Vec::new();
    for (i, u) in users.iter().copied().enumerate() {
        let d = if i % 2 == 0 { a.clone() } else { b.clone() };
        let rec = record(&topic, &r.id.to_string(), &format!("joined {u}"));
        tasks.push(tokio::spawn(async move {
            assert!(d
                .add_member(r.id, u, Role::Member, vec![rec])
                .await
                .unwrap());
        }));
    }
    let sender = {
        let (a, topic) = (a.clone(), topic.clone());
        tokio::spawn(async move {
            for i in 0..SENDS {
                a.send_message(
                    new_message(r.id, owner.id, Some(&format!("c{i}"))),
                    events_with_seq(&topic, r.id.to_string()),
                    Placed::default(),
                )
                .await
                .unwrap()
                .unwrap();
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    sender.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let mut bodies = relay.await.unwrap();
    // What the relay did not take (an adapter writing straight into its log has no relay).
    bodies.extend(written(later.clone(), topic.clone()).await);
    let room = b.room(r.id).await.unwrap().unwrap();
    assert_eq!(room.participants_count, 1 + JOINERS as i64);
    assert_eq!(room.last_seq, SENDS);
    assert_eq!(b.members(r.id).await.unwrap().len(), 1 + JOINERS);
    for u in &users {
        assert_eq!(a.membership(r.id, *u).await.unwrap(), Some(Role::Member));
    }
    bodies.sort();
    let mut expected: Vec<String> = users.iter().map(|u| format!("joined {u}")).collect();
    expected.extend((1..=SENDS).map(|s| format!("seq={s}")));
    expected.sort();
    assert_eq!(bodies, expected, "every change's record, each exactly once");
}

/// A room's shared file is kept while an upload holds it or a message claims it, and taken for
/// deletion by one caller once nothing does; while taken, no hold or claim lands on it, and a
/// deletion left unfinished is taken again once stale. Concurrent takers: exactly one wins.
pub async fn shared_files_are_kept_while_held_or_claimed<D: Directory + 'static>(d: &Arc<D>) {
    let room = Uuid::new_v4();
    let hour = 3_600_000;
    let now = 1_000_000_000_000_i64;
    let (long, stale) = (now + hour, now - hour);
    let unkept = |got: Vec<(RoomId, String)>| -> Vec<String> {
        got.into_iter()
            .filter(|(r, _)| *r == room)
            .map(|(_, k)| k)
            .collect()
    };

    // Held by an upload, then claimed by a message: kept; released: taken at once.
    assert!(d.hold_file(room, "a", long).await.unwrap());
    assert!(!d.take_file(room, "a", now, stale).await.unwrap(), "held");
    assert!(d.claim_file(room, "a", "m1").await.unwrap());
    assert!(
        d.claim_file(room, "a", "m1").await.unwrap(),
        "the same claim again"
    );
    assert!(
        !d.take_file(room, "a", now, stale).await.unwrap(),
        "claimed"
    );
    d.release_file(room, "a", "m1").await.unwrap();
    assert_eq!(
        unkept(d.unkept_files(now, stale, 100).await.unwrap()),
        ["a"]
    );
    assert!(d.take_file(room, "a", now, stale).await.unwrap());
    assert!(
        !d.take_file(room, "a", now, stale).await.unwrap(),
        "taken once"
    );
    // Taken: refused to uploads and messages until forgotten, then a new file.
    assert!(!d.hold_file(room, "a", long).await.unwrap());
    assert!(!d.claim_file(room, "a", "m2").await.unwrap());
    d.forget_file(room, "a").await.unwrap();
    assert!(
        !d.claim_file(room, "a", "m2").await.unwrap(),
        "no such file"
    );
    assert!(d.hold_file(room, "a", long).await.unwrap(), "uploaded anew");
    assert!(!d.take_file(room, "a", now, stale).await.unwrap());

    // Two messages carry it, and it is uploaded again after the first: deleting both messages
    // leaves it held by the last upload until that runs out or a message claims it.
    assert!(d.hold_file(room, "b", long).await.unwrap());
    assert!(d.claim_file(room, "b", "m1").await.unwrap());
    assert!(d.hold_file(room, "b", long).await.unwrap());
    assert!(d.claim_file(room, "b", "m2").await.unwrap());
    assert!(d.hold_file(room, "b", long).await.unwrap());
    d.release_file(room, "b", "m1").await.unwrap();
    d.release_file(room, "b", "m2").await.unwrap();
    assert!(
        !d.take_file(room, "b", now, stale).await.unwrap(),
        "the last upload holds it"
    );
    assert!(unkept(d.unkept_files(now, stale, 100).await.unwrap()).is_empty());
    assert!(
        d.take_file(room, "b", long + 1, stale).await.unwrap(),
        "its hold ran out"
    );

    // An upload no message claims is unkept once its hold runs out.
    assert!(d.hold_file(room, "c", now + 10).await.unwrap());
    assert!(unkept(d.unkept_files(now, stale, 100).await.unwrap()).is_empty());
    assert_eq!(
        unkept(d.unkept_files(now + 11, stale, 100).await.unwrap()),
        ["c"]
    );

    // A deletion taken and never finished is taken again once stale, and only then.
    assert!(d.hold_file(room, "d", now).await.unwrap());
    assert!(d.take_file(room, "d", now + 1, stale).await.unwrap());
    assert!(
        !d.take_file(room, "d", now + 2, now).await.unwrap(),
        "not stale yet"
    );
    assert!(
        d.take_file(room, "d", now + 3, now + 2).await.unwrap(),
        "stale"
    );

    // Many takers at once: one wins.
    assert!(d.hold_file(room, "e", now).await.unwrap());
    let mut takers = Vec::new();
    for _ in 0..8 {
        let d = d.clone();
        takers.push(tokio::spawn(async move {
            d.take_file(room, "e", now + 1, stale).await.unwrap()
        }));
    }
    let mut won = 0;
    for t in takers {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one taker");

    // A deleted room gives up its files, claimed or held, and no other room's.
    let other = Uuid::new_v4();
    assert!(d.hold_file(room, "f", long).await.unwrap());
    assert!(d.hold_file(room, "g", long).await.unwrap());
    assert!(d.claim_file(room, "g", "m3").await.unwrap());
    assert!(d.hold_file(other, "f", long).await.unwrap());
    d.release_room_files(room).await.unwrap();
    let mut left = unkept(d.unkept_files(now, stale, 100).await.unwrap());
    left.sort();
    assert!(
        left.contains(&"f".to_string()) && left.contains(&"g".to_string()),
        "{left:?}"
    );
    assert!(
        !d.take_file(other, "f", now, stale).await.unwrap(),
        "another room's file is kept"
    );
}
