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
    pub async fn spawn_beside(other: &App, env: &[(&str, &str)]) -> App {
        App::spawn_with(other.data.clone(), env).await
    }

    /// Starts one role (`["ingress"]`, `["processor", "history"]`) on a fresh data directory.
    pub async fn spawn_role(command: &[&str], env: &[(&str, &str)]) -> App {
        let data = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut app = App::new(data, env);
        app.command = command.iter().map(|c| c.to_string()).collect();
        app.start("127.0.0.1:0").await;
        app
    }

    /// Starts one role (`["ingress"]`, `["processor", "history"]`) on the same data directory.
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
        let line = tokio::time::timeout(WAIT, lines.next_line())
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

    /// Registers and logs in a user with a unique name derived from `base`.
    pub async fn user(&self, base: &str) -> User {
        let name = format!("{base}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let r = self
            .http
            .post(self.url("/api/users/register-user"))
            .json(&json!({"username": name, "password": "pw-secret"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "register: {}", r.text().await.unwrap());
        let r = self
            .http
            .post(self.url("/api/users/login-user"))
            .json(&json!({"username": name, "password": "pw-secret"}))
            .send()
            .await
            .unwrap();
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
        let me: Value = self
            .http
            .get(self.url("/api/users/get-me"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        User {
            name,
            id: me["id"].as_str().unwrap().to_string(),
            cookie,
            http: self.http.clone(),
            base: format!("http://{}", self.addr),
        }
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

impl User {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("cookie", &self.cookie);
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

    /// The same login, talking to another process (sessions are shared between them).
    pub fn via(&self, app: &App) -> User {
        User {
            name: self.name.clone(),
            id: self.id.clone(),
            cookie: self.cookie.clone(),
            http: self.http.clone(),
            base: format!("http://{}", app.addr),
        }
    }

    /// Opens a socket (optionally the original's `?room_id=`), with a same-origin header.
    pub async fn ws(&self, app: &App, room: Option<&str>) -> Ws {
        let q = room.map(|r| format!("?room_id={r}")).unwrap_or_default();
        let mut req = format!("ws://{}/api/ws/stream{q}", app.addr)
            .into_client_request()
            .unwrap();
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
}

pub struct Ws {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for something else, in arrival order.
    backlog: std::collections::VecDeque<Value>,
}

impl Ws {
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
        self.wait_for("ack", |v| {
            (v["type"] == "ack" || v["type"] == "error") && v["ref"] == cid
        })
        .await
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

/// Every message of a room from history, by seq (tombstones included).
pub async fn full_history(user: &User, room: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (s, page) = user
            .get(&format!(
                "/api/messages/get-messages/{room}?after_seq={after}&limit=200"
            ))
            .await;
        assert_eq!(s, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["seq"].as_i64().unwrap();
        out.extend(page);
    }
}
