//! SASL/PLAIN (RFC 4616) over the Kafka protocol: the operator's credentials from the
//! configuration, compared by their SHA-256 digests so the comparison takes the same time
//! whatever the guess.

use sha2::{Digest, Sha256};

/// The one user name and password the listener accepts.
#[derive(Clone)]
pub struct Credentials {
    username: [u8; 32],
    password: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(..)")
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Self {
        Credentials {
            username: digest(username.as_bytes()),
            password: digest(password.as_bytes()),
        }
    }

    /// Checks a PLAIN message: `[authzid] NUL authcid NUL passwd`. An authorization identity,
    /// when given, must be the user itself (there is no one else to act as).
    pub fn check_plain(&self, message: &[u8]) -> bool {
        let mut parts = message.split(|b| *b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let user_ok = same(&digest(user), &self.username);
        let pass_ok = same(&digest(pass), &self.password);
        let authz_ok = authz.is_empty() || authz == user;
        user_ok & pass_ok & authz_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_accepts_only_the_configured_pair() {
        let c = Credentials::new("ops", "s3cret-long");
        assert!(c.check_plain(b"\0ops\0s3cret-long"));
        assert!(c.check_plain(b"ops\0ops\0s3cret-long"));
        assert!(!c.check_plain(b"\0ops\0s3cret-lonG"));
        assert!(!c.check_plain(b"\0alice\0s3cret-long"));
        assert!(
            !c.check_plain(b"bob\0ops\0s3cret-long"),
            "acting as someone else"
        );
        assert!(
            !c.check_plain(b"ops\0s3cret-long"),
            "no separator for the authzid"
        );
        assert!(!c.check_plain(b"\0ops\0s3cret-long\0more"));
        assert!(!c.check_plain(b""));
    }
}
