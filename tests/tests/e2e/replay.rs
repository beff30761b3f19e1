//! `livechat replay` rebuilds stores from the log with checksums equal to the live ones; the
//! log's records decode with the schemas `/registry` serves.

use serde_json::{json, Value};

use crate::harness::*;

fn replay(app: &App, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .arg("replay")
        .arg("--data-dir")
        .arg(app.data.path())
        .args(args)
        .output()
        .expect("run livechat replay");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn sha(text: &str, path_part: &str) -> String {
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
        dry.contains("MESSAGE_SENT: 30") && dry.contains("MESSAGE_DELETED: 1"),
        "{dry}"
    );
    for store in ["history", "analytics", "notifications"] {
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
    // Every record of the topic decodes; one of them is the message, with its text.
    let mut contents = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for record in &records {
        assert_eq!(record[0], 0, "Confluent wire format: magic byte 0");
        let id = u32::from_be_bytes(record[1..5].try_into().unwrap());
        ids.insert(id);
        let res = app
            .http
            .get(app.url(&format!("/registry/schemas/ids/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            "application/vnd.schemaregistry.v1+json"
        );
        let body: Value = res.json().await.unwrap();
        let schema = apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap();
        let value = apache_avro::from_avro_datum(&schema, &mut &record[5..], None).unwrap();
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("not a record: {value:?}");
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if field("event_type") == Some(apache_avro::types::Value::String("MESSAGE_SENT".into())) {
            contents.push(field("content"));
        }
    }
    assert_eq!(
        contents,
        vec![Some(apache_avro::types::Value::Union(
            1,
            Box::new(apache_avro::types::Value::String(text.into()))
        ))]
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
    // The subject of the topic names the same schema, as version 1; unknown names get the
    // API's error codes.
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
        (Some(id as u64), Some(1))
    );
    assert_eq!(latest["schema"], body["schema"]);
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
