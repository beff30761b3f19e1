//! LiveChat on the whole distributed stack: Kafka log, Cassandra history, ClickHouse analytics,
//! Memcached cache (servers from `scripts/dev-services`), and `livechat replay` proving the
//! Cassandra and ClickHouse stores equal a rebuild from the log.

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn chat_on_kafka_cassandra_clickhouse_memcached_and_replay_verifies() {
    let (Some(kafka), Some(cassandra), Some(clickhouse), Some(memcached)) = (
        env_or_skip("LIVECHAT_KAFKA_BROKERS"),
        env_or_skip("LIVECHAT_CASSANDRA_NODES"),
        env_or_skip("LIVECHAT_CLICKHOUSE_URL"),
        env_or_skip("LIVECHAT_MEMCACHED"),
    ) else {
        return;
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let ns = format!("d{id}.");
    let keyspace = format!("lc_{}", &id[..12]);
    let nodes = format!("[\"{cassandra}\"]");
    let servers = format!("[\"{memcached}\"]");
    let env = [
        ("LIVECHAT_LOG__KIND", "kafka"),
        ("LIVECHAT_LOG__KAFKA__BROKERS", kafka.as_str()),
        ("LIVECHAT_LOG__KAFKA__NAMESPACE", ns.as_str()),
        ("LIVECHAT_HISTORY__KIND", "cassandra"),
        ("LIVECHAT_HISTORY__CASSANDRA__NODES", nodes.as_str()),
        ("LIVECHAT_HISTORY__CASSANDRA__KEYSPACE", keyspace.as_str()),
        ("LIVECHAT_ANALYTICS__KIND", "clickhouse"),
        ("LIVECHAT_ANALYTICS__CLICKHOUSE__URL", clickhouse.as_str()),
        (
            "LIVECHAT_ANALYTICS__CLICKHOUSE__DATABASE",
            keyspace.as_str(),
        ),
        ("LIVECHAT_CACHE__KIND", "memcached"),
        ("LIVECHAT_CACHE__MEMCACHED__SERVERS", servers.as_str()),
    ];
    let mut app = App::spawn(&env).await;
    let Pair { alice, bob, room } = app.pair("stack").await;
    assert_eq!(alice.me().await.0, 200, "get-me through memcached");
    let mut wb = bob.subscribed_ws(&app, &room).await;
    let mut wa = alice.ws(&app, None).await;
    wa.send_numbered(&room, "d", 0..25).await;
    let got = wb.messages(&room, 25).await;
    assert_eq!(got.last().unwrap()["seq"], 25);
    let hist = alice.wait_for_history(&room, 25).await;
    let mid = hist[0]["id"].as_str().unwrap().to_string();
    assert_eq!(alice.edit_message(&mid, "edited").await.0, 200);
    eventually("analytics in ClickHouse", || async {
        let (_, s) = alice.room_stats(&room).await;
        let (_, r) = alice.edit_delete_ratio().await;
        (s["total_messages"] == 25 && r["edit_ratio"].as_f64()? > 0.0).then_some(())
    })
    .await;
    alice
        .history_until("edit in Cassandra", &room, |h| {
            h.first().is_some_and(|m| m["content"] == "edited")
        })
        .await;
    assert!(app.terminate().await.success());

    // Rebuild both stores from Kafka into SQLite files: equal checksums to Cassandra and ClickHouse.
    replay_verifies(app.data.path(), &env, &["history", "analytics"]);
}

/// `livechat replay --verify` of each store into a new SQLite file in `data` reports that the
/// rebuild equals the configured live store; what each replay printed.
fn replay_verifies(data: &std::path::Path, env: &[(&str, &str)], stores: &[&str]) -> Vec<String> {
    let mut outputs = Vec::new();
    for store in stores {
        let fresh = data.join(format!("rebuilt-{store}.db"));
        let out = std::process::Command::new(binary())
            .args(["replay", "--store", store, "--into"])
            .arg(&fresh)
            .args(["--verify", "--data-dir"])
            .arg(data)
            .envs(env.iter().copied())
            .output()
            .expect("run replay");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("verify: match"),
            "{store}: {text}"
        );
        outputs.push(text);
    }
    outputs
}

