//! `livechat replay` rebuilds stores from the log with checksums equal to the live ones.

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
