//! Bad input: a fixed list of malformed frames and requests with the answers they must get,
//! and random frames from a seeded generator (protocol fuzzing).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::node::{tag, Node};
use super::raw::{client_frame, read_frame, read_http_head, upgrade_request};
use super::{Profile, Row};
use crate::client::{livechat_world, ws_open, Rest, World};
use crate::proto::Proto;

/// One bad input and the answer it must get.
struct Bad {
    name: &'static str,
    /// Raw WebSocket frame bytes (client-masked unless the case is about masking), or None
    /// for a REST case.
    frame: Option<Vec<u8>>,
    rest: Option<(&'static str, String, String)>,
    expect: Expect,
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// An error frame with this code, the socket still open.
    ErrorFrame(&'static str),
    /// A close frame with this code.
    Close(u16),
    /// An HTTP status with a JSON body.
    Status(u16),
}

/// What the server answered one bad frame with.
async fn answer(addr: SocketAddr, cookie: &str, frame: &[u8]) -> Result<Expect> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(upgrade_request(addr, cookie).as_bytes())
        .await?;
    read_http_head(&mut tcp).await?;
    tcp.write_all(frame).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (op, payload) = tokio::time::timeout_at(deadline.into(), read_frame(&mut tcp))
            .await
            .context("no answer within 10 s")?
            .context("connection ended without a close frame")?;
        match op {
            0x1 => {
                let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                if v["type"] == "error" {
                    let code = v["code"].as_str().unwrap_or_default().to_string();
                    return Ok(Expect::ErrorFrame(Box::leak(code.into_boxed_str())));
                }
            }
            0x8 if payload.len() >= 2 => {
                return Ok(Expect::Close(u16::from_be_bytes([payload[0], payload[1]])))
            }
            0x8 => return Ok(Expect::Close(1005)),
            _ => {}
        }
    }
}

