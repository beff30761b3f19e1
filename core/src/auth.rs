//! Password hashing (argon2id, OWASP parameters) and login throttling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::AppError;

/// Hashes a password into a PHC string. CPU-heavy: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("encoding salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("hashing password: {e}")))
}

/// Verifies a password against a PHC string (constant-time inside argon2).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the username does not exist so that
/// unknown and known usernames take the same time.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

/// Per-IP attempt window and per-account exponential backoff after repeated failures.
/// In-process state, bounded: the maps are pruned when they grow past `MAX_TRACKED`.
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
    accounts: HashMap<String, (u32, Instant)>,
}

const MAX_TRACKED: usize = 100_000;

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

    /// Counts an attempt; errors with 429 when the IP or the account must wait.
    pub fn check(&self, ip: Option<IpAddr>, username: &str) -> Result<(), AppError> {
        let now = Instant::now();
        // std Mutex: no .await while held.
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.ip_windows.len() > MAX_TRACKED {
            st.ip_windows
                .retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        if let Some(ip) = ip {
            let entry = st.ip_windows.entry(ip).or_insert((now, 0));
            if now.duration_since(entry.0) >= Duration::from_secs(60) {
                *entry = (now, 0);
            }
            entry.1 += 1;
            if entry.1 > self.per_ip_per_minute {
                let wait = 60u64
                    .saturating_sub(now.duration_since(entry.0).as_secs())
                    .max(1);
                return Err(AppError::TooManyRequests {
                    message: "Too many login attempts from this address; try again later".into(),
                    retry_after_secs: wait,
                });
            }
        }
        if let Some((failures, last)) = st.accounts.get(username) {
            if *failures >= self.failures_before_backoff {
                let exp = (*failures - self.failures_before_backoff).min(20);
                let wait = Duration::from_secs(1u64 << exp).min(self.backoff_max);
                let elapsed = now.duration_since(*last);
                if elapsed < wait {
                    return Err(AppError::TooManyRequests {
                        message: "Too many failed logins for this account; try again later".into(),
                        retry_after_secs: (wait - elapsed).as_secs().max(1),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, username: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.accounts.len() > MAX_TRACKED {
            let max = self.backoff_max;
            st.accounts.retain(|_, (_, last)| last.elapsed() < max);
        }
        let e = st
            .accounts
            .entry(username.to_string())
            .or_insert((0, Instant::now()));
        e.0 += 1;
        e.1 = Instant::now();
    }

    pub fn record_success(&self, username: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accounts
            .remove(username);
    }
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
    fn ip_window_and_account_backoff() {
        let t = LoginThrottle::new(3, 2, 60);
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..3 {
            t.check(Some(ip), "a").unwrap();
        }
        assert!(matches!(
            t.check(Some(ip), "a"),
            Err(AppError::TooManyRequests { .. })
        ));
        let t = LoginThrottle::new(100, 2, 60);
        t.record_failure("bob");
        t.check(None, "bob").unwrap();
        t.record_failure("bob");
        assert!(matches!(
            t.check(None, "bob"),
            Err(AppError::TooManyRequests { .. })
        ));
        t.record_success("bob");
        t.check(None, "bob").unwrap();
    }
}
