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
    pub centrifugo: Option<Centrifugo>,
}

impl Bins {
    /// LiveChat alone (the scale-out comparison runs no other peer).
    pub fn livechat_only(livechat: &Path) -> Bins {
        Bins {
            livechat: livechat.to_path_buf(),
            bare: PathBuf::new(),
            centrifugo: None,
        }
    }
}

/// The Centrifugo binary under test. Its major version decides how it is started: v5 takes flat
/// configuration keys and `--address`/`--port`, v6 nested keys (`client.token.*`,
/// `channel.without_namespace.*`, `http_server.*`, …).
#[derive(Clone, Debug)]
pub struct Centrifugo {
    pub bin: PathBuf,
    pub major: u32,
    /// `vX.Y.Z` when the binary (release build) or its Go build information tells.
    pub version: Option<String>,
    /// How the results describe it.
    pub label: String,
}

/// What `go version -m` says about the Centrifugo module inside a binary.
#[derive(Debug, PartialEq, Eq)]
struct ModuleInfo {
    /// `github.com/centrifugal/centrifugo/v6`
    path: String,
    major: u32,
    /// The module version (`v6.9.1`); None for `(devel)`.
    version: Option<String>,
    /// The binary's main module (`go install …@version`) rather than a dependency of another
    /// module (`go build` in a scratch module).
    main: bool,
}

const CENTRIFUGO_MODULE: &str = "github.com/centrifugal/centrifugo";

/// `vX.Y.Z` from `centrifugo version` (`Centrifugo v5.4.9 (Go version: …)`); None for the
/// `v0.0.0` a build without release ldflags prints.
fn version_from_output(out: &str) -> Option<(u32, String)> {
    out.split_whitespace()
        .filter_map(|w| {
            let digits = w.strip_prefix('v')?;
            let major: u32 = digits.split('.').next()?.parse().ok()?;
            (digits.split('.').count() >= 3).then(|| (major, w.to_string()))
        })
        .find(|(major, _)| *major > 0)
}

/// The Centrifugo module line (`mod` or `dep`) of `go version -m <binary>`.
fn module_from_build_info(info: &str) -> Option<ModuleInfo> {
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (kind, path) = (*f.first()?, *f.get(1)?);
        if kind != "mod" && kind != "dep" {
            return None;
        }
        let major = match path.strip_prefix(CENTRIFUGO_MODULE)? {
            "" => 1,
            tail => tail.strip_prefix("/v")?.parse().ok()?,
        };
        let version = f
            .get(2)
            .filter(|v| v.starts_with('v'))
            .map(|v| v.to_string());
        Some(ModuleInfo {
            path: path.to_string(),
            major,
            version,
            main: kind == "mod",
        })
    })
}

/// The major version implied by `centrifugo --help`: v6 moved the listener flags under
/// `--http_server.`, v5 has `--port`.
fn major_from_help(help: &str) -> Option<u32> {
    if help.contains("--http_server.port") {
        Some(6)
    } else if help.contains("--port ") {
        Some(5)
    } else {
        None
    }
}