/// The environment of a process on the whole distributed stack, each name unique to the test.
fn stack_env() -> Option<Vec<(&'static str, String)>> {
    let kafka = env_or_skip("LIVECHAT_KAFKA_BROKERS")?;
    let cassandra = env_or_skip("LIVECHAT_CASSANDRA_NODES")?;
    let clickhouse = env_or_skip("LIVECHAT_CLICKHOUSE_URL")?;
    let memcached = env_or_skip("LIVECHAT_MEMCACHED")?;
    let mongo = env_or_skip("LIVECHAT_MONGO_URI")?;
    let redis = env_or_skip("LIVECHAT_REDIS_URL")?;
    let s3 = env_or_skip("LIVECHAT_S3_ENDPOINT")?;
    let bucket = env_or_skip("LIVECHAT_S3_BUCKET")?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("lc_{}", &id[..12]);
    Some(vec![
        ("LIVECHAT_LOG__KIND", "kafka".into()),
        ("LIVECHAT_LOG__KAFKA__BROKERS", kafka),
        ("LIVECHAT_LOG__KAFKA__NAMESPACE", format!("s{id}.")),
        ("LIVECHAT_HISTORY__KIND", "cassandra".into()),
        (
            "LIVECHAT_HISTORY__CASSANDRA__NODES",
            format!("[\"{cassandra}\"]"),
        ),
        ("LIVECHAT_HISTORY__CASSANDRA__KEYSPACE", db.clone()),
        ("LIVECHAT_ANALYTICS__KIND", "clickhouse".into()),
        ("LIVECHAT_ANALYTICS__CLICKHOUSE__URL", clickhouse),
        ("LIVECHAT_ANALYTICS__CLICKHOUSE__DATABASE", db.clone()),
        ("LIVECHAT_CACHE__KIND", "memcached".into()),
        (
            "LIVECHAT_CACHE__MEMCACHED__SERVERS",
            format!("[\"{memcached}\"]"),
        ),
        ("LIVECHAT_DIRECTORY__KIND", "mongo".into()),
        ("LIVECHAT_DIRECTORY__MONGO__URI", mongo),
        ("LIVECHAT_DIRECTORY__MONGO__DATABASE", db),
        ("LIVECHAT_SESSIONS__KIND", "redis".into()),
        ("LIVECHAT_SESSIONS__REDIS__URL", redis.clone()),
        ("LIVECHAT_SESSIONS__REDIS__NAMESPACE", format!("s{id}:")),
        ("LIVECHAT_PRESENCE__KIND", "redis".into()),
        ("LIVECHAT_PRESENCE__REDIS__URL", redis),
        ("LIVECHAT_PRESENCE__REDIS__NAMESPACE", format!("s{id}:")),
        ("LIVECHAT_FILES__KIND", "s3".into()),
        ("LIVECHAT_FILES__S3__ENDPOINT", s3),
        ("LIVECHAT_FILES__S3__BUCKET", bucket),
        ("LIVECHAT_FILES__S3__ACCESS_KEY_ID", "livechat".into()),
        (
            "LIVECHAT_FILES__S3__SECRET_ACCESS_KEY",
            "livechat-dev-secret".into(),
        ),
        ("LIVECHAT_FILES__S3__PREFIX", format!("t{id}")),
    ])
}

/// Two ingress processes on the stack and one process for each of `processors`.
async fn two_ingresses(env: &[(&str, &str)], processors: &[&str]) -> (App, App, Vec<App>) {
    let a = App::spawn_role(&["ingress"], env).await;
    let b = App::spawn_role(&["ingress"], env).await;
    let mut running = Vec::new();
    for p in processors {
        running.push(App::spawn_role(&["processor", p], env).await);
    }
    (a, b, running)
}

