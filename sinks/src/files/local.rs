//! Files on local disk: each key is a file under the root (`rooms/<room>/<sha256>` →
//! `<root>/rooms/<room>/<sha256>`). A file is written beside its final name, flushed to disk, then
//! renamed over it and its directory flushed: a reader sees the old file or the whole new one,
//! and a crash leaves at most a stray `*.partial` file, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use livechat_core::error::{StoreError, StoreResult};
use livechat_core::ports::FileStore;

pub struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    pub fn open(root: impl Into<PathBuf>) -> anyhow::Result<LocalFiles> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the files directory {}", root.display()))?;
        Ok(LocalFiles { root })
    }

    /// The key's path; keys are checked so none can reach outside the root.
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        Ok(self.root.join(super::checked(key)?))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("{what} {}: {e}", path.display()))
}

fn write_whole(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let dir = path.parent().expect("a key's path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let partial = path.with_extension(format!("{}.partial", uuid::Uuid::new_v4().simple()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&partial, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io("writing", path, e)
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Other(anyhow::anyhow!("file task failed: {e}")))?
}

#[async_trait]
impl FileStore for LocalFiles {
    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        blocking(move || write_whole(&path, &bytes)).await
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        let path = self.path(key)?;
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path, e)),
        })
        .await
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        let path = self.path(key)?;
        blocking(move || path.try_exists().map_err(|e| io("checking", &path, e))).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("deleting", &path, e)),
        })
        .await
    }
}
