//! Files as objects in a bucket of an S3-compatible store (AWS S3, SeaweedFS, MinIO, Ceph, …),
//! through the `object_store` crate. An object is written whole by one PUT, so a reader never
//! sees half a file, and it is durable once the store answers.

use async_trait::async_trait;
use bytes::Bytes;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::ports::FileStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use crate::config::S3Config;

pub struct S3Files {
    store: AmazonS3,
    /// Prepended to every key (several deployments may share a bucket).
    prefix: String,
}

impl S3Files {
    /// A client for the bucket (no request is made: a wrong setting shows at the first use).
    /// Credentials not in the settings come from the `AWS_*` environment variables.
    pub fn open(cfg: &S3Config) -> anyhow::Result<S3Files> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region);
        if !cfg.endpoint.is_empty() {
            // A store of one's own (not AWS): addressed by path, plain HTTP allowed on it.
            b = b
                .with_endpoint(&cfg.endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(cfg.endpoint.starts_with("http://"));
        }
        if !cfg.access_key_id.is_empty() {
            b = b
                .with_access_key_id(&cfg.access_key_id)
                .with_secret_access_key(&cfg.secret_access_key);
        }
        let store = b
            .build()
            .map_err(|e| anyhow::anyhow!("the S3 bucket {:?}: {e}", cfg.bucket))?;
        Ok(S3Files {
            store,
            prefix: cfg.prefix.trim_matches('/').to_string(),
        })
    }

    fn path(&self, key: &str) -> StoreResult<Path> {
        let key = super::checked(key)?;
        Ok(match self.prefix.is_empty() {
            true => Path::from(key),
            false => Path::from(format!("{}/{key}", self.prefix)),
        })
    }
}

/// Any failure of the store (network, throttling, a server error, a refused request) makes it
/// unavailable to the caller (503: retry later); keys are checked before any request.
fn failed(what: &str, key: &str, e: object_store::Error) -> StoreError {
    let e = anyhow::anyhow!("{what} {key:?} in S3: {e}");
    StoreError::Unavailable(e)
}

#[async_trait]
impl FileStore for S3Files {
    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| failed("writing", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        let path = self.path(key)?;
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(|e| failed("reading", key, e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("reading", key, e)),
        }
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed("checking", key, e)),
        }
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("deleting", key, e)),
        }
    }
}
