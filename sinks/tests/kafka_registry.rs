//! The Kafka log with a real schema registry (`scripts/dev-services up registry`; addresses in
//! `LIVECHAT_KAFKA_BROKERS` and `LIVECHAT_SCHEMA_REGISTRY_URL`): schemas registered with
//! `BACKWARD_TRANSITIVE`, registry ids on the wire, embedded ids inside LiveChat, incompatible
//! changes refused, and the whole log conformance suite with the registry on.
#![cfg(feature = "kafka")]

use std::time::{Duration, Instant};

use livechat_conformance::server_env;
use livechat_core::model::OutboxRecord;
use livechat_core::ports::{EventLog, StartAt};
use livechat_schemas::registry::{self as embedded, ROOM_EVENTS_SCHEMA_ID, USER_EVENTS_SCHEMA_ID};
use livechat_schemas::{
    codec, RoomEvent, TopicEvent, UserEvent, DEAD_LETTER_TOPIC, ROOM_EVENTS_TOPIC,
    USER_EVENTS_TOPIC,
};
use livechat_sinks::kafka::registry::{RegistryClient, COMPATIBILITY};
use livechat_sinks::kafka::{KafkaConfig, KafkaLog};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

/// The broker and registry named by the environment.
fn servers() -> Option<(String, String)> {
    let brokers = server_env("LIVECHAT_KAFKA_BROKERS", "kafka")?;
    let registry = server_env("LIVECHAT_SCHEMA_REGISTRY_URL", "kafka registry")?;
    Some((brokers, registry))
}

/// A registry-enabled log. `namespace` = a fresh prefix gives the test its own topics and
/// subjects; "" uses the plain ones, as a deployment does.
async fn log_in(namespace: &str) -> Option<(KafkaLog, KafkaConfig)> {
    let (brokers, registry) = servers()?;
    // A schema of its own first: on a fresh registry LiveChat's schemas would otherwise get
    // ids 1, 2 and 3, the embedded ones, and a missing translation would go unnoticed.
    RegistryClient::new(&registry)
        .unwrap()
        .register(
            &format!("filler-{}-value", Uuid::new_v4().simple()),
            &format!(
                r#"{{"type":"record","name":"Filler{}","fields":[]}}"#,
                Uuid::new_v4().simple()
            ),
        )
        .await
        .expect("register a schema");
    let cfg = KafkaConfig {
        brokers,
        namespace: namespace.to_string(),
        schema_registry_url: Some(registry),
        ..KafkaConfig::default()
    };
    let log = KafkaLog::connect(cfg.clone(), 4)
        .await
        .expect("connect to Kafka and register the schemas");
    Some((log, cfg))
}

fn fresh_namespace() -> String {
    format!("regtest-{}.", Uuid::new_v4().simple())
}

fn room_event() -> RoomEvent {
    RoomEvent {
        event_id: Uuid::new_v4().to_string(),
        event_type: "MESSAGE_SENT".into(),
        occurred_at: livechat_core::now().timestamp_millis(),
        room_id: Uuid::new_v4().to_string(),
        actor_id: Some(Uuid::new_v4().to_string()),
        seq: Some(1),
        content: Some("héllo @bob".into()),
        mentioned_user_ids: vec!["b".into()],
        ..Default::default()
    }
}

fn user_event() -> UserEvent {
    UserEvent {
        event_id: Uuid::new_v4().to_string(),
        event_type: "USER_REGISTERED".into(),
        occurred_at: livechat_core::now().timestamp_millis(),
        user_id: Uuid::new_v4().to_string(),
        username: Some("alice".into()),
        notification_id: None,
    }
}

fn schema_id(payload: &[u8]) -> u32 {
    codec::schema_id(payload).expect("a framed record")
}

/// The partition of a (fresh) topic that holds its records.
async fn partition_with_data(log: &KafkaLog, topic: &str) -> u32 {
    for p in 0..log.partitions(topic) {
        if log.end_offset(topic, p).await.unwrap() > 0 {
            return p;
        }
    }
    panic!("no partition of {topic} has records");
}

