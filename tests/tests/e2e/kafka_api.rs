//! The single binary's Kafka listener (`--kafka-listen`), used through librdkafka as a data
//! team's consumer would: a consumer group reads the room events from the beginning, decodes
//! them through `/registry`, commits, and after a restart of LiveChat resumes from its offsets
//! with nothing missed or repeated; an offset reset makes it read everything again; two
//! members share the partitions; Produce is refused; credentials guard the listener.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::harness::*;

const TOPIC: &str = "chat.room-events.v1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// LiveChat with its Kafka listener on a port of its own (kept across restarts).
async fn with_listener(extra: &[(&str, &str)]) -> (App, String) {
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut env = vec![("LIVECHAT_KAFKA_API__LISTEN", kafka.as_str())];
    env.extend_from_slice(extra);
    (App::spawn(&env).await, kafka)
}

fn client(bootstrap: &str, extra: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c
}

fn member(bootstrap: &str, group: &str) -> StreamConsumer {
    let c: StreamConsumer = client(bootstrap, &[("group.id", group)]).create().unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    c
}

/// A room event as a consumer reads it, decoded with the schema `/registry` names.
#[derive(Debug, Clone)]
struct Seen {
    partition: i32,
    offset: i64,
    event_type: String,
    room_id: String,
    /// The message's `client_msg_id`: what identifies it here (its text is sealed).
    client_msg_id: Option<String>,
    headers: BTreeMap<String, String>,
}

/// Decodes a record with a generic Avro library and the schema its header names.
async fn decode(
    app: &App,
    schemas: &mut BTreeMap<u32, apache_avro::Schema>,
    payload: &[u8],
) -> BTreeMap<String, apache_avro::types::Value> {
    registry_decode(app, schemas, payload).await.1
}

fn text(v: Option<&apache_avro::types::Value>) -> Option<String> {
    use apache_avro::types::Value as V;
    match v? {
        V::String(s) => Some(s.clone()),
        V::Union(_, inner) => text(Some(inner)),
        _ => None,
    }
}

/// Reads until `done` says so (or 30 s pass: the caller's assertions then tell what is missing).
async fn read_until(c: &StreamConsumer, app: &App, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
    let mut schemas = BTreeMap::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&seen) && tokio::time::Instant::now() < deadline {
        let Ok(got) = tokio::time::timeout(Duration::from_secs(1), c.recv()).await else {
            continue;
        };
        let m = got.expect("a record");
        let fields = decode(app, &mut schemas, m.payload().expect("a value")).await;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default()).to_string();
                        (h.key.to_string(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        seen.push(Seen {
            partition: m.partition(),
            offset: m.offset(),
            event_type: text(fields.get("event_type")).unwrap(),
            room_id: text(fields.get("room_id")).unwrap(),
            client_msg_id: text(fields.get("client_msg_id")),
            headers,
        });
    }
    seen
}

/// The `client_msg_id`s of a room's messages, in the order read.
fn messages(seen: &[Seen], room: &str) -> Vec<String> {
    seen.iter()
        .filter(|s| s.room_id == room && s.event_type == "MESSAGE_SENT")
        .filter_map(|s| s.client_msg_id.clone())
        .collect()
}

/// Sends a message whose `client_msg_id` is `id` (the text says it too).
async fn send(user: &User, room: &str, id: &str) {
    ok(
        user.send_rest(room, &format!("text of {id}"), Some(id))
            .await,
        "send",
    );
}

