//! Password hashing (argon2id, OWASP parameters) and login throttling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::AppError;

thread_local! {
    /// The argon2 working memory of this thread (19 MiB with the default parameters), kept
    /// between hashes: each hash would otherwise allocate and free it, and the allocator keeps
    /// such blocks per thread arena (60 concurrent registrations left 190 MiB behind).
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs argon2 with this thread's working memory; `out` receives the raw hash.
fn argon2_into(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    BLOCKS.with_borrow_mut(|blocks| {
        blocks.resize(params.block_count(), Block::default());
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..])
    })
}

/// Hashes a password into a PHC string (argon2id v19, the crate's default = OWASP parameters).
/// CPU-heavy: call it off the async threads ([`Hashing`]).
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let err = |e: &dyn std::fmt::Display| AppError::Internal(anyhow::anyhow!("hashing: {e}"));
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| err(&e))?;
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt.decode_b64(&mut raw_salt).map_err(|e| err(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, &params, password.as_bytes(), raw_salt, &mut out).map_err(|e| err(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e| err(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| err(&e))?),
    };
    Ok(phc.to_string())
}

/// Verifies a password against a PHC string, with the parameters it names (constant-time
/// comparison: `Output`'s equality).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let mut raw_salt = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    argon2_into(&argon, &params, password.as_bytes(), raw_salt, &mut out).is_ok()
        && Output::new(&out).is_ok_and(|got| got == expected)
}

/// Password hashing off the async threads, on a few threads of its own: an argon2 hash takes
/// ~19 MiB and tens of milliseconds, so unbounded concurrent registrations or logins would take
/// memory and cores without limit (200 at once took 3.4 GB). The rest wait their turn. Dedicated
/// threads rather than the blocking pool: each thread that hashes keeps its allocator arena
/// (and the 19 MiB in it), so a pool that grows to dozens of threads keeps dozens of them.
#[derive(Debug)]
pub struct Hashing {
    jobs: tokio::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Hashing {
    /// `threads` hashes at a time (at least one); as many more wait in the queue, the rest wait
    /// to enter it.
    pub fn new(threads: usize) -> Hashing {
        let threads = threads.max(1);
        let (jobs, rx) = tokio::sync::mpsc::channel::<Job>(threads);
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hashing-{i}"))
                .spawn(move || loop {
                    // The lock is held while waiting: one thread waits, the others queue for it.
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                    match job {
                        Some(job) => job(),
                        None => return, // the service is gone
                    }
                })
                .expect("spawn a password hashing thread");
        }
        Hashing { jobs }
    }

    /// One per core.
    pub fn per_core() -> Hashing {
        Hashing::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub async fn hash(&self, password: &str) -> Result<String, AppError> {
        let pw = password.to_string();
        self.run(move || hash_password(&pw)).await?
    }

    /// Checks `password` against the account's hash; without an account, against a dummy hash,
    /// so that unknown and known usernames take the same time.
    pub async fn verify(&self, password: &str, phc: Option<String>) -> Result<bool, AppError> {
        let pw = password.to_string();
        self.run(move || {
            let ok = verify_password(&pw, phc.as_deref().unwrap_or_else(|| dummy_hash()));
            ok && phc.is_some()
        })
        .await
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, AppError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f()); // the request may have gone away meanwhile
            }))
            .await
            .map_err(|_| {
                AppError::Internal(anyhow::anyhow!("password hashing threads are gone"))
            })?;
        rx.await
            .map_err(|_| AppError::Internal(anyhow::anyhow!("password hashing job failed")))
    }
}

/// A hash of a random password, verified against when the username does not exist.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

/// Login throttling: per source address, a one-minute window of *failed* logins; per account
/// *and* source, exponential backoff after repeated failures. A stranger's wrong passwords slow
/// only that stranger (the owner's correct login from elsewhere is never locked out), and a
/// successful login costs nothing. Also a plain per-address window for other costly requests
/// (registrations, [`LoginThrottle::check_ip`]). In-process state, bounded: the maps are pruned
/// when they grow past `MAX_TRACKED`.
#[derive(Debug)]
pub struct LoginThrottle {
    per_ip_per_minute: u32,
    failures_before_backoff: u32,
    backoff_max: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    ip_windows: HashMap<IpAddr, (Instant, u32)>,
    /// (account, source) → (failures in a row, last failure).
    accounts: HashMap<(String, Option<IpAddr>), (u32, Instant)>,
}

const MAX_TRACKED: usize = 100_000;
const WINDOW: Duration = Duration::from_secs(60);

impl ThrottleState {
    /// The current window of `ip` (a new one when the last began a minute ago or more).
    fn window(&mut self, ip: IpAddr, now: Instant) -> &mut (Instant, u32) {
        if self.ip_windows.len() > MAX_TRACKED {
            self.ip_windows
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let entry = self.ip_windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry
    }
}

impl LoginThrottle {
    pub fn new(
        per_ip_per_minute: u32,
        failures_before_backoff: u32,
        backoff_max_secs: u64,
    ) -> Self {
        LoginThrottle {
            per_ip_per_minute,
            failures_before_backoff,
            backoff_max: Duration::from_secs(backoff_max_secs),
            state: Mutex::new(ThrottleState::default()),
        }
    }

