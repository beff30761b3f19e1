//! The embedded store's own guarantees, beyond the ports' conformance: a send is readable in the
//! history the moment it is acknowledged (the history's reads wait for its follower); committed
//! entries reach consumers from memory, decoded once; and data directories from before the
//! single file, and from before `history.db`, are imported without losing what their pipeline
//! had not processed yet.

use std::sync::Arc;
use std::time::Duration;

use livechat_core::events::{room_event, room_record};
use livechat_core::model::*;
use livechat_core::ports::{
    Directory, EventLog, MessageEventsFn, MessageStore, NewMessage, Outbox, Placed, StartAt,
};
use livechat_schemas::{RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC};
use livechat_sinks::embedded::{
    kafka_partition, EmbeddedStore, HistoryMapping, NotificationsMapping, ReadModelMappings,
    SqliteDirectory, SqliteHistory, SqliteLog,
};
use uuid::Uuid;

fn inline() -> ReadModelMappings {
    ReadModelMappings {
        history: Some(livechat_processors::history::history_op as HistoryMapping),
        notifications: Some(
            livechat_processors::notifications::notifications_for as NotificationsMapping,
        ),
    }
}

async fn owner_and_room(d: &dyn Directory) -> (User, Room) {
    let owner = livechat_conformance::user("owner");
    d.create_user(&owner, vec![]).await.unwrap();
    let room = livechat_conformance::room(owner.id, true);
    d.create_room(&room, vec![]).await.unwrap();
    (owner, room)
}

/// A send with the real MESSAGE_SENT record the service builds.
async fn send(d: &dyn Directory, room: &Room, author: &User, text: &str) -> SendReceipt {
    send_cid(d, room, author, text, &Uuid::new_v4().to_string()).await
}

/// [`send`] with this `client_msg_id`.
async fn send_cid(
    d: &dyn Directory,
    room: &Room,
    author: &User,
    text: &str,
    cid: &str,
) -> SendReceipt {
    let msg = NewMessage {
        message_id: Uuid::new_v4(),
        room_id: room.id,
        user_id: author.id,
        content: text.into(),
        client_msg_id: Some(cid.to_string()),
        created_at: livechat_core::now(),
    };
    let (mid, rid, uid, name, content, cid, at) = (
        msg.message_id,
        room.id,
        author.id,
        author.username.clone(),
        text.to_string(),
        cid.to_string(),
        msg.created_at,
    );
    let events: MessageEventsFn = Box::new(move |seq| {
        let mut ev = room_event(RoomEventType::MessageSent, rid, at);
        ev.message_id = Some(mid.to_string());
        ev.seq = Some(seq);
        ev.actor_id = Some(uid.to_string());
        ev.subject_user_id = Some(uid.to_string());
        ev.subject_username = Some(name.clone());
        ev.client_msg_id = Some(cid.clone());
        ev.content = Some(content.clone());
        ev.message_created_at = Some(at.timestamp_millis());
        Ok(vec![room_record(ev).map_err(|e| anyhow::anyhow!("{e}"))?])
    });
    d.send_message(msg, events, Placed::default())
        .await
        .unwrap()
        .unwrap()
}

