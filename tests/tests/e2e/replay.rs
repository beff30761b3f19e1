//! `livechat replay` rebuilds stores from the log with checksums equal to the live ones; the
//! log's records decode with the schemas `/registry` serves.

use serde_json::{json, Value};

use crate::harness::*;

/// Runs `livechat <command> --data-dir <app's> <args>`: whether it succeeded, and its output.
pub(crate) fn cli(app: &App, command: &[&str], args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .args(command)
        .arg("--data-dir")
        .arg(app.data.path())
        .args(args)
        .output()
        .expect("run livechat");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

pub(crate) fn replay(app: &App, args: &[&str]) -> (bool, String) {
    cli(app, &["replay"], args)
}

pub(crate) fn sha(text: &str, path_part: &str) -> String {
    text.lines()
        .find(|l| l.starts_with("checksum") && l.contains(path_part))
        .and_then(|l| l.split("sha256=").nth(1))
        .unwrap_or_else(|| panic!("no checksum for {path_part} in:\n{text}"))
        .to_string()
}

#[tokio::test]
async fn replay_rebuilds_history_analytics_and_notifications_identically() {
    let mut app = App::spawn(&[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("replay", false).await;
    assert_eq!(bob.join_with_message(&room, "hi").await.0, 200);
    alice.admit(&room, &bob).await;
    let mut ws = alice.ws(&app, None).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            ws.send_msg(&room, &format!("m{i} @{}", bob.name), &format!("r{i}"))
                .await["message_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    alice.wait_for_history(&room, 30).await;
    alice.edit_message_ok(&ids[3], "edited").await;
    alice.delete_message_ok(&ids[4]).await;
    alice
        .history_until("tombstone", &room, |h| {
            h.iter()
                .any(|m| m["id"] == ids[4].as_str() && m["deleted"] == true)
        })
        .await;
    // Replies, thread replies (one deleted) and reactions are rebuilt too (one taken back).
    assert_eq!(bob.reply_rest(&room, "a reply", 1).await.0, 200);
    let mut in_thread = Vec::new();
    for text in ["in a thread", "deleted from the thread"] {
        let (status, m) = bob
            .post(
                &format!("/api/messages/create-message/{room}"),
                json!({"content": text, "thread_root_seq": 2}),
            )
            .await;
        assert_eq!(status, 200, "{m}");
        in_thread.push(m["id"].as_str().unwrap().to_string());
    }
    bob.delete_message_ok(&in_thread[1]).await;
    for (emoji, added) in [("👍", true), ("🎉", true), ("🎉", false)] {
        assert_eq!(bob.react(&ids[5], emoji, added).await.0, 200);
    }
    assert_eq!(alice.react(&ids[5], "👍", true).await.0, 200);
    for (id, pinned) in [(&ids[6], true), (&ids[7], true), (&ids[7], false)] {
        assert_eq!(bob.pin(id, pinned).await.0, 200);
    }
    // A message's files (their descriptions) are rebuilt too.
    let (status, file) = bob
        .upload(
            &room,
            "notes.txt",
            b"bring sunscreen".to_vec(),
            "text/plain",
        )
        .await;
    assert_eq!(status, 200, "{file}");
    let (status, m) = bob
        .post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "with a file", "attachments": [{"key": file["key"], "name": "notes.txt"}]}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    // What bob does to his notifications is rebuilt too: one read, one deleted.
    let notes = bob.notifications_ok().await;
    assert!(notes.len() >= 2, "{notes:?}");
    let (read, gone) = (
        notes[0]["id"].as_str().unwrap(),
        notes[1]["id"].as_str().unwrap(),
    );
    assert_eq!(bob.mark_notification_read(read).await.0, 200);
    assert_eq!(bob.delete_notification(gone).await.0, 200);
    let unread = bob.unread_notifications_ok().await;
    assert!(app.terminate().await.success());

    let (ok, dry) = replay(&app, &["--store", "history", "--dry-run"]);
    assert!(ok, "{dry}");
    assert!(
        dry.contains("MESSAGE_SENT: 34")
            && dry.contains("MESSAGE_DELETED: 2")
            && dry.contains("MESSAGE_REACTION_ADDED: 3")
            && dry.contains("MESSAGE_REACTION_REMOVED: 1")
            && dry.contains("MESSAGE_PINNED: 2")
            && dry.contains("MESSAGE_UNPINNED: 1"),
        "{dry}"
    );
    for store in ["history", "analytics", "notifications", "search"] {
        let fresh = app.data.path().join(format!("rebuilt-{store}.db"));
        let fresh = fresh.to_str().unwrap();
        let (ok1, first) = replay(&app, &["--store", store, "--into", fresh, "--verify"]);
        assert!(ok1 && first.contains("verify: match"), "{store}: {first}");
        let (ok2, second) = replay(&app, &["--store", store, "--into", fresh, "--verify"]);
        assert!(
            ok2 && second.contains("verify: match"),
            "{store} twice: {second}"
        );
        assert_eq!(
            sha(&first, "rebuilt"),
            sha(&second, "rebuilt"),
            "{store}: replaying twice changes nothing"
        );
    }
    // Replaying into the live store is idempotent too.
    let (ok, live) = replay(&app, &["--store", "history"]);
    assert!(ok, "{live}");
    let (_, again) = replay(
        &app,
        &[
            "--store",
            "history",
            "--into",
            app.data.path().join("rebuilt-history.db").to_str().unwrap(),
            "--verify",
        ],
    );
    assert!(again.contains("verify: match"), "{again}");
    let (ok, bad) = replay(&app, &["--store", "history", "--from-time", "yesterday"]);
    assert!(!ok && bad.contains("RFC 3339"), "{bad}");

    // Replayed into the live store, the notifications stay as bob left them.
    let (ok, live) = replay(&app, &["--store", "notifications"]);
    assert!(ok, "{live}");
    app.restart().await;
    let after = bob.notifications_ok().await;
    assert!(after.iter().all(|n| n["id"] != gone), "deleted one is back");
    assert!(after.iter().any(|n| n["id"] == read && n["read"] == true));
    assert_eq!(bob.unread_notifications_ok().await, unread);
}

/// An operator repairs a range: a replay bounded by partition, offsets and time reads only that
/// range (listed before it starts), and applies only it.
#[tokio::test]
async fn a_replay_is_bounded_by_partition_offsets_and_time() {
    let mut app = App::spawn(&[]).await;
    let alice = app.user("ranges").await;
    let room = alice.create_room("ranges", true).await;
    for i in 0..10 {
        ok(
            alice.send_rest(&room, &format!("range {i}"), None).await,
            "send",
        );
    }
    alice.wait_for_history(&room, 10).await;
    assert!(app.terminate().await.success());
    // The room's records, oldest first: its creation, then the ten messages.
    let rows: Vec<(u32, i64, i64)> = {
        let db = rusqlite::Connection::open_with_flags(
            app.data.path().join("livechat.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut q = db
            .prepare(
                "SELECT partition, offset, ts FROM records
                 WHERE topic = 'chat.room-events.v1' AND key = ?1 ORDER BY offset",
            )
            .unwrap();
        let rows = q
            .query_map([&room], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let messages = &rows[rows.len() - 10..];
    let (p, first, last) = (messages[0].0, messages[2].1, messages[5].1);
    let (p_arg, from, to) = (p.to_string(), first.to_string(), last.to_string());
    let bounds = [
        "--partition",
        &p_arg,
        "--from-offset",
        &from,
        "--to-offset",
        &to,
    ];

    let mut args = vec!["--store", "history", "--dry-run"];
    args.extend(bounds);
    let (ok1, dry) = replay(&app, &args);
    assert!(ok1, "{dry}");
    assert!(dry.contains("Replaying 4 records"), "{dry}");
    assert!(
        dry.contains(&format!(
            "chat.room-events.v1/{p}: offsets {first}..{}",
            last + 1
        )),
        "{dry}"
    );
    assert!(dry.contains("MESSAGE_SENT: 4"), "{dry}");

    // Into a fresh store: exactly those four messages.
    let fresh = app.data.path().join("range.db");
    let mut args = vec![
        "--store",
        "history",
        "--into",
        fresh.to_str().unwrap(),
        "--verify",
    ];
    args.extend(bounds);
    let (ok2, applied) = replay(&app, &args);
    assert!(ok2, "{applied}");
    assert!(applied.contains("rows=4 "), "{applied}");
    assert!(applied.contains("verify: skipped"), "{applied}");

    // Until a time: the records appended before the seventh message.
    let until = chrono::DateTime::from_timestamp_millis(messages[6].2)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (ok3, timed) = replay(
        &app,
        &[
            "--store",
            "history",
            "--dry-run",
            "--partition",
            &p_arg,
            "--until-time",
            &until,
        ],
    );
    assert!(ok3, "{timed}");
    let end = rows.iter().find(|r| r.2 >= messages[6].2).unwrap().1;
    assert!(
        timed.contains(&format!("chat.room-events.v1/{p}: offsets 0..{end}")),
        "{timed}"
    );

    let (ok4, bad) = replay(&app, &["--store", "history", "--from-offset", "3"]);
    assert!(!ok4 && bad.contains("--partition"), "{bad}");
    let (ok5, bad) = replay(&app, &["--store", "history", "--partition", "99"]);
    assert!(!ok5 && bad.contains("has partitions"), "{bad}");
}

/// A data team's consumer: takes a record from the embedded log as it is stored (Confluent wire
/// format), asks `/registry` for the schema its header names, and decodes it with a generic Avro
/// library (apache-avro, not LiveChat's codec) — no glue, no LiveChat code.
#[tokio::test]
async fn log_records_decode_with_the_schema_registry_the_server_serves() {
    let app = App::spawn(&[]).await;
    let alice = app.user("reader").await;
    let room = alice.create_room("registry", true).await;
    let mut ws = alice.subscribed_ws(&app, &room).await;
    let text = "décodé par un client générique";
    ws.send_msg(&room, text, "reg-1").await;
    let records: Vec<Vec<u8>> = {
        let db = rusqlite::Connection::open_with_flags(
            app.data.path().join("livechat.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut q = db
            .prepare("SELECT payload FROM records WHERE topic = 'chat.room-events.v1'")
            .unwrap();
        let rows = q.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    // Every record of the topic decodes; one of them is the message, its text sealed (only
    // the author's key opens it: see docs/topics.md).
    let mut contents = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    let mut schemas = std::collections::BTreeMap::new();
    for record in &records {
        let (id, fields) = registry_decode(&app, &mut schemas, record).await;
        ids.insert(id);
        let field = |name: &str| fields.get(name).cloned();
        if field("event_type") == Some(apache_avro::types::Value::String("MESSAGE_SENT".into())) {
            contents.push((field("content"), field("sealed")));
        }
    }
    assert_eq!(contents.len(), 1, "{contents:?}");
    let (content, sealed) = contents.pop().unwrap();
    assert_eq!(
        content,
        Some(apache_avro::types::Value::Union(
            0,
            Box::new(apache_avro::types::Value::Null)
        ))
    );
    match sealed {
        Some(apache_avro::types::Value::Union(1, b)) => match *b {
            apache_avro::types::Value::Bytes(b) => {
                assert_eq!(b[0], 1, "sealed format 1");
                assert!(
                    !b.windows(5).any(|w| w == "décod".as_bytes()),
                    "no clear text"
                );
            }
            other => panic!("sealed is not bytes: {other:?}"),
        },
        other => panic!("no sealed text: {other:?}"),
    }
    assert!(
        !records
            .iter()
            .any(|r| r.windows(text.len()).any(|w| w == text.as_bytes())),
        "no record holds the text in clear"
    );
    let id = *ids.iter().next().unwrap();
    assert_eq!(ids.len(), 1, "one schema for the topic: {ids:?}");
    let body: Value = app
        .http
        .get(app.url(&format!("/registry/schemas/ids/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The subject of the topic names the same schema as its latest version (2); version 1, which
    // logs written before it hold, keeps its own id. Unknown names get the API's error codes.
    let get = |path: String| {
        let (http, url) = (app.http.clone(), app.url(&path));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, subjects) = get("/registry/subjects".into()).await;
    assert_eq!(status, 200);
    assert!(subjects
        .as_array()
        .unwrap()
        .contains(&json!("chat.room-events.v1-value")));
    let (status, latest) =
        get("/registry/subjects/chat.room-events.v1-value/versions/latest".into()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (latest["id"].as_u64(), latest["version"].as_u64()),
        (Some(id as u64), Some(5))
    );
    assert_eq!(latest["schema"], body["schema"]);
    let (status, versions) =
        get("/registry/subjects/chat.room-events.v1-value/versions".into()).await;
    assert_eq!((status, versions), (200, json!([1, 2, 3, 4, 5])));
    let (status, first) =
        get("/registry/subjects/chat.room-events.v1-value/versions/1".into()).await;
    assert_eq!(status, 200);
    assert_ne!(first["id"], latest["id"]);
    assert!(!first["schema"].as_str().unwrap().contains("reply_to_seq"));
    for (path, status, code) in [
        (
            "/registry/subjects/nope-value/versions".to_string(),
            404,
            40401,
        ),
        (
            "/registry/subjects/chat.room-events.v1-value/versions/7".into(),
            404,
            40402,
        ),
        (
            "/registry/subjects/chat.room-events.v1-value/versions/x".into(),
            422,
            42202,
        ),
        ("/registry/schemas/ids/999999".into(), 404, 40403),
    ] {
        let (s, b) = get(path.clone()).await;
        assert_eq!(
            (s, b["error_code"].as_u64()),
            (status, Some(code)),
            "{path}: {b}"
        );
    }
}

/// Appends a dead letter to the embedded log the way the processors' runner writes one: where
/// the record came from and why in headers, the original bytes in the JSON body.
fn dead_letter(db: &rusqlite::Connection, processor: &str, class: &str, original: &[u8]) -> i64 {
    let offset: i64 = db
        .query_row(
            "SELECT coalesce(max(offset) + 1, 0) FROM records WHERE topic = 'chat.dead-letter.v1' AND partition = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let hex: String = original.iter().map(|b| format!("{b:02x}")).collect();
    let headers = json!([
        ["orig.topic", "chat.room-events.v1"],
        ["orig.partition", "0"],
        ["orig.offset", "7"],
        ["error.class", class],
        ["error.msg", "the store was down"],
        ["processor", processor],
    ]);
    let body = json!({"payload_hex": hex, "error": "the store was down", "processor": processor});
    db.execute(
        "INSERT INTO records(topic, partition, offset, key, payload, ts, headers)
         VALUES ('chat.dead-letter.v1', 0, ?1, 'k', ?2, ?3, ?4)",
        rusqlite::params![
            offset,
            body.to_string().into_bytes(),
            chrono::Utc::now().timestamp_millis(),
            headers.to_string()
        ],
    )
    .unwrap();
    offset
}

/// An operator lists and inspects the dead letters, then replays them into the processors that
/// failed them: a message whose history row was lost comes back, once however often it is
/// replayed; a record that still does not decode is reported and fails the command.
#[tokio::test]
async fn dead_letters_are_listed_shown_and_replayed_into_their_processor() {
    let mut app = App::spawn(&[]).await;
    let alice = app.user("dlq").await;
    let room = alice.create_room("dead-letters", true).await;
    let mut ws = alice.subscribed_ws(&app, &room).await;
    let text = "lost, then found again";
    let id = ws.send_msg(&room, text, "dlq-1").await["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    alice.wait_for_history(&room, 1).await;
    drop(ws);
    assert!(app.terminate().await.success());

    // The message's history row is lost, and its record sits in the dead-letter topic.
    let db = rusqlite::Connection::open(app.data.path().join("livechat.db")).unwrap();
    let original: Vec<u8> = db
        .query_row(
            "SELECT payload FROM records WHERE topic = 'chat.room-events.v1' AND instr(payload, CAST(?1 AS BLOB)) > 0",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    let rows = |db: &rusqlite::Connection| -> Vec<String> {
        db.prepare("SELECT content FROM messages WHERE id = ?1")
            .unwrap()
            .query_map([&id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let history = rusqlite::Connection::open(app.data.path().join("history.db")).unwrap();
    history
        .execute("DELETE FROM messages WHERE id = ?1", [&id])
        .unwrap();
    let offset = dead_letter(&db, "history", "PROCESSING_FAILED", &original);
    let garbage = dead_letter(&db, "analytics", "INVALID_MAGIC_BYTE", &[9, 9, 9]);

    let (ok, out) = cli(&app, &["dlq", "list"], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("2 dead letter(s)"), "{out}");
    assert!(
        out.contains(&format!("0@{offset} "))
            && out.contains(
                "history  PROCESSING_FAILED  from chat.room-events.v1[0]@7  the store was down"
            ),
        "{out}"
    );
    let (ok, out) = cli(
        &app,
        &["dlq", "show"],
        &["--partition", "0", "--offset", &offset.to_string()],
    );
    assert!(ok, "{out}");
    assert!(out.contains("processor: history"), "{out}");
    assert!(
        out.contains("original record (decodes now)") && out.contains(text),
        "{out}"
    );

    // A dry run changes nothing.
    let (ok, out) = cli(
        &app,
        &["dlq", "replay"],
        &["--processor", "history", "--dry-run"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("would replay 1, 0 not"), "{out}");
    assert!(rows(&history).is_empty());

    // Replayed: the message is back; replayed again: still once.
    for _ in 0..2 {
        let (ok, out) = cli(&app, &["dlq", "replay"], &["--processor", "history"]);
        assert!(ok, "{out}");
        assert!(out.contains("replayed 1, 0 not"), "{out}");
        assert_eq!(rows(&history), vec![text.to_string()]);
    }

    // A record that still does not decode is named, and the command fails.
    let (ok, out) = cli(
        &app,
        &["dlq", "replay"],
        &["--from-offset", &garbage.to_string()],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!(
            "0@{garbage} (analytics from chat.room-events.v1[0]@7): still undecodable"
        )),
        "{out}"
    );
    assert!(out.contains("replayed 0, 1 not"), "{out}");
}