    fn refused(&self, what: &str, window: (Instant, u32), now: Instant) -> AppError {
        AppError::TooManyRequests {
            message: format!("Too many {what} from this address; try again later"),
            retry_after_secs: whole_secs_up(WINDOW.saturating_sub(now.duration_since(window.0))),
        }
    }

    /// Before a login: 429 when this address failed too often this minute, or when this
    /// account failed too often from this address.
    pub fn check(&self, ip: Option<IpAddr>, username: &str) -> Result<(), AppError> {
        let now = Instant::now();
        // std Mutex: no .await while held.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = ip {
            let window = *st.window(ip, now);
            if window.1 >= self.per_ip_per_minute {
                return Err(self.refused("failed logins", window, now));
            }
        }
        if let Some((failures, last)) = st.accounts.get(&(username.to_string(), ip)) {
            if *failures >= self.failures_before_backoff {
                let exp = (*failures - self.failures_before_backoff).min(20);
                let wait = Duration::from_secs(1u64 << exp).min(self.backoff_max);
                let elapsed = now.duration_since(*last);
                if elapsed < wait {
                    return Err(AppError::TooManyRequests {
                        message: "Too many failed logins for this account; try again later".into(),
                        retry_after_secs: whole_secs_up(wait - elapsed),
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts one request of `ip` (`what`, for the error) in its one-minute window; refused past
    /// the limit.
    pub fn check_ip(&self, ip: Option<IpAddr>, what: &str) -> Result<(), AppError> {
        let Some(ip) = ip else { return Ok(()) };
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let window = st.window(ip, now);
        window.1 += 1;
        if window.1 > self.per_ip_per_minute {
            let window = *window;
            return Err(self.refused(what, window, now));
        }
        Ok(())
    }

    /// A failed login: counted in the address's window and the account's backoff from it.
    pub fn record_failure(&self, ip: Option<IpAddr>, username: &str) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = ip {
            st.window(ip, now).1 += 1;
        }
        if st.accounts.len() > MAX_TRACKED {
            let max = self.backoff_max;
            st.accounts.retain(|_, (_, last)| last.elapsed() < max);
        }
        let e = st
            .accounts
            .entry((username.to_string(), ip))
            .or_insert((0, now));
        e.0 += 1;
        e.1 = now;
    }

    /// A successful login ends the account's backoff from that address.
    pub fn record_success(&self, ip: Option<IpAddr>, username: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accounts
            .remove(&(username.to_string(), ip));
    }
}

/// A wait in whole seconds, rounded up (at least 1): a client that waits `Retry-After` seconds
/// is then let in, never refused once more for a fraction of a second.
fn whole_secs_up(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_reject() {
        let h = hash_password("s3cret-пароль").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret-пароль", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn hashes_match_the_crates_own_phc_strings() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Hashes stored by the crate's own hasher verify here, and ours verify there.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"pw-secret-1", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("pw-secret-1", &theirs));
        assert!(!verify_password("pw-secret-2", &theirs));
        let ours = hash_password("pw-secret-1").unwrap();
        assert!(Argon2::default()
            .verify_password(b"pw-secret-1", &PasswordHash::new(&ours).unwrap())
            .is_ok());
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let hashing = Hashing::new(1);
        let h = hash_password("pw").unwrap();
        assert!(hashing.verify("pw", Some(h)).await.unwrap());
        assert!(!hashing.verify("pw", None).await.unwrap());
    }

    #[test]
    fn ip_window_counts_failures_and_backoff_is_per_account_and_source() {
        let t = LoginThrottle::new(3, 2, 60);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        // Successful logins are not counted in the address's window.
        for _ in 0..10 {
            t.check(Some(ip), "a").unwrap();
            t.record_success(Some(ip), "a");
        }
        // Failures are, on whatever account.
        for name in ["a", "b", "c"] {
            t.check(Some(ip), name).unwrap();
            t.record_failure(Some(ip), name);
        }
        assert!(matches!(
            t.check(Some(ip), "d"),
            Err(AppError::TooManyRequests { .. })
        ));

        let t = LoginThrottle::new(100, 2, 60);
        let (stranger, owner): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        t.record_failure(Some(stranger), "bob");
        t.check(Some(stranger), "bob").unwrap();
        t.record_failure(Some(stranger), "bob");
        assert!(matches!(
            t.check(Some(stranger), "bob"),
            Err(AppError::TooManyRequests { .. })
        ));
        // The stranger's failures do not lock bob out from his own address.
        t.check(Some(owner), "bob").unwrap();
        t.record_success(Some(stranger), "bob");
        t.check(Some(stranger), "bob").unwrap();
    }

    #[test]
    fn retry_after_is_rounded_up() {
        assert_eq!(whole_secs_up(Duration::from_millis(1500)), 2);
        assert_eq!(whole_secs_up(Duration::from_secs(3)), 3);
        assert_eq!(whole_secs_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs_up(Duration::ZERO), 1);
    }
}
