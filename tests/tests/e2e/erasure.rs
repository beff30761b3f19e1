//! Account deletion: what the account wrote is sealed under its own key from the start, so
//! erasing the key leaves it unreadable in the raw log, in every store, and in whatever a full
//! replay rebuilds.

use serde_json::{json, Value};

use crate::harness::*;
use crate::replay::replay;

/// Every file under `dir`, with the texts of `secrets` found in its bytes.
fn files_holding(dir: &std::path::Path, secrets: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            for s in secrets {
                if bytes.windows(s.len()).any(|w| w == s.as_bytes()) {
                    found.push((path.display().to_string(), s.clone()));
                }
            }
        }
    }
    found
}

/// What an account deletion is checked against afterwards.
pub struct Deleted {
    /// Texts only the deleted account wrote (messages, an edit, a join request's note).
    pub secrets: Vec<String>,
    /// A text of the other user's, in the same room, which stays.
    pub kept: String,
    /// In every text of the scenario (and nowhere else).
    pub tag: String,
    pub room: String,
    /// The deleted account's id.
    pub alice: String,
    /// The other user, on `b`.
    pub bob: User,
}

/// Alice, on `a`, talks in bob's room (mentioning him), edits, writes in a room of her own and
/// asks to join a private room with a note; a wrong password deletes nothing; then she deletes
/// her account on `b`. Checked at once, on both processes as a client would: she is gone, her
/// messages are tombstones while bob's stays, her own room and her join request are gone, and
/// none of bob's notifications quotes her.
pub async fn delete_an_account(a: &App, b: &App) -> Deleted {
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let secret = |what: &str| format!("{what}-{tag}");

    let room = bob.create_room(&format!("erase-{}", &tag[..8]), true).await;
    alice.join_ok(&room).await;
    let own = alice.create_room(&format!("own-{}", &tag[..8]), true).await;
    bob.join_ok(&own).await;
    let private = bob.create_room(&format!("priv-{}", &tag[..8]), false).await;
    assert_eq!(
        alice.join_with_message(&private, &secret("note")).await.0,
        200
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let text = format!("{} @{}", secret(&format!("said{i}")), bob.name);
        let m = ok(alice.send_rest(&room, &text, None).await, "send");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    alice.edit_message_ok(&ids[0], &secret("edited")).await;
    ok(
        alice.send_rest(&own, &secret("own"), None).await,
        "send own",
    );
    let kept = ok(bob.send_rest(&room, &secret("bobs"), None).await, "bob's");
    let secrets: Vec<String> = ["note", "said0", "said4", "edited", "own"]
        .into_iter()
        .map(secret)
        .collect();
    // Bob was mentioned: his notifications show a preview of alice's text (stored by the
    // notifications processor, which may run in a process of its own).
    eventually("bob's mention notifications", || async {
        let notes = bob.notifications_ok().await;
        notes
            .iter()
            .any(|n| n.to_string().contains(&secret("said1")))
            .then_some(())
    })
    .await;

    let on_b = alice.via(b);
    let (status, body) = on_b
        .post("/api/users/delete-account", json!({"password": "not it"}))
        .await;
    assert_eq!(status, 403, "a wrong password deletes nothing: {body}");
    assert_eq!(alice.me().await.0, 200);

    let (status, body) = on_b
        .post("/api/users/delete-account", json!({"password": PASSWORD}))
        .await;
    assert_eq!(status, 200, "{body}");
    for app in [a, b] {
        assert_eq!(alice.via(app).me().await.0, 401, "the account is gone");
        assert_eq!(app.login(&alice.name, PASSWORD).await.status(), 401);
    }

    for reader in [bob.via(b), bob.via(a)] {
        let (status, page) = reader.history(&room, 0, None).await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        let by_id = |id: &str| page.iter().find(|m| m["id"] == id).cloned();
        for id in &ids {
            let m = by_id(id).unwrap_or_else(|| panic!("{id} kept as a tombstone: {page:?}"));
            assert_eq!(m["deleted"], true, "{m}");
            assert_eq!(m["content"], "", "{m}");
        }
        assert_eq!(
            by_id(kept["id"].as_str().unwrap()).unwrap()["content"],
            secret("bobs")
        );
        assert_eq!(reader.room(&own).await.0, 404);
        assert!(reader.join_requests_of_room_ok(&private).await.is_empty());
        let notes: Vec<Value> = reader.notifications_ok().await;
        assert!(
            !notes.iter().any(|n| n.to_string().contains(&tag)),
            "{notes:?}"
        );
    }
    Deleted {
        secrets,
        kept: secret("bobs"),
        tag,
        room,
        alice: alice.id.clone(),
        bob,
    }
}

/// The count a replay prints of the records it could not open (their account's key erased).
pub fn shut_records(replay_output: &str) -> u64 {
    replay_output
        .lines()
        .find_map(|l| {
            l.split(" sealed records of erased accounts")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of shut records in {replay_output}"))
}

#[tokio::test]
async fn a_deleted_account_leaves_no_text_in_the_log_the_stores_or_a_replay() {
    let mut app = App::spawn(&[]).await;
    let Deleted {
        secrets,
        kept,
        tag,
        room,
        alice,
        bob,
    } = delete_an_account(&app, &app).await;

    // The raw files (the log, the directory, the history, the search index), once their
    // write-ahead logs are checkpointed and emptied (a second of quiet): no text of alice's
    // anywhere, while bob's is still there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = files_holding(app.data.path(), &secrets);
        if found.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "erased text still in the files: {found:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!files_holding(app.data.path(), std::slice::from_ref(&kept)).is_empty());
    assert!(app.terminate().await.success());
    // Her profile's table keeps only its tombstone (the log compacts the tables at the append).
    let db = rusqlite::Connection::open(app.data.path().join("livechat.db")).unwrap();
    let profile: Vec<Vec<u8>> = db
        .prepare("SELECT payload FROM records WHERE topic = 'chat.users.v1' AND key = ?1")
        .unwrap()
        .query_map([&alice], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(profile, vec![Vec::<u8>::new()], "only the tombstone");
    drop(db);

    // A full replay of every store restores none of it, and equals the live stores.
    for store in ["history", "search", "notifications"] {
        let fresh = app.data.path().join(format!("rebuilt-{store}.db"));
        let (ok, out) = replay(
            &app,
            &[
                "--store",
                store,
                "--into",
                fresh.to_str().unwrap(),
                "--verify",
            ],
        );
        assert!(ok && out.contains("verify: match"), "{store}: {out}");
        // Five sends, an edit and a join request, sealed under alice's erased key.
        let shut = shut_records(&out);
        assert!(shut >= 7, "{store}: {shut} shut: {out}");
        assert_eq!(
            files_holding(app.data.path(), &secrets),
            Vec::<(String, String)>::new(),
            "{store}"
        );
    }
    app.restart().await;
    let (status, page) = bob.history(&room, 0, None).await;
    assert_eq!(status, 200);
    let page = page.to_string();
    for erased in secrets.iter().chain([&format!("said1-{tag}")]) {
        assert!(!page.contains(erased.as_str()), "{erased}: {page}");
    }
    assert!(page.contains(&kept), "{page}");
}
