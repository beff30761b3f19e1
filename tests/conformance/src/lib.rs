//! The shared conformance suite: what every adapter of a port must do, whatever its engine.
//!
//! Each module holds async checks over one port; the `*_suite!` macros at the bottom hold the one
//! list of checks per port and stamp them out as named `#[tokio::test]`s for an adapter, so a
//! failure reads as the broken behaviour and a new check reaches every adapter at once. An
//! adapter's test file is one macro call with an async block that makes a fresh adapter, or
//! `None` when its server is not there ([`server_env`]: a skip outside CI, a failure under CI).
//! Every check makes its own ids (a fresh room, user, topic or group), so the suite can run
//! against a shared real server without cleaning up between runs.

pub mod analytics;
pub mod cache;
pub mod directory;
pub mod files;
pub mod history;
pub mod log;
pub mod presence;

use chrono::{DateTime, Utc};
use livechat_core::model::*;
use uuid::Uuid;

/// A timestamp at millisecond precision (what every store keeps).
pub fn at(ms_offset: i64) -> DateTime<Utc> {
    livechat_core::from_ms(livechat_core::now().timestamp_millis() + ms_offset)
}

pub fn user(name_prefix: &str) -> User {
    let id = Uuid::new_v4();
    User {
        id,
        username: format!("{name_prefix}_{}", &id.simple().to_string()[..10]),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        last_active: None,
        created_at: at(0),
        updated_at: at(0),
    }
}

pub fn room(owner: UserId, public: bool) -> Room {
    let id = Uuid::new_v4();
    Room {
        id,
        name: format!("room-{}", &id.simple().to_string()[..12]),
        description: Some("a room".into()),
        is_public: public,
        unlisted: false,
        direct: false,
        created_by: owner,
        participants_count: 1,
        last_seq: 0,
        created_at: at(0),
        updated_at: at(0),
    }
}

pub fn message(room: RoomId, seq: i64, content: &str) -> StoredMessage {
    StoredMessage {
        id: Uuid::new_v4(),
        room_id: room,
        seq,
        user_id: Uuid::new_v4(),
        username: "someone".into(),
        content: content.into(),
        edited: false,
        deleted: false,
        created_at: at(seq),
        updated_at: at(seq),
        client_msg_id: Some(format!("c{seq}")),
        reply_to_seq: None,
        reactions: Vec::new(),
        pin: None,
        thread_root_seq: None,
        thread: None,
        attachments: Vec::new(),
    }
}

/// An outbox/log record with a recognisable payload.
pub fn record(topic: &str, key: &str, body: &str) -> OutboxRecord {
    OutboxRecord {
        event_id: Uuid::new_v4(),
        topic: topic.into(),
        key: key.into(),
        payload: body.as_bytes().to_vec(),
        created_at_ms: livechat_core::now().timestamp_millis(),
        headers: Vec::new(),
        event: None,
    }
}

/// The value of `var`, which names a real server for the distributed adapters' checks. Without
/// it the check is skipped with a note (a developer without that server), except under CI,
/// where a missing server is a failure.
pub fn server_env(var: &str, service: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide {var} (scripts/dev-services up {service})"
            );
            eprintln!("skipped: {var} is not set (run scripts/dev-services up {service})");
            None
        }
    }
}

/// Stamps out one `#[tokio::test]` per listed check; `$make` is an async block giving a fresh
/// adapter, or `None` to skip.
#[macro_export]
macro_rules! suite {
    ($module:ident, $make:expr, [$($check:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(adapter) = $make.await else { return };
                $crate::$module::$check(&adapter).await;
            }
        )*
    };
}

