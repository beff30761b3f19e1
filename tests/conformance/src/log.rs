//! `EventLog`: Kafka's contract — per-key order in one partition, dense offsets, durable
//! per-group offsets, replay from 0, seek by time.

use livechat_core::ports::EventLog;
use uuid::Uuid;

use crate::record;

fn topic() -> String {
    format!("conformance.{}", Uuid::new_v4().simple())
}

async fn all_of_key(log: &dyn EventLog, topic: &str, key: &str) -> Vec<(u32, i64, String)> {
    let mut out = Vec::new();
    for p in 0..log.partitions(topic) {
        for e in log.read(topic, p, 0, 10_000).await.unwrap() {
            if *e.key == *key {
                out.push((p, e.offset, String::from_utf8(e.payload.to_vec()).unwrap()));
            }
        }
    }
    out
}

/// The partition of a topic that holds its (single-key) records.
async fn partition_with_data(log: &dyn EventLog, topic: &str) -> u32 {
    for p in 0..log.partitions(topic) {
        if log.end_offset(topic, p).await.unwrap() > 0 {
            return p;
        }
    }
    panic!("no partition of {topic} has records");
}

pub async fn records_of_a_key_stay_in_order_in_one_partition(log: &dyn EventLog) {
    let t = topic();
    let keys: Vec<String> = (0..5).map(|_| Uuid::new_v4().to_string()).collect();
    for round in 0..10 {
        let batch: Vec<_> = keys
            .iter()
            .map(|k| record(&t, k, &format!("{k}:{round}")))
            .collect();
        log.append(&batch).await.unwrap();
    }
    for k in &keys {
        let got = all_of_key(log, &t, k).await;
        assert_eq!(got.len(), 10);
        assert!(
            got.iter().all(|(p, _, _)| *p == got[0].0),
            "one partition per key"
        );
        let bodies: Vec<String> = got.iter().map(|(_, _, b)| b.clone()).collect();
        assert_eq!(
            bodies,
            (0..10).map(|r| format!("{k}:{r}")).collect::<Vec<_>>()
        );
    }
}

pub async fn offsets_are_dense_and_end_offset_is_next(log: &dyn EventLog) {
    let t = topic();
    let key = "k";
    let recs: Vec<_> = (0..7).map(|i| record(&t, key, &i.to_string())).collect();
    log.append(&recs).await.unwrap();
    let p = partition_with_data(log, &t).await;
    let entries = log.read(&t, p, 0, 100).await.unwrap();
    let offsets: Vec<i64> = entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (0..7).collect::<Vec<_>>());
    assert_eq!(log.end_offset(&t, p).await.unwrap(), 7);
    let tail = log.read(&t, p, 5, 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.offset).collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert!(log.read(&t, p, 7, 100).await.unwrap().is_empty());
    assert_eq!(
        log.read(&t, p, 0, 3).await.unwrap().len(),
        3,
        "max is honoured"
    );
}

pub async fn group_offsets_are_per_group_and_survive(log: &dyn EventLog) {
    let t = topic();
    let (g1, g2) = (
        format!("g1-{}", Uuid::new_v4()),
        format!("g2-{}", Uuid::new_v4()),
    );
    assert_eq!(log.committed(&g1, &t, 0).await.unwrap(), None);
    log.commit(&g1, &t, 0, 42).await.unwrap();
    log.commit(&g1, &t, 0, 43).await.unwrap();
    assert_eq!(log.committed(&g1, &t, 0).await.unwrap(), Some(43));
    assert_eq!(log.committed(&g2, &t, 0).await.unwrap(), None);
}

pub async fn offset_for_time_seeks_by_timestamp(log: &dyn EventLog) {
    let t = topic();
    log.append(&[record(&t, "k", "old")]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cut = livechat_core::now().timestamp_millis();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    log.append(&[record(&t, "k", "new")]).await.unwrap();
    let p = partition_with_data(log, &t).await;
    assert_eq!(log.offset_for_time(&t, p, 0).await.unwrap(), 0);
    assert_eq!(log.offset_for_time(&t, p, cut).await.unwrap(), 1);
    assert_eq!(
        log.offset_for_time(&t, p, cut + 60_000).await.unwrap(),
        2,
        "past the end: the end offset"
    );
}

pub async fn appends_wake_waiting_consumers(log: &dyn EventLog) {
    let mut signal = log.append_signal();
    signal.borrow_and_update();
    log.append(&[record(&topic(), "k", "x")]).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(2), signal.changed())
        .await
        .expect("signalled")
        .unwrap();
}

