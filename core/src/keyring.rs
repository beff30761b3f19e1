//! Each person's content key, between the directory that keeps it and the code that seals and
//! opens what they write (see `livechat_schemas::sealed`).
//!
//! Keys are read on the path of every send and every record a processor decodes, so they are
//! held in memory. In embedded mode the directory is in this process and every key is loaded
//! at start ([`Keyring::complete`]): a key not held is an erased one, and opening never waits.
//! In distributed mode keys are fetched for each batch that needs them and kept for
//! [`REFRESH`], so an erasure made by another process is honoured here within that time.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use livechat_schemas::sealed::ContentKey;
use livechat_schemas::{RoomEvent, TopicEvent};
use uuid::Uuid;

use crate::error::{AppError, StoreError, StoreResult};
use crate::model::UserId;
use crate::ports::Directory;

/// How long a process that does not hold every key trusts one it fetched.
pub const REFRESH: Duration = Duration::from_secs(300);
/// Most keys a process that fetches them holds (beyond, it starts again from none).
const MOST_HELD: usize = 200_000;

#[derive(Clone, Copy)]
enum Held {
    Key(ContentKey, Instant),
    /// Erased by this process (or known erased): never fetched again.
    Erased,
}

pub struct Keyring {
    /// Where keys are made, fetched and erased: given once the directory is open (the embedded
    /// store opens its read models, which open sealed events, before its directory exists).
    directory: OnceLock<Arc<dyn Directory>>,
    held: RwLock<HashMap<UserId, Held>>,
    /// Every key of the directory is held (embedded mode).
    complete: bool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A keyring that fetches keys from its directory as they are needed.
    pub fn fetching() -> Arc<Self> {
        Arc::new(Keyring {
            directory: OnceLock::new(),
            held: RwLock::new(HashMap::new()),
            complete: false,
        })
    }

    /// A keyring holding every key there is, `keys`, read from a directory in this process
    /// before anything opens an event with it.
    pub fn complete(keys: Vec<(UserId, ContentKey)>) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Keyring {
            directory: OnceLock::new(),
            held: RwLock::new(
                keys.into_iter()
                    .map(|(u, k)| (u, Held::Key(k, now)))
                    .collect(),
            ),
            complete: true,
        })
    }

    /// Gives the keyring its directory (once; a second is ignored).
    pub fn attach(&self, directory: Arc<dyn Directory>) {
        let _ = self.directory.set(directory);
    }

    fn directory(&self) -> Result<&Arc<dyn Directory>, StoreError> {
        self.directory.get().ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!("the keyring has no directory attached"))
        })
    }

    fn cached(&self, user: UserId) -> Option<Held> {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        match held.get(&user) {
            Some(Held::Key(_, at)) if !self.complete && at.elapsed() > REFRESH => None,
            other => other.copied(),
        }
    }

    fn hold(&self, user: UserId, h: Held) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        if !self.complete && held.len() >= MOST_HELD {
            held.retain(|_, h| matches!(h, Held::Erased));
        }
        held.insert(user, h);
    }

    /// The key to seal what `user` writes, made on their first use. An erased (or unknown)
    /// account has none: it can no longer write.
    pub async fn sealing_key(&self, user: UserId) -> Result<ContentKey, AppError> {
        match self.cached(user) {
            Some(Held::Key(k, _)) => return Ok(k),
            Some(Held::Erased) => return Err(erased()),
            None => {}
        }
        match self.directory()?.content_key(user).await? {
            Some(k) => {
                self.hold(user, Held::Key(k, Instant::now()));
                Ok(k)
            }
            None => Err(erased()),
        }
    }

    /// Seals what the event's subject wrote with the subject's key.
    pub async fn seal(&self, ev: &mut RoomEvent) -> Result<(), AppError> {
        let Some(subject) = ev.subject_user_id.as_deref().and_then(|s| s.parse().ok()) else {
            return Ok(());
        };
        let key = self.sealing_key(subject).await?;
        ev.seal(&key);
        Ok(())
    }

    /// Opens a decoded event with the keys held now (never waits): false when it stays shut
    /// (its subject's key is erased, or not fetched: see [`Keyring::fetch_for`]).
    pub fn open(&self, ev: &mut RoomEvent) -> bool {
        if !ev.sealed_shut() {
            return true;
        }
        let Some(subject) = ev.sealed_by().and_then(|s| s.parse::<Uuid>().ok()) else {
            return false;
        };
        match self.cached(subject) {
            Some(Held::Key(k, _)) => ev.open(&k),
            _ => false,
        }
    }

    /// Decodes a record read back from the log and opens it with the keys held now.
    pub fn decode(
        &self,
        payload: &[u8],
    ) -> Result<TopicEvent, livechat_schemas::codec::CodecError> {
        let mut ev = livechat_schemas::codec::decode(payload)?;
        self.open_event(&mut ev);
        Ok(ev)
    }

    /// Opens a decoded record's event, if it is a room event.
    pub fn open_event(&self, ev: &mut TopicEvent) -> bool {
        match ev {
            TopicEvent::Room(r) => self.open(r),
            _ => true,
        }
    }

    /// Fetches the keys the shut events among `events` need that are not held (one directory
    /// read for the lot); with every key held, nothing.
    pub async fn fetch_for<'a>(
        &self,
        events: impl IntoIterator<Item = &'a TopicEvent>,
    ) -> StoreResult<()> {
        if self.complete {
            return Ok(());
        }
        let mut missing: Vec<UserId> = events
            .into_iter()
            .filter_map(|e| match e {
                TopicEvent::Room(r) if r.sealed_shut() => r.sealed_by()?.parse().ok(),
                _ => None,
            })
            .filter(|u| self.cached(*u).is_none())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        for (u, k) in self.directory()?.content_keys(Some(&missing)).await? {
            self.hold(u, Held::Key(k, now));
        }
        Ok(())
    }

    /// Forgets `user`'s key for good: their account is erased.
    pub fn forget(&self, user: UserId) {
        self.hold(user, Held::Erased);
    }
}

fn erased() -> AppError {
    AppError::Unauthorized("This account was deleted".into())
}
