//! `MessageStore`: idempotent changes, dense seqs with tombstones, pages in both directions.

use livechat_core::model::{Attachment, FileMeta, HistoryOp, Reaction, StoredMessage};
use livechat_core::ports::MessageStore;
use uuid::Uuid;

use crate::{at, message};

pub async fn inserts_are_idempotent(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let m = message(room, 1, "hello");
    store.apply(&[HistoryOp::Insert(m.clone())]).await.unwrap();
    store
        .apply(&[HistoryOp::Insert(m.clone()), HistoryOp::Insert(m.clone())])
        .await
        .unwrap();
    assert_eq!(store.after_seq(room, 0, 10).await.unwrap(), vec![m.clone()]);
    assert_eq!(store.message(m.id).await.unwrap(), Some(m));
}

/// A fixed instant a minute before the first call (ties between changes stay exact; a room purged
/// later, at the store's own clock, is purged after every change made here).
fn base_ms() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| livechat_core::now().timestamp_millis() - 60_000)
}

/// A message sent (at seq milliseconds) before every change stamped from [`base_ms`].
fn sent_before(room: Uuid, seq: i64, content: &str) -> StoredMessage {
    let mut m = message(room, seq, content);
    m.created_at = livechat_core::from_ms(base_ms() - 10_000 + seq);
    m.updated_at = m.created_at;
    m
}

/// `user`'s reaction to `m`, changed `ms` milliseconds after a fixed instant (ties are exact).
fn react(m: &StoredMessage, user: Uuid, emoji: &str, added: bool, ms: i64) -> HistoryOp {
    HistoryOp::React {
        room_id: m.room_id,
        message_id: m.id,
        seq: m.seq,
        user_id: user,
        emoji: emoji.into(),
        added,
        at: livechat_core::from_ms(base_ms() + ms),
    }
}

