//! A schema registry on the Kafka adapter's edge.
//!
//! - [`RegistryClient`] speaks the subset of the Confluent Schema Registry REST API LiveChat
//!   needs (Redpanda's built-in registry, Confluent's, Karapace, Apicurio's `ccompat` API).
//! - [`SchemaIds`] registers every schema of [`livechat_schemas::registry`] under its subject
//!   (TopicNameStrategy: `<topic>-value`, the topic with the namespace prefix), sets
//!   `BACKWARD_TRANSITIVE` on it, and rewrites the 4-byte schema id of Confluent-framed records:
//!   embedded id → registry id on the way to the broker, registry id → embedded id on the way
//!   back. The Avro body is never touched (the schemas are the same), and the rest of LiveChat
//!   keeps the embedded ids. Records that are not framed (the dead-letter topic's JSON) pass as
//!   they are.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use livechat_schemas::registry as embedded;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

const CONTENT: &str = "application/vnd.schemaregistry.v1+json";
const ACCEPTS: &str = "application/vnd.schemaregistry.v1+json, application/json";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries per call when the registry gives no answer. Every call this client makes is
/// idempotent (registering a schema again returns its id; the rest are reads or a PUT of the
/// same level), so a call that met a dropped keep-alive connection or a slow start is sent again.
const TRANSPORT_TRIES: u32 = 3;
/// The pause before the second try; doubled before each later one.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The compatibility LiveChat sets on its subjects: a processor on the newest schema must read
/// every record back to offset 0 (see docs/topics.md, "Schema evolution").
pub const COMPATIBILITY: &str = "BACKWARD_TRANSITIVE";

/// A failed registry call.
#[derive(Debug)]
pub enum RegistryError {
    /// The registry answered with an error status: 409 an incompatible schema, 422 an invalid
    /// one, 404 an unknown subject, version or id (Confluent's `error_code` says which).
    Status {
        status: u16,
        error_code: Option<i64>,
        message: String,
    },
    /// No usable answer: connection refused, timeout, or a body that is not the API's.
    Transport(String),
}

