//! Opening connections: TCP from a chosen 127.0.0.x source, the WebSocket handshake with a small
//! read buffer, and each protocol's login/subscribe steps. LiveChat users and rooms are created
//! over REST once per scenario; many sockets then share a few users (argon2 makes logins slow).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::proto::{centrifugo_token, Proto};

pub type Ws = WebSocketStream<TcpStream>;

pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// Further nodes of the same server (LiveChat's distributed mode: more ingress processes on
    /// one stack). Sockets are spread over `addr` and these by a hash of their number, so the
    /// members of a room and the publishers land on every node.
    pub other_nodes: Vec<SocketAddr>,
    /// Source addresses used round-robin (each has its own ephemeral port range).
    pub src_ips: Vec<Ipv4Addr>,
    /// Centrifugo HMAC secret for connection tokens.
    pub secret: String,
}

/// The rooms (protocol ids) and, for LiveChat, the session cookies of the users.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub rooms: Vec<String>,
    pub cookies: Vec<String>,
}

impl World {
    /// Room ids for Centrifugo channels or bare rooms (no setup needed).
    pub fn named(proto: Proto, n: usize, prefix: &str) -> World {
        World {
            rooms: (0..n)
                .map(|i| match proto {
                    Proto::Bare => format!("{prefix}{i}"),
                    _ => format!("{prefix}room{i}"),
                })
                .collect(),
            cookies: vec![],
        }
    }
}

pub async fn tcp(addr: SocketAddr, src: Option<Ipv4Addr>) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    // Lets a source port in TIME_WAIT from an earlier scenario be reused.
    s.set_reuseaddr(true)?;
    if let Some(ip) = src {
        s.bind(SocketAddr::from((ip, 0)))?;
    }
    let st = s.connect(addr).await?;
    st.set_nodelay(true)?;
    Ok(st)
}

fn ws_config() -> WebSocketConfig {
    // 4 KiB read buffer: tungstenite zero-fills the whole read buffer before every read, and
    // the default (128 KiB) would dominate the generator's memory and CPU.
    WebSocketConfig::default().read_buffer_size(4096)
}

impl Target {
    /// The node socket number `idx` connects to.
    pub fn node(&self, idx: usize) -> SocketAddr {
        if self.other_nodes.is_empty() {
            return self.addr;
        }
        // Fibonacci hashing: consecutive numbers (a room's members are `rooms` apart, its
        // publisher is the first) scatter over the nodes.
        let h = (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        match (h % (1 + self.other_nodes.len() as u64)) as usize {
            0 => self.addr,
            k => self.other_nodes[k - 1],
        }
    }
}

/// Opens WebSocket number `idx` to `path` (with query): its node, and source address number `idx`.
pub async fn ws_open(t: &Target, idx: usize, path: &str, cookie: Option<&str>) -> Result<Ws> {
    let src = if t.src_ips.is_empty() {
        None
    } else {
        Some(t.src_ips[idx % t.src_ips.len()])
    };
    let addr = t.node(idx);
    // Bounded: a server that accepts and never answers (a fault scenario's stuck process) fails
    // the step instead of hanging the whole run.
    tokio::time::timeout(STEP_TIMEOUT, open_at(addr, src, path, cookie))
        .await
        .map_err(|_| anyhow!("no websocket handshake with {addr} within {STEP_TIMEOUT:?}"))?
}

async fn open_at(
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    path: &str,
    cookie: Option<&str>,
) -> Result<Ws> {
    let stream = tcp(addr, src).await.context("tcp connect")?;
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", HeaderValue::from_str(c)?);
    }
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(&format!("http://{addr}"))?);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config()))
        .await
        .context("websocket handshake")?;
    Ok(ws)
}

/// Reads frames until `pick` returns Some (answering Centrifugo pings meanwhile).
pub async fn wait_text<T>(
    ws: &mut Ws,
    proto: Proto,
    what: &str,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("timed out waiting for {what}"))?;
        match m {
            Some(Ok(Message::Text(t))) => {
                if let Some(v) = pick(t.as_str()) {
                    return Ok(v);
                }
                if proto == Proto::Centrifugo && t.as_str().split('\n').any(|l| l.trim() == "{}") {
                    ws.send(Message::text("{}")).await?;
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed while waiting for {what}: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("socket error while waiting for {what}: {e}"),
            None => bail!("socket ended while waiting for {what}"),
        }
    }
}

/// A Centrifugo reply line with this id (the whole line).
pub fn centrifugo_reply(text: &str, id: u64) -> Option<String> {
    let head = format!("{{\"id\":{id},");
    text.split('\n')
        .find(|l| l.starts_with(&head))
        .map(|l| l.to_string())
}