/// Every role in its own process with its own (empty) data directory: nothing is shared but the
/// servers. Two ingress processes send into one room at once (their sequencers share the sends' partitions),
/// sessions and presence cross processes (Redis), a SIGKILLed processor and a SIGKILLed ingress
/// lose and duplicate nothing, and replay rebuilds history, analytics and notifications equal to
/// Cassandra, ClickHouse and MongoDB.
#[tokio::test]
async fn every_role_in_its_own_process_with_nothing_shared_but_the_servers() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut a = App::spawn_role(&["ingress"], &env).await;
    let mut b = App::spawn_role(&["ingress"], &env).await;
    let mut history = App::spawn_role(&["processor", "history"], &env).await;
    let mut analytics = App::spawn_role(&["processor", "analytics"], &env).await;
    let mut notifications = App::spawn_role(&["processor", "notifications"], &env).await;

    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    assert_eq!(
        alice.via(&b).me().await.0,
        200,
        "a session made on A is valid on B"
    );
    let room = alice.create_room("split", true).await;
    assert_eq!(bob.join(&room).await.0, 200);

    // Bob reads on B; presence of his socket shows through A.
    let mut reader = bob.subscribed_ws(&b, &room).await;
    let bob_id = bob.id.clone();
    // (Presence is republished every 2 s; the window is wide for a loaded CI machine, and the
    // answers are printed every 2 s while waiting.)
    let attempts = std::sync::atomic::AtomicU32::new(0);
    eventually_within(
        "Bob online as seen from ingress A",
        std::time::Duration::from_secs(30),
        || async {
            let (status, ids) = alice.online_users(&room).await;
            if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 40 == 39 {
                eprintln!("still waiting; active users via A: {status} {ids}");
            }
            ids.as_array()?
                .iter()
                .any(|v| v.as_str() == Some(bob_id.as_str()))
                .then_some(())
        },
    )
    .await;

    // Alice subscribes on A: Bob's socket on B is told she is online.
    let mut wa = alice.subscribed_ws(&a, &room).await;
    let alice_id = alice.id.clone();
    reader
        .wait_for_within(
            "Alice online, pushed across processes",
            std::time::Duration::from_secs(30),
            |v| {
                v["event_type"] == "ROOM_USER_ONLINE"
                    && v["payload"]["user_id"] == alice_id.as_str()
            },
        )
        .await;

    // Alice through A and Bob through B send at the same time into one room.
    let mut wb = bob.ws(&b, None).await;
    let (acks_a, acks_b) = tokio::join!(
        wa.send_numbered(&room, "a", 0..30),
        wb.send_numbered(&room, "b", 0..30)
    );
    drop(wb);
    let mut all = seqs(&acks_a);
    all.extend(seqs(&acks_b));
    all.sort();
    assert_eq!(
        all,
        (1..=60).collect::<Vec<_>>(),
        "one dense seq across two ingress processes"
    );
    let live = reader.messages(&room, 60).await;
    assert_eq!(
        seqs(&live),
        (1..=60).collect::<Vec<_>>(),
        "delivered on B in seq order"
    );

    // A mention: stored by the notifications process in MongoDB, read through B.
    wa.send_msg(&room, &format!("hello @{}", bob.name), "mention")
        .await;
    eventually("mention notification", || async {
        let (_, n) = bob.notifications().await;
        n.as_array()?
            .iter()
            .any(|n| n["type"] == "MENTION")
            .then_some(())
    })
    .await;

    // The history processor dies mid-stream; its restart resumes from committed offsets.
    history.kill9().await;
    wa.send_numbered(&room, "k", 0..20).await;
    history.restart().await;
    let h = alice.wait_for_history_at_least(&room, 81).await;
    assert_eq!(
        seqs(&h),
        (1..=81).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );

    // Ingress B dies with sends in flight: every acknowledged send is kept once, seqs stay dense.
    let wb = bob.ws(&b, None).await;
    let rb = room.clone();
    let sender = tokio::spawn(async move {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut tx, mut rx) = wb.ws.split();
        let pump = tokio::spawn(async move {
            for i in 0..300 {
                let frame = json!({"type": "send", "room_id": rb, "content": format!("c{i}"),
                                   "client_msg_id": format!("c{i}"), "ref": format!("c{i}")});
                if tx
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
        let mut acked = Vec::new();
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "ack" {
                    acked.push(v["ref"].as_str().unwrap().to_string());
                }
            }
        }
        pump.abort();
        acked
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    b.kill9().await;
    let acked = sender.await.unwrap();
    assert!(
        !acked.is_empty(),
        "some sends were acknowledged before the kill"
    );
    let last = wa.send_msg(&room, "after the crash", "after").await["seq"]
        .as_i64()
        .unwrap();
    eprintln!(
        "ingress B acknowledged {} sends before its SIGKILL; the room has {last} messages",
        acked.len()
    );
    let h = alice
        .history_until("history after the ingress SIGKILL", &room, |h| {
            h.len() as i64 >= last
        })
        .await;
    assert_eq!(
        seqs(&h),
        (1..=last).collect::<Vec<_>>(),
        "dense after the crash"
    );
    for cid in &acked {
        let n = h
            .iter()
            .filter(|m| m["client_msg_id"] == cid.as_str())
            .count();
        assert_eq!(n, 1, "acknowledged {cid} stored exactly once");
    }
    alice.wait_for_room_stats(&room, last).await;

    // Stopped as `livechat serve` stops: the ingress first (its sockets close, their events
    // go out), then the processors, which drain the log.
    assert!(a.terminate().await.success());
    for p in [&mut history, &mut analytics, &mut notifications] {
        assert!(p.terminate().await.success());
    }
    // Rebuild each store from Kafka into a SQLite file: equal to Cassandra, ClickHouse, MongoDB.
    replay_verifies(
        a.data.path(),
        &env,
        &["history", "analytics", "notifications"],
    );
}

/// Read-your-writes on the whole distributed stack, across processes: sends through a socket on
/// ingress A, each edit, delete and history read through ingress B the moment the send is
/// acknowledged (the history is written through before the acknowledgement; the history
/// processor applies the same records again later).
#[tokio::test]
async fn read_your_writes_across_ingress_processes() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::read_your_writes::read_your_writes(&a, &b).await;
}