impl RegistryError {
    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            RegistryError::Transport(_) => None,
        }
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Status {
                status,
                error_code,
                message,
            } => {
                write!(f, "schema registry answered {status}")?;
                if let Some(code) = error_code {
                    write!(f, " (error_code {code})")?;
                }
                write!(f, ": {message}")
            }
            RegistryError::Transport(e) => write!(f, "schema registry unreachable: {e}"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// A schema as `GET /schemas/ids/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchedSchema {
    pub schema: String,
    /// Absent for Avro (the API's default type).
    #[serde(default)]
    pub schema_type: Option<String>,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct CompatibleAnswer {
    is_compatible: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigAnswer {
    #[serde(default)]
    compatibility_level: Option<String>,
    // Some registries answer with the PUT body's spelling.
    #[serde(default)]
    compatibility: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// A Confluent Schema Registry REST client (the calls LiveChat makes).
#[derive(Clone)]
pub struct RegistryClient {
    base: Url,
    http: reqwest::Client,
}

impl RegistryClient {
    /// `url` is the API root, e.g. `http://127.0.0.1:8081` (Redpanda, Confluent, Karapace) or
    /// `http://127.0.0.1:8080/apis/ccompat/v7` (Apicurio). Plain HTTP only (this build has no
    /// TLS in its HTTP client).
    pub fn new(url: &str) -> Result<RegistryClient, RegistryError> {
        let base = Url::parse(url)
            .map_err(|e| RegistryError::Transport(format!("invalid registry URL {url:?}: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(RegistryError::Transport(format!(
                "invalid registry URL {url:?}: not a base URL"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| RegistryError::Transport(e.to_string()))?;
        Ok(RegistryClient { base, http })
    }

    /// The API root this client talks to.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// The URL of `segments` under the API root (each segment percent-encoded).
    fn url_of(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call: `Ok(None)` for a 404 when `missing_ok`, the decoded body otherwise. A call
    /// that got no answer is tried again (see [`TRANSPORT_TRIES`]); an answer is never retried.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<serde_json::Value>,
        missing_ok: bool,
    ) -> Result<Option<T>, RegistryError> {
        let url = self.url_of(segments);
        let body = body.map(|b| b.to_string());
        let mut pause = RETRY_PAUSE;
        let mut tries = 1;
        let resp = loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, ACCEPTS);
            if let Some(body) = &body {
                req = req.header(CONTENT_TYPE, CONTENT).body(body.clone());
            }
            match req.send().await {
                Ok(resp) => break resp,
                Err(e) if tries < TRANSPORT_TRIES => {
                    tracing::warn!(%method, %url, tries, error = %with_causes(&e), "The schema registry gave no answer; trying again.");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                Err(e) => {
                    return Err(RegistryError::Transport(format!(
                        "{method}: {} (after {tries} tries)",
                        with_causes(&e)
                    )))
                }
            }
        };
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RegistryError::Transport(with_causes(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                RegistryError::Transport(format!(
                    "unexpected answer ({status}): {e}: {}",
                    String::from_utf8_lossy(&bytes)
                ))
            });
        }
        if status == StatusCode::NOT_FOUND && missing_ok {
            return Ok(None);
        }
        let (error_code, message) = match serde_json::from_slice::<ErrorAnswer>(&bytes) {
            Ok(e) => (
                e.error_code,
                e.message
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            ),
            Err(_) => (None, String::from_utf8_lossy(&bytes).into_owned()),
        };
        Err(RegistryError::Status {
            status: status.as_u16(),
            error_code,
            message,
        })
    }

    /// `POST /subjects/{subject}/versions`: registers an Avro schema (or finds it registered)
    /// and returns its id. A schema the subject's compatibility refuses is a 409.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let answer: Option<IdAnswer> = self
            .call(
                Method::POST,
                &["subjects", subject, "versions"],
                Some(json!({ "schema": schema })),
                false,
            )
            .await?;
        answer
            .map(|a| a.id)
            .ok_or_else(|| RegistryError::Transport("empty answer".into()))
    }

    /// `PUT /config/{subject}`: sets the subject's compatibility level.
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let _: Option<serde_json::Value> = self
            .call(
                Method::PUT,
                &["config", subject],
                Some(json!({ "compatibility": level })),
                false,
            )
            .await?;
        Ok(())
    }

    /// `GET /config/{subject}`: the subject's own compatibility level (None: it has none and
    /// follows the global one).
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        let answer: Option<ConfigAnswer> = self
            .call(Method::GET, &["config", subject], None, true)
            .await?;
        Ok(answer.and_then(|a| a.compatibility_level.or(a.compatibility)))
    }

    /// `GET /schemas/ids/{id}`: the schema with this id (None: no such id).
    pub async fn schema_by_id(&self, id: u32) -> Result<Option<FetchedSchema>, RegistryError> {
        self.call(
            Method::GET,
            &["schemas", "ids", &id.to_string()],
            None,
            true,
        )
        .await
    }

    /// `POST /compatibility/subjects/{subject}/versions/latest`: whether `schema` could be
    /// registered as the subject's next version.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        let answer: Option<CompatibleAnswer> = self
            .call(
                Method::POST,
                &["compatibility", "subjects", subject, "versions", "latest"],
                Some(json!({ "schema": schema })),
                false,
            )
            .await?;
        answer
            .map(|a| a.is_compatible)
            .ok_or_else(|| RegistryError::Transport("empty answer".into()))
    }
}

