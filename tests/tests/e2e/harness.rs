//! Spawns the real `livechat` binary on a free port with a temporary data directory and talks
//! to it over real HTTP and WebSocket connections.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);
/// Every test user's password (strong enough for the registration rules).
pub const PASSWORD: &str = "pw-secret-7";
/// How long a send waits for its acknowledgement: on Kafka, a partition whose sequencer died
/// moves within the group's session timeout plus the broker's abort of its open transaction.
const SEND_WAIT: Duration = Duration::from_secs(40);
/// How long a process may take to listen: on Kafka it creates topics and waits for their
/// partitions, which takes seconds on a loaded machine.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// The binary built by `cargo test` (overridable with `LIVECHAT_BIN`).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("LIVECHAT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory");
    dir.join("livechat")
}

pub struct App {
    pub addr: String,
    child: Option<Child>,
    /// Shared by processes started with [`App::spawn_beside`].
    pub data: std::sync::Arc<tempfile::TempDir>,
    env: Vec<(String, String)>,
    /// Subcommand and its arguments (empty: `serve`, every role).
    command: Vec<String>,
    pub http: reqwest::Client,
}

impl App {
    /// Starts LiveChat with generous rate limits (tests drive it hard) plus `env` overrides.
    pub async fn spawn(env: &[(&str, &str)]) -> App {
        let data = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        App::spawn_with(data, env).await
    }

    /// Starts another process on the same data directory (a second ingress + processors).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // multi-process scenarios only
    pub async fn spawn_beside(other: &App, env: &[(&str, &str)]) -> App {
        App::spawn_with(other.data.clone(), env).await
    }

