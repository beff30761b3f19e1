//! The pipeline on a real Kafka broker (`scripts/dev-services up kafka`): two LiveChat processes
//! share the directory and the log; Kafka consumer groups split the processors' partitions
//! between them, and each process delivers live to its own sockets. Sequencers (one in every
//! ingress, or a process of their own) share the partitions of the sends.

use serde_json::Value;

use crate::harness::*;

/// Settings that put a process on Kafka under a namespace of its own (tests running at once
/// must not share consumer groups); None: no broker, skip.
fn kafka_env() -> Option<Vec<(&'static str, String)>> {
    let brokers = env_or_skip("LIVECHAT_KAFKA_BROKERS")?;
    Some(vec![
        ("LIVECHAT_LOG__KIND", "kafka".to_string()),
        ("LIVECHAT_LOG__KAFKA__BROKERS", brokers),
        (
            "LIVECHAT_LOG__KAFKA__NAMESPACE",
            format!("t{}.", uuid::Uuid::new_v4().simple()),
        ),
    ])
}

/// What the sequencer appends to the room events carries its CloudEvents attributes as headers
/// (docs/topics.md), the record's timestamp being the event's time.
#[tokio::test]
async fn sequenced_messages_carry_cloudevents_headers() {
    use livechat_core::ports::EventLog;
    use livechat_sinks::kafka::{KafkaConfig, KafkaLog};

    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let Pair { alice, room, .. } = a.pair("cloudevents").await;
    let mut ws = alice.ws(&a, None).await;
    let mut acks = ws.send_numbered(&room, "ce", 0..3).await;
    // One more over REST with a traceparent: the sequencer carries it from the command.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, ack) = alice
        .call_with(
            "POST",
            &format!("/api/messages/create-message/{room}"),
            Some(serde_json::json!({"content": "traced"})),
            &[("traceparent", trace)],
        )
        .await;
    assert_eq!(status, 200);
    acks.push(ack);

    let namespace = owned
        .iter()
        .find(|(k, _)| *k == "LIVECHAT_LOG__KAFKA__NAMESPACE")
        .map(|(_, v)| v.clone())
        .unwrap();
    let cfg = KafkaConfig {
        brokers: std::env::var("LIVECHAT_KAFKA_BROKERS").unwrap(),
        namespace,
        ..KafkaConfig::default()
    };
    let log = KafkaLog::connect(cfg, 4).await.unwrap();
    let topic = "chat.room-events.v1";
    let (mut sent, mut traced) = (Vec::new(), Vec::new());
    for p in 0..log.partitions(topic) {
        for e in log.read(topic, p, 0, 1000).await.unwrap() {
            let header = |k: &str| {
                e.headers
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            if *e.key == *room && header("ce_type").as_deref() == Some("livechat.room.message_sent")
            {
                sent.push((
                    e.timestamp_ms,
                    header("ce_id"),
                    header("ce_subject"),
                    header("ce_time"),
                    header("ce_specversion"),
                ));
                traced.push(header("traceparent"));
            }
        }
    }
    assert_eq!(traced, vec![None, None, None, Some(trace.to_string())]);
    assert_eq!(
        sent.len(),
        acks.len(),
        "one MESSAGE_SENT record per acknowledged send"
    );
    for (ts, id, subject, time, version) in sent {
        assert!(id.is_some_and(|i| uuid::Uuid::parse_str(&i).is_ok()));
        assert_eq!(subject.as_deref(), Some(room.as_str()));
        assert_eq!(version.as_deref(), Some("1.0"));
        let time = chrono::DateTime::parse_from_rfc3339(&time.unwrap()).unwrap();
        assert_eq!(
            time.timestamp_millis(),
            ts,
            "ce_time is the record's timestamp"
        );
    }
}

/// On Kafka the latest-state tables are compacted topics, and a deleted room's key ends with a
/// record without a value (a tombstone, which compaction keeps and then removes).
#[tokio::test]
async fn the_rooms_table_is_a_compacted_topic_with_tombstones_on_kafka() {
    use livechat_core::ports::EventLog;
    use livechat_sinks::kafka::{KafkaConfig, KafkaLog};
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let alice = a.user("tables").await;
    let kept = alice.create_room("kept", true).await;
    let gone = alice.create_room("gone", true).await;
    ok(alice.delete_room(&gone).await, "delete");

    let namespace = owned
        .iter()
        .find(|(k, _)| *k == "LIVECHAT_LOG__KAFKA__NAMESPACE")
        .map(|(_, v)| v.clone())
        .unwrap();
    let brokers = std::env::var("LIVECHAT_KAFKA_BROKERS").unwrap();
    let cfg = KafkaConfig {
        brokers: brokers.clone(),
        namespace: namespace.clone(),
        ..KafkaConfig::default()
    };
    let log = KafkaLog::connect(cfg, 4).await.unwrap();
    let topic = "chat.rooms.v1";
    // The outbox relay brings the records to Kafka shortly after the changes commit.
    let latest = eventually("the deleted room's tombstone on Kafka", || async {
        let mut latest = std::collections::BTreeMap::new();
        for p in 0..log.partitions(topic) {
            for e in log.read(topic, p, 0, 1000).await.ok()? {
                latest.insert(e.key.to_string(), e.payload);
            }
        }
        (latest.get(&gone).map(|p| p.len()) == Some(0)).then_some(latest)
    })
    .await;
    assert!(latest.get(&kept).is_some_and(|v| v.len() > 5), "{latest:?}");

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let name = format!("{namespace}{topic}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&name)], &AdminOptions::new())
        .await
        .unwrap();
    let config = described[0].as_ref().unwrap();
    let policy = config.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
}

#[tokio::test]
async fn two_processes_on_kafka_deliver_in_order_and_survive_a_sigkill() {
    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let mut b = App::spawn_beside(&a, &env).await;
    let Pair { alice, bob, room } = a.pair("kafka").await;

    // Alice writes through process A, Bob reads through process B.
    let mut wa = alice.ws(&a, None).await;
    let mut wb = bob.subscribed_ws(&b, &room).await;
    let acks = wa.send_numbered(&room, "k", 0..30).await;
    assert_eq!(seqs(&acks), (1..=30).collect::<Vec<_>>());
    let got = wb.messages(&room, 30).await;
    assert_eq!(seqs(&got), (1..=30).collect::<Vec<_>>());

    // More rooms, so that some of them live on partitions B's processors own.
    let mut rooms = vec![room.clone()];
    for i in 0..7 {
        rooms.push(alice.create_room(&format!("kafka{i}"), true).await);
    }
    // Kill B (its processors' partitions move to A), keep sending through A.
    b.kill9().await;
    for r in &rooms {
        let start = if *r == room { 30 } else { 0 };
        wa.send_numbered(r, "k", start..start + 30).await;
    }
    for r in &rooms {
        let want = if *r == room { 60 } else { 30 };
        let hist = alice.wait_for_history(r, want).await;
        assert_eq!(
            seqs(&hist),
            (1..=want as i64).collect::<Vec<_>>(),
            "every message once, dense"
        );
    }
    let stats = alice.wait_for_room_stats(&room, 60).await;
    assert_eq!(stats["users_amount"], 1);
    // B comes back and resumes Bob from his last seq.
    b.restart().await;
    let mut wb = bob.ws(&b, None).await;
    wb.subscribe(&room, Some(30)).await;
    let rest = wb.messages(&room, 30).await;
    assert_eq!(rest.last().unwrap()["seq"], 60);
}

#[tokio::test]
async fn separate_ingress_and_processor_processes_on_kafka() {
    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn_role(&["ingress"], &env).await;
    let b = App::spawn_role_beside(&a, &["ingress"], &env).await;
    let mut history = App::spawn_role_beside(&a, &["processor", "history"], &env).await;
    let _notifications = App::spawn_role_beside(&a, &["processor", "notifications"], &env).await;
    let _analytics = App::spawn_role_beside(&a, &["processor", "analytics"], &env).await;

    let owner = a.user("owner").await;
    let guest = b.user("guest").await;
    let room = owner.create_room("split", false).await;
    // The owner listens on ingress B; the notification comes from the notifications processor.
    let mut wo = owner.subscribed_ws(&b, &room).await;
    assert_eq!(guest.join_with_message(&room, "hi").await.0, 200);
    let n = wo
        .wait_for_within(
            "live notification across processes",
            std::time::Duration::from_secs(30),
            |v| v["event_type"] == "NOTIFICATION",
        )
        .await;
    assert_eq!(n["payload"]["notification_type"], "JOIN_REQUEST_CREATED");
    owner.admit(&room, &guest).await;

    // A message sent through A reaches the subscriber on B in order, with its seq.
    let mut wg = guest.ws(&a, None).await;
    wg.send_numbered(&room, "s", 0..20).await;
    let got = wo.messages(&room, 20).await;
    assert_eq!(seqs(&got), (1..=20).collect::<Vec<_>>());

    // The history processor is killed and restarted: nothing lost, nothing doubled.
    history.kill9().await;
    wg.send_numbered(&room, "s", 20..40).await;
    history.restart().await;
    let hist = owner.wait_for_history_at_least(&room, 40).await;
    assert_eq!(seqs(&hist), (1..=40).collect::<Vec<_>>());
    let stats = owner.wait_for_room_stats(&room, 40).await;
    assert_eq!(stats["users_amount"], 1);
}

/// The sequencers are the single writers of the seqs. One is paused past its session timeout
/// while sends go on (its partitions move; when it wakes, what it had not committed is refused),
/// another is SIGKILLed: every acknowledged send is in the history exactly once, and every
/// room's seqs are dense, none given twice.
#[tokio::test]
async fn sequencers_paused_or_killed_never_give_a_seq_twice() {
    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let paused = App::spawn_role_beside(&a, &["sequencer"], &env).await;
    let mut killed = App::spawn_role_beside(&a, &["sequencer"], &env).await;
    let alice = a.user("alice").await;
    // Rooms over every partition, so each sequencer owns some of them.
    let mut rooms = Vec::new();
    for i in 0..8 {
        rooms.push(alice.create_room(&format!("seq{i}"), true).await);
    }
    let mut ws = alice.ws(&a, None).await;
    let mut acks: Vec<(String, Value)> = Vec::new();
    round(&mut ws, &rooms, 0, &mut acks).await;

    let signal = |sig: &str, pid: u32| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    // Paused past the group's session timeout (6 s) while sends go on, then woken.
    signal("-STOP", paused.pid());
    let wake = async {
        tokio::time::sleep(std::time::Duration::from_secs(12)).await;
        signal("-CONT", paused.pid());
    };
    tokio::join!(round(&mut ws, &rooms, 1, &mut acks), wake);
    round(&mut ws, &rooms, 2, &mut acks).await;
    // Killed while sends go on.
    let kill = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        killed.kill9().await;
    };
    tokio::join!(round(&mut ws, &rooms, 3, &mut acks), kill);

    for r in &rooms {
        let mine: Vec<Value> = acks
            .iter()
            .filter(|(room, _)| room == r)
            .map(|(_, a)| a.clone())
            .collect();
        let mut given = seqs(&mine);
        given.sort();
        given.dedup();
        assert_eq!(
            given.len(),
            mine.len(),
            "room {r}: a seq acknowledged twice"
        );
        let hist = alice.wait_for_history(r, mine.len()).await;
        assert_eq!(
            seqs(&hist),
            (1..=mine.len() as i64).collect::<Vec<_>>(),
            "room {r}: dense seqs, each message once"
        );
        for a in &mine {
            let cid = a["client_msg_id"].as_str().unwrap();
            let n = hist.iter().filter(|m| m["client_msg_id"] == cid).count();
            assert_eq!(n, 1, "room {r}: acknowledged {cid} stored once");
        }
    }
}

/// A sequencer writes the rooms' last seqs to its state topic every few seconds, not with every
/// send. One SIGKILLed right after sends it had not written there yet, and started again once
/// they are older than its dedup window (so the window it reads back has none of them), finds
/// them from its checkpoint: the next seq follows the last one acknowledged.
#[tokio::test]
async fn a_sequencer_back_after_its_dedup_window_continues_the_seqs() {
    let Some(mut owned) = kafka_env() else { return };
    owned.push(("LIVECHAT_LOG__KAFKA__DEDUP_WINDOW_SECS", "1".to_string()));
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut a = App::spawn(&env).await;
    let alice = a.user("alice").await;
    let room = alice.create_room("checkpoint", true).await;
    let mut ws = alice.ws(&a, None).await;
    // The session's first transaction writes the state; the next ones, within seconds, do not.
    let mut acks = ws.send_numbered(&room, "a", 0..1).await;
    acks.extend(ws.send_numbered(&room, "b", 0..5).await);
    assert_eq!(seqs(&acks), (1..=6).collect::<Vec<_>>());
    drop(ws);
    a.kill9().await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    a.restart().await;

    let mut ws = alice.ws(&a, None).await;
    let after = ws.send_numbered(&room, "c", 0..3).await;
    assert_eq!(seqs(&after), vec![7, 8, 9], "seqs go on, none given twice");
    let hist = alice.wait_for_history(&room, 9).await;
    assert_eq!(seqs(&hist), (1..=9).collect::<Vec<_>>());
}

/// Ten acknowledged sends into each room, through one socket.
async fn round(ws: &mut Ws, rooms: &[String], n: usize, acks: &mut Vec<(String, Value)>) {
    for r in rooms {
        for a in ws.send_numbered(r, &format!("r{n}-"), 0..10).await {
            acks.push((r.clone(), a));
        }
    }
}

/// A member removed through one process loses the room's stream on the other at once: the
/// removal reaches every process's live delivery, which ends the subscriptions there and
/// forgets the membership its send path trusted.
#[tokio::test]
async fn a_member_removed_on_one_process_loses_the_stream_on_the_other() {
    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn(&env).await;
    let b = App::spawn_beside(&a, &env).await;
    removal_ends_the_members_stream(&a, &b, &a.pair("evict").await).await;
}

/// Analytics processors scaled 1 → 3 → 1 while sends go on: their consumer group moves the
/// partitions each time, and every room still counts every message once, complete within
/// 30 s of the last send (no partition left behind).
#[tokio::test]
async fn processors_scaled_up_and_down_while_sending_lose_nothing() {
    let Some(owned) = kafka_env() else { return };
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = App::spawn_role(&["ingress"], &env).await;
    let _first = App::spawn_role_beside(&a, &["processor", "analytics"], &env).await;
    let alice = a.user("alice").await;
    let mut rooms = Vec::new();
    for i in 0..6 {
        rooms.push(alice.create_room(&format!("scale{i}"), true).await);
    }
    let mut ws = alice.ws(&a, None).await;
    let mut acks = Vec::new();
    round(&mut ws, &rooms, 0, &mut acks).await;
    let mut second = App::spawn_role_beside(&a, &["processor", "analytics"], &env).await;
    let mut third = App::spawn_role_beside(&a, &["processor", "analytics"], &env).await;
    round(&mut ws, &rooms, 1, &mut acks).await;
    assert!(second.terminate().await.success());
    assert!(third.terminate().await.success());
    round(&mut ws, &rooms, 2, &mut acks).await;
    // A member leaving is a rebalance; on a loaded machine the broker may first time out a
    // member's session (6 s) before the partitions move: up to 30 s for the counts.
    for r in &rooms {
        alice
            .wait_for_room_stats_within(r, 30, std::time::Duration::from_secs(30))
            .await;
    }
}