/// An error with the causes under it: reqwest's own text ("error sending request for url …")
/// leaves out why (refused, reset, closed, timed out).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The schema id of a Confluent-framed record (magic byte 0, then 4 bytes big-endian), or None
/// if the record is not framed.
fn framed_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [0, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Sets the schema id of a framed record.
fn set_id(payload: &mut [u8], id: u32) {
    payload[1..5].copy_from_slice(&id.to_be_bytes());
}

fn with_id(payload: &[u8], id: u32) -> Vec<u8> {
    let mut out = payload.to_vec();
    set_id(&mut out, id);
    out
}

/// A record whose schema is not LiveChat's keeps its id, unless that id is also an embedded
/// one: then it becomes 0, so the codec refuses the record instead of misreading it.
fn unmapped(payload: &mut [u8], id: u32) {
    if embedded::by_id(id).is_some() || embedded::learned_writer(id).is_some() {
        tracing::warn!(
            schema_id = id,
            "A record's schema is not LiveChat's but its id is an embedded one; the id is cleared so it is not misread."
        );
        set_id(payload, 0);
    }
}

/// The id translation between LiveChat's embedded schema ids and a registry's.
pub struct SchemaIds {
    client: RegistryClient,
    /// Embedded id → registry id (fixed at start).
    outgoing: HashMap<u32, u32>,
    /// Registry id → embedded id (or a learned writer's: an earlier or later version of one of
    /// ours), or None for a schema that is not one of ours. Learned at start, then from
    /// `GET /schemas/ids/{id}` for ids met on the log (ids never change meaning in a registry,
    /// so the answers are kept).
    incoming: RwLock<HashMap<u32, Option<u32>>>,
}

impl SchemaIds {
    /// Registers every LiveChat schema under `<namespace><topic>-value`, sets
    /// `BACKWARD_TRANSITIVE` on each subject and learns the registry's ids.
    pub async fn register_all(
        client: RegistryClient,
        namespace: &str,
    ) -> Result<SchemaIds, RegistryError> {
        let mut outgoing = HashMap::new();
        let mut incoming = HashMap::new();
        for s in embedded::all() {
            let subject = format!("{namespace}{}", s.subject);
            // Registering first: a registry may refuse a config for a subject it does not have.
            // Every later version is then checked against the level set here.
            let id = client.register(&subject, s.text).await.map_err(|e| match e {
                RegistryError::Status {
                    status: 409,
                    error_code,
                    message,
                } => RegistryError::Status {
                    status: 409,
                    error_code,
                    message: format!(
                        "the schema of {} is not compatible with the versions registered under {subject}: {message}",
                        s.topic
                    ),
                },
                other => other,
            })?;
            client.set_compatibility(&subject, COMPATIBILITY).await?;
            tracing::info!(
                subject,
                registry_id = id,
                embedded_id = s.id,
                "Schema registered."
            );
            outgoing.insert(s.id, id);
            incoming.insert(id, Some(s.id));
        }
        Ok(SchemaIds {
            client,
            outgoing,
            incoming: RwLock::new(incoming),
        })
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The registry's id of an embedded schema id.
    pub fn registry_id(&self, embedded_id: u32) -> Option<u32> {
        self.outgoing.get(&embedded_id).copied()
    }

    /// A record on its way to the broker: a LiveChat schema id becomes the registry's. Records
    /// that are not framed, or carry an id that is not LiveChat's, are returned as they are.
    pub fn outgoing<'a>(&self, payload: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match framed_id(payload).and_then(|id| self.outgoing.get(&id)) {
            Some(&rid) => std::borrow::Cow::Owned(with_id(payload, rid)),
            None => std::borrow::Cow::Borrowed(payload),
        }
    }

    /// A record read from the broker (rewritten in place): a registry id of one of LiveChat's
    /// schemas becomes its embedded id. An id the registry does not know, or whose schema is not
    /// one of ours, is left for the codec to refuse (dead-lettering the record); one that
    /// happens to equal an embedded id is replaced by 0 (never an embedded id) so it cannot be
    /// decoded as the wrong schema. Errs only when the registry cannot be asked.
    pub async fn incoming(&self, payload: &mut [u8]) -> Result<(), RegistryError> {
        let Some(id) = framed_id(payload) else {
            return Ok(());
        };
        let known = self
            .incoming
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .copied();
        let mapped = match known {
            Some(m) => m,
            None => {
                let Some(found) = self.client.schema_by_id(id).await? else {
                    // Not (yet) in the registry: not remembered, asked again next time.
                    tracing::warn!(
                        schema_id = id,
                        "A record's schema id is not in the registry."
                    );
                    unmapped(payload, id);
                    return Ok(());
                };
                let m = self.ours(&found);
                tracing::info!(registry_id = id, embedded_id = ?m, "Registry schema id resolved.");
                self.incoming
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, m);
                m
            }
        };
        match mapped {
            Some(e) => set_id(payload, e),
            None => unmapped(payload, id),
        }
        Ok(())
    }

    /// A read record whose id could not be resolved (the registry is unreachable): left for
    /// the codec to refuse, its id cleared if it is also an embedded one.
    pub fn unresolved(&self, payload: &mut [u8]) {
        if let Some(id) = framed_id(payload) {
            unmapped(payload, id);
        }
    }

    /// The id a fetched schema's records decode under: one of ours (the same Parsing Canonical
    /// Form), or a version of one of ours that it can read (a schema evolved by a newer or an
    /// older LiveChat: a rolling upgrade, a replay of old records).
    fn ours(&self, found: &FetchedSchema) -> Option<u32> {
        if found
            .schema_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("AVRO"))
        {
            return None;
        }
        embedded::reader_id_for(&found.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_recognised_and_rewritten_in_place() {
        assert_eq!(framed_id(&[0, 0, 0, 1, 2, 9, 9]), Some(258));
        assert_eq!(framed_id(&[0, 0, 0, 1]), None, "too short");
        assert_eq!(framed_id(b"{\"orig_topic\":1}"), None, "JSON");
        assert_eq!(
            with_id(&[0, 0, 0, 0, 1, 7, 8], 0x0102_0304),
            vec![0, 1, 2, 3, 4, 7, 8]
        );
    }

    /// Ids as a registry might assign them: room 1 → 7, user 2 → 1 (another schema's embedded
    /// id), notifications 3 → 3; registry id 2 is a foreign schema (remembered as not ours).
    fn translator() -> SchemaIds {
        SchemaIds {
            client: RegistryClient::new("http://127.0.0.1:9").unwrap(),
            outgoing: [(1, 7), (2, 1), (3, 3)].into_iter().collect(),
            incoming: RwLock::new(
                [(7, Some(1)), (1, Some(2)), (3, Some(3)), (2, None)]
                    .into_iter()
                    .collect(),
            ),
        }
    }

    #[tokio::test]
    async fn ids_are_translated_both_ways_and_only_once() {
        let ids = translator();
        let body = [0x02, 0x61, 0x62];
        for (embedded_id, registry_id) in [(1u32, 7u32), (2, 1), (3, 3)] {
            let rec = [&[0][..], &embedded_id.to_be_bytes(), &body].concat();
            let wire = ids.outgoing(&rec).into_owned();
            assert_eq!(framed_id(&wire), Some(registry_id));
            assert_eq!(wire[5..], body, "the body is untouched");
            let mut back = wire.clone();
            ids.incoming(&mut back).await.unwrap();
            assert_eq!(back, rec, "embedded {embedded_id}");
        }
        // Not framed, or not ours: as they are.
        let json = br#"{"orig_topic":"t"}"#.to_vec();
        assert_eq!(ids.outgoing(&json).as_ref(), &json[..]);
        let mut read = json.clone();
        ids.incoming(&mut read).await.unwrap();
        assert_eq!(read, json);
        let other = vec![0, 0, 0, 0, 99, 1];
        assert_eq!(ids.outgoing(&other).as_ref(), &other[..]);
        // A foreign schema whose registry id is also an embedded id: cleared, never misread.
        let mut foreign = vec![0, 0, 0, 0, 2, 1];
        ids.incoming(&mut foreign).await.unwrap();
        assert_eq!(framed_id(&foreign), Some(0));
        let mut unresolved = vec![0, 0, 0, 0, 1, 1];
        ids.unresolved(&mut unresolved);
        assert_eq!(framed_id(&unresolved), Some(0));
        let mut unresolved = vec![0, 0, 0, 0, 99, 1];
        ids.unresolved(&mut unresolved);
        assert_eq!(framed_id(&unresolved), Some(99));
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_an_error_for_an_unknown_id() {
        let ids = translator();
        let mut rec = vec![0, 0, 0, 0, 42, 1];
        let err = ids.incoming(&mut rec).await.unwrap_err();
        assert!(err.status().is_none(), "{err}");
        assert_eq!(framed_id(&rec), Some(42), "left as it was");
    }

    /// A registry that drops the first connection unanswered (as a server closing an idle
    /// keep-alive connection does) and answers the second: the call is sent again and succeeds.
    #[tokio::test]
    async fn a_call_that_got_no_answer_is_sent_again() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let (mut first, _) = listener.accept().await.unwrap();
            let _ = first.read(&mut buf).await.unwrap();
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            let n = second.read(&mut buf).await.unwrap();
            let body = br#"{"id":5}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            second.write_all(head.as_bytes()).await.unwrap();
            second.write_all(body).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let client = RegistryClient::new(&format!("http://{addr}")).unwrap();
        assert_eq!(client.register("s-value", "\"string\"").await.unwrap(), 5);
        let second_request = server.await.unwrap();
        assert!(
            second_request.starts_with("POST /subjects/s-value/versions "),
            "{second_request}"
        );
        // Nobody listening any more: an error after every try, naming the cause.
        let err = client.register("s-value", "\"string\"").await.unwrap_err();
        let text = err.to_string();
        assert!(err.status().is_none(), "{text}");
        assert!(
            text.contains(&format!("after {TRANSPORT_TRIES} tries")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }

    #[test]
    fn urls_keep_the_api_root_and_encode_segments() {
        let c = RegistryClient::new("http://127.0.0.1:1/apis/ccompat/v7/").unwrap();
        assert_eq!(
            c.url_of(&["subjects", "a/b-value", "versions"]).as_str(),
            "http://127.0.0.1:1/apis/ccompat/v7/subjects/a%2Fb-value/versions"
        );
        let c = RegistryClient::new("http://127.0.0.1:1").unwrap();
        assert_eq!(
            c.url_of(&["schemas", "ids", "7"]).as_str(),
            "http://127.0.0.1:1/schemas/ids/7"
        );
        assert!(RegistryClient::new("not a url").is_err());
    }
}
