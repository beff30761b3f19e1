//! Crypto-shredding: what a person writes travels sealed under their own content key.
//!
//! A message's text (and a join request's note) is encrypted with AES-256-GCM under a key that
//! belongs to its author and lives only in the directory. The log, Kafka, a consumer's archive
//! and every replay hold the sealed bytes; deleting the key (account deletion) makes all of those
//! copies unreadable at once, with no rewrite of an append-only log.
//!
//! `RoomEvent.sealed`: byte [`FORMAT`], a 12-byte random nonce, then the ciphertext and its
//! 16-byte tag, of the JSON object [`SealedFields`]. The additional authenticated data is
//! `<subject_user_id>/<message_id or request_id>`: sealed text cannot be moved to another
//! message or person without failing to open.

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::RoomEvent;

/// A person's content key.
pub type ContentKey = [u8; 32];

/// The first byte of every sealed value (its layout's version).
pub const FORMAT: u8 = 1;

/// The fields a sealed value holds (absent ones are left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_message: Option<String>,
}

/// A fresh random key (from the operating system's source).
pub fn new_key() -> ContentKey {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

fn cipher(key: &ContentKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is an AES-256 key"))
}

fn additional_data(ev: &RoomEvent) -> Vec<u8> {
    let subject = ev.subject_user_id.as_deref().unwrap_or_default();
    let item = ev
        .message_id
        .as_deref()
        .or(ev.request_id.as_deref())
        .unwrap_or_default();
    format!("{subject}/{item}").into_bytes()
}

impl RoomEvent {
    /// Seals what the subject wrote under `key` (the subject's). The clear fields stay in this
    /// copy for the process's own consumers; the log gets only the sealed value (see
    /// [`crate::codec::encode_room_event`]).
    pub fn seal(&mut self, key: &ContentKey) {
        let fields = SealedFields {
            content: self.content.clone(),
            request_message: self.request_message.clone(),
        };
        if fields == SealedFields::default() {
            return;
        }
        // A random nonce per seal, from the thread's CSPRNG (no system call per message): with
        // 96 bits, after 2^32 texts under one key the chance of any nonce repeating is ~2^-33.
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut body = serde_json::to_vec(&fields).expect("two strings serialize");
        cipher(key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(additional_data(self)),
                &mut body,
            )
            .expect("AES-GCM seals any message of this size");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + body.len());
        sealed.push(FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        self.sealed = Some(sealed);
    }

    /// Opens a decoded event's sealed value with its subject's key, filling the clear fields.
    /// False when it cannot be opened (the key was erased, or the value was altered): the
    /// fields stay empty, as for an erased person.
    pub fn open(&mut self, key: &ContentKey) -> bool {
        let Some(sealed) = self.sealed.as_deref() else {
            return true;
        };
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT {
            return false;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .expect("the slice is a nonce's length");
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let aad = Aad::from(additional_data(self));
        let Ok(clear) = cipher(key).open_in_place(nonce, aad, &mut body) else {
            return false;
        };
        let Ok(fields) = serde_json::from_slice::<SealedFields>(clear) else {
            return false;
        };
        self.content = fields.content;
        self.request_message = fields.request_message;
        true
    }

    /// Whether what the subject wrote is sealed but not open here (its key is erased, or it
    /// was not opened).
    pub fn sealed_shut(&self) -> bool {
        self.sealed.is_some() && self.content.is_none() && self.request_message.is_none()
    }

    /// The subject whose key seals the event, if it is sealed.
    pub fn sealed_by(&self) -> Option<&str> {
        self.sealed.as_ref().and(self.subject_user_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> RoomEvent {
        RoomEvent {
            event_type: "MESSAGE_SENT".into(),
            subject_user_id: Some("u1".into()),
            message_id: Some("m1".into()),
            content: Some(text.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_sealed_text_opens_with_its_key_only() {
        let key = new_key();
        let mut ev = message("the secret recipe");
        ev.seal(&key);
        let sealed = ev.sealed.clone().unwrap();
        assert_eq!(sealed[0], FORMAT);
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "no clear text in the sealed bytes"
        );

        let mut logged = RoomEvent {
            content: None,
            ..ev.clone()
        };
        assert!(logged.sealed_shut());
        assert!(!logged.open(&new_key()), "another key does not open it");
        assert_eq!(logged.content, None);
        assert!(logged.open(&key));
        assert_eq!(logged.content.as_deref(), Some("the secret recipe"));

        // Moved onto another message, it no longer opens.
        let mut moved = RoomEvent {
            content: None,
            message_id: Some("m2".into()),
            ..ev.clone()
        };
        assert!(!moved.open(&key));
        // Altered by a byte, neither.
        let mut altered = RoomEvent {
            content: None,
            ..ev
        };
        let last = altered.sealed.as_mut().unwrap().last_mut().unwrap();
        *last ^= 1;
        assert!(!altered.open(&key));
    }

    #[test]
    fn two_seals_of_one_text_differ() {
        let key = new_key();
        let (mut a, mut b) = (message("same"), message("same"));
        a.seal(&key);
        b.seal(&key);
        assert_ne!(a.sealed, b.sealed, "a fresh nonce each time");
    }
}
