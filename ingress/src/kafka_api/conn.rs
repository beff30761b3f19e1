//! One client connection: length-prefixed requests answered in order (as a broker does: a
//! client pipelines, and matches answers by correlation id), the versions this listener
//! speaks, and the SASL gate in front of everything but the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    api_versions_response::ApiVersion, ApiKey, ApiVersionsResponse, RequestHeader, RequestKind,
    ResponseHeader, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use livechat_core::ratelimit::TokenBucket;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::{groups, topics, Client, Served};

/// A request larger than this closes the connection (a consumer's requests are small; only a
/// Produce, refused anyway, is larger).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// How long a failed authentication is answered after.
const FAILED_AUTHENTICATION_PAUSE: Duration = Duration::from_millis(500);

/// Partition offsets one connection commits per second at most (each is a write to the log's
/// file); a client committing faster has its answers held back, as a broker's quota does, and
/// is told for how long (`throttle_time_ms`).
const COMMITS_PER_SEC: f64 = 1000.0;

/// The versions served of each API: the protocol crate's range, capped where a later version
/// needs what this log has not (Fetch 13+ names topics by id; OffsetFetch 8+ batches groups).
const SERVED_VERSIONS: [(ApiKey, i16, i16); 16] = [
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::SaslAuthenticate, 0, 2),
];

