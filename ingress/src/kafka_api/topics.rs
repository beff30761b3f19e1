//! The topic calls. This process is the cluster's only broker and the leader of every
//! partition; Fetch hands a partition's records as one record batch (uncompressed, key = the
//! record's key, value = its Confluent-framed Avro, headers as appended), and holds the answer
//! until something arrives or the client's wait runs out, as a broker does.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use livechat_core::error::StoreError;
use livechat_core::model::LogEntry;
use livechat_core::ports::EventLog;
use livechat_schemas::cloudevents;
use tokio::time::Instant;

use super::{s, Client, Served, OPERATIONS_NOT_ASKED, SERVED_TOPICS};

/// This process's node id, as the leader of every partition and the group coordinator.
pub(super) const BROKER_ID: i32 = 0;
const CLUSTER_ID: &str = "livechat-embedded";
/// A Fetch waits at most this long for records, whatever the client asks.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(30);
/// One Fetch answer carries at most this many bytes of records (one record more when the first
/// is larger, so a consumer always makes progress).
const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// Records read from the log per partition per Fetch.
const MAX_RECORDS_PER_READ: u32 = 1000;

fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// A failed read of the log, as a partition's error code (logged with where it happened).
fn storage_error(topic: &str, partition: u32) -> impl Fn(StoreError) -> i16 + '_ {
    move |e| {
        tracing::warn!(topic, partition, error = %e, "Kafka listener: reading the log failed.");
        ResponseError::KafkaStorageError.code()
    }
}

/// The partition count of a served topic, None for any other name.
pub(super) fn partitions(log: &dyn EventLog, topic: &str) -> Option<i32> {
    SERVED_TOPICS
        .contains(&topic)
        .then(|| log.partitions(topic) as i32)
}

/// Whether a partition of a served topic exists.
pub(super) fn known(log: &dyn EventLog, topic: &str, partition: i32) -> bool {
    partitions(log, topic).is_some_and(|n| (0..n).contains(&partition))
}

pub(super) fn metadata(
    served: &Served,
    client: &Client,
    req: &MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(BROKER_ID);
    broker.host = StrBytes::from_string(client.local.ip().to_string());
    broker.port = client.local.port() as i32;
    let names: Vec<String> = match &req.topics {
        // All topics: null, or (version 0 only) an empty list.
        None => SERVED_TOPICS.iter().map(|t| t.to_string()).collect(),
        Some(t) if t.is_empty() && version == 0 => {
            SERVED_TOPICS.iter().map(|t| t.to_string()).collect()
        }
        Some(t) => t
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect(),
    };
    let mut r = MetadataResponse::default();
    r.brokers = vec![broker];
    r.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    r.controller_id = BrokerId(BROKER_ID);
    r.cluster_authorized_operations = OPERATIONS_NOT_ASKED;
    r.topics = names
        .iter()
        .map(|name| {
            let mut t = MetadataResponseTopic::default();
            t.name = Some(topic_name(name));
            t.topic_authorized_operations = OPERATIONS_NOT_ASKED;
            match partitions(&*served.log, name) {
                None => t.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(n) => {
                    t.partitions = (0..n)
                        .map(|p| {
                            let mut part = MetadataResponsePartition::default();
                            part.partition_index = p;
                            part.leader_id = BrokerId(BROKER_ID);
                            part.replica_nodes = vec![BrokerId(BROKER_ID)];
                            part.isr_nodes = vec![BrokerId(BROKER_ID)];
                            part
                        })
                        .collect()
                }
            }
            t
        })
        .collect();
    r
}