#[tokio::test]
async fn a_consumer_group_reads_decodes_commits_and_resumes_across_a_restart() {
    let (mut app, kafka) = with_listener(&[]).await;
    let alice = app.user("kafkaapi").await;
    let room = alice.create_room("kafka-api", true).await;
    for i in 0..10 {
        send(&alice, &room, &format!("first-{i}")).await;
    }
    let first: Vec<String> = (0..10).map(|i| format!("first-{i}")).collect();

    let group = "data-team";
    let c = member(&kafka, group);
    let read1 = read_until(&c, &app, |s| messages(s, &room).len() >= 10).await;
    // One room is one partition: its messages arrive in the order sent.
    assert_eq!(messages(&read1, &room), first);
    let sent = read1
        .iter()
        .find(|s| s.room_id == room && s.event_type == "MESSAGE_SENT")
        .unwrap();
    assert_eq!(sent.headers["ce_type"], "livechat.room.message_sent");
    assert_eq!(sent.headers["ce_subject"], room);
    assert_eq!(sent.headers["ce_specversion"], "1.0");
    assert_eq!(sent.headers["content-type"], "application/avro");
    c.commit_consumer_state(CommitMode::Sync).unwrap();
    drop(c); // leaves the group
             // `/metrics` reports the client group's position and lag like a processor's.
    let partition = read1.iter().find(|s| s.room_id == room).unwrap().partition;
    let next = read1
        .iter()
        .filter(|s| s.partition == partition)
        .map(|s| s.offset)
        .max()
        .unwrap()
        + 1;
    let metrics = app.metrics().await.expect("metrics");
    let labels = format!(r#"{{group="kafka/{group}",topic="{TOPIC}",partition="{partition}"}}"#);
    assert!(
        metrics.contains(&format!("livechat_consumer_offset{labels} {next}")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("livechat_consumer_lag{labels} 0")),
        "{metrics}"
    );

    app.terminate().await;
    app.restart().await;
    for i in 0..5 {
        send(&alice, &room, &format!("second-{i}")).await;
    }
    let c = member(&kafka, group);
    let read2 = read_until(&c, &app, |s| messages(s, &room).len() >= 5).await;
    assert_eq!(
        messages(&read2, &room),
        (0..5).map(|i| format!("second-{i}")).collect::<Vec<_>>(),
        "resumed from the committed offsets: nothing missed, nothing repeated"
    );
    // Per partition, the second read starts right after where the first one committed.
    for p in read2.iter().map(|s| s.partition) {
        let last1 = read1
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.offset)
            .max();
        let first2 = read2
            .iter()
            .filter(|s| s.partition == p)
            .map(|s| s.offset)
            .min();
        if let (Some(last1), Some(first2)) = (last1, first2) {
            assert_eq!(first2, last1 + 1, "partition {p}");
        }
    }
    c.commit_consumer_state(CommitMode::Sync).unwrap();
    drop(c);

    // `kafka-consumer-groups --reset-offsets --to-earliest`: with the group empty, an admin
    // client commits offset 0 for every partition (outside any generation).
    let admin: BaseConsumer = client(&kafka, &[("group.id", group)]).create().unwrap();
    let partitions = partition_count(&kafka);
    let mut reset = TopicPartitionList::new();
    for p in 0..partitions {
        reset
            .add_partition_offset(TOPIC, p, Offset::Offset(0))
            .unwrap();
    }
    admin.commit(&reset, CommitMode::Sync).unwrap();
    let back = admin
        .committed_offsets(reset.clone(), Duration::from_secs(10))
        .unwrap();
    assert!(
        back.elements()
            .iter()
            .all(|e| e.offset() == Offset::Offset(0)),
        "{back:?}"
    );
    drop(admin);
    let c = member(&kafka, group);
    let read3 = read_until(&c, &app, |s| messages(s, &room).len() >= 15).await;
    let mut all = first.clone();
    all.extend((0..5).map(|i| format!("second-{i}")));
    assert_eq!(
        messages(&read3, &room),
        all,
        "everything again after the reset"
    );
}

fn partition_count(kafka: &str) -> i32 {
    let c: BaseConsumer = client(kafka, &[]).create().unwrap();
    let m = c
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .unwrap();
    m.topics()[0].partitions().len() as i32
}

/// Keeps a member polling (a consumer takes part in rebalances only while polled).
fn polled(c: Arc<StreamConsumer>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = c.recv().await;
        }
    })
}

