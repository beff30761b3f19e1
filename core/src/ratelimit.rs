//! Token buckets: one per connection for what a socket does (typing, subscribing), and one per
//! user, shared by every socket and REST call of that user, for sends.

use std::collections::HashMap;
use std::time::Instant;

use crate::model::UserId;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        TokenBucket {
            rate: rate_per_sec,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last: Instant::now(),
        }
    }

    /// Takes a token if one is available.
    pub fn try_take(&mut self) -> bool {
        self.try_take_n(1.0)
    }

    /// Takes `n` tokens if that many are available (a bucket counting bytes takes a file's).
    pub fn try_take_n(&mut self, n: f64) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Most tokens the bucket holds.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Whole seconds until a token is available (at least 1).
    pub fn wait_secs(&self) -> u64 {
        self.wait_secs_for(1.0)
    }

    /// Whole seconds until `n` tokens are available (at least 1).
    pub fn wait_secs_for(&self, n: f64) -> u64 {
        let missing = (n.min(self.burst) - self.tokens).max(0.0);
        ((missing / self.rate.max(f64::MIN_POSITIVE)).ceil() as u64).max(1)
    }

    /// Full again: a bucket in this state carries no information and can be forgotten.
    fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate >= self.burst
    }
}

/// A bucket per user (std Mutex: never held across `.await`). Bounded: past `MAX_USERS`
/// entries, the buckets that have refilled are forgotten.
#[derive(Debug)]
pub struct PerUser {
    rate: f64,
    burst: f64,
    buckets: std::sync::Mutex<HashMap<UserId, TokenBucket>>,
}

const MAX_USERS: usize = 100_000;

impl PerUser {
    pub fn new(rate_per_sec: f64, burst: f64) -> PerUser {
        PerUser {
            rate: rate_per_sec,
            burst,
            buckets: Default::default(),
        }
    }

    /// Takes one of `user`'s tokens; Err with the seconds to wait when there is none.
    pub fn try_take(&self, user: UserId) -> Result<(), u64> {
        self.try_take_n(user, 1.0)
    }

    /// Takes `n` of `user`'s tokens; Err with the seconds to wait until there are that many.
    pub fn try_take_n(&self, user: UserId, n: f64) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_USERS {
            let now = Instant::now();
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket = buckets
            .entry(user)
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst));
        if bucket.try_take_n(n) {
            Ok(())
        } else {
            Err(bucket.wait_secs_for(n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let mut b = TokenBucket::new(0.001, 3.0);
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take());
    }

    #[test]
    fn a_byte_bucket_takes_a_files_size_and_says_how_long_to_wait() {
        let per_user = PerUser::new(100.0, 1000.0);
        let a = uuid::Uuid::new_v4();
        assert!(per_user.try_take_n(a, 600.0).is_ok());
        // 400 left; 600 more are 200 short, two seconds at 100 a second.
        let wait = per_user.try_take_n(a, 600.0).unwrap_err();
        assert!((2..=3).contains(&wait), "{wait}");
        assert!(
            per_user.try_take_n(a, 300.0).is_ok(),
            "a smaller file still fits"
        );
    }

    #[test]
    fn users_have_buckets_of_their_own() {
        let per_user = PerUser::new(0.001, 2.0);
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert!(per_user.try_take(a).is_ok() && per_user.try_take(a).is_ok());
        assert!(per_user.try_take(a).unwrap_err() >= 1);
        assert!(per_user.try_take(b).is_ok());
    }
}
