//! A LiveChat process a scenario starts, SIGKILLs and starts again on the same port and data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use crate::client::Target;
use crate::proto::Proto;
use crate::servers::{free_port, start_livechat_at, Server};
use crate::stats::now_ns;

/// A LiveChat process serving HTTP that the scenario may kill and start again on the same port
/// and data: embedded (`livechat serve`), or one role of distributed mode.
pub struct Node {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    server: Option<Server>,
}

impl Node {
    /// Embedded mode, in a fresh data directory, with extra environment.
    pub async fn start_new(bin: &Path, dir: &Path, env: Vec<(&str, &str)>) -> Result<Node> {
        let env = env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Node::start_with(bin, dir, vec![], env).await
    }

    /// Any mode: `args` after the common ones (`--config FILE`, a role), and environment.
    pub async fn start_with(
        bin: &Path,
        dir: &Path,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<Node> {
        let _ = std::fs::remove_dir_all(dir);
        let mut n = Node {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            port: free_port()?,
            args,
            env,
            server: None,
        };
        n.start().await?;
        Ok(n)
    }

    /// Starts the process; returns the milliseconds to its health endpoint's first 200.
    pub async fn start(&mut self) -> Result<f64> {
        let s = start_livechat_at(&self.bin, &self.dir, self.port, &self.args, &self.env).await?;
        self.server = Some(s.server);
        Ok(s.ready_ms)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn target(&self) -> Target {
        Target {
            proto: Proto::Livechat,
            addr: self.addr(),
            other_nodes: vec![],
            src_ips: vec![],
            secret: String::new(),
        }
    }

    pub async fn sigkill(&mut self) {
        if let Some(s) = self.server.take() {
            s.kill().await;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop(Duration::from_secs(10)).await;
        }
    }
}

/// A name part unique to one scenario (users and rooms on a shared server).
pub fn tag() -> String {
    format!("{:x}", now_ns() ^ std::process::id() as u64)
}
