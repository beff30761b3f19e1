//! Every limit LiveChat enforces, with its default. All are configurable (`[limits]` in the
//! config file, `LIVECHAT_LIMITS__<NAME>` in the environment).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest message text, in characters.
    pub max_message_chars: usize,
    pub min_username_chars: usize,
    pub max_username_chars: usize,
    pub min_password_chars: usize,
    pub max_password_chars: usize,
    pub max_room_name_chars: usize,
    pub max_description_chars: usize,
    pub max_join_message_chars: usize,
    /// Largest REST request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame and message, in bytes (larger ones close the socket with 1009);
    /// raised to what the longest message needs once JSON-escaped (see [`Limits::ws_frame_bytes`]).
    pub max_ws_frame_bytes: usize,
    pub max_ws_message_bytes: usize,
    /// Per-socket read buffer, held for the socket's life: small on purpose. Client frames are
    /// small (a send is a few hundred bytes; tungstenite zero-fills the whole buffer per read),
    /// and a larger frame grows the buffer to fit. 1 KiB instead of 4 KiB took idle memory from
    /// 12.5 to 9.8 KiB per socket (8,000 sockets) with no change in durable ingest.
    pub ws_read_buffer_bytes: usize,
    /// Frames queued for one socket before it counts as a slow reader and is closed (4008).
    pub outbound_queue_frames: usize,
    /// The kernel's send buffer per socket (SO_SNDBUF; Linux doubles it for its bookkeeping), 0
    /// for the kernel's autotuning. Bounded, a client that stops reading holds at most this much
    /// kernel memory, and its queue overflows within seconds (4008) instead of minutes: with
    /// autotuning the kernel buffers up to 4 MiB per socket before a write waits, which a
    /// reader of a quiet room fills only after several minutes.
    pub socket_send_buffer_bytes: usize,
    /// Sends per second per user, over all their sockets and REST together (token bucket), and
    /// the burst allowed.
    pub send_rate_per_sec: f64,
    pub send_burst: f64,
    /// Typing frames per second per connection and burst.
    pub typing_rate_per_sec: f64,
    pub typing_burst: f64,
    /// Subscribe frames per second per connection and burst (the burst covers subscribing to
    /// every room of a user at connect).
    pub subscribe_rate_per_sec: f64,
    pub subscribe_burst: f64,
    /// Rate-limited frames within 10 s before the socket is closed with 1008.
    pub max_rate_violations: u32,
    /// Rooms one socket may subscribe to.
    pub max_rooms_per_socket: usize,
    /// Largest file a member may share in a room (the upload's body; larger ones get 413).
    pub max_file_bytes: usize,
    /// Uploads at once in one process (each holds its file in memory, from before its body is
    /// read until it is stored); more get 429.
    pub concurrent_uploads: usize,
    /// Bytes one user may upload per minute (per process), all at once up to this much; more
    /// get 429 with the seconds to wait. At least `max_file_bytes` at once is always allowed.
    pub upload_bytes_per_minute: u64,
    /// Files one message may carry.
    pub max_files_per_message: usize,
    /// How long an uploaded file waits for a message to share it; one no message claimed by
    /// then is deleted (as is every file once the last message that carried it is deleted).
    pub file_hold_secs: u64,
    /// Open sockets per user (tabs and devices together); the next upgrade gets 429.
    pub max_sockets_per_user: usize,
    /// Server ping interval and idle timeout (no frame from the client for this long closes it).
    /// A client that goes silent is closed, and shown offline, within their sum.
    pub ping_interval_secs: u64,
    pub idle_timeout_secs: u64,
    /// Session idle expiry (sliding) and absolute lifetime.
    pub session_idle_secs: i64,
    pub session_absolute_secs: i64,
    /// Failed logins per source address per minute (successful ones are not counted).
    pub login_attempts_per_ip_per_minute: u32,
    /// Accounts created per IP per minute.
    pub registrations_per_ip_per_minute: u32,
    /// Failed logins of one account from one address before exponential backoff starts (for
    /// that address only: others, the owner's among them, are not slowed), and its cap.
    pub login_failures_before_backoff: u32,
    pub login_backoff_max_secs: u64,
    /// Largest history page.
    pub max_history_page: u32,
    /// Different emojis one message may carry as reactions (each by any number of members).
    pub max_reaction_emojis: usize,
    /// People in one direct conversation, its opener included (2 for one-to-one; more for a
    /// group conversation).
    pub max_direct_members: usize,
    /// Messages pinned in one room at a time.
    pub max_pinned_per_room: u32,
}

impl Limits {
    /// The largest frame a socket accepts: the configured size, and never less than a `send`
    /// frame carrying the longest message allowed with every character JSON-escaped
    /// (`\uXXXX`, 6 bytes; a character outside the BMP is a surrogate pair, 12 bytes for
    /// 2 UTF-16 units but 1 character, so 12 per character at worst) plus the frame's fields.
    pub fn ws_frame_bytes(&self) -> usize {
        self.max_ws_frame_bytes
            .max(self.max_message_chars * 12 + FRAME_FIELDS_BYTES)
    }

    /// The largest WebSocket message (a frame or several): never less than one frame.
    pub fn ws_message_bytes(&self) -> usize {
        self.max_ws_message_bytes.max(self.ws_frame_bytes())
    }
}

/// Room for a `send` frame's other fields (type, room id, client_msg_id, ref).
const FRAME_FIELDS_BYTES: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_chars: 4000,
            min_username_chars: 3,
            max_username_chars: 32,
            min_password_chars: 8,
            max_password_chars: 128,
            max_room_name_chars: 32,
            max_description_chars: 1000,
            max_join_message_chars: 500,
            max_body_bytes: 64 * 1024,
            max_ws_frame_bytes: 16 * 1024,
            max_ws_message_bytes: 64 * 1024,
            ws_read_buffer_bytes: 1024,
            outbound_queue_frames: 512,
            socket_send_buffer_bytes: 32 * 1024,
            send_rate_per_sec: 10.0,
            send_burst: 20.0,
            typing_rate_per_sec: 2.0,
            typing_burst: 5.0,
            subscribe_rate_per_sec: 20.0,
            subscribe_burst: 200.0,
            max_rate_violations: 20,
            max_rooms_per_socket: 200,
            max_file_bytes: 10 * 1024 * 1024,
            concurrent_uploads: 4,
            upload_bytes_per_minute: 100 * 1024 * 1024,
            max_files_per_message: 10,
            file_hold_secs: 3600,
            max_sockets_per_user: 20,
            ping_interval_secs: 10,
            idle_timeout_secs: 20,
            session_idle_secs: 3600,
            session_absolute_secs: 7 * 24 * 3600,
            login_attempts_per_ip_per_minute: 10,
            registrations_per_ip_per_minute: 10,
            login_failures_before_backoff: 5,
            login_backoff_max_secs: 900,
            max_history_page: 200,
            max_reaction_emojis: 20,
            max_direct_members: 8,
            max_pinned_per_room: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_client_is_offline_within_thirty_seconds() {
        // The idle check runs at each ping: the worst case is a ping interval past the timeout.
        let l = Limits::default();
        assert!(l.ping_interval_secs + l.idle_timeout_secs <= 30);
    }
}