/// Malformed frames and requests, each answered with its error frame, close code or HTTP
/// status, and the server healthy afterwards.
pub async fn malformed(bin: &Path, work: &Path) -> Result<Row> {
    let mut node = Node::start_new(bin, &work.join("malformed"), vec![]).await?;
    let addr = node.addr();
    let world: World = livechat_world(addr, 1, 1, &tag()).await?;
    let cookie = world.cookies[0].clone();
    let room = world.rooms[0].clone();
    let missing = "00000000-0000-7000-8000-000000000000";
    let text = |s: String| Some(client_frame(0x1, s.as_bytes(), true));
    let cases = vec![
        Bad {
            name: "text that is not JSON",
            frame: text("{not json".into()),
            rest: None,
            expect: Expect::ErrorFrame("bad_json"),
        },
        Bad {
            name: "unknown frame type",
            frame: text(json!({"type": "launch"}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("bad_frame"),
        },
        Bad {
            name: "send without content",
            frame: text(json!({"type": "send", "room_id": room}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("bad_frame"),
        },
        Bad {
            name: "empty message",
            frame: text(json!({"type": "send", "room_id": room, "content": "  "}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("invalid"),
        },
        Bad {
            name: "send to an unknown room",
            frame: text(json!({"type": "send", "room_id": missing, "content": "hi"}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("not_found"),
        },
        Bad {
            name: "room id that is not a UUID",
            frame: text(json!({"type": "subscribe", "room_id": "lobby"}).to_string()),
            rest: None,
            expect: Expect::ErrorFrame("invalid"),
        },
        Bad {
            name: "binary frame",
            frame: Some(client_frame(0x2, b"\x00\x01", true)),
            rest: None,
            expect: Expect::ErrorFrame("unsupported"),
        },
        Bad {
            name: "invalid UTF-8 in a text frame",
            frame: Some(client_frame(0x1, b"{\"type\":\"\xff\xfe\"}", true)),
            rest: None,
            expect: Expect::Close(1007),
        },
        Bad {
            name: "reserved opcode",
            frame: Some(client_frame(0x3, b"x", true)),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "RSV1 without an extension",
            frame: Some({
                let mut f = client_frame(0x1, b"{}", true);
                f[0] |= 0x40;
                f
            }),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "unmasked client frame",
            frame: Some(client_frame(0x1, b"{}", false)),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "continuation with nothing to continue",
            frame: Some(client_frame(0x0, b"x", true)),
            rest: None,
            expect: Expect::Close(1002),
        },
        Bad {
            name: "frame over the size limit",
            frame: text(format!(
                "{{\"type\":\"send\",\"content\":\"{}\"}}",
                "x".repeat(200_000)
            )),
            rest: None,
            expect: Expect::Close(1009),
        },
        Bad {
            name: "REST: body that is not JSON",
            frame: None,
            rest: Some((
                "POST",
                format!("/api/messages/create-message/{room}"),
                "{oops".into(),
            )),
            expect: Expect::Status(422),
        },
        Bad {
            name: "REST: body over the limit",
            frame: None,
            rest: Some((
                "POST",
                format!("/api/messages/create-message/{room}"),
                format!("{{\"content\":\"{}\"}}", "x".repeat(200_000)),
            )),
            expect: Expect::Status(413),
        },
        Bad {
            name: "REST: path id that is not a UUID",
            frame: None,
            rest: Some(("GET", "/api/rooms/get-room/lobby".into(), String::new())),
            expect: Expect::Status(422),
        },
        Bad {
            name: "REST: unknown room",
            frame: None,
            rest: Some((
                "GET",
                format!("/api/rooms/get-room/{missing}"),
                String::new(),
            )),
            expect: Expect::Status(404),
        },
        Bad {
            name: "REST: limit out of range",
            frame: None,
            rest: Some((
                "GET",
                format!("/api/messages/get-recent-messages/{room}?limit=100000"),
                String::new(),
            )),
            expect: Expect::Status(422),
        },
    ];
    // No connection reuse: the server closes a connection after refusing an oversized body.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut wrong = Vec::new();
    let mut answered = Vec::new();
    for c in &cases {
        let got = match (&c.frame, &c.rest) {
            (Some(f), _) => answer(addr, &cookie, f).await,
            (None, Some((method, path, body))) => {
                let mut req = http
                    .request(method.parse()?, format!("http://{addr}{path}"))
                    .header("cookie", &cookie)
                    .header("content-type", "application/json");
                if !body.is_empty() {
                    req = req.body(body.clone());
                }
                let r = req.send().await?;
                let status = r.status().as_u16();
                let json_body = serde_json::from_slice::<Value>(&r.bytes().await?).is_ok();
                Ok(if json_body {
                    Expect::Status(status)
                } else {
                    Expect::Status(0)
                })
            }
            (None, None) => unreachable!("a case is a frame or a request"),
        };
        match got {
            Ok(g) if g == c.expect => {
                answered.push(json!({"case": c.name, "answer": format!("{g:?}")}))
            }
            Ok(g) => wrong.push(format!("{}: expected {:?}, got {g:?}", c.name, c.expect)),
            Err(e) => wrong.push(format!("{}: expected {:?}, got {e:#}", c.name, c.expect)),
        }
    }
    let healthy = Rest::new(addr)
        .call(reqwest::Method::GET, "/api/health", None, None)
        .await
        .map(|r| r.0 == 200)
        .unwrap_or(false);
    node.stop().await;
    Ok(Row {
        scenario: "malformed frames and requests".into(),
        load: "one socket per case".into(),
        faults: format!(
            "{} bad inputs (WebSocket frames and REST requests)",
            cases.len()
        ),
        lost: None,
        duplicated: None,
        recovery: format!(
            "server healthy after all: {}",
            if healthy { "yes" } else { "no" }
        ),
        passed: wrong.is_empty() && healthy,
        notes: if wrong.is_empty() {
            format!(
                "each answered as documented ({} of {})",
                answered.len(),
                cases.len()
            )
        } else {
            format!("wrong answers: {}", wrong.join("; "))
        },
        detail: json!({"answered": answered, "wrong": wrong}),
    })
}

/// Frame types the server knows (the original's and the native ones), and a few it does not.
const FRAME_TYPES: &[&str] = &[
    "send",
    "subscribe",
    "unsubscribe",
    "typing",
    "read",
    "ping",
    "PONG",
    "pong",
    "USER_TYPING",
    "SEND",
    "",
    "message",
    "__proto__",
];
const FIELDS: &[&str] = &[
    "room_id",
    "content",
    "client_msg_id",
    "since_seq",
    "seq",
    "is_typing",
    "username",
    "ref",
    "type",
    "extra",
];

/// A random JSON value of any kind, nested up to `depth`.
fn random_value(rng: &mut impl rand::Rng, depth: u32, room: &str) -> Value {
    match rng.gen_range(0..if depth == 0 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e12),
        4 => json!(room),
        5 => json!(random_text(rng, 40)),
        6 => json!(rng.gen_range(-3i64..50)),
        7 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth - 1, room))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    FIELDS[rng.gen_range(0..FIELDS.len())].into(),
                    random_value(rng, depth - 1, room),
                );
            }
            Value::Object(m)
        }
    }
}

/// Random text: ASCII, any scalar value (controls, bidi marks, astral planes), JSON syntax.
fn random_text(rng: &mut impl rand::Rng, max: usize) -> String {
    let n = rng.gen_range(0..max);
    (0..n)
        .map(|_| match rng.gen_range(0..4) {
            0 => rng.gen_range(b' '..=b'~') as char,
            1 => ['{', '}', '"', ':', ',', '[', ']', '\\'][rng.gen_range(0..8)],
            2 => char::from_u32(rng.gen_range(0..0x11_0000)).unwrap_or('\u{FFFD}'),
            _ => rng.gen_range('a'..='z'),
        })
        .collect()
}

/// A random client frame: mostly objects shaped like real frames with wrong, missing or extra
/// fields; some arbitrary JSON; some text that is not JSON; some binary.
fn random_frame(rng: &mut impl rand::Rng, room: &str) -> Message {
    match rng.gen_range(0..10) {
        0 => Message::text(random_text(rng, 200)),
        1 => Message::text(random_value(rng, 3, room).to_string()),
        2 => Message::binary(
            (0..rng.gen_range(0..64))
                .map(|_| rng.gen::<u8>())
                .collect::<Vec<u8>>(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            m.insert(
                "type".into(),
                json!(FRAME_TYPES[rng.gen_range(0..FRAME_TYPES.len())]),
            );
            for _ in 0..rng.gen_range(0..5) {
                m.insert(
                    FIELDS[rng.gen_range(0..FIELDS.len())].into(),
                    random_value(rng, 2, room),
                );
            }
            Message::text(Value::Object(m).to_string())
        }
    }
}

/// Close codes the README documents for a client's misbehaviour.
const DOCUMENTED_CLOSES: &[u16] = &[1002, 1003, 1007, 1008, 1009, 4008];

/// Random frames (a seeded generator: a failure can be replayed) over sockets of one user: the
/// server must answer a ping after each batch, close a socket only with a documented code, and
/// stay healthy; what the fuzzed sends stored must read back.
pub async fn fuzz_frames(bin: &Path, work: &Path, p: &Profile) -> Result<Row> {
    use rand::SeedableRng;
    let mut node = Node::start_new(bin, &work.join("fuzz"), vec![]).await?;
    let addr = node.addr();
    let t = node.target();
    let world = livechat_world(addr, 1, 1, &tag()).await?;
    let room = world.rooms[0].clone();
    let seed = 0x11FE_C4A7;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut sent, mut answers, mut sockets) = (0u64, 0u64, 0u64);
    let mut closes: std::collections::BTreeMap<u16, u64> = Default::default();
    let mut wrong = Vec::new();
    while sent < p.fuzz_frames {
        let mut ws = ws_open(
            &t,
            sockets as usize,
            "/api/ws/stream",
            Some(&world.cookies[0]),
        )
        .await?;
        sockets += 1;
        let mut closed = None;
        'batch: for _ in 0..100 {
            ws.send(random_frame(&mut rng, &room)).await?;
            sent += 1;
            // What came back so far (answers are counted, not required: a typing frame has none).
            while let Ok(m) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await {
                match m {
                    Some(Ok(Message::Text(_))) => answers += 1,
                    Some(Ok(Message::Close(f))) => {
                        closed = Some(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                        break 'batch;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        closed = Some(1006);
                        break 'batch;
                    }
                }
            }
        }
        if let Some(code) = closed {
            *closes.entry(code).or_default() += 1;
            if !DOCUMENTED_CLOSES.contains(&code) {
                wrong.push(format!("socket closed with undocumented code {code}"));
            }
            continue;
        }
        // Still open: it must still answer.
        ws.send(Message::text(
            json!({"type": "ping", "ref": "alive"}).to_string(),
        ))
        .await?;
        let alive = crate::client::wait_text(&mut ws, Proto::Livechat, "pong", |s| {
            s.contains("\"type\":\"pong\"").then_some(())
        })
        .await;
        if let Err(e) = alive {
            wrong.push(format!("no pong after a batch: {e:#}"));
            break;
        }
        let _ = ws.close(None).await;
    }
    let rest = Rest::new(addr);
    let healthy = rest
        .call(reqwest::Method::GET, "/api/health", None, None)
        .await
        .is_ok_and(|r| r.0 == 200);
    // Whatever the fuzzer's sends stored reads back (the store is not corrupted).
    let (status, text, _) = rest
        .call(
            reqwest::Method::GET,
            &format!("/api/messages/get-messages/{room}?after_seq=0&limit=200"),
            Some(&world.cookies[0]),
            None,
        )
        .await?;
    let readable = status == 200 && serde_json::from_str::<Vec<Value>>(&text).is_ok();
    node.stop().await;
    Ok(Row {
        scenario: "protocol fuzzing".into(),
        load: format!("{sockets} sockets, 100 frames each"),
        faults: format!("{sent} random frames (seed {seed:#x}): real frame types with wrong, missing or extra fields, arbitrary JSON, text that is not JSON, binary"),
        lost: None,
        duplicated: None,
        recovery: format!(
            "server healthy after all: {}; history readable: {}",
            if healthy { "yes" } else { "no" },
            if readable { "yes" } else { "no" }
        ),
        passed: wrong.is_empty() && healthy && readable,
        notes: if wrong.is_empty() {
            format!("{answers} text answers; sockets closed by the server, by code: {closes:?}; every other socket still answered a ping")
        } else {
            wrong.join("; ")
        },
        detail: json!({"sent": sent, "answers": answers, "closes": closes, "wrong": wrong, "seed": seed}),
    })
}
