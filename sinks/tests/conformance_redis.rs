//! The Redis sessions and presence adapters against the shared conformance suite, on a real
//! server (`scripts/dev-services up redis`; URL in `LIVECHAT_REDIS_URL`).
#![cfg(feature = "redis")]

use std::sync::Arc;

use livechat_sinks::embedded::SqliteDirectory;
use livechat_sinks::redis::{Redis, RedisConfig, RedisPresence, RedisSessions};

/// A client with a namespace of its own.
async fn redis() -> Option<Redis> {
    let url = livechat_conformance::server_env("LIVECHAT_REDIS_URL", "redis")?;
    let cfg = RedisConfig {
        url,
        namespace: format!("conformance:{}:", uuid::Uuid::new_v4().simple()),
    };
    Some(Redis::connect(&cfg).await.expect("Redis"))
}

mod sessions {
    use super::*;

    /// Sessions in Redis; their login/logout records go to a directory's outbox.
    async fn sessions() -> Option<Arc<RedisSessions>> {
        let r = redis().await?;
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let outbox = Arc::new(SqliteDirectory::open(&dir.join("directory.db")).unwrap());
        Some(Arc::new(RedisSessions::new(r, outbox)))
    }

    livechat_conformance::sessions_suite!(sessions());
}

mod presence {
    use super::*;
    livechat_conformance::presence_suite!(async { redis().await.map(RedisPresence::new) });
}