fn assigned(c: &StreamConsumer) -> Vec<i32> {
    let mut p: Vec<i32> = c
        .assignment()
        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default();
    p.sort();
    p
}

#[tokio::test]
async fn two_members_share_the_partitions_and_one_takes_all_when_the_other_leaves() {
    let (_app, kafka) = with_listener(&[]).await;
    let a = Arc::new(member(&kafka, "pair"));
    let poll_a = polled(a.clone());
    let all: Vec<i32> = (0..partition_count(&kafka)).collect();
    assert!(all.len() >= 2, "partitions to share: {all:?}");
    eventually("the first member gets every partition", || async {
        (assigned(&a) == all).then_some(())
    })
    .await;
    let b = Arc::new(member(&kafka, "pair"));
    let poll_b = polled(b.clone());
    let (pa, pb) = eventually("the partitions shared between the two", || async {
        let (pa, pb) = (assigned(&a), assigned(&b));
        let mut both: Vec<i32> = pa.iter().chain(&pb).copied().collect();
        both.sort();
        (!pa.is_empty() && !pb.is_empty() && both == all).then_some((pa, pb))
    })
    .await;
    assert!(pa.iter().all(|p| !pb.contains(p)), "{pa:?} / {pb:?}");
    poll_b.abort();
    let _ = poll_b.await;
    drop(b); // closes: leaves the group
    eventually(
        "the remaining member takes every partition back",
        || async { (assigned(&a) == all).then_some(()) },
    )
    .await;
    poll_a.abort();
}

#[tokio::test]
async fn produce_is_refused_as_the_log_is_written_only_by_livechat() {
    let (_app, kafka) = with_listener(&[]).await;
    let producer: FutureProducer = client(&kafka, &[("message.timeout.ms", "10000")])
        .create()
        .unwrap();
    let sent = producer
        .send(
            FutureRecord::to(TOPIC).key("room").payload("forged"),
            Duration::from_secs(10),
        )
        .await;
    let Err((e, _)) = sent else {
        panic!("a produce was accepted");
    };
    assert_eq!(
        e.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed),
        "{e}"
    );
}

/// Topics the listener shows a client with these settings; None when it refuses it.
fn topics_seen(kafka: &str, extra: &[(&str, &str)]) -> Option<usize> {
    let c: BaseConsumer = client(kafka, extra).create().unwrap();
    c.fetch_metadata(None, Duration::from_secs(5))
        .ok()
        .map(|m| m.topics().len())
}