/// A reply keeps the seq it quotes; reactions are grouped by emoji in the order of their first
/// use, the newest change of each (message, user, emoji) wins whatever order the changes come
/// in (a removal winning a tie), and every read (by id, by seq, recent) shows them.
pub async fn replies_and_reactions_are_kept_newest_change_first(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let first = sent_before(room, 1, "first");
    let mut reply = sent_before(room, 2, "a reply");
    reply.reply_to_seq = Some(1);
    let (u1, u2, u3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let ops = vec![
        HistoryOp::Insert(first.clone()),
        HistoryOp::Insert(reply.clone()),
        react(&first, u1, "👍", true, 10),
        react(&first, u2, "👍", true, 20),
        react(&first, u1, "🎉", true, 15),
        react(&first, u2, "👍", false, 30),
        // A removal and an add at the same instant: the removal wins.
        react(&first, u3, "❤️", true, 40),
        react(&first, u3, "❤️", false, 40),
        // An older add applied late does not undo the removal.
        react(&first, u2, "👍", true, 25),
        // A reaction naming another message's id at this seq changes nothing.
        HistoryOp::React {
            room_id: room,
            message_id: Uuid::new_v4(),
            seq: 1,
            user_id: u3,
            emoji: "🙂".into(),
            added: true,
            at: livechat_core::from_ms(base_ms() + 50),
        },
    ];
    store.apply(&ops).await.unwrap();
    store.apply(&ops).await.unwrap();
    let expected = vec![
        Reaction {
            emoji: "👍".into(),
            user_ids: vec![u1],
        },
        Reaction {
            emoji: "🎉".into(),
            user_ids: vec![u1],
        },
    ];
    let got = store.message(first.id).await.unwrap().unwrap();
    assert_eq!(got.reactions, expected);
    let page = store.after_seq(room, 0, 10).await.unwrap();
    assert_eq!(page[0].reactions, expected);
    assert_eq!(page[1].reply_to_seq, Some(1));
    assert!(page[1].reactions.is_empty());
    assert_eq!(
        store.before_seq(room, 3, 10).await.unwrap()[1].reactions,
        expected
    );
    assert_eq!(
        store.recent(room, None, 10).await.unwrap()[1].reactions,
        expected
    );
    let read_reply = store.message(reply.id).await.unwrap().unwrap();
    assert_eq!(read_reply.reply_to_seq, Some(1));

    // Two users with one emoji: in the order they reacted.
    store
        .apply(&[
            react(&reply, u2, "👀", true, 70),
            react(&reply, u1, "👀", true, 60),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.message(reply.id).await.unwrap().unwrap().reactions,
        vec![Reaction {
            emoji: "👀".into(),
            user_ids: vec![u1, u2],
        }]
    );

    // A deleted message shows no reactions, and takes none later.
    store
        .apply(&[
            HistoryOp::Delete {
                room_id: room,
                message_id: first.id,
                at: livechat_core::from_ms(base_ms() + 100),
            },
            react(&first, u3, "👍", true, 200),
        ])
        .await
        .unwrap();
    assert!(store
        .message(first.id)
        .await
        .unwrap()
        .unwrap()
        .reactions
        .is_empty());
    assert!(store.after_seq(room, 0, 1).await.unwrap()[0]
        .reactions
        .is_empty());
}

/// `user`'s pin change of `m`, `ms` milliseconds after a fixed instant.
fn pin(m: &StoredMessage, user: Uuid, pinned: bool, ms: i64) -> HistoryOp {
    HistoryOp::Pin {
        room_id: m.room_id,
        message_id: m.id,
        seq: m.seq,
        user_id: user,
        pinned,
        at: livechat_core::from_ms(base_ms() + ms),
    }
}

/// The newest pin change of a message wins whatever order they come in; the room's pinned
/// messages come latest pinned first, deleted ones left out; every read shows the pin.
pub async fn pins_keep_the_newest_change(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let ms: Vec<StoredMessage> = (1..=4)
        .map(|s| sent_before(room, s, &format!("m{s}")))
        .collect();
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    let mut ops: Vec<HistoryOp> = ms.iter().cloned().map(HistoryOp::Insert).collect();
    ops.extend([
        pin(&ms[0], u1, true, 10),
        pin(&ms[1], u2, true, 20),
        pin(&ms[2], u1, true, 30),
        pin(&ms[2], u1, false, 40),
        // An older change applied late loses.
        pin(&ms[2], u2, true, 35),
        pin(&ms[3], u2, true, 50),
    ]);
    store.apply(&ops).await.unwrap();
    store.apply(&ops).await.unwrap();
    let listed: Vec<i64> = store
        .pinned(room, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(listed, vec![4, 2, 1], "latest pinned first");
    let two: Vec<i64> = store
        .pinned(room, 2)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(two, vec![4, 2]);
    let first = store.message(ms[0].id).await.unwrap().unwrap();
    let p = first.pin.expect("pinned");
    assert!(p.pinned);
    assert_eq!(p.by, u1);
    let third = store.after_seq(room, 2, 1).await.unwrap().remove(0);
    assert!(
        !third.pin.expect("a pin change").pinned,
        "unpinned stays unpinned"
    );
    assert_eq!(
        store.recent(room, None, 10).await.unwrap()[0]
            .pin
            .as_ref()
            .map(|p| p.pinned),
        Some(true)
    );
    store
        .apply(&[
            HistoryOp::Delete {
                room_id: room,
                message_id: ms[3].id,
                at: livechat_core::from_ms(base_ms() + 100),
            },
            pin(&ms[3], u1, true, 200),
        ])
        .await
        .unwrap();
    let listed: Vec<i64> = store
        .pinned(room, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(listed, vec![2, 1], "a deleted message is not pinned");
    assert!(store
        .message(ms[3].id)
        .await
        .unwrap()
        .unwrap()
        .pin
        .is_none());
    store
        .apply(&[HistoryOp::PurgeRoom { room_id: room }])
        .await
        .unwrap();
    assert!(store.pinned(room, 10).await.unwrap().is_empty());
}

/// Thread replies: their root's summary (live replies only) on every read, the thread's pages
/// oldest first, a delete leaving the count, a replay changing nothing, a purge removing them.
pub async fn threads_count_live_replies_and_page_them(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let mut ms: Vec<StoredMessage> = (1..=7)
        .map(|s| sent_before(room, s, &format!("m{s}")))
        .collect();
    for (i, root) in [(1, 1), (2, 1), (4, 1), (6, 4)] {
        ms[i].thread_root_seq = Some(root);
    }
    let ops: Vec<HistoryOp> = ms.iter().cloned().map(HistoryOp::Insert).collect();
    store.apply(&ops).await.unwrap();
    store.apply(&ops).await.unwrap();
    let page = store.after_seq(room, 0, 10).await.unwrap();
    let root = page[0].thread.clone().expect("a thread under seq 1");
    assert_eq!((root.reply_count, root.last_reply_seq), (3, 5));
    assert_eq!(root.last_reply_at, ms[4].created_at);
    assert_eq!(page[1].thread_root_seq, Some(1), "a reply names its root");
    assert!(page[1].thread.is_none() && page[2].thread.is_none());
    assert_eq!(page[3].thread.as_ref().map(|t| t.reply_count), Some(1));
    let seqs = |v: Vec<StoredMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.thread(room, 1, 0, 10).await.unwrap()),
        vec![2, 3, 5]
    );
    assert_eq!(seqs(store.thread(room, 1, 2, 1).await.unwrap()), vec![3]);
    assert_eq!(seqs(store.thread(room, 4, 0, 10).await.unwrap()), vec![7]);
    assert!(store.thread(room, 2, 0, 10).await.unwrap().is_empty());
    // The same summary on every read path.
    let one = store.message(ms[0].id).await.unwrap().unwrap();
    assert_eq!(one.thread.map(|t| t.reply_count), Some(3));
    let newest = store.before_seq(room, 8, 10).await.unwrap();
    assert_eq!(
        newest
            .last()
            .and_then(|m| m.thread.clone())
            .map(|t| t.reply_count),
        Some(3)
    );
    let recent = store.recent(room, None, 10).await.unwrap();
    assert_eq!(
        recent
            .last()
            .and_then(|m| m.thread.clone())
            .map(|t| t.last_reply_seq),
        Some(5)
    );

    let delete = HistoryOp::Delete {
        room_id: room,
        message_id: ms[4].id,
        at: livechat_core::from_ms(base_ms() + 100),
    };
    store.apply(std::slice::from_ref(&delete)).await.unwrap();
    store.apply(&ops).await.unwrap(); // a replay of the inserts brings nothing back
    let root = store
        .message(ms[0].id)
        .await
        .unwrap()
        .unwrap()
        .thread
        .unwrap();
    assert_eq!(
        (root.reply_count, root.last_reply_seq),
        (2, 3),
        "a deleted reply leaves"
    );
    assert_eq!(
        seqs(store.thread(room, 1, 0, 10).await.unwrap()),
        vec![2, 3]
    );
    store
        .apply(&[HistoryOp::PurgeRoom { room_id: room }])
        .await
        .unwrap();
    assert!(store.thread(room, 1, 0, 10).await.unwrap().is_empty());
}

pub async fn pages_by_seq_in_both_directions(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let ops: Vec<_> = (1..=30)
        .map(|s| HistoryOp::Insert(message(room, s, &format!("m{s}"))))
        .collect();
    store.apply(&ops).await.unwrap();
    let after: Vec<i64> = store
        .after_seq(room, 10, 5)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(after, vec![11, 12, 13, 14, 15]);
    let before: Vec<i64> = store
        .before_seq(room, 10, 3)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(before, vec![9, 8, 7]);
    let newest: Vec<i64> = store
        .before_seq(room, i64::MAX, 2)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(newest, vec![30, 29]);
    let recent = store.recent(room, None, 3).await.unwrap();
    assert_eq!(
        recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![30, 29, 28]
    );
    let older = store
        .recent(room, Some(recent[2].created_at), 2)
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![27, 26]
    );
}

pub async fn edits_and_deletes_are_idempotent_and_keep_seqs_dense(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let (a, b) = (message(room, 1, "a"), message(room, 2, "b"));
    store
        .apply(&[HistoryOp::Insert(a.clone()), HistoryOp::Insert(b.clone())])
        .await
        .unwrap();
    let edit = HistoryOp::Edit {
        room_id: room,
        message_id: a.id,
        content: "a2".into(),
        at: at(100),
    };
    store.apply(&[edit.clone(), edit]).await.unwrap();
    let del = HistoryOp::Delete {
        room_id: room,
        message_id: b.id,
        at: at(200),
    };
    store.apply(&[del.clone(), del]).await.unwrap();
    // An edit arriving after the delete does not resurrect the text.
    store
        .apply(&[HistoryOp::Edit {
            room_id: room,
            message_id: b.id,
            content: "zombie".into(),
            at: at(300),
        }])
        .await
        .unwrap();
    // An older edit applied after a newer one (a write-through and the processor applying the
    // same edits, in another order) leaves the newer text.
    let newest = at(400);
    let (newer, older) = (
        HistoryOp::Edit {
            room_id: room,
            message_id: a.id,
            content: "a3".into(),
            at: newest,
        },
        HistoryOp::Edit {
            room_id: room,
            message_id: a.id,
            content: "a2 again".into(),
            at: at(100),
        },
    );
    store.apply(&[newer.clone(), older]).await.unwrap();
    let a_now = store.message(a.id).await.unwrap().unwrap();
    assert_eq!(a_now.content, "a3", "the newest edit wins");
    assert_eq!(a_now.updated_at, newest);
    store.apply(&[newer]).await.unwrap();
    let all = store.after_seq(room, 0, 10).await.unwrap();
    assert_eq!(all.len(), 2, "the tombstone keeps its seq");
    assert_eq!((all[0].content.as_str(), all[0].edited), ("a3", true));
    assert_eq!((all[1].content.as_str(), all[1].deleted), ("", true));
    let visible = store.recent(room, None, 10).await.unwrap();
    assert_eq!(
        visible.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1],
        "recent skips tombstones"
    );
}

