//! Starting and stopping the servers under test, each as a child process on 127.0.0.1 with its
//! own working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::proto::Proto;

pub const CENTRIFUGO_SECRET: &str = "livechat-bench-hmac-secret-not-for-production";

#[derive(Clone, Debug)]
pub struct Bins {
    pub livechat: PathBuf,
    pub bare: PathBuf,
    pub centrifugo: Option<PathBuf>,
}

/// Environment overrides that lift LiveChat's per-user limits so the generator can drive it.
pub fn livechat_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LIVECHAT_LIMITS__SEND_RATE_PER_SEC", "1000000"),
        ("LIVECHAT_LIMITS__SEND_BURST", "1000000"),
        (
            "LIVECHAT_LIMITS__LOGIN_ATTEMPTS_PER_IP_PER_MINUTE",
            "1000000",
        ),
        ("LIVECHAT_LIMITS__OUTBOUND_QUEUE_FRAMES", "4096"),
        ("RUST_LOG", "warn"),
    ]
}

pub struct Server {
    pub proto: Proto,
    pub child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

/// A free port on 127.0.0.1 (bound then released; fine for a benchmark on a quiet loopback).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn centrifugo_config(dir: &Path, history_size: usize) -> Result<PathBuf> {
    let cfg = serde_json::json!({
        "token_hmac_secret_key": CENTRIFUGO_SECRET,
        "health": true,
        "log_level": "error",
        "allowed_origins": ["*"],
        // Channels keep history (comparable to LiveChat's stored messages; in memory here).
        "history_size": history_size.max(1),
        "history_ttl": "3600s",
        "force_recovery": true,
        "allow_subscribe_for_client": true,
        "allow_publish_for_client": true,
        "allow_publish_for_subscriber": true,
        "allow_history_for_client": true,
        "allow_history_for_subscriber": true,
        "client_history_max_publication_limit": 300,
        "usage_stats_disable": true,
    });
    let p = dir.join("centrifugo.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&cfg)?)?;
    Ok(p)
}

/// Builds the command for a peer listening on `port` with working directory `dir`.
pub fn command(
    proto: Proto,
    bins: &Bins,
    dir: &Path,
    port: u16,
    history_size: usize,
) -> Result<Command> {
    std::fs::create_dir_all(dir)?;
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = match proto {
        Proto::Livechat => {
            let mut c = Command::new(&bins.livechat);
            c.arg("--listen")
                .arg(&listen)
                .arg("--data-dir")
                .arg(dir.join("data"));
            c.envs(livechat_env());
            c
        }
        Proto::Bare => {
            let mut c = Command::new(&bins.bare);
            c.arg("--listen").arg(&listen);
            c
        }
        Proto::Centrifugo => {
            let bin = bins
                .centrifugo
                .as_ref()
                .ok_or_else(|| anyhow!("centrifugo binary not available"))?;
            let cfg = centrifugo_config(dir, history_size)?;
            let mut c = Command::new(bin);
            c.arg("--config")
                .arg(cfg)
                .arg("--address")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string());
            c
        }
    };
    let log = std::fs::File::create(dir.join("server.log"))?;
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    Ok(cmd)
}

/// The health URL path of a peer (answers 200 once it serves).
pub fn health_path(proto: Proto) -> &'static str {
    match proto {
        Proto::Livechat => "/api/health",
        Proto::Centrifugo => "/health",
        Proto::Bare => "/health",
    }
}

async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

/// Times from `spawn` to the first accepted TCP connection and to the first 200 from the
/// health endpoint; polls every millisecond.
pub struct Started {
    pub server: Server,
    pub accept_ms: f64,
    pub ready_ms: f64,
}

pub async fn start_timed(
    proto: Proto,
    bins: &Bins,
    dir: &Path,
    history_size: usize,
) -> Result<Started> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut cmd = command(proto, bins, dir, port, history_size)?;
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", proto.name()))?;
    let pid = child.id().unwrap_or(0);
    // Drain stdout so the child never blocks on a full pipe.
    if let Some(out) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
    }
    let deadline = t0 + Duration::from_secs(120);
    let mut accept_ms = None;
    loop {
        if Instant::now() > deadline {
            bail!("{} did not accept a connection within 120 s", proto.name());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "{} exited with {status} before serving (log: {})",
                proto.name(),
                dir.join("server.log").display()
            );
        }
        if accept_ms.is_none() && tokio::net::TcpStream::connect(addr).await.is_ok() {
            accept_ms = Some(t0.elapsed().as_secs_f64() * 1000.0);
        }
        if accept_ms.is_some() && http_ok(addr, health_path(proto)).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready_ms = t0.elapsed().as_secs_f64() * 1000.0;
    Ok(Started {
        server: Server {
            proto,
            child,
            pid,
            addr,
            dir: dir.to_path_buf(),
        },
        accept_ms: accept_ms.unwrap_or(ready_ms),
        ready_ms,
    })
}

pub async fn start(proto: Proto, bins: &Bins, dir: &Path, history_size: usize) -> Result<Server> {
    Ok(start_timed(proto, bins, dir, history_size).await?.server)
}

impl Server {
    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<()> {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Ok(())
            }
        }
    }

    /// SIGKILL at once (when the data is thrown away).
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