#[tokio::test]
async fn credentials_guard_the_listener_and_a_chat_users_password_does_not_open_it() {
    let (app, kafka) = with_listener(&[
        ("LIVECHAT_KAFKA_API__USERNAME", "operator"),
        ("LIVECHAT_KAFKA_API__PASSWORD", "a-long-operator-secret"),
    ])
    .await;
    let chat_user = app.user("kafkauser").await;
    let sasl = |user: &str, pass: &str| {
        [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", user),
            ("sasl.password", pass),
        ]
        .map(|(k, v)| (k, v.to_string()))
    };
    let with = |pairs: &[(&'static str, String); 4]| {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        topics_seen(&kafka, &pairs)
    };
    assert_eq!(topics_seen(&kafka, &[]), None, "no SASL: refused");
    assert_eq!(with(&sasl("operator", "wrong")), None, "wrong password");
    assert_eq!(with(&sasl(&chat_user.name, PASSWORD)), None, "a chat user");
    assert_eq!(with(&sasl("operator", "a-long-operator-secret")), Some(8));
}

#[tokio::test]
async fn a_listener_beyond_loopback_without_credentials_does_not_start() {
    let data = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

/// Runs one of Kafka's own tools (fetched from Maven Central with the test broker by
/// `scripts/dev-services`); its standard output.
async fn kafka_tool(java: &str, classpath: &str, class: &str, args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(java)
            .arg("-cp")
            .arg(classpath)
            .arg(class)
            .args(args)
            .output(),
    )
    .await
    .expect("the tool finished in time")
    .expect("running java");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The room's messages in the console consumer's output, one line per record (partition,
/// offset, headers, the value decoded through `/registry`): (partition, offset, client_msg_id).
fn console_messages(out: &str, room: &str) -> Vec<(u32, u64, String)> {
    out.lines()
        .filter(|l| {
            l.contains("ce_type:livechat.room.message_sent")
                && l.contains(&format!("ce_subject:{room}"))
        })
        .map(|l| {
            let mut f = l.split('\t');
            let num = |f: Option<&str>, name: &str| {
                f.and_then(|x| x.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {l}"))
                    .parse::<u64>()
                    .unwrap()
            };
            let partition = num(f.next(), "Partition:") as u32;
            let offset = num(f.next(), "Offset:");
            let value = f.nth(1).unwrap_or_else(|| panic!("no value in {l}"));
            let event: Value = serde_json::from_str(value)
                .unwrap_or_else(|e| panic!("the decoded value is not JSON ({e}): {value}"));
            assert_eq!(event["room_id"], room, "{value}");
            let id = event["client_msg_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{value}"));
            (partition, offset, id.to_string())
        })
        .collect()
}

/// Kafka's console consumer and consumer groups tool; the console consumer decodes values with
/// `tests/clients/RegistryAvroDeserializer.java` through LiveChat's `/registry`.
struct Tools {
    java: String,
    classpath: String,
    kafka: String,
    registry: String,
    _classes: tempfile::TempDir,
}

impl Tools {
    /// Compiles the deserializer (with the `javac` beside `java`) onto the tools' classpath.
    async fn new(java: String, classpath: String, kafka: String, registry: String) -> Tools {
        let javac = std::path::Path::new(&java).with_file_name("javac");
        let javac = if java.contains('/') {
            javac.into_os_string()
        } else {
            "javac".into()
        };
        let classes = tempfile::tempdir().unwrap();
        let source = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/clients/RegistryAvroDeserializer.java"
        );
        let out = tokio::process::Command::new(&javac)
            .arg("-cp")
            .arg(&classpath)
            .arg("-d")
            .arg(classes.path())
            .arg(source)
            .output()
            .await
            .expect("running javac");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let classpath = format!("{}:{classpath}", classes.path().display());
        Tools {
            java,
            classpath,
            kafka,
            registry,
            _classes: classes,
        }
    }

    /// Reads the room events in the group until 4 s pass without a record, then commits.
    async fn consume(&self, group: &str) -> String {
        let registry = format!("value.deserializer.registry.url={}", self.registry);
        let args = [
            "--bootstrap-server",
            &self.kafka,
            "--topic",
            TOPIC,
            "--group",
            group,
            "--from-beginning",
            "--timeout-ms",
            "4000",
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
            "--formatter-property",
            "print.headers=true",
            "--formatter-property",
            "value.deserializer=RegistryAvroDeserializer",
            "--formatter-property",
            &registry,
        ];
        let class = "org.apache.kafka.tools.consumer.ConsoleConsumer";
        kafka_tool(&self.java, &self.classpath, class, &args).await
    }

    async fn groups(&self, group: &str, args: &[&str]) -> String {
        let mut all = vec!["--bootstrap-server", &self.kafka, "--group", group];
        all.extend_from_slice(args);
        let class = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
        kafka_tool(&self.java, &self.classpath, class, &all).await
    }
}

/// The confluent-kafka consumer of `tests/clients/confluent_consumer.py`, run by the Python
/// that `scripts/test` installed it for: (the room's messages' client_msg_ids, every (partition, offset)).
async fn python_consumer(
    python: &str,
    app: &App,
    kafka: &str,
    group: &str,
    room: &str,
    expected: usize,
) -> (Vec<String>, Vec<(u32, u64)>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/confluent_consumer.py");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(python)
            .args([script, kafka, &app.url("/registry"), group, room])
            .arg(expected.to_string())
            .output(),
    )
    .await
    .expect("the consumer finished in time")
    .expect("running python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let positions = v["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap()))
        .collect();
    (messages, positions)
}

