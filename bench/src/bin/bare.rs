//! The bare baseline: a minimal WebSocket broadcast server with no persistence, no auth, no
//! history — the practical limit of this machine for the same load shape.
//!
//! `GET /ws?room=R` joins room R. Every text frame received is wrapped once into
//! `{"room":R,"from":ID,"msg":"<text>"}` (one refcounted buffer) and `try_send` to the bounded
//! queue of every member of the room (the sender included). One writer task per socket drains
//! its queue with `recv_many` and flushes once per batch. `&ack=1` answers every frame with
//! `{"ack":n}`; `&sub=0` keeps the socket out of the room's member list (publish only).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(
    name = "bare",
    about = "Minimal WebSocket broadcast server (benchmark baseline)"
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Frames queued per socket; a full queue drops the frame (counted).
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    #[arg(long, default_value_t = 4096)]
    read_buffer: usize,
}

type Member = (u64, mpsc::Sender<Utf8Bytes>);

#[derive(Default)]
struct Room {
    members: RwLock<Vec<Member>>,
}

struct App {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_id: AtomicU64,
    drops: AtomicU64,
    queue: usize,
    read_buffer: usize,
}

impl App {
    fn room(&self, name: &str) -> Arc<Room> {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

#[derive(Deserialize)]
struct Q {
    room: Option<String>,
    ack: Option<u8>,
    sub: Option<u8>,
}

async fn ws(up: WebSocketUpgrade, Query(q): Query<Q>, State(app): State<Arc<App>>) -> Response {
    let rb = app.read_buffer;
    up.read_buffer_size(rb).on_upgrade(move |s| conn(s, app, q))
}

async fn conn(socket: WebSocket, app: Arc<App>, q: Q) {
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    let room_name = q.room.unwrap_or_else(|| "0".into());
    let room = app.room(&room_name);
    let room_json = serde_json::to_string(&room_name).unwrap_or_else(|_| "\"?\"".into());
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(app.queue.max(1));
    let member = q.sub != Some(0);
    if member {
        room.members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, tx.clone()));
    }
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            for m in batch.drain(..) {
                if sink.feed(Message::Text(m)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let ack = q.ack == Some(1);
    let mut acks = 0u64;
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(t) => {
                let text = serde_json::to_string(t.as_str()).unwrap_or_default();
                let frame = Utf8Bytes::from(format!(
                    "{{\"room\":{room_json},\"from\":{id},\"msg\":{text}}}"
                ));
                {
                    let members = room.members.read().unwrap_or_else(|p| p.into_inner());
                    for (_, m) in members.iter() {
                        if m.try_send(frame.clone()).is_err() {
                            app.drops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if ack {
                    acks += 1;
                    if tx
                        .send(Utf8Bytes::from(format!("{{\"ack\":{acks}}}")))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    if member {
        room.members
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(i, _)| *i != id);
    }
    drop(tx);
    writer.abort();
}

async fn health(State(app): State<Arc<App>>) -> String {
    format!("ok drops={}\n", app.drops.load(Ordering::Relaxed))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let app = Arc::new(App {
        rooms: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        drops: AtomicU64::new(0),
        queue: cli.queue,
        read_buffer: cli.read_buffer,
    });
    let router = Router::new()
        .route("/ws", get(ws))
        .route("/health", get(health))
        .with_state(app);
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind(cli.listen)?;
    let listener = sock.listen(4096)?;
    println!("bare listening on http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}
