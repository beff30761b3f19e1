//! The Kafka log adapter against the shared conformance suite, on a real broker
//! (`scripts/dev-services up kafka`; address in `LIVECHAT_KAFKA_BROKERS`).
#![cfg(feature = "kafka")]

use livechat_sinks::kafka::{KafkaConfig, KafkaLog};

async fn kafka() -> Option<KafkaLog> {
    let brokers = livechat_conformance::server_env("LIVECHAT_KAFKA_BROKERS", "kafka")?;
    // A namespace, as deployments sharing a cluster use: topics and groups are prefixed on the
    // broker and not in what the adapter hands out.
    let cfg = KafkaConfig {
        brokers,
        namespace: format!("conformance{}.", uuid::Uuid::new_v4().simple()),
        ..KafkaConfig::default()
    };
    Some(KafkaLog::connect(cfg, 4).await.expect("connect to Kafka"))
}

livechat_conformance::log_suite!(kafka());

/// Beyond the shared suite: every event record carries its CloudEvents attributes as headers
/// (docs/topics.md), whether the record brings its event along or only its encoded payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_records_carry_cloudevents_headers() {
    use livechat_core::events::{room_event, room_record};
    use livechat_core::ports::EventLog;
    use livechat_schemas::{RoomEventType, ROOM_EVENTS_TOPIC};

    let Some(log) = kafka().await else {
        return;
    };
    let room = uuid::Uuid::new_v4();
    let at = chrono::DateTime::from_timestamp_millis(1_764_201_600_123).unwrap();
    let with_event = room_record(room_event(RoomEventType::RoomCreated, room, at)).unwrap();
    let mut payload_only = room_record(room_event(RoomEventType::RoomUpdated, room, at)).unwrap();
    payload_only.event = None;
    log.append(&[with_event.clone(), payload_only.clone()])
        .await
        .unwrap();
    let mut read = Vec::new();
    for p in 0..log.partitions(ROOM_EVENTS_TOPIC) {
        read.extend(log.read(ROOM_EVENTS_TOPIC, p, 0, 10).await.unwrap());
    }
    read.retain(|e| *e.key == *room.to_string());
    assert_eq!(read.len(), 2);
    for (entry, (sent, kind)) in read.iter().zip([
        (&with_event, "livechat.room.room_created"),
        (&payload_only, "livechat.room.room_updated"),
    ]) {
        let header = |k: &str| {
            entry
                .headers
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("ce_specversion"), Some("1.0"));
        assert_eq!(header("ce_id"), Some(sent.event_id.to_string().as_str()));
        assert_eq!(header("ce_type"), Some(kind));
        assert_eq!(header("ce_source"), Some("/livechat/rooms"));
        assert_eq!(header("ce_subject"), Some(room.to_string().as_str()));
        assert_eq!(header("ce_time"), Some("2025-11-27T00:00:00.123Z"));
        assert_eq!(header("content-type"), Some("application/avro"));
    }
}

/// A producer whose records time out while the broker answers is replaced — once, however many
/// batches fail meanwhile (here every record times out: the operator's `message.timeout.ms` of
/// 1 ms, with no lingering, which the log's producer takes over its defaults like every client
/// property).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_whose_records_time_out_while_the_broker_answers_is_replaced_once() {
    use livechat_core::events::{room_event, room_record};
    use livechat_core::ports::EventLog;
    use livechat_schemas::RoomEventType;

    let Some(brokers) = livechat_conformance::server_env("LIVECHAT_KAFKA_BROKERS", "kafka") else {
        return;
    };
    let cfg = KafkaConfig {
        brokers,
        namespace: format!("conformance{}.", uuid::Uuid::new_v4().simple()),
        client: [("message.timeout.ms", "1"), ("linger.ms", "0")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
        ..KafkaConfig::default()
    };
    let log = KafkaLog::connect(cfg, 4).await.expect("connect to Kafka");
    let record = || {
        let at = chrono::Utc::now();
        room_record(room_event(
            RoomEventType::RoomCreated,
            uuid::Uuid::new_v4(),
            at,
        ))
        .unwrap()
    };
    // A local broker sometimes answers within the 1 ms: appends go on until some have timed
    // out (twenty of them at most, within 10 s).
    let (mut failed, mut sent) = (0, 0);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (sent < 20 || failed == 0) && std::time::Instant::now() < give_up {
        if log.append(&[record()]).await.is_err() {
            failed += 1;
        }
        sent += 1;
    }
    assert!(failed > 0, "none of {sent} records timed out within 1 ms");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while log.producer_replacements() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        log.producer_replacements(),
        1,
        "replaced once the broker answered"
    );
    for _ in 0..5 {
        let _ = log.append(&[record()]).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(log.producer_replacements(), 1, "not again within 30 s");
}
