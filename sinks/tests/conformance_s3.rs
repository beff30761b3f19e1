//! The S3 file store against the shared conformance suite, on a real S3-compatible server
//! (`scripts/dev-services up s3`: SeaweedFS; its URL in `LIVECHAT_S3_ENDPOINT`, the bucket in
//! `LIVECHAT_S3_BUCKET`). Each run writes under a fresh prefix.
#![cfg(feature = "s3")]

use livechat_sinks::config::S3Config;
use livechat_sinks::files::S3Files;

async fn s3() -> Option<S3Files> {
    let endpoint = livechat_conformance::server_env("LIVECHAT_S3_ENDPOINT", "s3")?;
    let cfg = S3Config {
        endpoint,
        bucket: std::env::var("LIVECHAT_S3_BUCKET").unwrap_or_else(|_| "livechat".into()),
        access_key_id: "livechat".into(),
        secret_access_key: "livechat-dev-secret".into(),
        prefix: format!("conformance-{}", uuid::Uuid::new_v4().simple()),
        ..S3Config::default()
    };
    Some(S3Files::open(&cfg).expect("S3 client"))
}

livechat_conformance::files_suite!(s3());
