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

    livechat_conformance::directory_suite!(
        async { Some(open(&db("directory.db"))) },
        |a: &Arc<SqliteDirectory>| {
            let path = a.path().to_path_buf();
            async move { open(&path) }
        },
        livechat_conformance::directory::outbox_bodies
    );
    livechat_conformance::sessions_suite!(async { Some(open(&db("directory.db"))) });
}

/// The embedded store: directory, log and history in one file, records appended to the log in
/// the change's own transaction, history and notifications kept inline.
mod store {
    use super::*;
    use livechat_sinks::embedded::{EmbeddedStore, FollowedHistory, ReadModelMappings};

    fn open(dir: &std::path::Path) -> EmbeddedStore {
        EmbeddedStore::open(dir, 4, ReadModelMappings::default()).unwrap()
    }

    fn fresh() -> EmbeddedStore {
        open(&tempfile::tempdir().expect("temp dir").keep())
    }

    async fn written(d: Arc<SqliteDirectory>, topic: String) -> Vec<String> {
        let log = d.log().expect("the store's directory appends to its log");
        livechat_conformance::directory::log_bodies(&log, &topic).await
    }

    mod directory {
        use super::*;
        livechat_conformance::directory_suite!(
            async { Some(fresh().directory) },
            |a: &Arc<SqliteDirectory>| {
                let dir = a.path().parent().unwrap().to_path_buf();
                async move { open(&dir).directory }
            },
            written
        );
        livechat_conformance::sessions_suite!(async { Some(fresh().directory) });
    }

    mod log {
        use super::*;
        livechat_conformance::log_suite!(async { Some(fresh().log) });
    }

    mod history {
        use super::*;
        fn history() -> FollowedHistory {
            FollowedHistory::clone(&fresh().history)
        }
        livechat_conformance::history_suite!(
            async { Some(history()) },
            async { Some(history()) },
            async { history() }
        );
    }
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

mod files {
    use livechat_sinks::files::LocalFiles;
    livechat_conformance::files_suite!(async {
        let dir = tempfile::tempdir().unwrap().keep();
        Some(LocalFiles::open(dir).unwrap())
    });
}

mod cache {
    use super::*;
    livechat_conformance::cache_suite!(async { Some(MemoryCache::new(1000)) });
}