/// `n` files as a message carries them (an image first, with its size).
fn files(n: i64) -> Vec<Attachment> {
    (0..n.min(3))
        .map(|i| Attachment {
            meta: FileMeta {
                key: format!("{:064x}", n * 10 + i),
                content_type: if i == 0 {
                    "image/png"
                } else {
                    "application/pdf"
                }
                .into(),
                size: 1000 + i as u64,
                width: (i == 0).then_some(640),
                height: (i == 0).then_some(480),
                thumbnail: (i == 0).then(|| "image/jpeg".into()),
            },
            name: format!("file {i} \"é\".png"),
        })
        .collect()
}

/// A message's files come back as they were sent, in their order, from every read; a delete
/// takes them away with the text.
pub async fn attachments_are_kept_until_the_message_is_deleted(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let mut a = message(room, 1, "");
    a.attachments = files(3);
    let b = message(room, 2, "no files");
    store
        .apply(&[HistoryOp::Insert(a.clone()), HistoryOp::Insert(b.clone())])
        .await
        .unwrap();
    assert_eq!(store.message(a.id).await.unwrap(), Some(a.clone()));
    let page = store.after_seq(room, 0, 10).await.unwrap();
    assert_eq!(page, vec![a.clone(), b.clone()]);
    assert_eq!(
        store.recent(room, None, 10).await.unwrap()[1].attachments,
        a.attachments
    );
    store
        .apply(&[HistoryOp::Delete {
            room_id: room,
            message_id: a.id,
            at: at(100),
        }])
        .await
        .unwrap();
    let gone = store.message(a.id).await.unwrap().unwrap();
    assert!(gone.deleted);
    assert!(
        gone.attachments.is_empty(),
        "a deleted message keeps no files"
    );
}