/// Sends written without waiting, and sends followed at once by the socket's close, on the
/// whole stack (where a send waits for its receipt from the sequencer through Kafka).
#[tokio::test]
async fn pipelined_sends_and_sends_before_a_close_across_ingress_processes() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, _b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::chat::pipelined_sends(&a).await;
    crate::chat::sent_just_before_close(&a).await;
    crate::chat::history_over_the_socket(&a).await;
}

/// Replies and reactions on the whole stack, across processes: Alice sends on ingress A, Bob
/// replies, reacts and reads on ingress B, each read at once after the change it follows.
#[tokio::test]
async fn replies_and_reactions_across_ingress_processes() {
    let Some(mut owned) = stack_env() else { return };
    let (k, v) = crate::conversations::LIMIT_ENV;
    owned.push((k, v.into()));
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::conversations::replies_and_reactions_across(&a, &b).await;
}

/// Pinned messages on the whole stack, across processes: pinned on B right after sends on A.
#[tokio::test]
async fn pinned_messages_across_ingress_processes() {
    let Some(mut owned) = stack_env() else { return };
    let (k, v) = crate::conversations::PIN_LIMIT_ENV;
    owned.push((k, v.into()));
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::conversations::pinned_messages_across(&a, &b).await;
}

/// Files on the whole stack, across processes, in one S3 bucket: uploaded on A, attached on A
/// and on B, live and in history on both at once, downloaded from either.
#[tokio::test]
async fn files_across_ingress_processes() {
    let Some(mut owned) = stack_env() else { return };
    let (k, v) = crate::files::FILES_LIMIT_ENV;
    owned.push((k, v.into()));
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::files::messages_carry_files_across(&a, &b).await;
}

/// Deleting messages deletes their files on the whole stack: the claims in MongoDB, the
/// objects in S3, both processes sweeping unclaimed uploads at once.
#[tokio::test]
async fn deleting_messages_deletes_their_files_across_ingress_processes() {
    let Some(mut owned) = stack_env() else { return };
    let (k, v) = crate::files::FILE_HOLD_ENV;
    owned.push((k, v.into()));
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::files::deleting_messages_deletes_their_files_across(&a, &b, &|_, _| None).await;
}

/// Threads on the whole stack, across processes: replies sent on A and B, read on B at once.
#[tokio::test]
async fn threads_across_ingress_processes() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history", "notifications"]).await;
    crate::conversations::threads_across(&a, &b).await;
}

/// A data export on the whole stack: written through A, exported on B (history in Cassandra,
/// the directory in the Mongo-wire server).
#[tokio::test]
async fn data_export_across_ingress_processes() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history", "notifications"]).await;
    crate::export::export_holds_what_the_user_wrote(&a, &b).await;
}

/// Message search on the whole stack, across processes: each ingress keeps its own index from
/// the log, and finds what was sent on the other.
#[tokio::test]
async fn message_search_across_ingress_processes() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history"]).await;
    crate::conversations::message_search_across(&a, &b).await;
}

/// Direct conversations on the whole stack, across processes: opened on A, found, answered and
/// left on B.
#[tokio::test]
async fn direct_conversations_across_ingress_processes() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let b = App::spawn(&env).await;
    crate::conversations::direct_conversations_across(&a, &b).await;
}