/// Offsets by time: the latest (-1), the earliest (-2, and -4, the earliest kept locally),
/// the one with the largest timestamp (-3: the last, since timestamps never decrease within
/// a partition), or the first at or after a time.
pub(super) async fn list_offsets(served: &Served, req: &ListOffsetsRequest) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    for topic in &req.topics {
        let name = topic.name.0.as_str();
        let mut t = ListOffsetsTopicResponse::default();
        t.name = topic.name.clone();
        for p in &topic.partitions {
            let mut out = ListOffsetsPartitionResponse::default();
            out.partition_index = p.partition_index;
            out.timestamp = -1;
            out.offset = -1;
            if !known(&*served.log, name, p.partition_index) {
                out.error_code = ResponseError::UnknownTopicOrPartition.code();
            } else {
                match offset_at(served, name, p.partition_index as u32, p.timestamp).await {
                    Ok(Some((offset, ts))) => {
                        out.offset = offset;
                        out.timestamp = ts;
                    }
                    Ok(None) => {}
                    Err(code) => out.error_code = code,
                }
            }
            t.partitions.push(out);
        }
        r.topics.push(t);
    }
    r
}

/// (offset, timestamp) for a ListOffsets timestamp; None when no record answers it.
async fn offset_at(
    served: &Served,
    topic: &str,
    partition: u32,
    ts: i64,
) -> Result<Option<(i64, i64)>, i16> {
    let log = &served.log;
    let storage = storage_error(topic, partition);
    let end = log.end_offset(topic, partition).await.map_err(&storage)?;
    let at = match ts {
        -1 => return Ok(Some((end, -1))),
        -2 | -4 => return Ok(Some((0, -1))),
        -3 if end == 0 => return Ok(None),
        -3 => end - 1,
        t if t >= 0 => log
            .offset_for_time(topic, partition, t)
            .await
            .map_err(&storage)?,
        _ => return Err(ResponseError::InvalidRequest.code()),
    };
    if at >= end {
        return Ok(None);
    }
    let found = log.read(topic, partition, at, 1).await.map_err(&storage)?;
    Ok(found.first().map(|e| (e.offset, e.timestamp_ms)))
}

pub(super) async fn fetch(served: &Served, req: &FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_FETCH_WAIT);
    let deadline = Instant::now() + wait;
    let mut appended = served.log.append_signal();
    loop {
        // Seen before reading, so an append during the read wakes the wait below.
        appended.borrow_and_update();
        let (r, bytes, errors) = fetch_once(served, req).await;
        if errors || bytes as i64 >= req.min_bytes as i64 || Instant::now() >= deadline {
            return r;
        }
        if tokio::time::timeout_at(deadline, appended.changed())
            .await
            .is_ok_and(|changed| changed.is_err())
        {
            // The log is gone (shutting down): answer what there is.
            return r;
        }
    }
}

/// One pass over the asked partitions: the answer, its bytes of records, and whether any
/// partition answered an error (which a client must see at once).
async fn fetch_once(served: &Served, req: &FetchRequest) -> (FetchResponse, usize, bool) {
    let budget = (req.max_bytes.max(1) as usize).min(MAX_RESPONSE_BYTES);
    let (mut used, mut errors) = (0usize, false);
    let mut r = FetchResponse::default();
    for topic in &req.topics {
        let name = topic.topic.0.as_str();
        let mut t = FetchableTopicResponse::default();
        t.topic = topic.topic.clone();
        for p in &topic.partitions {
            let mut out = PartitionData::default();
            out.partition_index = p.partition;
            out.high_watermark = -1;
            out.last_stable_offset = -1;
            out.log_start_offset = 0;
            out.preferred_read_replica = BrokerId(-1);
            out.aborted_transactions = Some(Vec::new());
            let code = match read_partition(served, name, p.partition, p.fetch_offset).await {
                Err(code) => code,
                Ok((end, entries)) => {
                    out.high_watermark = end;
                    out.last_stable_offset = end;
                    let partition_budget =
                        (p.partition_max_bytes.max(1) as usize).min(budget.saturating_sub(used));
                    let taken = within(&entries, partition_budget, used == 0);
                    match batch(&entries[..taken]) {
                        Ok(bytes) => {
                            used += bytes.len();
                            out.records = Some(bytes);
                            0
                        }
                        Err(e) => {
                            tracing::error!(topic = name, error = %e, "Kafka listener: encoding a record batch failed.");
                            ResponseError::UnknownServerError.code()
                        }
                    }
                }
            };
            if code != 0 {
                out.error_code = code;
                out.records = Some(Bytes::new());
                errors = true;
            }
            t.partitions.push(out);
        }
        r.responses.push(t);
    }
    (r, used, errors)
}