/// stdout and stderr of a command, empty when it cannot run.
fn output_of(cmd: &mut std::process::Command) -> String {
    cmd.stdin(Stdio::null())
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

impl Centrifugo {
    /// Finds the major version of the binary at `bin`: from `centrifugo version` when it was
    /// built with release ldflags, else from the module path in its Go build information
    /// (`go version -m`, e.g. `github.com/centrifugal/centrifugo/v6 v6.9.1`), else from which
    /// listener flags `centrifugo --help` lists.
    pub fn detect(bin: &Path) -> Result<Centrifugo> {
        let printed = output_of(std::process::Command::new(bin).arg("version"));
        let release = version_from_output(&printed);
        let module = module_from_build_info(&output_of(
            std::process::Command::new("go")
                .arg("version")
                .arg("-m")
                .arg(bin),
        ));
        let major = match (&release, &module) {
            (Some((m, _)), _) => *m,
            (None, Some(m)) => m.major,
            (None, None) => {
                let help = output_of(std::process::Command::new(bin).arg("--help"));
                major_from_help(&help).ok_or_else(|| {
                    anyhow!(
                        "cannot tell the major version of {}: no release version, no Go build \
                         information, unknown flags",
                        bin.display()
                    )
                })?
            }
        };
        let version = release
            .as_ref()
            .map(|(_, v)| v.clone())
            .or_else(|| module.as_ref().and_then(|m| m.version.clone()));
        let mut how = Vec::new();
        if let Some(m) = &module {
            let v = m.version.as_deref().unwrap_or("(devel)");
            let built = if m.main {
                "built with `go install` from the Go module"
            } else {
                "built with `go build` in a scratch module requiring"
            };
            how.push(format!("{built} {} {v}, per `go version -m`", m.path));
        }
        if release.is_none() {
            if printed.contains("v0.0.0") {
                how.push("prints v0.0.0 without release ldflags".to_string());
            }
            if module.is_none() {
                how.push("major version from its command-line flags".to_string());
            }
        }
        let shown = version.clone().unwrap_or_else(|| format!("v{major}"));
        let label = if how.is_empty() {
            shown
        } else {
            format!("{shown} ({})", how.join("; "))
        };
        Ok(Centrifugo {
            bin: bin.to_path_buf(),
            major,
            version,
            label,
        })
    }
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
        (
            "LIVECHAT_LIMITS__REGISTRATIONS_PER_IP_PER_MINUTE",
            "1000000",
        ),
        ("LIVECHAT_LIMITS__OUTBOUND_QUEUE_FRAMES", "4096"),
        // The generator spreads its sockets over a few users (argon2 makes logins slow).
        ("LIVECHAT_LIMITS__MAX_SOCKETS_PER_USER", "1000000"),
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

/// The configuration file for one Centrifugo run: HS256 connection tokens, any origin, the
/// health endpoint, errors-only logging, no usage stats; channels (no namespace) keep history
/// (comparable to LiveChat's stored messages; in memory here) with forced recovery, and clients
/// may subscribe, publish and read history. v6 also gets its listener here (v5: flags).
fn centrifugo_config(
    dir: &Path,
    major: u32,
    listen: (&str, u16),
    history_size: usize,
) -> Result<PathBuf> {
    // The same channel options in both versions: nested for channels without a namespace in
    // v6, at the top level in v5.
    let channel = serde_json::json!({
        "history_size": history_size.max(1),
        "history_ttl": "3600s",
        "force_recovery": true,
        "allow_subscribe_for_client": true,
        "allow_publish_for_client": true,
        "allow_publish_for_subscriber": true,
        "allow_history_for_client": true,
        "allow_history_for_subscriber": true,
    });
    let cfg = if major >= 6 {
        serde_json::json!({
            "http_server": { "address": listen.0, "port": listen.1 },
            "log": { "level": "error" },
            "health": { "enabled": true },
            "usage_stats": { "disabled": true },
            "client": {
                "token": { "hmac_secret_key": CENTRIFUGO_SECRET },
                "allowed_origins": ["*"],
                "history_max_publication_limit": 300,
            },
            "channel": { "without_namespace": channel },
        })
    } else {
        let mut cfg = serde_json::json!({
            "token_hmac_secret_key": CENTRIFUGO_SECRET,
            "health": true,
            "log_level": "error",
            "allowed_origins": ["*"],
            "client_history_max_publication_limit": 300,
            "usage_stats_disable": true,
        });
        if let (Some(top), serde_json::Value::Object(options)) = (cfg.as_object_mut(), channel) {
            top.extend(options);
        }
        cfg
    };
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
            let cf = bins
                .centrifugo
                .as_ref()
                .ok_or_else(|| anyhow!("centrifugo binary not available"))?;
            let cfg = centrifugo_config(dir, cf.major, ("127.0.0.1", port), history_size)?;
            let mut c = Command::new(&cf.bin);
            c.arg("--config").arg(cfg);
            if cf.major < 6 {
                c.arg("--address")
                    .arg("127.0.0.1")
                    .arg("--port")
                    .arg(port.to_string());
            }
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
    let cmd = command(proto, bins, dir, port, history_size)?;
    spawn_until_ready(proto, cmd, dir, port).await
}

/// LiveChat with a configuration file and environment of its own (distributed mode: which
/// servers, and which names on them), on a free port, once its health endpoint answers.
pub async fn start_livechat(
    bin: &Path,
    dir: &Path,
    config: &Path,
    env: &[(String, String)],
) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = command(Proto::Livechat, &Bins::livechat_only(bin), dir, port, 0)?;
    cmd.arg("--config").arg(config);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Ok(spawn_until_ready(Proto::Livechat, cmd, dir, port)
        .await?
        .server)
}

/// LiveChat (its own data directory under `dir`) on `port`, with extra arguments (a
/// configuration file, a role) and environment, timed until its health endpoint answers: the
/// fault suite restarts it on the same port and data after killing it.
pub async fn start_livechat_at(
    bin: &Path,
    dir: &Path,
    port: u16,
    args: &[String],
    env: &[(String, String)],
) -> Result<Started> {
    let mut cmd = command(Proto::Livechat, &Bins::livechat_only(bin), dir, port, 0)?;
    cmd.args(args);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    spawn_until_ready(Proto::Livechat, cmd, dir, port).await
}

async fn spawn_until_ready(
    proto: Proto,
    mut cmd: Command,
    dir: &Path,
    port: u16,
) -> Result<Started> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_version_is_read_and_v0_is_not() {
        assert_eq!(
            version_from_output("Centrifugo v5.4.9 (Go version: go1.22.5)"),
            Some((5, "v5.4.9".to_string()))
        );
        assert_eq!(
            version_from_output("Centrifugo v0.0.0 (Go version: go1.26.8)"),
            None
        );
        assert_eq!(version_from_output(""), None);
    }

    #[test]
    fn module_is_read_from_go_build_info() {
        let installed = "/b/centrifugo: go1.26.8\n\
            \tpath\tgithub.com/centrifugal/centrifugo/v6\n\
            \tmod\tgithub.com/centrifugal/centrifugo/v6\tv6.9.1\th1:abc=\n\
            \tdep\tgithub.com/centrifugal/centrifuge\tv0.38.1\th1:def=\n";
        assert_eq!(
            module_from_build_info(installed),
            Some(ModuleInfo {
                path: "github.com/centrifugal/centrifugo/v6".into(),
                major: 6,
                version: Some("v6.9.1".into()),
                main: true,
            })
        );
        let scratch = "/b/centrifugo: go1.22.5\n\
            \tpath\tgithub.com/centrifugal/centrifugo/v5\n\
            \tmod\tcentrifugo-build\t(devel)\t\n\
            \tdep\tgithub.com/centrifugal/centrifuge\tv0.33.4\th1:x=\n\
            \tdep\tgithub.com/centrifugal/centrifugo/v5\tv5.4.9\th1:y=\n";
        assert_eq!(
            module_from_build_info(scratch),
            Some(ModuleInfo {
                path: "github.com/centrifugal/centrifugo/v5".into(),
                major: 5,
                version: Some("v5.4.9".into()),
                main: false,
            })
        );
        assert_eq!(module_from_build_info("go: not a Go binary"), None);
    }

    #[test]
    fn major_from_listener_flags() {
        assert_eq!(
            major_from_help("  -p, --http_server.port string   port to bind HTTP server to"),
            Some(6)
        );
        assert_eq!(
            major_from_help("  -p, --port string   port to bind HTTP server to (default \"8000\")"),
            Some(5)
        );
        assert_eq!(major_from_help("usage: something else"), None);
    }
}