/// Two ingress processes on the whole stack: a user joins on B and opens the room's stream on
/// B, the other sends 50 messages on A; all 50 arrive on B in order, and B's history has all of
/// them within a second of the last one's live delivery.
#[tokio::test]
async fn a_stream_on_one_ingress_gets_every_message_sent_on_the_other_in_order() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let b = App::spawn(&env).await;
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let room = alice.create_room("across", true).await;
    assert_eq!(bob.join(&room).await.0, 200);
    let mut reader = bob.subscribed_ws(&b, &room).await;
    let mut wa = alice.ws(&a, None).await;
    wa.send_numbered(&room, "m", 0..50).await;
    let got = reader.messages(&room, 50).await;
    let delivered = std::time::Instant::now();
    assert_eq!(
        seqs(&got),
        (1..=50).collect::<Vec<_>>(),
        "in order, none missing"
    );
    let hist = bob.wait_for_history(&room, 50).await;
    let lag = delivered.elapsed();
    assert_eq!(seqs(&hist), (1..=50).collect::<Vec<_>>());
    assert!(
        lag <= std::time::Duration::from_secs(1),
        "B's history complete {lag:?} after live delivery"
    );
}

/// Every record of every topic under the namespace `ns` on the brokers, read from the start of
/// each partition to its end: (topic, key, value).
fn raw_records(brokers: &str, ns: &str) -> Vec<(String, Vec<u8>, Option<Vec<u8>>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let timeout = std::time::Duration::from_secs(10);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-{}", uuid::Uuid::new_v4()))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = c.fetch_metadata(None, timeout).unwrap();
    let mut assignment = TopicPartitionList::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(ns))
    {
        for p in t.partitions() {
            assignment
                .add_partition_offset(t.name(), p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    let mut open = assignment.count();
    assert!(open > 0, "no topic under {ns}");
    c.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while open > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{open} partitions unread"
        );
        match c.poll(std::time::Duration::from_millis(500)) {
            Some(Ok(m)) => out.push((
                m.topic().to_string(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
            )),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => panic!("reading {ns}: {e}"),
            None => {}
        }
    }
    out
}

/// An account deletion on the whole stack, across processes: alice writes on ingress A and
/// deletes her account on B; at once her messages are tombstones on both, in Cassandra, and
/// nothing of hers is quoted by the notifications in MongoDB. No record on Kafka holds her
/// text (it was sealed under her key from the start), her profile's key ends with a tombstone,
/// and a replay of every store from Kafka opens none of her records (her key is gone from
/// MongoDB) and rebuilds stores equal to the live ones.
#[tokio::test]
async fn a_deleted_account_leaves_no_text_on_kafka_in_the_stores_or_a_replay() {
    let Some(owned) = stack_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b, _processors) = two_ingresses(&env, &["history", "notifications", "analytics"]).await;
    let deleted = crate::erasure::delete_an_account(&a, &b).await;

    let var = |name: &str| env.iter().find(|(k, _)| *k == name).unwrap().1;
    let (brokers, ns) = (
        var("LIVECHAT_LOG__KAFKA__BROKERS"),
        var("LIVECHAT_LOG__KAFKA__NAMESPACE"),
    );
    let records = raw_records(brokers, ns);
    for (topic, _, value) in &records {
        let value = value.as_deref().unwrap_or_default();
        for erased in &deleted.secrets {
            assert!(
                !value.windows(erased.len()).any(|w| w == erased.as_bytes()),
                "{erased} in a record of {topic}"
            );
        }
    }
    let users = format!("{ns}chat.users.v1");
    let profile: Vec<&Option<Vec<u8>>> = records
        .iter()
        .filter(|(t, k, _)| *t == users && k.as_slice() == deleted.alice.as_bytes())
        .map(|(_, _, v)| v)
        .collect();
    assert!(
        profile.last().is_some_and(|v| v.is_none()),
        "her profile's key ends with a tombstone: {profile:?}"
    );

    let outputs = replay_verifies(
        a.data.path(),
        &env,
        &["history", "analytics", "notifications"],
    );
    // Five sends, an edit and a join request, sealed under her erased key.
    let shut = crate::erasure::shut_records(&outputs[0]);
    assert!(shut >= 7, "{shut} shut: {}", outputs[0]);
    let (status, page) = deleted.bob.history(&deleted.room, 0, None).await;
    assert_eq!(status, 200);
    assert!(
        page.to_string().contains(&deleted.kept),
        "bob's message stays: {page}"
    );
}