/// The Done-when of the listener, with the clients data teams use: a confluent-kafka consumer
/// group (Python) and Kafka's own console consumer (Java), each decoding Avro through
/// `/registry`, read the room events from the beginning and commit; after a restart of LiveChat each resumes from its
/// committed offsets with nothing missed or repeated; `kafka-consumer-groups --reset-offsets
/// --to-earliest` then makes both read everything again.
#[tokio::test]
async fn python_and_java_consumers_resume_across_a_restart_and_read_again_after_a_reset() {
    let Some(classpath) = env_or_skip("LIVECHAT_KAFKA_TOOLS_CLASSPATH") else {
        return;
    };
    let Some(python) = env_or_skip("LIVECHAT_KAFKA_PYTHON") else {
        return;
    };
    let java = std::env::var("LIVECHAT_KAFKA_TOOLS_JAVA").unwrap_or_else(|_| "java".into());
    let (mut app, kafka) = with_listener(&[]).await;
    let alice = app.user("clients").await;
    let room = alice.create_room("clients", true).await;
    let texts: Vec<String> = (0..8).map(|i| format!("for-the-data-team-{i}")).collect();
    for t in &texts[..5] {
        send(&alice, &room, t).await;
    }
    let tools = Tools::new(java, classpath, kafka.clone(), app.url("/registry")).await;
    let (java_group, py_group) = ("java-team", "python-team");

    let (py1, py1_at) = python_consumer(&python, &app, &kafka, py_group, &room, 5).await;
    assert_eq!(py1, texts[..5], "decoded through /registry, in order");
    let java1 = console_messages(&tools.consume(java_group).await, &room);
    let ids = |read: &[(u32, u64, String)]| read.iter().map(|r| r.2.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&java1),
        texts[..5],
        "decoded through /registry, in order"
    );

    app.terminate().await;
    app.restart().await;
    for t in &texts[5..] {
        send(&alice, &room, t).await;
    }
    let (py2, py2_at) = python_consumer(&python, &app, &kafka, py_group, &room, 3).await;
    assert_eq!(py2, texts[5..], "resumed: nothing missed, nothing repeated");
    assert!(
        py2_at.iter().all(|p| !py1_at.contains(p)),
        "a record read twice"
    );
    let java2 = console_messages(&tools.consume(java_group).await, &room);
    assert_eq!(
        ids(&java2),
        texts[5..],
        "resumed: nothing missed, nothing repeated"
    );
    assert!(
        java2.iter().all(|r| !java1.contains(r)),
        "{java1:?} / {java2:?}"
    );

    // The tool sees the Java group caught up on the room's partition.
    let described = tools.groups(java_group, &["--describe"]).await;
    let partition = java1[0].0.to_string();
    let row: Vec<&str> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| {
            cols.len() >= 6 && cols[0] == java_group && cols[1] == TOPIC && cols[2] == partition
        })
        .unwrap_or_else(|| panic!("no row for partition {partition}: {described}"));
    assert_eq!(row[3], row[4], "current offset = log end: {described}");
    assert_eq!(row[5], "0", "no lag: {described}");

    let reset = [
        "--reset-offsets",
        "--to-earliest",
        "--execute",
        "--topic",
        TOPIC,
    ];
    for group in [java_group, py_group] {
        let out = tools.groups(group, &reset).await;
        assert!(out.contains("NEW-OFFSET"), "{out}");
    }

    let (py3, _) = python_consumer(&python, &app, &kafka, py_group, &room, 8).await;
    assert_eq!(py3, texts, "everything again after the reset");
    let java3 = console_messages(&tools.consume(java_group).await, &room);
    let mut all = java1.clone();
    all.extend(java2.iter().cloned());
    assert_eq!(java3, all, "everything again after the reset");
}