/// Opens connection number `idx`, logged in, subscribed to `room` when given. `publish_only`
/// opens a socket that only publishes: not subscribed (LiveChat, Centrifugo), or kept out of the
/// room's member list with acks on (bare, whose room is part of the URL).
pub async fn open(
    t: &Target,
    world: &World,
    idx: usize,
    room: Option<usize>,
    publish_only: bool,
) -> Result<Ws> {
    match t.proto {
        Proto::Livechat => {
            let cookie = &world.cookies[idx % world.cookies.len()];
            let mut ws = ws_open(t, idx, "/api/ws/stream", Some(cookie)).await?;
            if let Some(r) = room.filter(|_| !publish_only) {
                let rid = &world.rooms[r];
                ws.send(Message::text(
                    json!({"type": "subscribe", "room_id": rid, "ref": "s"}).to_string(),
                ))
                .await?;
                let ok = wait_text(&mut ws, t.proto, "subscribed", |s| {
                    if s.contains("\"type\":\"subscribed\"") {
                        Some(true)
                    } else if s.contains("\"type\":\"error\"") && s.contains("\"ref\":\"s\"") {
                        Some(false)
                    } else {
                        None
                    }
                })
                .await?;
                if !ok {
                    bail!("subscribe refused");
                }
            }
            Ok(ws)
        }
        Proto::Centrifugo => {
            let mut ws = ws_open(t, idx, "/connection/websocket", None).await?;
            let token = centrifugo_token(&t.secret, &format!("u{}", idx % 64));
            let mut frame = format!(r#"{{"id":1,"connect":{{"token":"{token}","name":"bench"}}}}"#);
            let room = room.filter(|_| !publish_only);
            if let Some(r) = room {
                // Commands may be batched, one per line.
                frame.push_str(&format!(
                    "\n{{\"id\":2,\"subscribe\":{{\"channel\":\"{}\"}}}}",
                    world.rooms[r]
                ));
            }
            ws.send(Message::text(frame)).await?;
            let mut need = if room.is_some() { 2 } else { 1 };
            let mut failed = None;
            wait_text(&mut ws, t.proto, "connect/subscribe replies", |s| {
                for l in s.split('\n') {
                    if l.starts_with("{\"id\":1,") || l.starts_with("{\"id\":2,") {
                        need -= 1;
                        if l.contains("\"error\"") {
                            failed = Some(l.to_string());
                        }
                    }
                }
                (need == 0).then_some(())
            })
            .await?;
            if let Some(f) = failed {
                bail!("centrifugo refused connect/subscribe: {f}");
            }
            Ok(ws)
        }
        Proto::Bare => {
            let r = room.map(|r| world.rooms[r].as_str()).unwrap_or("none");
            let q = if publish_only {
                "&ack=1&sub=0"
            } else {
                "&ack=0"
            };
            ws_open(t, idx, &format!("/ws?room={r}{q}"), None).await
        }
    }
}

/// REST helper for LiveChat setup.
pub struct Rest {
    pub http: reqwest::Client,
    pub base: String,
}

impl Rest {
    pub fn new(addr: SocketAddr) -> Rest {
        Rest {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
            base: format!("http://{addr}"),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, String, Option<String>)> {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("request {path}"))?;
        let status = r.status().as_u16();
        let set_cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("session_id="))
            .map(|v| v.split(';').next().unwrap_or_default().to_string());
        let text = r.text().await.unwrap_or_default();
        Ok((status, text, set_cookie))
    }
}

/// Registers `users` users (unique names with `tag`), logs each in, has user 0 create `rooms`
/// public rooms and every other user join them. Returns room ids and cookies.
pub async fn livechat_world(
    addr: SocketAddr,
    users: usize,
    rooms: usize,
    tag: &str,
) -> Result<World> {
    let rest = Rest::new(addr);
    let rest = &rest;
    let cookies: Vec<String> = futures::stream::iter(0..users.max(1))
        .map(|i| async move {
            let name = format!("b{tag}u{i}");
            let body = json!({"username": name, "password": "bench-secret"});
            let (s, t, _) = rest
                .call(
                    reqwest::Method::POST,
                    "/api/users/register-user",
                    None,
                    Some(body.clone()),
                )
                .await?;
            if s != 200 {
                bail!("register {name}: {s} {t}");
            }
            let (s, t, c) = rest
                .call(
                    reqwest::Method::POST,
                    "/api/users/login-user",
                    None,
                    Some(body),
                )
                .await?;
            if s != 200 {
                bail!("login {name}: {s} {t}");
            }
            c.ok_or_else(|| anyhow!("no session cookie for {name}"))
        })
        .buffered(2)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let owner = cookies[0].clone();
    let owner = &owner;
    let room_ids: Vec<String> = futures::stream::iter(0..rooms)
        .map(|i| async move {
            let (s, t, _) = rest
                .call(
                    reqwest::Method::POST,
                    "/api/rooms/create-room",
                    Some(owner),
                    Some(json!({"name": format!("b{tag}r{i}"), "is_public": true})),
                )
                .await?;
            if s != 200 {
                bail!("create room: {s} {t}");
            }
            let v: Value = serde_json::from_str(&t)?;
            v["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("create room: no id in {t}"))
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let joins: Vec<(String, String)> = cookies
        .iter()
        .skip(1)
        .flat_map(|c| room_ids.iter().map(move |r| (c.clone(), r.clone())))
        .collect();
    let results: Vec<Result<()>> = futures::stream::iter(joins)
        .map(|(c, r)| async move {
            let (s, t, _) = rest
                .call(
                    reqwest::Method::POST,
                    "/api/rooms/create-join-request",
                    Some(&c),
                    Some(json!({"room_id": r})),
                )
                .await?;
            if s != 200 {
                bail!("join room: {s} {t}");
            }
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok(World {
        rooms: room_ids,
        cookies,
    })
}
