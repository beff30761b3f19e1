//! The embedded (SQLite, in-process) adapters against the shared conformance suite.

use std::sync::Arc;

use livechat_sinks::embedded::{SqliteAnalytics, SqliteDirectory, SqliteHistory, SqliteLog};
use livechat_sinks::memory::MemoryCache;

/// A fresh database file per test, kept until the process exits.
fn db(name: &str) -> std::path::PathBuf {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    dir.join(name)
}

mod directory {
    use super::*;

    fn open(path: &std::path::Path) -> Arc<SqliteDirectory> {
        Arc::new(SqliteDirectory::open(path).unwrap())
    }

    livechat_conformance::directory_suite!(async { Some(open(&db("directory.db"))) }, |a: &Arc<
        SqliteDirectory,
    >| {
        let path = a.path().to_path_buf();
        async move { open(&path) }
    });
    livechat_conformance::sessions_suite!(async { Some(open(&db("directory.db"))) });
}

mod log {
    use super::*;
    livechat_conformance::log_suite!(async { Some(SqliteLog::open(&db("log.db"), 4).unwrap()) });
}

mod history {
    use super::*;
    fn fresh() -> SqliteHistory {
        SqliteHistory::open(&db("history.db")).unwrap()
    }
    livechat_conformance::history_suite!(async { Some(fresh()) }, async { Some(fresh()) }, async {
        fresh()
    });
}

mod analytics {
    use super::*;
    fn fresh() -> SqliteAnalytics {
        SqliteAnalytics::open(&db("analytics.db")).unwrap()
    }
    livechat_conformance::analytics_suite!(
        async { Some(fresh()) },
        async { Some(fresh()) },
        async { fresh() }
    );
}

mod cache {
    use super::*;
    livechat_conformance::cache_suite!(async { Some(MemoryCache::new(1000)) });
}