/// The partition's end and its records from `from` (none when `from` is its end).
async fn read_partition(
    served: &Served,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<(i64, Vec<LogEntry>), i16> {
    if !known(&*served.log, topic, partition) {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    let p = partition as u32;
    let storage = storage_error(topic, p);
    let end = served.log.end_offset(topic, p).await.map_err(&storage)?;
    if from < 0 || from > end {
        return Err(ResponseError::OffsetOutOfRange.code());
    }
    if from == end {
        return Ok((end, Vec::new()));
    }
    let entries = served
        .log
        .read(topic, p, from, MAX_RECORDS_PER_READ)
        .await
        .map_err(&storage)?;
    Ok((end, entries))
}

/// About what a record takes in a batch (the CloudEvents headers derived at fetch take ~250
/// bytes).
fn record_size(e: &LogEntry) -> usize {
    let headers: usize = e.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    e.key.len() + e.payload.len() + headers + 24 + 250
}

/// How many of `entries` fit `budget`; at least one when `first` (nothing in the answer yet).
fn within(entries: &[LogEntry], budget: usize, first: bool) -> usize {
    let mut size = 0;
    for (i, e) in entries.iter().enumerate() {
        size += record_size(e);
        if size > budget {
            return if i == 0 && first { 1 } else { i };
        }
    }
    entries.len()
}

/// A record's timestamp and headers as a Kafka consumer gets them: the event's occurrence
/// time, its CloudEvents attributes (which the embedded log derives from the payload instead of
/// storing them, docs/topics.md), then the headers it was appended with. A record that is not
/// an event (a dead letter) keeps the time it was appended.
fn described(e: &LogEntry) -> (i64, IndexMap<StrBytes, Option<Bytes>>) {
    let derived = cloudevents::of_record(&e.topic, e.event.as_deref(), &e.payload);
    let at = derived.as_ref().map_or(e.timestamp_ms, |(_, at)| *at);
    let headers = derived
        .into_iter()
        .flat_map(|(h, _)| h)
        .map(|(k, v)| (StrBytes::from_static_str(k), v))
        .chain(
            e.headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone())),
        )
        .map(|(k, v)| (k, Some(Bytes::from(v.into_bytes()))))
        .collect();
    (at, headers)
}