/// Bad bytes close the connection that sent them, never the listener: an oversized frame, an
/// unknown API, a known one with a malformed body, a frame too short for a header, and a
/// request before anything else on a fresh connection all leave a real client served.
#[tokio::test]
async fn malformed_requests_close_their_connection_and_the_listener_serves_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_app, kafka) = with_listener(&[]).await;
    let frame = |body: &[u8]| {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    // api key, version, correlation id, then an empty client id (request header v1).
    let header = |key: i16, version: i16| {
        let mut h = key.to_be_bytes().to_vec();
        h.extend_from_slice(&version.to_be_bytes());
        h.extend_from_slice(&7i32.to_be_bytes());
        h.extend_from_slice(&(-1i16).to_be_bytes());
        h
    };
    let mut metadata_garbage = header(3, 1);
    metadata_garbage.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a 2 GiB frame", i32::MAX.to_be_bytes().to_vec()),
        ("a negative size", (-5i32).to_be_bytes().to_vec()),
        ("an unknown API key", frame(&header(999, 0))),
        ("a version not served", frame(&header(1, 99))),
        ("Metadata with a malformed body", frame(&metadata_garbage)),
        ("a frame shorter than a header", frame(&[0, 3])),
    ];
    for (what, bytes) in cases {
        let mut s = tokio::net::TcpStream::connect(&kafka).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection stayed open"))
            .unwrap_or(0);
        assert_eq!(n, 0, "{what}: answered {:?} instead of closing", &buf[..n]);
        assert_eq!(topics_seen(&kafka, &[]), Some(8), "after {what}");
    }
}

/// The newest value of each key of a compacted topic, read from the beginning (None: the key's
/// tombstone), once `done` says so (or 30 s pass: the caller's assertions tell what is missing).
async fn table(
    kafka: &str,
    topic: &str,
    done: impl Fn(&BTreeMap<String, Option<Vec<u8>>>) -> bool,
) -> BTreeMap<String, Option<Vec<u8>>> {
    let c: StreamConsumer = client(
        kafka,
        &[("group.id", &format!("table-{}", uuid::Uuid::new_v4()))],
    )
    .create()
    .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut latest = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&latest) && tokio::time::Instant::now() < deadline {
        let Ok(got) = tokio::time::timeout(Duration::from_secs(1), c.recv()).await else {
            continue;
        };
        let m = got.expect("a record");
        let key = String::from_utf8_lossy(m.key().expect("a key")).into_owned();
        latest.insert(key, m.payload().map(<[u8]>::to_vec));
    }
    latest
}

