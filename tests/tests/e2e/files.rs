//! Files shared in a room: the type and the image size come from the bytes, a photo's
//! metadata is gone before it is stored, only the room's members download it, and every wrong
//! upload gets its error with nothing stored.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::*;

/// A 1×1 JPEG whose EXIF segment names a place.
fn photo_with_location() -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8];
    let exif = b"Exif\0\0GPS 52.3676 N 4.9041 E";
    b.extend_from_slice(&[0xFF, 0xE1]);
    b.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    b.extend_from_slice(exif);
    b.extend_from_slice(&[
        0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00,
    ]);
    b.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    b.extend_from_slice(&[0x00, 0xFF, 0xD9]);
    b
}

fn has(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn detail(body: &Value) -> String {
    body["detail"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn members_share_files_whose_type_and_metadata_come_from_the_bytes() {
    let app = App::spawn(&[("LIVECHAT_LIMITS__MAX_FILE_BYTES", "16384")]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("files", true).await;

    // A photo, claimed to be HTML: stored as the JPEG it is, without its location.
    let (status, file) = alice
        .upload(
            &room,
            "../holiday/photo.jpg",
            photo_with_location(),
            "text/html",
        )
        .await;
    assert_eq!(status, 200, "{file}");
    assert_eq!(file["content_type"], "image/jpeg");
    assert_eq!(
        (file["width"].as_u64(), file["height"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(file["name"], "photo.jpg");
    let key = file["key"].as_str().unwrap().to_string();
    let url = file["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("/api/files/get-file/{room}/{key}"));

    let r = alice.get_response(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    assert_eq!(header(&r, "content-disposition"), "inline");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert!(header(&r, "content-security-policy").starts_with("sandbox"));
    let got = r.bytes().await.unwrap();
    assert!(!has(&got, b"GPS"), "the location was stripped");
    assert!(has(&got, &[0xFF, 0xC0]), "the image is still there");
    assert_eq!(got.len() as u64, file["size"].as_u64().unwrap());
    let hash: String = Sha256::digest(&got)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, key, "the key is the stored bytes' SHA-256");

    // The same file again is the same file.
    let (status, again) = alice
        .upload(&room, "copy.jpg", photo_with_location(), "image/jpeg")
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["key"], key.as_str());

    // Only members: not before bob joins, and not through another room's address.
    assert_eq!(bob.get_response(&url).await.status(), 403);
    let (status, _) = bob
        .upload(&room, "x.txt", b"hello".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 403);
    bob.join_ok(&room).await;
    let r = bob.get_response(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), got);
    let other = bob.create_room("files-elsewhere", true).await;
    let r = bob
        .get_response(&format!("/api/files/get-file/{other}/{key}"))
        .await;
    assert_eq!(
        r.status(),
        404,
        "a file is reached only through a room it was shared in"
    );
    let r = bob
        .get_response(&format!("/api/files/get-file/{room}/not-a-key"))
        .await;
    assert_eq!(r.status(), 404);

    // A large picture gets a thumbnail that fits 320 × 240, served beside it.
    let mut big = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        800,
        600,
        image::Rgb([200, 40, 40]),
    ))
    .write_to(&mut big, image::ImageFormat::Png)
    .unwrap();
    let (status, large) = alice
        .upload(&room, "red.png", big.into_inner(), "image/png")
        .await;
    assert_eq!(status, 200, "{large}");
    assert_eq!(
        (large["width"].as_u64(), large["height"].as_u64()),
        (Some(800), Some(600))
    );
    let thumb_url = large["thumbnail_url"]
        .as_str()
        .expect("a thumbnail")
        .to_string();
    let r = bob.get_response(&thumb_url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "image/jpeg");
    let thumb = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (320, 240));
    assert!(file["thumbnail_url"].is_null(), "a 1×1 photo needs none");
    let r = bob
        .get_response(&format!("{}?thumbnail=true", file["url"].as_str().unwrap()))
        .await;
    assert_eq!(r.status(), 404, "no thumbnail of a small image");

    // A page is a download, never shown by the browser as a page of this site.
    let (status, page) = bob
        .upload(
            &room,
            "page.html",
            b"<html><script>alert(1)</script></html>".to_vec(),
            "image/png",
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["content_type"], "text/html");
    let r = alice.get_response(page["url"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-disposition"), "attachment");
    assert_eq!(header(&r, "content-type"), "text/html");

    // Wrong uploads: each its error, nothing stored.
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
    elf.resize(64, 0);
    let (status, body) = alice
        .upload(&room, "tool", elf, "application/octet-stream")
        .await;
    assert_eq!(status, 415, "{body}");
    assert!(detail(&body).contains("not accepted"), "{body}");
    let (status, body) = alice
        .upload(&room, "big.txt", vec![b'a'; 20_000], "text/plain")
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(detail(&body).contains("16384"), "{body}");
    let (status, body) = alice
        .upload(&room, "empty.txt", Vec::new(), "text/plain")
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = alice
        .upload(
            &room,
            "broken.jpg",
            b"\xFF\xD8\xFF\xE0garbage".to_vec(),
            "image/jpeg",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = alice
        .upload("not-a-room", "a.txt", b"a".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 422);
}

/// Files a member may attach to one message, lowered so the limit is reached in a few files.
pub const FILES_LIMIT_ENV: (&str, &str) = ("LIVECHAT_LIMITS__MAX_FILES_PER_MESSAGE", "2");

#[tokio::test]
async fn messages_carry_files() {
    let app = App::spawn(&[FILES_LIMIT_ENV]).await;
    messages_carry_files_across(&app, &app).await;
}

/// Files uploaded on `a` go with messages sent on `a` and on `b`: in the acknowledgement, the
/// live frame, history read at once and after a delete, and downloads from either process.
pub async fn messages_carry_files_across(a: &App, b: &App) {
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let room = alice.create_room("with-files", true).await;
    bob.join_ok(&room).await;
    let mut reader = bob.subscribed_ws(b, &room).await;

    let (status, photo) = alice
        .upload(&room, "IMG_0001.jpg", photo_with_location(), "image/jpeg")
        .await;
    assert_eq!(status, 200, "{photo}");
    let (status, notes) = alice
        .upload(&room, "notes.txt", b"notes".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 200, "{notes}");

    // A message of files only, over REST on A.
    let (status, sent) = alice
        .post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": "", "attachments": [
                {"key": photo["key"], "name": "Holiday.jpg"}, {"key": notes["key"]}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let files = sent["attachments"].clone();
    assert_eq!(files.as_array().map(Vec::len), Some(2), "{sent}");
    assert_eq!(files[0]["name"], "Holiday.jpg");
    assert_eq!(files[0]["content_type"], "image/jpeg");
    assert_eq!(
        (files[0]["width"].as_u64(), files[0]["height"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(files[0]["url"], photo["url"]);
    assert_eq!(files[1]["name"], "file", "no name given");
    assert_eq!(files[1]["content_type"], "text/plain; charset=utf-8");
    let seq = sent["seq"].as_i64().unwrap();

    // Live on B, and in B's history at once.
    let live = reader.messages(&room, 1).await;
    assert_eq!(live[0]["message"]["attachments"], files, "{}", live[0]);
    let (status, page) = bob
        .get(&format!(
            "/api/messages/get-messages/{room}?after_seq={}",
            seq - 1
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page[0]["attachments"], files, "{page}");
    let r = bob.get_response(files[0]["url"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    assert!(!has(&r.bytes().await.unwrap(), b"GPS"));

    // Over the socket on B, with text, a file B uploaded there.
    let (status, own) = bob
        .upload(&room, "b.txt", b"from b".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 200, "{own}");
    let mut ws = bob.ws(b, None).await;
    ws.send(
        json!({"type": "send", "room_id": room, "content": "see this", "client_msg_id": "f1",
        "ref": "f1", "attachments": [{"key": own["key"], "name": "b.txt"}]}),
    )
    .await;
    let ack = ws
        .wait_for("ack", |v| {
            (v["type"] == "ack" || v["type"] == "error") && v["ref"] == "f1"
        })
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let (_, page) = alice
        .get(&format!(
            "/api/messages/get-messages/{room}?after_seq={seq}"
        ))
        .await;
    assert_eq!(page[0]["content"], "see this");
    assert_eq!(page[0]["attachments"][0]["name"], "b.txt", "{page}");
    assert_eq!(page[0]["attachments"][0]["key"], own["key"]);

    // Wrong files: each a 422 naming the field, nothing sent.
    let other = alice.create_room("other-files", true).await;
    let (_, elsewhere) = alice
        .upload(&other, "x.txt", b"elsewhere".to_vec(), "text/plain")
        .await;
    let send = |attachments: Value, content: &str| {
        let body = json!({"content": content, "attachments": attachments});
        let alice = &alice;
        let room = room.clone();
        async move {
            alice
                .post(&format!("/api/messages/create-message/{room}"), body)
                .await
        }
    };
    for (attachments, why) in [
        (json!([{"key": elsewhere["key"]}]), "shared in another room"),
        (json!([{"key": "../../etc/passwd"}]), "not a key"),
        (
            json!([{"key": photo["key"]}, {"key": photo["key"]}]),
            "twice",
        ),
        (
            json!([{"key": photo["key"]}, {"key": notes["key"]}, {"key": own["key"]}]),
            "over the limit of 2",
        ),
    ] {
        let (status, body) = send(attachments, "x").await;
        assert_eq!(status, 422, "{why}: {body}");
        assert_eq!(body["detail"][0]["loc"][1], "attachments", "{why}: {body}");
    }
    let (status, body) = send(json!([]), "").await;
    assert_eq!(status, 422, "no text and no file: {body}");
    let (_, after) = alice
        .get(&format!(
            "/api/messages/get-messages/{room}?after_seq={}",
            seq + 1
        ))
        .await;
    assert_eq!(after, json!([]), "nothing was sent");

    // A deleted message shows no files.
    let id = sent["id"].as_str().unwrap();
    let (status, _) = alice
        .delete(&format!("/api/messages/delete-message/{id}"))
        .await;
    assert_eq!(status, 200);
    let (_, page) = bob
        .get(&format!(
            "/api/messages/get-messages/{room}?after_seq={}",
            seq - 1
        ))
        .await;
    assert_eq!(page[0]["deleted"], true);
    assert_eq!(page[0]["attachments"], json!([]), "{page}");
}

/// Deleting a message deletes its files, once no other message of the room carries them: the
/// download answers 404 and the bytes are gone from the disk. A file uploaded and never sent
/// goes once its hold runs out; one uploaded again after a message claimed it stays while that
/// upload holds it. Deleting the room deletes the rest.
#[tokio::test]
async fn deleting_messages_deletes_their_files() {
    let app = App::spawn(&[FILE_HOLD_ENV]).await;
    let on_disk = |room: &str, key: &str| {
        let path = app.data.path().join("files/rooms").join(room).join(key);
        Some(path.exists())
    };
    deleting_messages_deletes_their_files_across(&app, &app, &on_disk).await;
}

/// How long an upload holds its file in [`deleting_messages_deletes_their_files_across`].
pub const FILE_HOLD_ENV: (&str, &str) = ("LIVECHAT_LIMITS__FILE_HOLD_SECS", "2");

/// Files uploaded and deleted through `a`, downloaded through `b`; `in_store` says whether a
/// room's object is in the store (None: not known to the test, only downloads are checked).
pub async fn deleting_messages_deletes_their_files_across(
    a: &App,
    b: &App,
    in_store: &dyn Fn(&str, &str) -> Option<bool>,
) {
    let alice = a.user("alice").await;
    let reader = b.user("reader").await;
    let room = alice.create_room("deleting-files", true).await;
    reader.join_ok(&room).await;
    let stored = |key: &str| in_store(&room, key).unwrap_or(true);
    let gone = |key: &str| !in_store(&room, key).unwrap_or(false);
    let upload = |name: &'static str, bytes: &'static [u8]| {
        let (alice, room) = (&alice, room.clone());
        async move {
            let (status, file) = alice
                .upload(&room, name, bytes.to_vec(), "text/plain")
                .await;
            assert_eq!(status, 200, "{file}");
            file
        }
    };
    let send = |file: Value, cid: Option<&'static str>| {
        let (alice, room) = (&alice, room.clone());
        async move {
            let body = json!({"content": "file", "client_msg_id": cid,
                "attachments": [{"key": file["key"]}]});
            let (status, sent) = alice
                .post(&format!("/api/messages/create-message/{room}"), body)
                .await;
            assert_eq!(status, 200, "{sent}");
            sent
        }
    };
    let delete = |sent: Value| {
        let alice = &alice;
        async move {
            let id = sent["id"].as_str().unwrap().to_string();
            let (status, body) = alice
                .delete(&format!("/api/messages/delete-message/{id}"))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let download = |file: &Value| {
        let (reader, url) = (&reader, file["url"].as_str().unwrap().to_string());
        async move { reader.get_response(&url).await }
    };

    // One file in two messages (the second sent twice: a retry claims it once).
    let shared = upload("shared.txt", b"shared by two messages").await;
    let key = shared["key"].as_str().unwrap().to_string();
    let first = send(shared.clone(), None).await;
    upload("shared.txt", b"shared by two messages").await;
    let second = send(shared.clone(), Some("again")).await;
    let retried = send(shared.clone(), Some("again")).await;
    assert_eq!(retried["id"], second["id"]);
    // Past the uploads' holds: only the messages keep it now.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    delete(first).await;
    assert_eq!(
        download(&shared).await.status(),
        200,
        "the second still carries it"
    );
    assert!(stored(&key));
    delete(second).await;
    assert_eq!(
        download(&shared).await.status(),
        404,
        "gone with its last message"
    );
    assert!(gone(&key), "its bytes are gone from the store");
    assert!(gone(&format!("{key}.json")));

    // Deleted at once, hold or not, when the one message that claimed it is deleted.
    let photo = upload("once.txt", b"sent once, deleted at once").await;
    let once = send(photo.clone(), None).await;
    delete(once).await;
    assert_eq!(download(&photo).await.status(), 404);

    // Sent again after its deletion: it must be uploaded again.
    let body = json!({"content": "x", "attachments": [{"key": photo["key"]}]});
    let (status, refused) = alice
        .post(&format!("/api/messages/create-message/{room}"), body)
        .await;
    assert_eq!(status, 422, "{refused}");
    let again = upload("once.txt", b"sent once, deleted at once").await;
    send(again.clone(), None).await;
    assert_eq!(download(&again).await.status(), 200);

    // Uploaded, never sent: swept once its 2 s hold has run out (the sweep runs every second).
    let orphan = upload("orphan.txt", b"never sent").await;
    let orphan_key = orphan["key"].as_str().unwrap().to_string();
    assert!(stored(&orphan_key));
    let mut swept = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        if download(&orphan).await.status() == 404 {
            swept = true;
            break;
        }
    }
    assert!(
        swept,
        "an upload no message claimed is deleted after its hold"
    );
    assert!(gone(&orphan_key));
    assert_eq!(download(&again).await.status(), 200, "a sent file is kept");

    // Deleting the room deletes the files its messages still carry (with the next sweep).
    let again_key = again["key"].as_str().unwrap().to_string();
    let (status, body) = alice.delete_room(&room).await;
    assert_eq!(status, 200, "{body}");
    let mut swept = false;
    for _ in 0..50 {
        if gone(&again_key) && gone(&format!("{again_key}.json")) {
            swept = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(swept, "a deleted room's files are deleted");
}

/// Each user may upload so many bytes a minute: past that an upload gets 429 with the seconds
/// to wait (and nothing is stored), while other users upload as before.
#[tokio::test]
async fn uploads_are_limited_in_bytes_per_user() {
    let app = App::spawn(&[
        ("LIVECHAT_LIMITS__MAX_FILE_BYTES", "600"),
        ("LIVECHAT_LIMITS__UPLOAD_BYTES_PER_MINUTE", "1000"),
    ])
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("upload-bytes", true).await;
    bob.join_ok(&room).await;
    let (status, first) = alice
        .upload(&room, "a.txt", vec![b'a'; 600], "text/plain")
        .await;
    assert_eq!(status, 200, "{first}");
    let r = app
        .http
        .post(app.url(&format!("/api/files/upload-file/{room}?name=b.txt")))
        .header("cookie", &alice.cookie)
        .body(vec![b'b'; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = header(&r, "retry-after").parse().unwrap();
    // 200 bytes short at 1000 a minute: 12 s.
    assert!((12..=13).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert!(detail(&body).contains("bytes of files a minute"), "{body}");
    let (status, other) = bob
        .upload(&room, "c.txt", vec![b'c'; 600], "text/plain")
        .await;
    assert_eq!(status, 200, "another user's uploads are their own: {other}");
    let (status, small) = alice
        .upload(&room, "d.txt", vec![b'd'; 300], "text/plain")
        .await;
    assert_eq!(status, 200, "a smaller file still fits: {small}");
}

/// An upload takes one of the process's upload slots before its body is read, so a slow or
/// hostile uploader holds one slot, never the process's memory: with one slot, a second upload
/// is refused (429) while the first trickles in, and goes through once it is done.
#[tokio::test]
async fn an_upload_holds_a_slot_from_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::spawn(&[("LIVECHAT_LIMITS__CONCURRENT_UPLOADS", "1")]).await;
    let alice = app.user("alice").await;
    let room = alice.create_room("slots", true).await;
    let mut slow = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    let head = format!(
        "POST /api/files/upload-file/{room}?name=slow.txt HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\
         Content-Length: 1000\r\n\r\nthe first bytes",
        app.addr, alice.cookie
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Time for the server to read the head and take the slot; the slow upload is still open.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut peek = [0u8; 1];
    assert!(
        matches!(slow.try_read(&mut peek), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow upload is still being read"
    );
    let (status, body) = alice
        .upload(&room, "b.txt", b"b".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(detail(&body).contains("uploads at once"), "{body}");
    slow.write_all(&[b'x'; 1000 - 15]).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = slow.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (status, body) = alice
        .upload(&room, "b.txt", b"b".to_vec(), "text/plain")
        .await;
    assert_eq!(status, 200, "the slot is free again: {body}");
    // A body announced larger than the limit is refused before a byte of it is read.
    let mut big = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    let head = format!(
        "POST /api/files/upload-file/{room}?name=big.bin HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\
         Content-Length: {}\r\n\r\n",
        app.addr,
        alice.cookie,
        11 * 1024 * 1024
    );
    big.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = big.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
