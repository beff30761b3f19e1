//! The three wire protocols the load generator speaks: LiveChat's native WebSocket frames,
//! Centrifugo's JSON protocol (v2: `{"id":N,"connect":{..}}`, newline-batched), and the bare
//! baseline (raw text in, `{"room","from","msg"}` out, optional `{"ack":n}`).
//!
//! Every benchmark message carries its send time: the content starts with `T<ns>|` (ns on the
//! generator's monotonic clock), padded with `x` to the configured size. Receivers find that
//! marker in the raw frame text without parsing the JSON, so every protocol costs the generator
//! the same per delivery.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Livechat,
    Centrifugo,
    Bare,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Livechat => "livechat",
            Proto::Centrifugo => "centrifugo",
            Proto::Bare => "bare",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Proto::Livechat => "LiveChat",
            Proto::Centrifugo => "Centrifugo",
            Proto::Bare => "bare",
        }
    }
}

/// `T<ts>|xxxx…`, `size` bytes long (at least the marker).
pub fn content(ts_ns: u64, size: usize) -> String {
    let mut s = format!("T{ts_ns}|");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// The send timestamp of the first benchmark marker (`"T<digits>|`) in a frame.
pub fn find_marker(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find("\"T") {
        let start = from + p + 2;
        let mut j = start;
        let mut v: u64 = 0;
        while j < b.len() && b[j].is_ascii_digit() {
            v = v.wrapping_mul(10).wrapping_add((b[j] - b'0') as u64);
            j += 1;
        }
        if j > start && j < b.len() && b[j] == b'|' {
            return Some(v);
        }
        from = start - 1;
    }
    None
}

/// The integer after `key` (e.g. `"ref":`) in a frame.
pub fn int_after(text: &str, key: &str) -> Option<u64> {
    let p = text.find(key)? + key.len();
    let digits: String = text[p..]
        .chars()
        .skip_while(|c| *c == ' ')
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What a received frame means to the generator.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A benchmark message was delivered; its send time.
    Delivery(u64),
    /// A send was acknowledged (LiveChat `ref`, Centrifugo reply `id`, bare ack counter).
    Ack(u64),
    /// A send (or other request) with this id got an error reply.
    Refused(u64),
    /// An error frame without an id.
    Error,
    /// Centrifugo's application-level ping (`{}`): must be answered with `{}`.
    Ping,
}

/// Classifies one text frame (Centrifugo may batch several lines into one frame).
pub fn scan(proto: Proto, text: &str, out: &mut Vec<Event>) {
    match proto {
        Proto::Livechat => {
            if text.contains("\"event_type\":\"MESSAGE_CREATED\"") {
                if let Some(ts) = find_marker(text) {
                    out.push(Event::Delivery(ts));
                }
            } else if text.contains("\"type\":\"ack\"") {
                if let Some(r) = int_after(text, "\"ref\":") {
                    out.push(Event::Ack(r));
                }
            } else if text.contains("\"type\":\"error\"") {
                match int_after(text, "\"ref\":") {
                    Some(r) => out.push(Event::Refused(r)),
                    None => out.push(Event::Error),
                }
            }
        }
        Proto::Centrifugo => {
            for line in text.split('\n') {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if line == "{}" {
                    out.push(Event::Ping);
                } else if line.starts_with("{\"id\":") {
                    let id = int_after(line, "\"id\":").unwrap_or(0);
                    if line.contains("\"error\":") {
                        out.push(Event::Refused(id));
                    } else {
                        out.push(Event::Ack(id));
                    }
                } else if line.contains("\"push\"") {
                    if let Some(ts) = find_marker(line) {
                        out.push(Event::Delivery(ts));
                    }
                }
            }
        }
        Proto::Bare => {
            if text.starts_with("{\"ack\":") {
                if let Some(n) = int_after(text, "{\"ack\":") {
                    out.push(Event::Ack(n));
                }
            } else if let Some(ts) = find_marker(text) {
                out.push(Event::Delivery(ts));
            }
        }
    }
}

/// The frame that publishes `content` to `room` (LiveChat room UUID, Centrifugo channel, bare:
/// ignored, the room is the socket's). `id` must be unique per connection; LiveChat gets it as
/// `ref` and in `client_msg_id` (with the connection number, so retries are never implied).
pub fn publish_frame(proto: Proto, room: &str, content: &str, id: u64, conn: usize) -> String {
    match proto {
        Proto::Livechat => format!(
            r#"{{"type":"send","room_id":"{room}","content":"{content}","client_msg_id":"b{conn}-{id}","ref":{id}}}"#
        ),
        Proto::Centrifugo => {
            format!(r#"{{"id":{id},"publish":{{"channel":"{room}","data":{{"m":"{content}"}}}}}}"#)
        }
        Proto::Bare => content.to_string(),
    }
}

/// Centrifugo request ids below this are used for connect/subscribe/history.
pub const FIRST_PUBLISH_ID: u64 = 1000;

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(A[(v >> 18) as usize & 63] as char);
        out.push(A[(v >> 12) as usize & 63] as char);
        if n > 1 {
            out.push(A[(v >> 6) as usize & 63] as char);
        }
        if n > 2 {
            out.push(A[v as usize & 63] as char);
        }
    }
    out
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

/// An HS256 connection token for Centrifugo (`sub` = user), valid for a day.
pub fn centrifugo_token(secret: &str, user: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 86_400;
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64url(format!(r#"{{"sub":"{user}","exp":{exp}}}"#).as_bytes());
    let signing = format!("{header}.{claims}");
    let sig = b64url(&hmac_sha256(secret.as_bytes(), signing.as_bytes()));
    format!("{signing}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_found_in_each_protocol() {
        let c = content(12345, 40);
        assert_eq!(c.len(), 40);
        let lc = format!(
            r#"{{"client_msg_id":"b1-2","event_type":"MESSAGE_CREATED","message":{{"content":"{c}"}},"payload":{{"message":"{c}"}}}}"#
        );
        let mut ev = Vec::new();
        scan(Proto::Livechat, &lc, &mut ev);
        assert_eq!(ev, vec![Event::Delivery(12345)]);
        ev.clear();
        let cf = format!(
            "{{\"push\":{{\"channel\":\"r\",\"pub\":{{\"data\":{{\"m\":\"{c}\"}},\"offset\":3}}}}}}\n{{}}\n{{\"id\":1001,\"publish\":{{}}}}"
        );
        scan(Proto::Centrifugo, &cf, &mut ev);
        assert_eq!(
            ev,
            vec![Event::Delivery(12345), Event::Ping, Event::Ack(1001)]
        );
        ev.clear();
        scan(
            Proto::Bare,
            &format!(r#"{{"room":"1","from":3,"msg":"{c}"}}"#),
            &mut ev,
        );
        scan(Proto::Bare, r#"{"ack":7}"#, &mut ev);
        assert_eq!(ev, vec![Event::Delivery(12345), Event::Ack(7)]);
    }

    #[test]
    fn livechat_ack_and_error_carry_the_ref() {
        let mut ev = Vec::new();
        scan(
            Proto::Livechat,
            r#"{"client_msg_id":"b0-9","duplicate":false,"ref":9,"seq":3,"type":"ack"}"#,
            &mut ev,
        );
        scan(
            Proto::Livechat,
            r#"{"code":"rate_limited","message":"slow down","ref":10,"type":"error"}"#,
            &mut ev,
        );
        assert_eq!(ev, vec![Event::Ack(9), Event::Refused(10)]);
    }

    #[test]
    fn a_quote_t_that_is_not_a_marker_is_skipped() {
        assert_eq!(find_marker(r#"{"T":"x","m":"T77|xx"}"#), Some(77));
        assert_eq!(find_marker(r#"{"Tab":"T12"}"#), None);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
    }
}
