//! Where shared files are kept ([`livechat_core::ports::FileStore`]): a directory on local disk
//! (`local.rs`, one file per key), or a bucket of an S3-compatible object store (`s3.rs`, one
//! object per key; `--features s3`).

mod local;
#[cfg(feature = "s3")]
mod s3;

pub use local::LocalFiles;
#[cfg(feature = "s3")]
pub use s3::S3Files;

use livechat_core::error::{StoreError, StoreResult};

/// Checks a key: `/`-separated names of letters, digits, `-` and `.`, none empty or starting
/// with a dot, so no key reaches outside the store's root or prefix.
fn checked(key: &str) -> StoreResult<&str> {
    let ok = !key.is_empty()
        && key.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        });
    if ok {
        Ok(key)
    } else {
        Err(StoreError::Other(anyhow::anyhow!(
            "not a file key: {key:?}"
        )))
    }
}