/// Polls until `n` records arrived (or fails after a deadline).
async fn poll_n(
    c: &mut Box<dyn livechat_core::ports::GroupConsumer>,
    n: usize,
) -> Vec<livechat_core::model::LogEntry> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} records polled",
            out.len()
        );
        out.extend(
            c.poll(n - out.len(), std::time::Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    out
}

pub async fn a_group_resumes_after_its_committed_offsets(log: &dyn EventLog) {
    use livechat_core::ports::StartAt;
    let t = topic();
    let group = format!("group-{}", Uuid::new_v4());
    let recs: Vec<_> = (0..10)
        .map(|i| record(&t, &format!("k{}", i % 3), &i.to_string()))
        .collect();
    log.append(&recs).await.unwrap();
    let mut c = log
        .join_group(&group, &[&t], StartAt::Earliest)
        .await
        .unwrap();
    let first = poll_n(&mut c, 10).await;
    // Per key, the order of appends is kept.
    for k in ["k0", "k1", "k2"] {
        let bodies: Vec<i32> = first
            .iter()
            .filter(|e| &*e.key == k)
            .map(|e| String::from_utf8_lossy(&e.payload).parse().unwrap())
            .collect();
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(bodies, sorted);
    }
    let next: Vec<(String, u32, i64)> = first
        .iter()
        .map(|e| (e.topic.to_string(), e.partition, e.offset + 1))
        .collect();
    c.commit(&next).await.unwrap();
    // The commit is what the log reports for the group (what its lag is computed from).
    for (topic, partition, n) in &next {
        let highest = next
            .iter()
            .filter(|(t, p, _)| t == topic && p == partition)
            .map(|e| e.2)
            .max();
        assert_eq!(
            log.committed(&group, topic, *partition).await.unwrap(),
            highest,
            "committed offset of {topic}/{partition} (one entry: {n})"
        );
    }
    drop(c);
    log.append(&[record(&t, "k0", "after")]).await.unwrap();
    let mut again = log
        .join_group(&group, &[&t], StartAt::Earliest)
        .await
        .unwrap();
    let rest = poll_n(&mut again, 1).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].payload, &b"after"[..]);
    // A Latest member of another group starts at the end.
    let mut live = log
        .join_group(&format!("live-{}", Uuid::new_v4()), &[&t], StartAt::Latest)
        .await
        .unwrap();
    assert!(live
        .poll(10, std::time::Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    log.append(&[record(&t, "k1", "live")]).await.unwrap();
    assert_eq!(poll_n(&mut live, 1).await[0].payload, &b"live"[..]);
}

/// Headers come back with the record, in order, repeated keys included (an adapter may add
/// its own, such as Kafka's `event_id`, but never drops or changes those appended).
pub async fn headers_round_trip(log: &dyn EventLog) {
    use livechat_core::ports::StartAt;
    let t = topic();
    let headers: Vec<(String, String)> = vec![
        ("orig.topic".into(), "chat.room-events.v1".into()),
        ("orig.offset".into(), "42".into()),
        ("error.msg".into(), "héllo: ünïcode, \"quotes\"".into()),
        ("empty".into(), String::new()),
        ("orig.offset".into(), "43".into()),
    ];
    let mut with = record(&t, "k", "with");
    with.headers = headers.clone();
    let without = record(&t, "k", "without");
    log.append(&[with, without]).await.unwrap();
    let p = partition_with_data(log, &t).await;
    let appended_only = |got: &[(String, String)]| -> Vec<(String, String)> {
        got.iter()
            .filter(|h| headers.iter().any(|(k, _)| *k == h.0))
            .cloned()
            .collect()
    };
    let entries = log.read(&t, p, 0, 10).await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(appended_only(&entries[0].headers), headers, "read");
    assert!(appended_only(&entries[1].headers).is_empty(), "no headers");
    let mut c = log
        .join_group(&format!("h-{}", Uuid::new_v4()), &[&t], StartAt::Earliest)
        .await
        .unwrap();
    let polled = poll_n(&mut c, 2).await;
    let with = polled.iter().find(|e| e.payload == b"with"[..]).unwrap();
    assert_eq!(appended_only(&with.headers), headers, "group poll");
}