/// Entries as one uncompressed record batch (magic 2); empty bytes for none.
fn batch(entries: &[LogEntry]) -> anyhow::Result<Bytes> {
    let Some(first) = entries.first() else {
        return Ok(Bytes::new());
    };
    let records: Vec<Record> = entries
        .iter()
        .map(|e| (e, described(e)))
        .map(|(e, (timestamp, headers))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: e.offset,
            // Relative to the batch, so the encoder keeps every record in one batch.
            sequence: (e.offset - first.offset) as i32,
            timestamp,
            key: Some(Bytes::copy_from_slice(e.key.as_bytes())),
            // An empty value is a tombstone (compacted topics): a record without a value.
            value: (!e.payload.is_empty()).then(|| Bytes::copy_from_slice(&e.payload)),
            headers,
        })
        .collect();
    let mut buf = BytesMut::with_capacity(entries.iter().map(record_size).sum::<usize>() + 64);
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// Produce is refused: the log is written only by LiveChat. None for `acks=0` (no answer).
pub(super) fn refuse_produce(req: &ProduceRequest) -> Option<ProduceResponse> {
    if req.acks == 0 {
        tracing::warn!("Kafka listener: refused an acks=0 Produce (this log is read-only).");
        return None;
    }
    let message = StrBytes::from_static_str(
        "This listener is read-only: LiveChat's log is written only by LiveChat",
    );
    let mut r = ProduceResponse::default();
    r.responses = req
        .topic_data
        .iter()
        .map(|t| {
            let mut out = TopicProduceResponse::default();
            out.name = t.name.clone();
            out.partition_responses = t
                .partition_data
                .iter()
                .map(|p| {
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = p.index;
                    pr.error_code = ResponseError::TopicAuthorizationFailed.code();
                    pr.base_offset = -1;
                    pr.log_append_time_ms = -1;
                    pr.error_message = Some(message.clone());
                    pr
                })
                .collect();
            out
        })
        .collect();
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn entry(offset: i64, payload: &[u8]) -> LogEntry {
        LogEntry {
            topic: "t".into(),
            partition: 0,
            offset,
            key: "room-1".into(),
            payload: bytes::Bytes::copy_from_slice(payload),
            timestamp_ms: 1_700_000_000_000 + offset,
            headers: vec![("ce_type".into(), "MESSAGE_SENT".into())],
            event: None,
        }
    }

    #[test]
    fn a_partitions_records_go_out_as_one_batch_a_client_decodes() {
        let entries: Vec<_> = (40..45).map(|o| entry(o, &[o as u8; 10])).collect();
        let mut bytes = batch(&entries).unwrap();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        assert_eq!(sets.len(), 1, "one batch");
        let got = &sets[0].records;
        assert_eq!(got.len(), 5);
        for (r, e) in got.iter().zip(&entries) {
            assert_eq!(r.offset, e.offset);
            assert_eq!(r.timestamp, e.timestamp_ms);
            assert_eq!(r.key.as_deref(), Some(&b"room-1"[..]));
            assert_eq!(r.value.as_deref(), Some(&e.payload[..]));
            let ce = r
                .headers
                .get(&StrBytes::from_static_str("ce_type"))
                .cloned();
            assert_eq!(ce, Some(Some(Bytes::from_static(b"MESSAGE_SENT"))));
        }
    }

    #[test]
    fn an_events_record_carries_its_occurrence_time_and_cloudevents_headers() {
        let ev = livechat_schemas::RoomEvent {
            event_id: "01a221d6-1bc7-7204-854c-fd1dfe464307".into(),
            event_type: "MESSAGE_SENT".into(),
            occurred_at: 1_700_000_000_123,
            room_id: "room-1".into(),
            ..Default::default()
        };
        let mut e = entry(7, &livechat_schemas::codec::encode_room_event(&ev).unwrap());
        e.topic = livechat_schemas::ROOM_EVENTS_TOPIC.into();
        e.headers = vec![("traceparent".into(), "00-abc-def-01".into())];
        let mut bytes = batch(std::slice::from_ref(&e)).unwrap();
        let r = &RecordBatchDecoder::decode_all(&mut bytes).unwrap()[0].records[0];
        assert_eq!(
            r.timestamp, ev.occurred_at,
            "the event's time, not the append's"
        );
        let keys: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "ce_time",
                "ce_subject",
                "content-type",
                "traceparent"
            ]
        );
        let header = |k: &'static str| r.headers[&StrBytes::from_static_str(k)].clone();
        assert_eq!(
            header("ce_time"),
            Some(Bytes::from("2023-11-14T22:13:20.123Z"))
        );
        assert_eq!(header("ce_subject"), Some(Bytes::from("room-1")));
    }

    #[test]
    fn a_budget_takes_whole_records_and_always_one_first() {
        let entries: Vec<_> = (0..4).map(|o| entry(o, &[0; 100])).collect();
        let one = record_size(&entries[0]);
        assert_eq!(within(&entries, one * 2, true), 2);
        assert_eq!(within(&entries, one * 2 - 1, false), 1);
        assert_eq!(
            within(&entries, 10, true),
            1,
            "progress: the first record goes alone"
        );
        assert_eq!(within(&entries, 10, false), 0);
        assert_eq!(within(&entries, usize::MAX, false), 4);
    }
}
