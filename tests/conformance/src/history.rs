//! `MessageStore`: idempotent changes, dense seqs with tombstones, pages in both directions.

use livechat_core::model::HistoryOp;
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
    let all = store.after_seq(room, 0, 10).await.unwrap();
    assert_eq!(all.len(), 2, "the tombstone keeps its seq");
    assert_eq!((all[0].content.as_str(), all[0].edited), ("a2", true));
    assert_eq!((all[1].content.as_str(), all[1].deleted), ("", true));
    let visible = store.recent(room, None, 10).await.unwrap();
    assert_eq!(
        visible.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1],
        "recent skips tombstones"
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
