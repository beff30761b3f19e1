//! The embedded store's own guarantees, beyond the ports' conformance: a change, its log records
//! and the read models kept inline commit together, so a send is readable the moment it is
//! acknowledged; committed entries reach consumers from memory, decoded once; and a data
//! directory from before the single file is imported without losing what its pipeline had not
//! processed yet.

use std::sync::Arc;
use std::time::Duration;

use livechat_core::events::{room_event, room_record};
use livechat_core::model::*;
use livechat_core::ports::{
    Directory, EventLog, MessageEventsFn, MessageStore, NewMessage, Outbox, StartAt,
};
use livechat_schemas::{RoomEventType, TopicEvent, ROOM_EVENTS_TOPIC};
use livechat_sinks::embedded::{
    EmbeddedStore, HistoryMapping, InlineReadModels, NotificationsMapping, SqliteDirectory,
    SqliteHistory, SqliteLog,
};
use uuid::Uuid;

fn inline() -> InlineReadModels {
    InlineReadModels {
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
    let msg = NewMessage {
        message_id: Uuid::new_v4(),
        room_id: room.id,
        user_id: author.id,
        content: text.into(),
        client_msg_id: Some(Uuid::new_v4().to_string()),
        created_at: livechat_core::now(),
    };
    let (mid, rid, uid, name, content) = (
        msg.message_id,
        room.id,
        author.id,
        author.username.clone(),
        text.to_string(),
    );
    let events: MessageEventsFn = Box::new(move |seq| {
        let mut ev = room_event(RoomEventType::MessageSent, rid, livechat_core::now());
        ev.message_id = Some(mid.to_string());
        ev.seq = Some(seq);
        ev.subject_user_id = Some(uid.to_string());
        ev.subject_username = Some(name.clone());
        ev.content = Some(content.clone());
        Ok(vec![room_record(ev).map_err(|e| anyhow::anyhow!("{e}"))?])
    });
    d.send_message(msg, events).await.unwrap().unwrap()
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
        // No wait of any kind: the history row was committed with the send.
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