/// A retried `client_msg_id` is answered with the first message from the recent sends of the
/// log, with no receipt row written: in the process that sent it, after the store is opened
/// again, and through another handle on the file (as another process on the data directory);
/// the receipts table of older files is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_answered_from_the_log_after_a_restart_and_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let same = |a: &SendReceipt, b: &SendReceipt| {
        assert!(!a.duplicate && b.duplicate, "the retry is a duplicate");
        assert_eq!(
            (a.message_id, a.seq, a.created_at, &a.content),
            (b.message_id, b.seq, b.created_at, &b.content),
            "the retry is answered with the first message"
        );
    };
    let (owner, room, first);
    {
        let store = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
        (owner, room) = owner_and_room(store.directory.as_ref()).await;
        first = send_cid(store.directory.as_ref(), &room, &owner, "one", "c1").await;
        let again = send_cid(store.directory.as_ref(), &room, &owner, "one", "c1").await;
        same(&first, &again);
    }
    // Files from before kept a receipt row per send, with its text: dropped at the next open.
    rusqlite::Connection::open(EmbeddedStore::path(dir.path()))
        .unwrap()
        .execute_batch(
            "CREATE TABLE message_receipts(room_id TEXT, user_id TEXT, client_msg_id TEXT,
               message_id TEXT, seq INTEGER, content TEXT, created_at INTEGER);
             INSERT INTO message_receipts VALUES ('r', 'u', 'c', 'm', 1, 'old text', 0);",
        )
        .unwrap();
    let store = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
    let d = store.directory.as_ref();
    same(&first, &send_cid(d, &room, &owner, "one", "c1").await);
    // Another handle on the file: each sees the other's sends.
    let other = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
    let o = other.directory.as_ref();
    let second = send_cid(o, &room, &owner, "two", "c2").await;
    assert_eq!(second.seq, first.seq + 1, "the retries took no seq");
    same(&second, &send_cid(d, &room, &owner, "two", "c2").await);
    let third = send_cid(d, &room, &owner, "three", "c3").await;
    same(&third, &send_cid(o, &room, &owner, "three", "c3").await);
    same(&first, &send_cid(o, &room, &owner, "one", "c1").await);
    // The same id from another member, or in another room, is not a retry.
    let member = livechat_conformance::user("member");
    d.create_user(&member, vec![]).await.unwrap();
    d.add_member(room.id, member.id, Role::Member, vec![])
        .await
        .unwrap();
    assert!(!send_cid(o, &room, &member, "mine", "c1").await.duplicate);
    assert_eq!(
        tables_named(&EmbeddedStore::path(dir.path()), &["message_receipts"]),
        0,
        "no receipts table: the log is the receipt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_send_is_in_history_and_reaches_consumers_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
    let (owner, room) = owner_and_room(store.directory.as_ref()).await;
    let mut live = store
        .log
        .join_group("live", &[ROOM_EVENTS_TOPIC], StartAt::Latest)
        .await
        .unwrap();
    for i in 1..=20 {
        let receipt = send(store.directory.as_ref(), &room, &owner, &format!("m{i}")).await;
        // No wait in the test: the read itself waits for the history's follower.
        let m = store.history.message(receipt.message_id).await.unwrap();
        assert_eq!(m.map(|m| (m.seq, m.content)), Some((i, format!("m{i}"))));
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let entries = live.poll(100, Duration::from_secs(5)).await.unwrap();
        assert!(!entries.is_empty(), "published entries reach the consumer");
        got.extend(entries);
    }
    assert!(
        got.iter()
            .all(|e| matches!(e.event.as_deref(), Some(TopicEvent::Room(_)))),
        "entries carry their event: nothing to decode"
    );
    // Nothing waits in an outbox: the records went straight into the log.
    assert!(store.directory.pending(10).await.unwrap().is_empty());
}

/// How many of these tables the SQLite file at `path` has.
fn tables_named(path: &std::path::Path, names: &[&str]) -> usize {
    let conn = rusqlite::Connection::open(path).unwrap();
    names
        .iter()
        .filter(|name| {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
                > 0
        })
        .count()
}

