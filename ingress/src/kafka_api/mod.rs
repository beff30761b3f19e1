//! The embedded log over the Kafka wire protocol: with `--kafka-listen ADDR` the single binary
//! lets standard Kafka consumers (librdkafka and its kcat, the Java clients and Kafka's own
//! tools) read its topics, in consumer groups whose offsets LiveChat keeps, so
//! `kafka-consumer-groups --reset-offsets` and `rpk group seek` style repair work as on a
//! broker. Read-only: the log is written only by LiveChat, so Produce is refused.
//!
//! Layout, in the order a request meets it: `conn` frames a connection's requests, holds its
//! SASL state and dispatches; `sasl` checks SASL/PLAIN credentials; `topics` answers the topic
//! calls (Metadata, ListOffsets, Fetch, and Produce's refusal); `groups` is the group
//! coordinator (offsets in the log's own group table, the groups' description), with
//! `membership` (Kafka's classic rebalance protocol, in memory).

mod conn;
mod groups;
mod membership;
mod sasl;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use livechat_core::ports::EventLog;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use sasl::Credentials;

/// `[kafka_api]`: the Kafka listener of the embedded log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaApiConfig {
    /// Address to serve the Kafka protocol on (`127.0.0.1:9092`); none, the default: off.
    pub listen: Option<String>,
    /// SASL/PLAIN user name a client must authenticate with (with `password`). Required to
    /// listen on anything but loopback: the listener carries every message of every room.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl KafkaApiConfig {
    /// The credentials, when both halves are set.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                Ok(Some(Credentials::new(u, p)))
            }
            (None, None) => Ok(None),
            _ => anyhow::bail!("[kafka_api] needs both username and password, or neither"),
        }
    }
}

/// The topics the listener serves: every topic of the embedded log a consumer may read.
pub const SERVED_TOPICS: [&str; 8] = [
    livechat_schemas::ROOM_EVENTS_TOPIC,
    livechat_schemas::USER_EVENTS_TOPIC,
    livechat_schemas::NOTIFICATIONS_TOPIC,
    livechat_schemas::ROOMS_TOPIC,
    livechat_schemas::USERS_TOPIC,
    livechat_schemas::MEMBERSHIPS_TOPIC,
    livechat_schemas::READ_MARKERS_TOPIC,
    livechat_schemas::DEAD_LETTER_TOPIC,
];

/// The authorized-operations fields when the client did not ask for them.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// A protocol string (the crate's `StrBytes`) of a Rust one.
fn s(v: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(v.to_string())
}

/// Client groups' offsets are kept in the log's group table under this prefix (`kafka/<group>`),
/// apart from LiveChat's own processors' groups; `/metrics` reports their lag under that name.
pub const CLIENT_GROUP_PREFIX: &str = "kafka/";

/// At most this many client connections at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;

/// Who a connection serves: where the client came from, the address it reached (given back as
/// the broker's and the coordinator's) and the client id it names itself by.
pub(super) struct Client {
    pub(super) local: SocketAddr,
    pub(super) peer: SocketAddr,
    pub(super) id: String,
}

/// What every connection shares.
struct Served {
    log: Arc<dyn EventLog>,
    groups: groups::Coordinator,
    credentials: Option<Credentials>,
}

/// Binds the listener. Anything but a loopback address needs credentials: the topics carry
/// every message of every room, and chat users' passwords never open it.
pub async fn bind(
    listen: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("[kafka_api] listen address {listen:?}"))?;
    if !addr.ip().is_loopback() && credentials.is_none() {
        anyhow::bail!(
            "[kafka_api] listen {addr} is not a loopback address: set [kafka_api] username and \
             password (SASL/PLAIN) to serve the log beyond this machine"
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the Kafka listener {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// Serves Kafka clients until shutdown.
pub async fn serve(
    listener: TcpListener,
    log: Arc<dyn EventLog>,
    credentials: Option<Credentials>,
    shutdown: CancellationToken,
) {
    let served = Arc::new(Served {
        groups: groups::Coordinator::new(log.clone(), shutdown.clone()),
        log,
        credentials,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka listener: accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_CONNECTIONS, "Kafka listener: too many connections; closing this one.");
            continue;
        };
        let (served, shutdown) = (served.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = conn::run(served, stream, peer) => {}
                _ = shutdown.cancelled() => {}
            }
            drop(slot);
        });
    }
}