pub async fn rooms_are_isolated_and_purge_removes_one_room(store: &dyn MessageStore) {
    let (r1, r2) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .apply(&[
            HistoryOp::Insert(message(r1, 1, "x")),
            HistoryOp::Insert(message(r2, 1, "y")),
        ])
        .await
        .unwrap();
    store
        .apply(&[HistoryOp::PurgeRoom { room_id: r1 }])
        .await
        .unwrap();
    assert!(store.after_seq(r1, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.after_seq(r2, 0, 10).await.unwrap().len(), 1);
}

/// Many of the longest messages (4,000 characters, some of four bytes each) of a few rooms in
/// one call, as a busy room's processor batch brings them: an adapter that groups writes must
/// stay within what its server accepts in one request, and keep every message whole.
pub async fn a_batch_of_long_messages_is_stored_whole(store: &dyn MessageStore) {
    let rooms = [Uuid::new_v4(), Uuid::new_v4()];
    let long = |s: i64| format!("{s:04}{}", "\u{1F600}é".repeat(1998));
    let ops: Vec<_> = (1..=120)
        .flat_map(|s| rooms.map(|r| HistoryOp::Insert(message(r, s, &long(s)))))
        .collect();
    store.apply(&ops).await.unwrap();
    for room in rooms {
        let got = store.after_seq(room, 0, 500).await.unwrap();
        assert_eq!(got.len(), 120);
        for (m, s) in got.iter().zip(1..) {
            assert_eq!((m.seq, m.content.as_str()), (s, long(s).as_str()));
        }
    }
}

/// Sends of several rooms written together once their rooms have messages, as concurrent
/// sends' write-throughs are (an adapter may then write a room's rows with their lookup entries
/// in one request): every message is found by id and in its room's pages, long ones whole.
pub async fn concurrent_sends_of_several_rooms_are_found_by_id(store: &dyn MessageStore) {
    let rooms = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let first: Vec<_> = rooms
        .iter()
        .map(|r| HistoryOp::Insert(message(*r, 1, "first")))
        .collect();
    store.apply(&first).await.unwrap();
    let text = |r: usize, s: i64| match s % 4 {
        0 => format!("{r}/{s} {}", "\u{1F600}é".repeat(1998)),
        _ => format!("{r}/{s}"),
    };
    let sent: Vec<StoredMessage> = (2..=30)
        .flat_map(|s| rooms.iter().enumerate().map(move |(i, r)| (i, *r, s)))
        .map(|(i, r, s)| message(r, s, &text(i, s)))
        .collect();
    let ops: Vec<_> = sent.iter().cloned().map(HistoryOp::Insert).collect();
    store.apply(&ops).await.unwrap();
    for m in &sent {
        assert_eq!(store.message(m.id).await.unwrap().as_ref(), Some(m));
    }
    for (i, room) in rooms.iter().enumerate() {
        let got = store.after_seq(*room, 0, 100).await.unwrap();
        let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
        for m in &got[1..] {
            assert_eq!(m.content, text(i, m.seq));
        }
    }
}

/// Seqs across a partition boundary of adapters that bucket rows by seq (1,000 per bucket is
/// common): pages that start, end or jump across the boundary.
pub async fn pages_cross_partition_boundaries(store: &dyn MessageStore) {
    let room = Uuid::new_v4();
    let ops: Vec<_> = (1..=1205)
        .map(|s| HistoryOp::Insert(message(room, s, &format!("m{s}"))))
        .collect();
    for chunk in ops.chunks(500) {
        store.apply(chunk).await.unwrap();
    }
    let seqs =
        |v: Vec<livechat_core::model::StoredMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.after_seq(room, 990, 20).await.unwrap()),
        (991..=1010).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.after_seq(room, 999, 2).await.unwrap()),
        vec![1000, 1001]
    );
    assert_eq!(
        seqs(store.after_seq(room, 1200, 100).await.unwrap()),
        (1201..=1205).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(store.before_seq(room, 1005, 10).await.unwrap()),
        (995..=1004).rev().collect::<Vec<_>>()
    );
    assert_eq!(seqs(store.before_seq(room, 2, 10).await.unwrap()), vec![1]);
    assert_eq!(store.after_seq(room, 0, 5000).await.unwrap().len(), 1205);
    let at_1000 = store.after_seq(room, 999, 1).await.unwrap()[0].created_at;
    assert_eq!(
        seqs(store.recent(room, Some(at_1000), 2).await.unwrap()),
        vec![999, 998],
        "a page ending exactly at a boundary"
    );
    let at_1001 = store.after_seq(room, 1000, 1).await.unwrap()[0].created_at;
    assert_eq!(
        seqs(store.recent(room, Some(at_1001), 3).await.unwrap()),
        vec![1000, 999, 998]
    );
    // Tombstones across the boundary are skipped by `recent`, kept by seq pages.
    let dels: Vec<_> = store
        .after_seq(room, 997, 6)
        .await
        .unwrap()
        .iter()
        .map(|m| HistoryOp::Delete {
            room_id: room,
            message_id: m.id,
            at: at(5000),
        })
        .collect();
    store.apply(&dels).await.unwrap();
    assert_eq!(
        seqs(store.recent(room, Some(at_1001), 2).await.unwrap()),
        vec![997, 996]
    );
    assert_eq!(
        store
            .after_seq(room, 997, 6)
            .await
            .unwrap()
            .iter()
            .filter(|m| m.deleted)
            .count(),
        6
    );
    store
        .apply(&[HistoryOp::PurgeRoom { room_id: room }])
        .await
        .unwrap();
    assert!(store.after_seq(room, 0, 10).await.unwrap().is_empty());
    assert!(store
        .before_seq(room, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The change log of [`checksum_matches_the_reference_and_survives_replay`]: three rooms, edits
/// (one arriving late, with an older time), deletes, an edit after a delete, a purge, text with
/// the checksum's separators, and messages without a client id.
fn replay_log() -> Vec<HistoryOp> {
    let (r1, r2, r3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut ops = Vec::new();
    let mut ids = Vec::new();
    let mut messages = Vec::new();
    for (room, n) in [(r1, 12), (r2, 5), (r3, 3)] {
        for s in 1..=n {
            let mut m = message(room, s, &format!("text {s} | with\nseparators é ✓"));
            if s % 4 == 0 {
                m.client_msg_id = None;
            }
            if s % 5 == 0 {
                m.reply_to_seq = Some(s - 1);
            }
            if s % 3 == 0 {
                // Thread replies, under the room's first message.
                m.thread_root_seq = Some(1);
            }
            if s % 2 == 0 {
                m.attachments = files(s);
            }
            ids.push((room, m.id));
            messages.push(m.clone());
            ops.push(HistoryOp::Insert(m));
        }
    }
    let edit = |(room_id, message_id): (Uuid, Uuid), content: &str, ms| HistoryOp::Edit {
        room_id,
        message_id,
        content: content.into(),
        at: at(ms),
    };
    let delete = |(room_id, message_id): (Uuid, Uuid), ms| HistoryOp::Delete {
        room_id,
        message_id,
        at: at(ms),
    };
    ops.extend([
        edit(ids[0], "first edit", 1000),
        edit(ids[0], "second edit", 2000),
        edit(ids[1], "late edit, older time", -1000),
        delete(ids[2], 3000),
        edit(ids[2], "zombie", 4000),
        delete(ids[3], 3000),
        delete(ids[3], 3500),
        edit(ids[12], "r2 edit", 100),
        // An edit naming the wrong room changes nothing.
        edit((r1, ids[13].1), "wrong room", 100),
        HistoryOp::PurgeRoom { room_id: r3 },
    ]);
    // Reactions: kept, taken back, on a message deleted later, and in a purged room.
    let (u1, u2) = (Uuid::new_v4(), Uuid::new_v4());
    ops.extend([
        react(&messages[4], u1, "👍", true, 10),
        react(&messages[4], u2, "👍", true, 11),
        react(&messages[4], u2, "🎉", true, 12),
        react(&messages[4], u1, "👍", false, 13),
        react(&messages[5], u1, "❤️", true, 10),
        react(&messages[5], u1, "❤️", false, 10),
        react(&messages[6], u1, "👀", true, 10),
        HistoryOp::Delete {
            room_id: r1,
            message_id: messages[6].id,
            at: at(5000),
        },
        react(&messages[13], u2, "🙂", true, 10),
        react(&messages[18], u2, "🙂", true, 10),
        // Pins: kept, taken back, on a message deleted later, and in a purged room.
        pin(&messages[0], u1, true, 10),
        pin(&messages[1], u1, true, 10),
        pin(&messages[1], u2, false, 20),
        pin(&messages[6], u2, true, 10),
        pin(&messages[13], u2, true, 30),
        pin(&messages[18], u2, true, 30),
    ]);
    ops
}

/// Two stores built from the same log have the same checksum, and replaying the log (whole, or
/// from the middle) changes nothing. Both stores must be empty and used by this check alone (the
/// checksum covers a whole store); `reference` is typically the embedded adapter.
pub async fn checksum_matches_the_reference_and_survives_replay(
    store: &dyn MessageStore,
    reference: &dyn MessageStore,
) {
    let ops = replay_log();
    store.apply(&ops).await.unwrap();
    reference.apply(&ops).await.unwrap();
    let first = store.checksum().await.unwrap();
    assert_eq!(first.rows, 17, "r1 and r2 kept, r3 purged");
    assert_eq!(
        first,
        reference.checksum().await.unwrap(),
        "same log, same digest"
    );
    store.apply(&ops).await.unwrap();
    assert_eq!(
        store.checksum().await.unwrap(),
        first,
        "a full replay changes nothing"
    );
    for op in &ops[20..] {
        store.apply(std::slice::from_ref(op)).await.unwrap();
    }
    assert_eq!(
        store.checksum().await.unwrap(),
        first,
        "a partial replay changes nothing"
    );
    // The digest covers reactions: one more is seen.
    let Some(HistoryOp::Insert(m)) = ops.first() else {
        panic!("the log starts with an insert")
    };
    store
        .apply(&[react(m, Uuid::new_v4(), "🚀", true, 99)])
        .await
        .unwrap();
    let changed = store.checksum().await.unwrap();
    assert_eq!(changed.rows, first.rows);
    assert_ne!(
        changed.sha256, first.sha256,
        "a new reaction changes the digest"
    );
}

/// An author's messages not deleted, over several rooms, in (room, seq) order, a page at a
/// time from where the last one ended: what an account's erasure deletes.
pub async fn messages_are_listed_by_author(store: &dyn MessageStore) {
    let author = Uuid::new_v4();
    let mut rooms = [Uuid::new_v4(), Uuid::new_v4()];
    rooms.sort_by_key(|r| r.to_string());
    let mut theirs = Vec::new();
    let mut ops = Vec::new();
    for room in rooms {
        for seq in 1..=4 {
            let mut m = message(room, seq, "by someone");
            if seq != 2 {
                m.user_id = author;
                theirs.push((room, seq, m.id));
            }
            ops.push(HistoryOp::Insert(m));
        }
    }
    // One of theirs deleted: not listed.
    let (room, seq, id) = theirs.remove(1);
    assert_eq!(seq, 3);
    ops.push(HistoryOp::Delete {
        room_id: room,
        message_id: id,
        at: at(10),
    });
    store.apply(&ops).await.unwrap();
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.by_author(author, after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.room_id, last.seq));
        listed.extend(page.iter().map(|m| (m.room_id, m.seq, m.id)));
    }
    assert_eq!(listed, theirs);
    assert!(store
        .by_author(Uuid::new_v4(), None, 10)
        .await
        .unwrap()
        .is_empty());
}