/// How many room events the log holds, over every partition.
async fn room_events_in(log: &SqliteLog) -> usize {
    let mut n = 0;
    for p in 0..log.partitions(ROOM_EVENTS_TOPIC) {
        n += log.read(ROOM_EVENTS_TOPIC, p, 0, 1000).await.unwrap().len();
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_in_separate_files_is_imported_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, room, handled, unhandled, pending);
    {
        // The previous layout: the directory queues into its outbox; the relay and the history
        // processor had handled the first message only.
        let directory = Arc::new(SqliteDirectory::open(&dir.path().join("directory.db")).unwrap());
        let log = SqliteLog::open(&dir.path().join("log.db"), 4).unwrap();
        let history = SqliteHistory::open(&dir.path().join("history.db")).unwrap();
        (owner, room) = owner_and_room(directory.as_ref()).await;
        let relay = || async {
            let queued = directory.pending(100).await.unwrap();
            let records: Vec<OutboxRecord> = queued.iter().map(|(_, r)| r.clone()).collect();
            log.append(&records).await.unwrap();
            directory
                .remove(&queued.iter().map(|(p, _)| *p).collect::<Vec<_>>())
                .await
                .unwrap();
            records
        };
        // The first message: relayed, and handled by the history and notifications groups.
        handled = send(directory.as_ref(), &room, &owner, "handled").await;
        let records = relay().await;
        let ev = match livechat_schemas::codec::decode(&records[0].payload).unwrap() {
            TopicEvent::Room(ev) => ev,
            other => panic!("{other:?}"),
        };
        let op = livechat_processors::history::history_op(&ev)
            .unwrap()
            .unwrap();
        history.apply(&[op]).await.unwrap();
        for p in 0..4 {
            let end = log.end_offset(ROOM_EVENTS_TOPIC, p).await.unwrap();
            for group in ["history", "notifications"] {
                log.commit(group, ROOM_EVENTS_TOPIC, p, end).await.unwrap();
            }
        }
        // The second: relayed, never handled. The third: still in the outbox.
        unhandled = send(directory.as_ref(), &room, &owner, "unhandled").await;
        relay().await;
        pending = send(directory.as_ref(), &room, &owner, "pending").await;
    }
    let store = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
    assert_eq!(
        store
            .directory
            .room(room.id)
            .await
            .unwrap()
            .map(|r| r.last_seq),
        Some(3)
    );
    for (receipt, text) in [
        (&handled, "handled"),
        (&unhandled, "unhandled"),
        (&pending, "pending"),
    ] {
        let m = store.history.message(receipt.message_id).await.unwrap();
        assert_eq!(m.map(|m| m.content), Some(text.to_string()));
    }
    assert_eq!(
        room_events_in(&store.log).await,
        3,
        "the relayed records and the pending one, once each"
    );
    assert!(dir.path().join("directory.db.imported").exists());
    assert!(!dir.path().join("directory.db").exists());
    // Opening again imports nothing twice.
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
    assert_eq!(room_events_in(&store.log).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_kept_in_the_single_file_moves_out_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let single = EmbeddedStore::path(dir.path());
    let (owner, room, before);
    {
        // The previous layout: the history's tables in the single file, written with the sends.
        let unfollowed = ReadModelMappings {
            history: None,
            ..inline()
        };
        let store = EmbeddedStore::open(dir.path(), 4, unfollowed).unwrap();
        (owner, room) = owner_and_room(store.directory.as_ref()).await;
        before = send(store.directory.as_ref(), &room, &owner, "before").await;
        let entries = store
            .log
            .read(
                ROOM_EVENTS_TOPIC,
                kafka_partition(&room.id.to_string(), 4),
                0,
                100,
            )
            .await
            .unwrap();
        let inside = SqliteHistory::open(&single).unwrap();
        for e in entries {
            let TopicEvent::Room(ev) = livechat_schemas::codec::decode(&e.payload).unwrap() else {
                continue;
            };
            if let Some(op) = livechat_processors::history::history_op(&ev).unwrap() {
                inside.apply(&[op]).await.unwrap();
            }
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("history.db{suffix}")));
    }
    let store = EmbeddedStore::open(dir.path(), 4, inline()).unwrap();
    let m = store.history.message(before.message_id).await.unwrap();
    assert_eq!(
        m.map(|m| (m.seq, m.content)),
        Some((1, "before".to_string()))
    );
    let after = send(store.directory.as_ref(), &room, &owner, "after").await;
    let page = store.history.after_seq(room.id, 0, 10).await.unwrap();
    assert_eq!(
        page.iter().map(|m| (m.seq, m.id)).collect::<Vec<_>>(),
        vec![(1, before.message_id), (2, after.message_id)]
    );
    assert_eq!(
        tables_named(&single, &["messages", "reactions", "pins"]),
        0,
        "the single file no longer holds the history"
    );
}