/// Every check of the directory port. `$beside` makes a second handle on the same store from
/// the first (another process sharing it); `$written` (an `async fn(Arc<A>, String) ->
/// Vec<String>`) reads back the payloads of the records the adapter wrote for a topic
/// ([`directory::outbox_bodies`] for an adapter with an outbox).
#[macro_export]
macro_rules! directory_suite {
    ($make:expr, $beside:expr, $written:expr) => {
        $crate::suite!(
            directory,
            $make,
            [
                usernames_and_room_names_are_unique,
                memberships_count_participants_once,
                join_requests_are_unique_and_handled_once,
                concurrent_sends_get_dense_unique_seqs,
                sends_each_started_once_the_previous_is_placed_keep_their_order,
                concurrent_joins_are_all_kept,
                a_repeated_client_msg_id_returns_the_first_receipt,
                notifications_are_idempotent_and_owned,
                mark_all_read_stops_at_its_time,
                read_markers_only_move_forward,
                thread_read_markers_only_move_forward_per_thread,
                thread_follow_choices_are_per_thread_and_user,
                messages_sequenced_elsewhere_raise_seqs_and_markers,
                deleting_a_room_removes_its_memberships_and_requests,
                search_is_literal_and_lists_private_rooms,
                shared_files_are_kept_while_held_or_claimed,
                content_keys_are_made_once_and_erased_with_the_account,
            ]
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn records_of_each_change_are_written_in_order() {
            let Some(a) = $make.await else { return };
            $crate::directory::records_of_each_change_are_written_in_order(&a, $written).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_writers_share_one_dense_seq() {
            let Some(a) = $make.await else { return };
            let b = ($beside)(&a).await;
            $crate::directory::two_writers_share_one_dense_seq(&a, &b, $written).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_handles_keep_every_concurrent_change_to_one_room() {
            let Some(a) = $make.await else { return };
            let b = ($beside)(&a).await;
            let later = ($beside)(&a).await;
            $crate::directory::two_handles_keep_every_concurrent_change_to_one_room(
                &a, &b, &later, $written,
            )
            .await;
        }
    };
}

/// Every check of the sessions port.
#[macro_export]
macro_rules! sessions_suite {
    ($make:expr) => {
        $crate::suite!(
            directory,
            $make,
            [sessions_can_be_created_extended_and_deleted]
        );
    };
}

/// Every check of the log port.
#[macro_export]
macro_rules! log_suite {
    ($make:expr) => {
        $crate::suite!(
            log,
            $make,
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
    };
}

/// Every check of the history port. `$make_empty` gives an adapter on a store of its own,
/// emptied first (the checksum covers the whole store); `$reference` the embedded adapter the
/// checksum must equal.
#[macro_export]
macro_rules! history_suite {
    ($make:expr, $make_empty:expr, $reference:expr) => {
        $crate::suite!(
            history,
            $make,
            [
                inserts_are_idempotent,
                pages_by_seq_in_both_directions,
                edits_and_deletes_are_idempotent_and_keep_seqs_dense,
                rooms_are_isolated_and_purge_removes_one_room,
                pages_cross_partition_boundaries,
                a_batch_of_long_messages_is_stored_whole,
                concurrent_sends_of_several_rooms_are_found_by_id,
                replies_and_reactions_are_kept_newest_change_first,
                pins_keep_the_newest_change,
                threads_count_live_replies_and_page_them,
                attachments_are_kept_until_the_message_is_deleted,
                messages_are_listed_by_author,
            ]
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn checksum_matches_the_reference_and_survives_replay() {
            let Some(store) = $make_empty.await else {
                return;
            };
            let reference = $reference.await;
            $crate::history::checksum_matches_the_reference_and_survives_replay(&store, &reference)
                .await;
        }
    };
}

/// Every check of the analytics port; `$make_empty` and `$reference` as for history.
#[macro_export]
macro_rules! analytics_suite {
    ($make:expr, $make_empty:expr, $reference:expr) => {
        $crate::suite!(
            analytics,
            $make,
            [
                an_event_counts_once_however_often_it_is_inserted,
                room_and_user_views,
                global_views_are_well_formed,
            ]
        );

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn views_and_checksum_match_the_reference() {
            let Some(store) = $make_empty.await else {
                return;
            };
            let reference = $reference.await;
            $crate::analytics::views_and_checksum_match_the_reference(&store, &reference).await;
        }
    };
}

/// Every check of the cache port.
#[macro_export]
macro_rules! cache_suite {
    ($make:expr) => {
        $crate::suite!(
            cache,
            $make,
            [get_after_set_and_miss_after_delete, entries_expire]
        );
    };
}

/// Every check of the file store port.
#[macro_export]
macro_rules! files_suite {
    ($make:expr) => {
        $crate::suite!(
            files,
            $make,
            [
                a_file_is_read_back_replaced_and_deleted,
                large_files_come_back_byte_for_byte,
                concurrent_writers_of_a_key_leave_one_whole_file,
                keys_cannot_leave_the_store,
            ]
        );
    };
}

/// Every check of the presence port.
#[macro_export]
macro_rules! presence_suite {
    ($make:expr) => {
        $crate::suite!(
            presence,
            $make,
            [
                published_users_are_online_until_withdrawn,
                entries_of_a_silent_process_expire,
            ]
        );
    };
}