/// Rooms, users, memberships and read markers as tables (Flink's upsert-kafka, ksqlDB): the
/// newest record of a key is the entity as it is, a deleted room's or an ended membership's key
/// ends with a tombstone, and no secret is in a profile.
#[tokio::test]
async fn rooms_users_memberships_and_read_markers_are_compacted_tables_with_tombstones() {
    let (app, kafka) = with_listener(&[]).await;
    let alice = app.user("tables").await;
    let bob = app.user("tables").await;
    let kept = alice.create_room("kept", true).await;
    let gone = alice.create_room("gone", false).await;
    bob.join_ok(&kept).await;
    assert_eq!(bob.join_with_message(&gone, "let me in").await.0, 200);
    alice.admit(&gone, &bob).await;
    ok(
        alice
            .update_room(
                &kept,
                serde_json::json!({"description": "the latest words"}),
            )
            .await,
        "update",
    );
    ok(alice.delete_room(&gone).await, "delete");

    // Keys land on different partitions: read until the update is in (Avro keeps its bytes).
    let updated = |v: &Option<Vec<u8>>| {
        v.as_ref()
            .is_some_and(|b| b.windows(16).any(|w| w == b"the latest words"))
    };
    let rooms = table(&kafka, "chat.rooms.v1", |t| {
        t.get(&gone) == Some(&None) && t.get(&kept).is_some_and(updated)
    })
    .await;
    assert_eq!(
        rooms.get(&gone),
        Some(&None),
        "the deleted room's tombstone"
    );
    let mut schemas = BTreeMap::new();
    let state = decode(&app, &mut schemas, rooms[&kept].as_deref().unwrap()).await;
    assert_eq!(text(state.get("room_id")).as_deref(), Some(kept.as_str()));
    assert_eq!(
        text(state.get("description")).as_deref(),
        Some("the latest words")
    );
    assert_eq!(text(state.get("visibility")).as_deref(), Some("public"));
    assert_eq!(
        text(state.get("owner_id")).as_deref(),
        Some(alice.id.as_str())
    );

    // Bob joined the kept room and was admitted to the gone one; its deletion ends both of
    // its memberships.
    let key = |room: &str, user: &User| format!("{room}:{}", user.id);
    let memberships = table(&kafka, "chat.memberships.v1", |t| {
        let ended = |u: &User| t.get(&key(&gone, u)) == Some(&None);
        let live = |u: &User| t.get(&key(&kept, u)).is_some_and(Option::is_some);
        ended(&alice) && ended(&bob) && live(&alice) && live(&bob)
    })
    .await;
    assert_eq!(memberships.get(&key(&gone, &alice)), Some(&None));
    assert_eq!(memberships.get(&key(&gone, &bob)), Some(&None));
    let owner = decode(
        &app,
        &mut schemas,
        memberships[&key(&kept, &alice)].as_deref().unwrap(),
    )
    .await;
    assert_eq!(text(owner.get("role")).as_deref(), Some("OWNER"));
    let member = decode(
        &app,
        &mut schemas,
        memberships[&key(&kept, &bob)].as_deref().unwrap(),
    )
    .await;
    assert_eq!(text(member.get("role")).as_deref(), Some("MEMBER"));
    assert_eq!(
        text(member.get("username")).as_deref(),
        Some(bob.name.as_str())
    );

    // Bob's read marker in the kept room: the newest record is the highest he set (one that
    // would move it back changes nothing).
    for i in 0..3 {
        send(&alice, &kept, &format!("to-read-{i}")).await;
    }
    for seq in [2, 1] {
        ok(bob.read_marker(&kept, seq).await, "read marker");
    }
    let marker_of = |t: &BTreeMap<String, Option<Vec<u8>>>| -> Option<Vec<u8>> {
        t.get(&key(&kept, &bob)).cloned().flatten()
    };
    let markers = table(&kafka, "chat.read-markers.v1", |t| marker_of(t).is_some()).await;
    let marker = decode(&app, &mut schemas, &marker_of(&markers).unwrap()).await;
    assert_eq!(
        text(marker.get("user_id")).as_deref(),
        Some(bob.id.as_str())
    );
    assert_eq!(
        marker.get("last_read_seq"),
        Some(&apache_avro::types::Value::Long(2))
    );

    ok(bob.leave(&kept).await, "leave");
    let memberships = table(&kafka, "chat.memberships.v1", |t| {
        t.get(&key(&kept, &bob)) == Some(&None)
    })
    .await;
    let markers = table(&kafka, "chat.read-markers.v1", |t| {
        t.get(&key(&kept, &bob)) == Some(&None)
    })
    .await;
    assert_eq!(
        markers.get(&key(&kept, &bob)),
        Some(&None),
        "left: the marker's tombstone"
    );
    assert_eq!(
        memberships.get(&key(&kept, &bob)),
        Some(&None),
        "left: a tombstone"
    );

    let users = table(&kafka, "chat.users.v1", |t| t.contains_key(&alice.id)).await;
    let profile = decode(&app, &mut schemas, users[&alice.id].as_deref().unwrap()).await;
    assert_eq!(
        text(profile.get("username")).as_deref(),
        Some(alice.name.as_str())
    );
    let fields: Vec<&String> = profile.keys().collect();
    assert_eq!(fields, ["created_at", "user_id", "username"], "no secrets");
}
