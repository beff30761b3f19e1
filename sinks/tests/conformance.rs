//! The embedded (SQLite) adapters against the shared conformance suite.

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
    livechat_conformance::suite!(
        directory,
        async { Arc::new(SqliteDirectory::open(&db("directory.db")).unwrap()) },
        [
            usernames_and_room_names_are_unique,
            memberships_count_participants_once,
            join_requests_are_unique_and_handled_once,
            concurrent_sends_get_dense_unique_seqs,
            concurrent_joins_are_all_kept,
            a_repeated_client_msg_id_returns_the_first_receipt,
            outbox_holds_the_records_of_each_change_in_order,
            notifications_are_idempotent_and_owned,
            read_markers_only_move_forward,
            deleting_a_room_removes_its_memberships_and_requests,
            search_is_literal_and_hides_private_rooms,
            sessions_can_be_created_extended_and_deleted,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_share_one_dense_seq() {
    let path = db("directory.db");
    let a = Arc::new(SqliteDirectory::open(&path).unwrap());
    let b = Arc::new(SqliteDirectory::open(&path).unwrap());
    livechat_conformance::directory::two_writers_share_one_dense_seq(&a, &b).await;
}

mod log {
    use super::*;
    livechat_conformance::suite!(
        log,
        async { SqliteLog::open(&db("log.db"), 4).unwrap() },
        [
            records_of_a_key_stay_in_order_in_one_partition,
            offsets_are_dense_and_end_offset_is_next,
            group_offsets_are_per_group_and_survive,
            offset_for_time_seeks_by_timestamp,
            appends_wake_waiting_consumers,
            a_group_resumes_after_its_committed_offsets,
            headers_round_trip,
        ]
    );
}

mod history {
    use super::*;
    livechat_conformance::suite!(
        history,
        async { SqliteHistory::open(&db("history.db")).unwrap() },
        [
            inserts_are_idempotent,
            pages_by_seq_in_both_directions,
            edits_and_deletes_are_idempotent_and_keep_seqs_dense,
            rooms_are_isolated_and_purge_removes_one_room,
            pages_cross_partition_boundaries,
        ]
    );
}

mod analytics {
    use super::*;
    livechat_conformance::suite!(
        analytics,
        async { SqliteAnalytics::open(&db("analytics.db")).unwrap() },
        [
            an_event_counts_once_however_often_it_is_inserted,
            room_and_user_views,
            global_views_are_well_formed,
        ]
    );
}

mod cache {
    use super::*;
    livechat_conformance::suite!(
        cache,
        async { MemoryCache::new(1000) },
        [get_after_set_and_miss_after_delete, entries_expire]
    );
}