    /// Starts one role (`["ingress"]`, `["processor", "history"]`) on a fresh data directory.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub async fn spawn_role(command: &[&str], env: &[(&str, &str)]) -> App {
        let data = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut app = App::new(data, env);
        app.command = command.iter().map(|c| c.to_string()).collect();
        app.start("127.0.0.1:0").await;
        app
    }

    /// Starts one role (`["ingress"]`, `["processor", "history"]`) on the same data directory.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub async fn spawn_role_beside(other: &App, command: &[&str], env: &[(&str, &str)]) -> App {
        let mut app = App::new(other.data.clone(), env);
        app.command = command.iter().map(|c| c.to_string()).collect();
        app.start("127.0.0.1:0").await;
        app
    }

    fn new(data: std::sync::Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> App {
        let mut all: Vec<(String, String)> = vec![
            ("LIVECHAT_LIMITS__SEND_RATE_PER_SEC".into(), "100000".into()),
            ("LIVECHAT_LIMITS__SEND_BURST".into(), "100000".into()),
            (
                "LIVECHAT_LIMITS__LOGIN_ATTEMPTS_PER_IP_PER_MINUTE".into(),
                "100000".into(),
            ),
            (
                "LIVECHAT_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE".into(),
                "100000".into(),
            ),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        App {
            addr: String::new(),
            child: None,
            data,
            env: all,
            command: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    async fn spawn_with(data: std::sync::Arc<tempfile::TempDir>, env: &[(&str, &str)]) -> App {
        let mut app = App::new(data, env);
        app.start("127.0.0.1:0").await;
        app
    }

    async fn start(&mut self, listen: &str) {
        let mut cmd = Command::new(binary());
        cmd.args(&self.command);
        cmd.arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(self.data.path());
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", binary().display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(STARTUP_WAIT, lines.next_line())
            .await
            .expect("livechat did not start in time")
            .expect("reading stdout")
            .expect("livechat exited before listening");
        // Ingress prints its address; a processor-only process prints what it runs.
        let addr = match line.split("http://").nth(1) {
            Some(rest) => rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            None if line.contains("processors running") => String::new(),
            None => panic!("unexpected first line: {line}"),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.addr = addr;
        self.child = Some(child);
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("a running process")
    }

    /// SIGKILLs the process (no shutdown of any kind).
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.start_kill().expect("kill");
            let _ = c.wait().await;
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let pid = c.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), c.wait())
            .await
            .expect("exit after SIGTERM")
            .expect("wait")
    }

    /// Starts the process again on the same port and data directory.
    pub async fn restart(&mut self) {
        if self.addr.is_empty() {
            return self.start("127.0.0.1:0").await;
        }
        let addr = self.addr.clone();
        for _ in 0..50 {
            // The port may linger briefly after a kill.
            if TcpStream::connect(&addr).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.start(&addr).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The socket endpoint with `query` (`""` or `?room_id=...`).
    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/api/ws/stream{query}", self.addr)
    }

    // Raw responses: these tests look at headers, not just at bodies.

    pub async fn register(&self, name: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/users/register-user"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, name: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/users/login-user"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// A login from another source address (loopback has all of 127.0.0.0/8), as another
    /// client would.
    pub async fn login_from(&self, name: &str, password: &str, source: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .local_address(Some(source.parse().unwrap()))
            .build()
            .unwrap()
            .post(self.url("/api/users/login-user"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn health(&self) -> reqwest::Response {
        self.http.get(self.url("/api/health")).send().await.unwrap()
    }

    /// The OpenAPI document, optionally asking for a gzipped response.
    pub async fn openapi(&self, gzip: bool) -> reqwest::Response {
        let mut req = self.http.get(self.url("/api/internal/openapi.json"));
        if gzip {
            req = req.header("accept-encoding", "gzip");
        }
        req.send().await.unwrap()
    }

    /// A file of the Swagger UI (`""`: its index).
    pub async fn docs(&self, file: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/api/internal/docs/{file}")))
            .send()
            .await
            .unwrap()
    }

    /// A CORS preflight from `origin` for a GET of an authenticated route (the rooms list).
    pub async fn preflight(&self, origin: &str) -> reqwest::Response {
        self.http
            .request(reqwest::Method::OPTIONS, self.url("/api/rooms/get-rooms"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus text, or None while the endpoint does not answer.
    pub async fn metrics(&self) -> Option<String> {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// Registers and logs in a user with a unique name derived from `base`.
    pub async fn user(&self, base: &str) -> User {
        let name = format!("{base}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let r = self.register(&name, PASSWORD).await;
        assert_eq!(r.status(), 200, "register: {}", r.text().await.unwrap());
        let r = self.login(&name, PASSWORD).await;
        assert_eq!(r.status(), 200);
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("session_id="))
            .expect("session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let mut user = User {
            name,
            id: String::new(),
            cookie,
            http: self.http.clone(),
            base: format!("http://{}", self.addr),
        };
        user.id = user.me_ok().await["id"].as_str().unwrap().to_string();
        user
    }

    /// Alice owns a public room named after `room` that Bob has joined.
    pub async fn pair(&self, room: &str) -> Pair {
        let alice = self.user("alice").await;
        let bob = self.user("bob").await;
        let room = alice.create_room(room, true).await;
        bob.join_ok(&room).await;
        Pair { alice, bob, room }
    }
}

/// Two members of one room: see [`App::pair`].
/// The owner, through `remover`, removes Bob, whose sockets are on `reader` (one process or
/// two): Bob's native socket is told "removed" and gets nothing more of the room, his legacy
/// socket is closed with 4403, and his next send is refused.
pub async fn removal_ends_the_members_stream(remover: &App, reader: &App, pair: &Pair) {
    let Pair {
        alice: owner,
        bob,
        room,
    } = pair;
    let mut native = bob.subscribed_ws(reader, room).await;
    let mut legacy = bob.ws(reader, Some(room)).await;
    let mut wo = owner.ws(remover, None).await;
    wo.send_msg(room, "before", "k1").await;
    native.messages(room, 1).await;
    // Bob sends too: on Kafka, his process's send path now trusts his membership.
    assert_eq!(native.send_msg(room, "mine", "b1").await["type"], "ack");
    native.messages(room, 1).await;

    assert_eq!(owner.remove_member(room, &bob.id).await.0, 200);
    let u = native.wait_type("unsubscribed").await;
    assert_eq!(u["reason"], "removed");
    assert_eq!(legacy.closed_with().await, Some(4403));
    wo.send_msg(room, "after removal", "k2").await;
    // Bob's native socket stays open but gets nothing more of the room.
    assert_eq!(native.ping_or("MESSAGE_CREATED").await["type"], "pong");
    // The membership is forgotten with the removal: Bob's next send is refused.
    let refused = native.send_msg(room, "after removal", "b2").await;
    assert_eq!(refused["type"], "error", "{refused}");
}

pub struct Pair {
    pub alice: User,
    pub bob: User,
    pub room: String,
}

impl Pair {
    /// Alice's and Bob's sockets on `app`, both subscribed to the room.
    pub async fn subscribed(&self, app: &App) -> (Ws, Ws) {
        let wa = self.alice.subscribed_ws(app, &self.room).await;
        let wb = self.bob.subscribed_ws(app, &self.room).await;
        (wa, wb)
    }
}

pub struct User {
    pub name: String,
    pub id: String,
    pub cookie: String,
    http: reqwest::Client,
    base: String,
}

/// (status, parsed JSON body or Null when empty)
pub type Resp = (u16, Value);

/// The body of a response that must be 200.
pub fn ok((status, body): Resp, what: &str) -> Value {
    assert_eq!(status, 200, "{what}: {body}");
    body
}

/// The body of a 200 response that must be a JSON array.
fn ok_list(r: Resp, what: &str) -> Vec<Value> {
    match ok(r, what) {
        Value::Array(a) => a,
        other => panic!("{what}: not a list: {other}"),
    }
}

impl User {
    // Raw requests, for paths and bodies the typed helpers below would not send.

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call_with(method, path, body, &[]).await
    }
    /// [`User::call`] with extra request headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("cookie", &self.cookie);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Option<Value>) -> Resp {
        self.call("PUT", path, body).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, None).await
    }

    // Users.

    pub async fn me(&self) -> Resp {
        self.get("/api/users/get-me").await
    }
    pub async fn me_ok(&self) -> Value {
        ok(self.me().await, "get-me")
    }
    /// A GET as a raw response (headers, and a body read as the test likes).
    pub async fn get_response(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }
    /// The caller's data export as a raw response (headers and a streamed body).
    pub async fn export_response(&self) -> reqwest::Response {
        self.get_response("/api/users/export-my-data").await
    }
    /// `get-me` as a raw response, to look at the cookie it sets.
    pub async fn me_response(&self) -> reqwest::Response {
        self.get_response("/api/users/get-me").await
    }
    pub async fn logout(&self) -> Resp {
        self.post("/api/users/logout-user", json!({})).await
    }

    // Rooms.

    /// Creates a room with a unique name derived from `name`; returns its id.
    pub async fn create_room(&self, name: &str, public: bool) -> String {
        let unique = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let (s, b) = self
            .post(
                "/api/rooms/create-room",
                json!({"name": unique, "is_public": public}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b["id"].as_str().unwrap().to_string()
    }
    pub async fn room(&self, room: &str) -> Resp {
        self.get(&format!("/api/rooms/get-room/{room}")).await
    }
    pub async fn set_room_public(&self, room: &str, public: bool) -> Resp {
        self.update_room(room, json!({"is_public": public})).await
    }
    pub async fn update_room(&self, room: &str, changes: Value) -> Resp {
        self.put(&format!("/api/rooms/update-room/{room}"), Some(changes))
            .await
    }
    pub async fn delete_room(&self, room: &str) -> Resp {
        self.delete(&format!("/api/rooms/delete-room/{room}")).await
    }
    pub async fn search_rooms(&self, text: &str) -> Resp {
        self.get(&format!("/api/rooms/get-search-rooms?text={text}"))
            .await
    }
    /// The caller's rooms, with unread counts.
    pub async fn my_rooms(&self) -> Resp {
        self.get("/api/rooms/get-rooms").await
    }
    pub async fn my_rooms_ok(&self) -> Vec<Value> {
        ok_list(self.my_rooms().await, "get-rooms")
    }
    pub async fn members(&self, room: &str) -> Resp {
        self.get(&format!("/api/rooms/get-users/{room}")).await
    }
    pub async fn members_ok(&self, room: &str) -> Vec<Value> {
        ok_list(self.members(room).await, "get-users")
    }
    /// Ids of the room's members with an open socket.
    pub async fn online_users(&self, room: &str) -> Resp {
        self.get(&format!("/api/ws/get-active-user-ids/{room}"))
            .await
    }
    pub async fn remove_member(&self, room: &str, user_id: &str) -> Resp {
        self.delete(&format!("/api/rooms/remove-user/{room}/{user_id}"))
            .await
    }
    pub async fn leave(&self, room: &str) -> Resp {
        self.delete(&format!("/api/rooms/leave-room/{room}")).await
    }
    pub async fn read_marker(&self, room: &str, seq: i64) -> Resp {
        self.put(
            &format!("/api/rooms/read-marker/{room}"),
            Some(json!({"seq": seq})),
        )
        .await
    }

    // Join requests (joining a public room is immediate).

    pub async fn join(&self, room: &str) -> Resp {
        self.post("/api/rooms/create-join-request", json!({"room_id": room}))
            .await
    }
    pub async fn join_ok(&self, room: &str) {
        ok(self.join(room).await, "create-join-request");
    }
    pub async fn join_with_message(&self, room: &str, message: &str) -> Resp {
        self.post(
            "/api/rooms/create-join-request",
            json!({"room_id": room, "message": message}),
        )
        .await
    }
    pub async fn join_requests_of_room(&self, room: &str) -> Resp {
        self.get(&format!("/api/rooms/get-join-requests-by-room/{room}"))
            .await
    }
    pub async fn join_requests_of_room_ok(&self, room: &str) -> Vec<Value> {
        ok_list(
            self.join_requests_of_room(room).await,
            "get-join-requests-by-room",
        )
    }
    pub async fn accept_join_request(&self, request: &str) -> Resp {
        self.post(
            &format!("/api/rooms/handle-join-request/{request}?accept=true"),
            json!({}),
        )
        .await
    }
    pub async fn reject_join_request(&self, request: &str) -> Resp {
        self.post(
            &format!("/api/rooms/handle-join-request/{request}?accept=false"),
            json!({}),
        )
        .await
    }
    /// As the owner of `room`, accepts the pending request of `requester`.
    pub async fn admit(&self, room: &str, requester: &User) {
        let reqs = self.join_requests_of_room_ok(room).await;
        let req = reqs
            .iter()
            .find(|r| r["username"] == requester.name)
            .unwrap_or_else(|| panic!("no request of {} in {reqs:?}", requester.name));
        let id = req["id"].as_str().unwrap();
        ok(self.accept_join_request(id).await, "accept join request");
    }

    // Messages.

    /// Sends over REST (the original's route); `cid` is the client message id, if any.
    /// Shares a file in the room: the body is the bytes, sent with a `Content-Type` that the
    /// server must ignore.
    pub async fn upload(&self, room: &str, name: &str, bytes: Vec<u8>, claimed: &str) -> Resp {
        let r = self
            .http
            .post(format!("{}/api/files/upload-file/{room}", self.base))
            .query(&[("name", name)])
            .header("cookie", &self.cookie)
            .header("content-type", claimed)
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn send_rest(&self, room: &str, content: &str, cid: Option<&str>) -> Resp {
        let mut body = json!({"content": content});
        if let Some(cid) = cid {
            body["client_msg_id"] = json!(cid);
        }
        self.post(&format!("/api/messages/create-message/{room}"), body)
            .await
    }
    /// A reply over REST to the message with seq `reply_to_seq` of the same room.
    pub async fn reply_rest(&self, room: &str, content: &str, reply_to_seq: i64) -> Resp {
        self.post(
            &format!("/api/messages/create-message/{room}"),
            json!({"content": content, "reply_to_seq": reply_to_seq}),
        )
        .await
    }
    /// Adds (`added`) or takes back a reaction over REST.
    pub async fn react(&self, message: &str, emoji: &str, added: bool) -> Resp {
        let route = if added {
            "add-reaction"
        } else {
            "remove-reaction"
        };
        self.post(
            &format!("/api/messages/{route}/{message}"),
            json!({"emoji": emoji}),
        )
        .await
    }
    /// Pins (`pinned`) or unpins a message.
    pub async fn pin(&self, message: &str, pinned: bool) -> Resp {
        let route = if pinned {
            "pin-message"
        } else {
            "unpin-message"
        };
        self.post(&format!("/api/messages/{route}/{message}"), json!({}))
            .await
    }
    /// Searches messages (`query`: the rest of the query string, e.g. `&room_id=…`).
    pub async fn search(&self, text: &str, query: &str) -> Resp {
        let text: String = text
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.get(&format!("/api/messages/search-messages?text={text}{query}"))
            .await
    }
    pub async fn pinned(&self, room: &str) -> Resp {
        self.get(&format!("/api/messages/get-pinned/{room}")).await
    }
    pub async fn edit_message(&self, message: &str, content: &str) -> Resp {
        self.put(
            &format!("/api/messages/update-message/{message}"),
            Some(json!({"new_content": content})),
        )
        .await
    }
    pub async fn edit_message_ok(&self, message: &str, content: &str) -> Value {
        ok(self.edit_message(message, content).await, "update-message")
    }
    pub async fn delete_message(&self, message: &str) -> Resp {
        self.delete(&format!("/api/messages/delete-message/{message}"))
            .await
    }
    pub async fn delete_message_ok(&self, message: &str) {
        ok(self.delete_message(message).await, "delete-message");
    }
    /// History by seq: the messages after `after_seq`, oldest first (tombstones included).
    pub async fn history(&self, room: &str, after_seq: i64, limit: Option<u32>) -> Resp {
        let limit = limit.map(|l| format!("&limit={l}")).unwrap_or_default();
        self.get(&format!(
            "/api/messages/get-messages/{room}?after_seq={after_seq}{limit}"
        ))
        .await
    }
    /// Every message of a room from history, by seq (tombstones included).
    pub async fn full_history(&self, room: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = ok_list(self.history(room, after, Some(200)).await, "get-messages");
            let Some(last) = page.last() else {
                return out;
            };
            after = last["seq"].as_i64().unwrap();
            out.extend(page);
        }
    }
    /// Polls the full history until `done` holds for it; returns it.
    pub async fn history_until(
        &self,
        what: &str,
        room: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        eventually(what, || async {
            let h = self.full_history(room).await;
            done(&h).then_some(h)
        })
        .await
    }
    /// Waits until the room's history holds exactly `n` messages.
    pub async fn wait_for_history(&self, room: &str, n: usize) -> Vec<Value> {
        self.history_until(&format!("{n} messages in history"), room, |h| h.len() == n)
            .await
    }
    /// Waits until the room's history holds `n` messages or more.
    pub async fn wait_for_history_at_least(&self, room: &str, n: usize) -> Vec<Value> {
        self.history_until(&format!("{n}+ messages in history"), room, |h| h.len() >= n)
            .await
    }
    /// The original's newest-messages page.
    pub async fn recent_messages(&self, room: &str) -> Resp {
        self.recent_messages_page(room, None, None).await
    }
    /// The original's page of recent messages: older than `before` (ISO-8601) if given, at most
    /// `limit`.
    pub async fn recent_messages_page(
        &self,
        room: &str,
        before: Option<&str>,
        limit: Option<u32>,
    ) -> Resp {
        let query: Vec<String> = before
            .map(|b| format!("before={b}"))
            .into_iter()
            .chain(limit.map(|l| format!("limit={l}")))
            .collect();
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get(&format!("/api/messages/get-recent-messages/{room}{query}"))
            .await
    }
    pub async fn recent_messages_ok(&self, room: &str) -> Vec<Value> {
        ok_list(self.recent_messages(room).await, "get-recent-messages")
    }
    /// Waits until the newest-messages page holds exactly `n` messages.
    pub async fn wait_for_recent_messages(&self, room: &str, n: usize) -> Vec<Value> {
        eventually(&format!("{n} recent messages"), || async {
            match self.recent_messages(room).await {
                (_, Value::Array(page)) if page.len() == n => Some(page),
                _ => None,
            }
        })
        .await
    }

    // Notifications.

    pub async fn notifications(&self) -> Resp {
        self.get("/api/notifications/get-notifications").await
    }
    pub async fn notifications_ok(&self) -> Vec<Value> {
        ok_list(self.notifications().await, "get-notifications")
    }
    pub async fn unread_notifications(&self) -> Resp {
        self.get("/api/notifications/get-notifications-count-unread")
            .await
    }
    pub async fn unread_notifications_ok(&self) -> i64 {
        ok(self.unread_notifications().await, "count-unread")["unread_count"]
            .as_i64()
            .expect("unread_count")
    }
    pub async fn mark_notification_read(&self, id: &str) -> Resp {
        self.put(
            &format!("/api/notifications/update-notification/{id}"),
            None,
        )
        .await
    }
    pub async fn delete_notification(&self, id: &str) -> Resp {
        self.delete(&format!("/api/notifications/delete-notification/{id}"))
            .await
    }

    // Analytics.

    pub async fn room_stats(&self, room: &str) -> Resp {
        self.get(&format!("/api/analytics/get-room-stats?room_id={room}"))
            .await
    }
    /// Waits until the room's stats count `total` messages; returns them.
    pub async fn wait_for_room_stats(&self, room: &str, total: i64) -> Value {
        self.wait_for_room_stats_within(room, total, WAIT).await
    }

    /// [`User::wait_for_room_stats`] with a bound of its own.
    pub async fn wait_for_room_stats_within(
        &self,
        room: &str,
        total: i64,
        limit: Duration,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let (_, s) = self.room_stats(room).await;
            if s["total_messages"].as_i64() == Some(total) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for room stats of {total} messages; last seen: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    pub async fn messages_per_minute(&self, room: &str, since_minutes: i64) -> Resp {
        self.get(&format!(
            "/api/analytics/get-message-per-minutes?room_id={room}&since_minutes={since_minutes}"
        ))
        .await
    }
    pub async fn user_activity(&self, user_id: &str) -> Resp {
        self.get(&format!(
            "/api/analytics/get-user-activity?user_id={user_id}"
        ))
        .await
    }
    pub async fn top_active_rooms(&self, limit: u32) -> Resp {
        self.get(&format!(
            "/api/analytics/get-top-active-rooms?limit={limit}"
        ))
        .await
    }
    pub async fn edit_delete_ratio(&self) -> Resp {
        self.get("/api/analytics/get-message-edit-delete-ratio")
            .await
    }
    /// `days` None leaves the required parameter out.
    pub async fn user_retention(&self, days: Option<i64>) -> Resp {
        let q = days.map(|d| format!("?days={d}")).unwrap_or_default();
        self.get(&format!("/api/analytics/get-user-retention{q}"))
            .await
    }
    /// `limit` None leaves the required parameter out.
    pub async fn top_social_users(&self, limit: Option<u32>) -> Resp {
        let q = limit.map(|l| format!("?limit={l}")).unwrap_or_default();
        self.get(&format!("/api/analytics/get-top-social-users{q}"))
            .await
    }

    // Sessions on other processes, and sockets.

    /// The same login, talking to another process (sessions are shared between them).
    pub fn via(&self, app: &App) -> User {
        self.clone_on(&format!("http://{}", app.addr))
    }

    /// The same user with another session cookie (`session_id=…`).
    pub fn with_cookie(&self, cookie: &str) -> User {
        User {
            cookie: cookie.to_string(),
            ..self.clone_on(&self.base)
        }
    }

    fn clone_on(&self, base: &str) -> User {
        User {
            name: self.name.clone(),
            id: self.id.clone(),
            cookie: self.cookie.clone(),
            http: self.http.clone(),
            base: base.to_string(),
        }
    }

    /// Opens a socket (optionally the original's `?room_id=`), with a same-origin header.
    pub async fn ws(&self, app: &App, room: Option<&str>) -> Ws {
        let q = room.map(|r| format!("?room_id={r}")).unwrap_or_default();
        let mut req = app.ws_url(&q).into_client_request().unwrap();
        req.headers_mut()
            .insert("cookie", HeaderValue::from_str(&self.cookie).unwrap());
        req.headers_mut().insert(
            "origin",
            HeaderValue::from_str(&format!("http://{}", app.addr)).unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket connect");
        Ws {
            ws,
            backlog: Default::default(),
        }
    }

    /// Opens a socket and subscribes it to `room` (from now on).
    pub async fn subscribed_ws(&self, app: &App, room: &str) -> Ws {
        let mut ws = self.ws(app, None).await;
        let sub = ws.subscribe(room, None).await;
        assert_eq!(sub["type"], "subscribed", "{sub}");
        ws
    }
}

pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else, in arrival order.
    backlog: std::collections::VecDeque<Value>,
}

impl Ws {
    /// Writes bytes straight to the TCP stream, past the WebSocket library: frames it would
    /// never produce (protocol errors).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() else {
            panic!("raw bytes on a TLS stream");
        };
        tcp.write_all(bytes).await.expect("raw write");
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON frame (server pings are skipped), or None on close/timeout.
    pub async fn next_within(&mut self, d: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(d, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("json frame"))
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits for the first frame matching `pred`; other frames stay queued for later waits.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(what, WAIT, pred).await
    }

    /// [`Ws::wait_for`] with a longer deadline (e.g. while consumer groups form).
    pub async fn wait_for_within(
        &mut self,
        what: &str,
        wait: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i).expect("index in range");
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(v) if pred(&v) => return v,
                Some(v) => self.backlog.push_back(v),
                None => panic!("timed out (or socket closed) waiting for {what}"),
            }
        }
    }

    /// Waits for the first event (`event_type`) of that kind.
    pub async fn wait_event(&mut self, event_type: &str) -> Value {
        self.wait_for(event_type, |v| v["event_type"] == event_type)
            .await
    }

    /// Waits for the first protocol frame (`type`) of that kind.
    pub async fn wait_type(&mut self, frame_type: &str) -> Value {
        self.wait_for(frame_type, |v| v["type"] == frame_type).await
    }

    /// Pings, then returns the pong or an earlier `event_type` event, whichever comes first:
    /// a pong proves that no such event was on its way.
    pub async fn ping_or(&mut self, event_type: &str) -> Value {
        self.send(json!({"type": "ping"})).await;
        self.wait_for("pong", |v| {
            v["type"] == "pong" || v["event_type"] == event_type
        })
        .await
    }

    pub async fn subscribe(&mut self, room: &str, since: Option<i64>) -> Value {
        let mut f = json!({"type": "subscribe", "room_id": room});
        if let Some(s) = since {
            f["since_seq"] = json!(s);
        }
        self.send(f).await;
        self.wait_for("subscribed", |v| {
            v["type"] == "subscribed" || v["type"] == "error"
        })
        .await
    }

    /// Sends a message and waits for its ack.
    pub async fn send_msg(&mut self, room: &str, content: &str, cid: &str) -> Value {
        self.send(json!({"type": "send", "room_id": room, "content": content, "client_msg_id": cid, "ref": cid})).await;
        // Longer than WAIT: on Kafka a send waits while its room's sequencer changes hands.
        self.wait_for_within("ack", SEND_WAIT, |v| {
            (v["type"] == "ack" || v["type"] == "error") && v["ref"] == cid
        })
        .await
    }

    /// Sends `{prefix}{i}` for each `i`, as content and as client message id, each acknowledged;
    /// returns the acks.
    pub async fn send_numbered(
        &mut self,
        room: &str,
        prefix: &str,
        range: std::ops::Range<usize>,
    ) -> Vec<Value> {
        let mut acks = Vec::new();
        for i in range {
            let text = format!("{prefix}{i}");
            let ack = self.send_msg(room, &text, &text).await;
            assert_eq!(ack["type"], "ack", "{ack}");
            acks.push(ack);
        }
        acks
    }

    /// Collects `n` MESSAGE_CREATED frames of a room, in arrival order.
    pub async fn messages(&mut self, room: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = self
                .wait_for("MESSAGE_CREATED", |v| {
                    v["event_type"] == "MESSAGE_CREATED" && v["room_id"] == room
                })
                .await;
            out.push(f);
        }
        out
    }

    /// Waits for the socket to be closed by the server; returns the close code.
    pub async fn closed_with(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                Ok(None) | Ok(Some(Err(_))) => return None,
                Err(_) => panic!("socket not closed in time"),
            }
        }
    }
}

/// The value of `name`, the address of a server a scenario needs; without it the scenario is
/// skipped, except on CI, which must provide it.
#[cfg(feature = "kafka")]
pub fn env_or_skip(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide {name} (scripts/dev-services)"
            );
            eprintln!("skipped: {name} is not set");
            None
        }
    }
}

