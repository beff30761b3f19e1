//! LiveChat's domain core: the model, the business rules and the ports every adapter implements.
//!
//! Layout:
//! - [`membership`]: memberships known to hold, remembered briefly for the distributed send path.
//! - [`model`]: entities (users, rooms, memberships, messages, notifications) and their public views.
//! - [`error`]: [`AppError`], the one error type the ingress turns into HTTP statuses and close codes,
//!   and [`StoreError`], what adapters return.
//! - [`ports`]: the traits for everything external (directory, sessions, outbox, log, history,
//!   analytics, live fan-out, cache). Embedded adapters live in `livechat-sinks`.
//! - [`events`]: builds the Avro topic records (the outbox entries) for each state change.
//! - [`frames`]: the JSON frames pushed to WebSocket clients (the original's envelope, extended).
//! - [`limits`]: every configurable limit, with defaults.
//! - [`auth`]: password hashing and login throttling.
//! - [`validate`]: text, username and `@mention` rules shared by every input.
//! - [`sequencing`]: dense per-room seqs and `client_msg_id` deduplication, as the distributed
//!   sequencer decides them.
//! - [`send_order`]: one client's sends to a room in flight together, kept in the order written.
//! - [`service`]: [`service::ChatService`], the business rules behind every route and frame.
//! - [`attachments`]: files shared in rooms (what they are, from their bytes; where they are
//!   kept); [`file_keeping`]: how long they are kept, and deleting them with their messages.

pub mod attachments;
pub mod auth;
pub mod error;
pub mod events;
pub mod export;
pub mod file_keeping;
pub mod frames;
pub mod keyring;
pub mod limits;
pub mod membership;
pub mod model;
pub mod ports;
pub mod ratelimit;
pub mod recent_sessions;
pub mod search;
pub mod send_order;
pub mod sequencing;
pub mod service;
pub mod trace;
pub mod validate;

pub use error::{AppError, StoreError};

/// Milliseconds since the Unix epoch for a UTC timestamp.
pub fn to_ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// UTC timestamp from milliseconds since the epoch (clamped to the epoch on overflow).
pub fn from_ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Timestamps in the API's JSON bodies.
pub mod rfc3339 {
    use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

    /// Writes what chrono's own `Serialize` writes (RFC 3339, as many fractional digits as
    /// needed, `Z`), formatted into one string first: chrono's impl hands every piece of the
    /// date to the serializer, and serde_json escapes each piece on its own (with two timestamps
    /// per message, that was a tenth of the CPU of serving a history page). Years 0–9999 are
    /// written on the stack (no allocation, no formatting machinery); others, and leap seconds,
    /// by chrono.
    pub fn serialize<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 30];
        match write(t, &mut buf) {
            Some(text) => s.serialize_str(text),
            None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z` into `buf`, or `None` where chrono must.
    fn write<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
        let (date, time) = (t.date_naive(), t.time());
        let (year, nanos) = (date.year(), time.nanosecond());
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            return None;
        }
        let mut at = put(buf, 0, year as u32, 4);
        for (sep, value) in [
            (b'-', date.month()),
            (b'-', date.day()),
            (b'T', time.hour()),
            (b':', time.minute()),
            (b':', time.second()),
        ] {
            buf[at] = sep;
            at = put(buf, at + 1, value, 2);
        }
        if nanos != 0 {
            buf[at] = b'.';
            at = if nanos % 1_000_000 == 0 {
                put(buf, at + 1, nanos / 1_000_000, 3)
            } else if nanos % 1_000 == 0 {
                put(buf, at + 1, nanos / 1_000, 6)
            } else {
                put(buf, at + 1, nanos, 9)
            };
        }
        buf[at] = b'Z';
        std::str::from_utf8(&buf[..=at]).ok()
    }

    /// `value`'s last `width` decimal digits at `buf[at..]`; returns where they end.
    fn put(buf: &mut [u8], at: usize, mut value: u32, width: usize) -> usize {
        for b in buf[at..at + width].iter_mut().rev() {
            *b = b'0' + (value % 10) as u8;
            value /= 10;
        }
        at + width
    }

    /// [`serialize`] for an optional time (`null` when absent).
    pub fn serialize_opt<S: serde::Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serialize(t, s),
            None => s.serialize_none(),
        }
    }

    #[cfg(test)]
    mod tests {
        use chrono::{DateTime, Utc};

        #[derive(serde::Serialize)]
        struct Fast(#[serde(serialize_with = "super::serialize")] DateTime<Utc>);

        #[test]
        fn writes_what_chrono_writes() {
            for nanos in [
                0,
                1_000_000,
                120_000_000,
                123_456_000,
                123_456_789,
                999_999_999,
                // A leap second (chrono's way: past a whole second, at :59).
                1_500_000_000,
            ] {
                // The epoch, a minute's last second, now-ish, the last second of 9999, the
                // first of year 0 and of 10000, and a second of year -1 (the last three by
                // chrono).
                for secs in [
                    0,
                    59,
                    1_764_170_000,
                    1_764_170_039,
                    253_402_300_799,
                    -62_167_219_200,
                    253_402_300_800,
                    -62_167_219_201,
                ] {
                    let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) else {
                        assert!(nanos >= 1_000_000_000, "only a leap second may be refused");
                        continue;
                    };
                    assert_eq!(
                        serde_json::to_string(&Fast(t)).unwrap(),
                        serde_json::to_string(&t).unwrap()
                    );
                }
            }
        }
    }
}

/// Current time truncated to milliseconds, the precision every store keeps.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    from_ms(chrono::Utc::now().timestamp_millis())
}