fn served_range(key: ApiKey) -> Option<(i16, i16)> {
    SERVED_VERSIONS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Where a connection stands with SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sasl {
    /// No credentials configured (the listener is on loopback): every call is open.
    Open,
    /// Waiting for `SaslHandshake`.
    Handshake,
    /// Handshake done (PLAIN), waiting for `SaslAuthenticate`.
    Authenticate,
    /// Authenticated.
    Done,
    /// Authentication failed: the next request closes the connection.
    Failed,
}

/// A connection: what it serves, whom, and where it stands with SASL.
struct Conn {
    served: Arc<Served>,
    client: Client,
    sasl: Sasl,
    commits: CommitPace,
}

/// Holds back a connection's offset commits to [`COMMITS_PER_SEC`] partitions.
struct CommitPace(TokenBucket);

impl CommitPace {
    fn new(per_sec: f64) -> Self {
        CommitPace(TokenBucket::new(per_sec, per_sec))
    }

    /// Waits until `partitions` commits are allowed; how long it waited.
    async fn admit(&mut self, partitions: usize) -> Duration {
        let started = Instant::now();
        // A commit larger than the burst takes the whole burst: it is never held forever.
        let n = (partitions as f64).min(self.0.burst());
        while !self.0.try_take_n(n) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }
}

/// Why a connection is closed instead of answered.
type Close = String;

pub(super) async fn run(served: Arc<Served>, stream: TcpStream, peer: SocketAddr) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let span = tracing::info_span!("kafka_connection", %peer);
    async move {
        let sasl = if served.credentials.is_some() {
            Sasl::Handshake
        } else {
            Sasl::Open
        };
        let mut conn = Conn {
            served,
            client: Client {
                local,
                peer,
                id: String::new(),
            },
            sasl,
            commits: CommitPace::new(COMMITS_PER_SEC),
        };
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            let size = match read.read_i32().await {
                Ok(n) => n,
                Err(_) => return, // closed by the client
            };
            if size < 8 || size as usize > MAX_REQUEST_BYTES {
                tracing::warn!(size, "Kafka listener: request size out of bounds; closing.");
                return;
            }
            let mut body = vec![0u8; size as usize];
            if read.read_exact(&mut body).await.is_err() {
                return;
            }
            match conn.answer(Bytes::from(body)).await {
                Ok(Some(frame)) => {
                    if write.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(why) => {
                    tracing::warn!(client_id = %conn.client.id, "Kafka listener: closing the connection: {why}");
                    return;
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// A response framed: its size, its header, its body.
fn framed(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> anyhow::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))?;
    response.encode(&mut buf, version)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// The versions this listener speaks, as ApiVersions lists them.
fn api_versions(error: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error;
    r.api_keys = SERVED_VERSIONS
        .iter()
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    r
}

impl Conn {
    async fn answer(&mut self, mut body: Bytes) -> Result<Option<BytesMut>, Close> {
        let raw_key = i16::from_be_bytes([body[0], body[1]]);
        let version = i16::from_be_bytes([body[2], body[3]]);
        let correlation_id = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
        let Some((min, max)) = served_range(key) else {
            return Err(format!("{key:?} is not served"));
        };
        if !(min..=max).contains(&version) {
            if key == ApiKey::ApiVersions {
                // As a broker answers a newer client: the error, and the versions it has, in
                // version 0 (which every client reads), so the client asks again in one of them.
                let r = ResponseKind::ApiVersions(api_versions(
                    ResponseError::UnsupportedVersion.code(),
                ));
                return framed(correlation_id, key, 0, &r)
                    .map(Some)
                    .map_err(|e| format!("encoding: {e:#}"));
            }
            return Err(format!(
                "{key:?} version {version} is not served ({min}..={max})"
            ));
        }
        let header = RequestHeader::decode(&mut body, key.request_header_version(version))
            .map_err(|e| format!("malformed {key:?} header: {e:#}"))?;
        if let Some(id) = &header.client_id {
            if self.client.id.as_str() != id.as_str() {
                self.client.id = id.to_string();
            }
        }
        let request = RequestKind::decode(key, &mut body, version)
            .map_err(|e| format!("malformed {key:?} v{version}: {e:#}"))?;
        metrics::counter!("livechat_kafka_api_requests_total", "api" => format!("{key:?}"))
            .increment(1);
        let Some(response) = self.dispatch(request, version).await? else {
            return Ok(None);
        };
        framed(correlation_id, key, version, &response)
            .map(Some)
            .map_err(|e| format!("encoding {key:?} v{version}: {e:#}"))
    }

    async fn dispatch(
        &mut self,
        request: RequestKind,
        version: i16,
    ) -> Result<Option<ResponseKind>, Close> {
        // Before authentication only the handshake's own calls are answered, as a broker does.
        if self.sasl == Sasl::Failed {
            return Err("a request after failed SASL authentication".into());
        }
        let open = matches!(self.sasl, Sasl::Open | Sasl::Done);
        let served = self.served.clone();
        let r: ResponseKind = match request {
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions(0)),
            RequestKind::SaslHandshake(req) => {
                ResponseKind::SaslHandshake(self.handshake(&req.mechanism)?)
            }
            RequestKind::SaslAuthenticate(req) => {
                ResponseKind::SaslAuthenticate(self.authenticate(&req.auth_bytes).await?)
            }
            _ if !open => return Err("a request before SASL authentication".into()),
            RequestKind::Metadata(req) => {
                ResponseKind::Metadata(topics::metadata(&served, &self.client, &req, version))
            }
            RequestKind::ListOffsets(req) => {
                ResponseKind::ListOffsets(topics::list_offsets(&served, &req).await)
            }
            RequestKind::Fetch(req) => ResponseKind::Fetch(topics::fetch(&served, &req).await),
            RequestKind::Produce(req) => match topics::refuse_produce(&req) {
                Some(r) => ResponseKind::Produce(r),
                None => return Ok(None), // acks=0: the client reads no answer
            },
            RequestKind::FindCoordinator(req) => {
                ResponseKind::FindCoordinator(groups::find_coordinator(&self.client, &req, version))
            }
            RequestKind::JoinGroup(req) => {
                ResponseKind::JoinGroup(served.groups.join(&self.client, req).await)
            }
            RequestKind::SyncGroup(req) => ResponseKind::SyncGroup(served.groups.sync(req).await),
            RequestKind::Heartbeat(req) => ResponseKind::Heartbeat(served.groups.heartbeat(&req)),
            RequestKind::LeaveGroup(req) => {
                ResponseKind::LeaveGroup(served.groups.leave(&req, version))
            }
            RequestKind::OffsetCommit(req) => {
                let partitions = req.topics.iter().map(|t| t.partitions.len()).sum();
                let held = self.commits.admit(partitions).await;
                let mut r = served.groups.commit(&req).await;
                r.throttle_time_ms = i32::try_from(held.as_millis()).unwrap_or(i32::MAX);
                ResponseKind::OffsetCommit(r)
            }
            RequestKind::OffsetFetch(req) => {
                ResponseKind::OffsetFetch(served.groups.fetch_offsets(&req, version).await)
            }
            RequestKind::DescribeGroups(req) => {
                ResponseKind::DescribeGroups(served.groups.describe(&req).await)
            }
            RequestKind::ListGroups(req) => {
                ResponseKind::ListGroups(served.groups.list(&req).await)
            }
            other => return Err(format!("unexpected request {other:?}")),
        };
        Ok(Some(r))
    }

    fn handshake(&mut self, mechanism: &StrBytes) -> Result<SaslHandshakeResponse, Close> {
        let mut r = SaslHandshakeResponse::default();
        match self.sasl {
            Sasl::Open => {
                // No credentials configured: nothing to authenticate against.
                r.error_code = ResponseError::UnsupportedSaslMechanism.code();
            }
            Sasl::Handshake => {
                r.mechanisms = vec![StrBytes::from_static_str("PLAIN")];
                if mechanism.as_str() == "PLAIN" {
                    self.sasl = Sasl::Authenticate;
                } else {
                    r.error_code = ResponseError::UnsupportedSaslMechanism.code();
                }
            }
            Sasl::Authenticate | Sasl::Done | Sasl::Failed => {
                return Err("a second SASL handshake".into())
            }
        }
        Ok(r)
    }

    async fn authenticate(&mut self, token: &Bytes) -> Result<SaslAuthenticateResponse, Close> {
        if self.sasl != Sasl::Authenticate {
            return Err("SaslAuthenticate without a PLAIN handshake".into());
        }
        let mut r = SaslAuthenticateResponse::default();
        let ok = self
            .served
            .credentials
            .as_ref()
            .is_some_and(|c| c.check_plain(token));
        if ok {
            self.sasl = Sasl::Done;
            tracing::info!(client_id = %self.client.id, "Kafka listener: client authenticated.");
        } else {
            // The client reads the answer, then the connection is closed on its next request;
            // the pause slows guessing down (connections are bounded too).
            self.sasl = Sasl::Failed;
            tokio::time::sleep(FAILED_AUTHENTICATION_PAUSE).await;
            r.error_code = ResponseError::SaslAuthenticationFailed.code();
            r.error_message = Some(StrBytes::from_static_str(
                "Authentication failed: invalid user name or password",
            ));
            tracing::warn!(peer = %self.client.peer, "Kafka listener: SASL/PLAIN authentication failed.");
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits within the rate pass at once; more wait for the bucket to refill; one larger
    /// than the burst waits for a full bucket, not forever.
    #[tokio::test]
    async fn offset_commits_beyond_the_rate_are_held_back() {
        let mut pace = CommitPace::new(100.0);
        assert!(pace.admit(100).await < Duration::from_millis(50));
        let held = pace.admit(50).await;
        assert!(held >= Duration::from_millis(400), "{held:?}");
        let held = pace.admit(10_000).await;
        assert!(held >= Duration::from_millis(900), "{held:?}");
        assert!(held < Duration::from_secs(3), "{held:?}");
    }
}