/// What a plain Kafka client sees: (payload, headers) of the first `n` records of a partition.
async fn raw_records(
    brokers: &str,
    topic: &str,
    partition: u32,
    n: usize,
) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition as i32, Offset::Beginning)
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} raw records",
                out.len()
            );
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                let m = m.unwrap();
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                                (h.key.to_string(), v.into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), headers));
            }
        }
        out
    })
    .await
    .unwrap()
}

/// Writes raw payloads with a plain Kafka producer (another team's client, say).
async fn produce_raw(brokers: &str, topic: &str, key: &str, payloads: Vec<Vec<u8>>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let (topic, key) = (topic.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        for p in &payloads {
            producer
                .send(BaseRecord::to(&topic).key(&key).payload(p))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_registered_backward_transitive() {
    let ns = fresh_namespace();
    let Some((log, _)) = log_in(&ns).await else {
        return;
    };
    let client = log.registry().expect("a registry client");
    for s in embedded::all() {
        let subject = format!("{ns}{}", s.subject);
        assert_eq!(
            client.compatibility(&subject).await.unwrap().as_deref(),
            Some(COMPATIBILITY),
            "{subject}"
        );
        let id = log.registry_schema_id(s.id).expect("a registry id");
        let stored = client.schema_by_id(id).await.unwrap().expect("the schema");
        let parsed = apache_avro::Schema::parse_str(&stored.schema).unwrap();
        assert_eq!(
            parsed.canonical_form(),
            s.schema.canonical_form(),
            "{subject}"
        );
        // Registering again (the next start) finds the same id.
        assert_eq!(client.register(&subject, s.text).await.unwrap(), id);
    }
    // A second process connecting to the same subjects learns the same ids.
    let (again, _) = log_in(&ns).await.unwrap();
    for s in embedded::all() {
        assert_eq!(again.registry_schema_id(s.id), log.registry_schema_id(s.id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_registry_ids_on_the_wire_and_embedded_ids_inside() {
    let ns = fresh_namespace();
    let Some((log, cfg)) = log_in(&ns).await else {
        return;
    };
    let room = room_event();
    let room_bytes = codec::encode_room_event(&room).unwrap();
    let user = user_event();
    let user_bytes = codec::encode_user_event(&user).unwrap();
    let mut room_rec = livechat_core::events::room_record(room.clone()).unwrap();
    room_rec.headers = vec![("trace".into(), "t-1".into())];
    let user_rec = livechat_core::events::user_record(user.clone()).unwrap();
    let dlq_body = br#"{"orig_topic":"chat.room-events.v1","error":"x"}"#.to_vec();
    let dlq_rec = OutboxRecord {
        event_id: Uuid::new_v4(),
        topic: DEAD_LETTER_TOPIC.into(),
        key: "k".into(),
        payload: dlq_body.clone(),
        created_at_ms: livechat_core::now().timestamp_millis(),
        headers: vec![("orig.topic".into(), ROOM_EVENTS_TOPIC.into())],
        event: None,
    };
    log.append(&[room_rec.clone(), user_rec, dlq_rec])
        .await
        .unwrap();

    assert!(
        embedded::all()
            .iter()
            .any(|s| log.registry_schema_id(s.id) != Some(s.id)),
        "the registry's ids equal the embedded ones: this test would prove nothing"
    );
    // On the broker: the registry's ids, the same Avro body, the headers.
    let cases = [
        (ROOM_EVENTS_TOPIC, ROOM_EVENTS_SCHEMA_ID, &room_bytes),
        (USER_EVENTS_TOPIC, USER_EVENTS_SCHEMA_ID, &user_bytes),
    ];
    for (topic, embedded_id, bytes) in cases {
        let p = partition_with_data(&log, topic).await;
        let raw = raw_records(&cfg.brokers, &format!("{ns}{topic}"), p, 1).await;
        let (payload, headers) = &raw[0];
        let rid = log.registry_schema_id(embedded_id).unwrap();
        assert_eq!(payload[0], 0, "magic byte");
        assert_eq!(
            schema_id(payload),
            rid,
            "{topic}: the registry's id on the wire"
        );
        assert_eq!(
            payload[5..],
            bytes[5..],
            "{topic}: the Avro body is unchanged"
        );
        assert!(headers.iter().any(|(k, _)| k == "event_id"));
        if topic == ROOM_EVENTS_TOPIC {
            assert!(headers.contains(&("trace".to_string(), "t-1".to_string())));
        }
        // Through the adapter: the embedded id again, byte for byte what was appended.
        let read = log.read(topic, p, 0, 10).await.unwrap();
        assert_eq!(&read[0].payload, bytes, "{topic}: read");
    }
    let p = partition_with_data(&log, ROOM_EVENTS_TOPIC).await;
    match codec::decode(&log.read(ROOM_EVENTS_TOPIC, p, 0, 1).await.unwrap()[0].payload) {
        Ok(TopicEvent::Room(back)) => assert_eq!(back, room),
        other => panic!("decoded to {other:?}"),
    }
    // The dead-letter topic's JSON is not framed: untouched both ways.
    let p = partition_with_data(&log, DEAD_LETTER_TOPIC).await;
    let raw = raw_records(&cfg.brokers, &format!("{ns}{DEAD_LETTER_TOPIC}"), p, 1).await;
    assert_eq!(raw[0].0, dlq_body);
    assert_eq!(
        log.read(DEAD_LETTER_TOPIC, p, 0, 1).await.unwrap()[0].payload,
        dlq_body
    );

    // A consumer group sees embedded ids too.
    let mut c = log
        .join_group(
            "reg-group",
            &[ROOM_EVENTS_TOPIC, USER_EVENTS_TOPIC],
            StartAt::Earliest,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut polled = Vec::new();
    while polled.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {} of 2 polled",
            polled.len()
        );
        polled.extend(c.poll(10, Duration::from_millis(500)).await.unwrap());
    }
    for e in &polled {
        let expected = if &*e.topic == ROOM_EVENTS_TOPIC {
            &room_bytes
        } else {
            &user_bytes
        };
        assert_eq!(&e.payload, expected, "{}: poll", e.topic);
        codec::decode(&e.payload).expect("decodes");
    }
}

/// Records another producer wrote with an id LiveChat did not register itself: one of its own
/// schemas registered under another id is recognised (by canonical form) and decoded; a foreign
/// schema's id is left for the codec, which refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_met_on_the_log_are_resolved_through_the_registry() {
    let ns = fresh_namespace();
    let Some((log, cfg)) = log_in(&ns).await else {
        return;
    };
    let client = log.registry().unwrap().clone();
    let room_schema = embedded::by_id(ROOM_EVENTS_SCHEMA_ID).unwrap();
    // The same schema with another doc string: the same Parsing Canonical Form, another id.
    let mut variant: serde_json::Value = serde_json::from_str(room_schema.text).unwrap();
    variant["doc"] = serde_json::Value::String(format!("copy {ns}"));
    let variant_id = client
        .register(&format!("{ns}other-value"), &variant.to_string())
        .await
        .unwrap();
    assert_ne!(
        Some(variant_id),
        log.registry_schema_id(ROOM_EVENTS_SCHEMA_ID)
    );
    let foreign = format!(
        r#"{{"type":"record","name":"Foreign{}","fields":[{{"name":"x","type":"long"}}]}}"#,
        Uuid::new_v4().simple()
    );
    let foreign_id = client
        .register(&format!("{ns}foreign-value"), &foreign)
        .await
        .unwrap();

    let room = room_event();
    let bytes = codec::encode_room_event(&room).unwrap();
    let with_id = |id: u32| {
        let mut b = bytes.clone();
        b[1..5].copy_from_slice(&id.to_be_bytes());
        b
    };
    let topic = format!("{ns}{ROOM_EVENTS_TOPIC}");
    produce_raw(
        &cfg.brokers,
        &topic,
        &room.room_id,
        vec![with_id(variant_id), with_id(foreign_id)],
    )
    .await;
    let p = partition_with_data(&log, ROOM_EVENTS_TOPIC).await;
    let read = log.read(ROOM_EVENTS_TOPIC, p, 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[0].payload, bytes,
        "our schema under another id → the embedded id"
    );
    assert!(matches!(codec::decode(&read[0].payload), Ok(TopicEvent::Room(r)) if r == room));
    let foreign_read = schema_id(&read[1].payload);
    if embedded::by_id(foreign_id).is_some() {
        assert_eq!(
            foreign_read, 0,
            "an id that collides with an embedded one is cleared"
        );
    } else {
        assert_eq!(foreign_read, foreign_id, "a foreign id is left as it is");
    }
    assert!(matches!(
        codec::decode(&read[1].payload),
        Err(codec::CodecError::UnknownSchemaId(_))
    ));
}

/// A rolling upgrade: a newer LiveChat registered the next version of the room events schema
/// (a field added, with its default) and its producers write with it, while this one's
/// processors still run. They read those records (the new field skipped) instead of refusing
/// them into the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_newer_schema_version_are_read_by_this_one() {
    let ns = fresh_namespace();
    let Some((log, cfg)) = log_in(&ns).await else {
        return;
    };
    let client = log.registry().unwrap().clone();
    let current = embedded::by_id(ROOM_EVENTS_SCHEMA_ID).unwrap();
    let mut next: serde_json::Value = serde_json::from_str(current.text).unwrap();
    next["fields"].as_array_mut().unwrap().push(
        serde_json::json!({"name": "edited_by_seq", "type": ["null", "long"], "default": null}),
    );
    // Under the subject this LiveChat registered: the registry checks it is compatible.
    let next_id = client
        .register(&format!("{ns}{}", current.subject), &next.to_string())
        .await
        .unwrap();
    assert_ne!(Some(next_id), log.registry_schema_id(ROOM_EVENTS_SCHEMA_ID));
    let room = room_event();
    let bytes = codec::encode_room_event(&room).unwrap();
    // The record as the newer version writes it: these fields, then the new one (the union's
    // second branch, 0x02, and the long 5, 0x0a).
    let newer = [
        &[0u8][..],
        &next_id.to_be_bytes(),
        &bytes[5..],
        &[0x02, 0x0a],
    ]
    .concat();
    let topic = format!("{ns}{ROOM_EVENTS_TOPIC}");
    produce_raw(&cfg.brokers, &topic, &room.room_id, vec![newer]).await;
    let p = partition_with_data(&log, ROOM_EVENTS_TOPIC).await;
    let read = log.read(ROOM_EVENTS_TOPIC, p, 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert!(
        schema_id(&read[0].payload) >= embedded::LEARNED_IDS_FROM,
        "the newer version is learned as a writer schema this build can read"
    );
    match codec::decode(&read[0].payload) {
        Ok(TopicEvent::Room(r)) => assert_eq!(r, room),
        other => panic!("decoded as {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_change_is_refused_by_the_registry() {
    let ns = fresh_namespace();
    let Some((log, _)) = log_in(&ns).await else {
        return;
    };
    let client: &RegistryClient = log.registry().unwrap();
    let s = embedded::by_id(USER_EVENTS_SCHEMA_ID).unwrap();
    let subject = format!("{ns}{}", s.subject);
    let mut schema: serde_json::Value = serde_json::from_str(s.text).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    // Compatible: a new optional field with a default.
    let mut compatible = fields.clone();
    compatible
        .push(serde_json::json!({"name": "extra", "type": ["null", "string"], "default": null}));
    // Broken: a new field without a default (old records cannot be read with it).
    fields.push(serde_json::json!({"name": "extra", "type": "string"}));
    let broken = schema.to_string();
    assert!(!client.is_compatible(&subject, &broken).await.unwrap());
    let err = client.register(&subject, &broken).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    schema["fields"] = serde_json::Value::Array(compatible);
    assert!(client
        .is_compatible(&subject, &schema.to_string())
        .await
        .unwrap());
    // The refused version left nothing behind: registering the current schema finds its id.
    assert_eq!(
        client.register(&subject, s.text).await.unwrap(),
        log.registry_schema_id(USER_EVENTS_SCHEMA_ID).unwrap()
    );
}

/// The whole log conformance suite, on a registry-enabled log with the plain subjects.
mod conformance {
    livechat_conformance::log_suite!(async { super::log_in("").await.map(|(log, _)| log) });
}