/// Polls `f` until it returns Some, for up to [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, WAIT, f).await
}

/// Polls `f` until it returns Some, for up to `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The seqs of messages or frames, in order.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Decodes a record in the Confluent wire format as a data team's client would: a generic Avro
/// library and the schema `/registry` serves for the id in the record's header (fetched once
/// per id into `schemas`, with the registry's content type checked). The schema id and the
/// record's fields.
pub async fn registry_decode(
    app: &App,
    schemas: &mut std::collections::BTreeMap<u32, apache_avro::Schema>,
    payload: &[u8],
) -> (
    u32,
    std::collections::BTreeMap<String, apache_avro::types::Value>,
) {
    assert_eq!(payload[0], 0, "Confluent wire format: magic byte 0");
    let id = u32::from_be_bytes(payload[1..5].try_into().unwrap());
    if let std::collections::btree_map::Entry::Vacant(slot) = schemas.entry(id) {
        let res = app
            .http
            .get(app.url(&format!("/registry/schemas/ids/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "schema {id}");
        assert_eq!(
            res.headers()["content-type"],
            "application/vnd.schemaregistry.v1+json"
        );
        let body: Value = res.json().await.unwrap();
        slot.insert(apache_avro::Schema::parse_str(body["schema"].as_str().unwrap()).unwrap());
    }
    let value = apache_avro::from_avro_datum(&schemas[&id], &mut &payload[5..], None).unwrap();
    let apache_avro::types::Value::Record(fields) = value else {
        panic!("not a record: {value:?}");
    };
    (id, fields.into_iter().collect())
}
