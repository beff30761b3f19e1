//! The group coordinator's calls: membership (in `membership`), offsets (OffsetCommit,
//! OffsetFetch), the groups' description (DescribeGroups, ListGroups) for the admin tools, and
//! FindCoordinator.
//!
//! Committed offsets live in the log's own group table under `kafka/<group>`, apart from
//! LiveChat's own processors' groups, so a client can neither read nor move a processor's
//! position (`livechat replay` rebuilds a store); they survive restarts.

use std::sync::Arc;

use kafka_protocol::messages::{
    describe_groups_response::DescribedGroup,
    find_coordinator_response::Coordinator as Found,
    list_groups_response::ListedGroup,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic},
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use livechat_core::ports::EventLog;
use tokio_util::sync::CancellationToken;

use super::membership::Membership;
use super::topics::{known, partitions, BROKER_ID};
use super::{s, Client, CLIENT_GROUP_PREFIX as STORED_PREFIX, OPERATIONS_NOT_ASKED, SERVED_TOPICS};

fn code(e: ResponseError) -> i16 {
    e.code()
}

pub(super) struct Coordinator {
    log: Arc<dyn EventLog>,
    membership: Membership,
}

impl Coordinator {
    pub(super) fn new(log: Arc<dyn EventLog>, shutdown: CancellationToken) -> Self {
        Coordinator {
            log,
            membership: Membership::new(shutdown),
        }
    }

    pub(super) async fn join(&self, client: &Client, req: JoinGroupRequest) -> JoinGroupResponse {
        let host = format!("/{}", client.peer.ip());
        self.membership.join(&client.id, host, req).await
    }

    pub(super) async fn sync(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        self.membership.sync(req).await
    }

    pub(super) fn heartbeat(&self, req: &HeartbeatRequest) -> HeartbeatResponse {
        self.membership.heartbeat(req)
    }

    pub(super) fn leave(&self, req: &LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        self.membership.leave(req, version)
    }

    pub(super) async fn commit(&self, req: &OffsetCommitRequest) -> OffsetCommitResponse {
        let name = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let refused =
            self.membership
                .commit_refusal(&name, &member_id, req.generation_id_or_member_epoch);
        let stored = format!("{STORED_PREFIX}{name}");
        let mut r = OffsetCommitResponse::default();
        for topic in &req.topics {
            let tname = topic.name.0.as_str();
            let mut t = OffsetCommitResponseTopic::default();
            t.name = topic.name.clone();
            for p in &topic.partitions {
                let error = match refused {
                    Some(e) => code(e),
                    None if !known(&*self.log, tname, p.partition_index) => {
                        code(ResponseError::UnknownTopicOrPartition)
                    }
                    None if p.committed_offset < 0 => code(ResponseError::InvalidCommitOffsetSize),
                    None => match self
                        .log
                        .commit(&stored, tname, p.partition_index as u32, p.committed_offset)
                        .await
                    {
                        Ok(()) => 0,
                        Err(e) => {
                            tracing::warn!(group = %name, error = %e, "Kafka listener: committing an offset failed.");
                            code(ResponseError::KafkaStorageError)
                        }
                    },
                };
                let mut pr = OffsetCommitResponsePartition::default();
                pr.partition_index = p.partition_index;
                pr.error_code = error;
                t.partitions.push(pr);
            }
            r.topics.push(t);
        }
        r
    }

    pub(super) async fn fetch_offsets(
        &self,
        req: &OffsetFetchRequest,
        _version: i16,
    ) -> OffsetFetchResponse {
        let stored = format!("{STORED_PREFIX}{}", req.group_id.0.as_str());
        // Asked for: the listed partitions, or (none listed) every served partition.
        let asked: Vec<(String, Vec<i32>)> = match &req.topics {
            Some(topics) => topics
                .iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect(),
            None => SERVED_TOPICS
                .iter()
                .map(|t| {
                    let n = partitions(&*self.log, t).unwrap_or(0);
                    (t.to_string(), (0..n).collect())
                })
                .collect(),
        };
        let listing_all = req.topics.is_none();
        let mut r = OffsetFetchResponse::default();
        for (topic, parts) in asked {
            let mut t = OffsetFetchResponseTopic::default();
            t.name = TopicName(s(&topic));
            for p in parts {
                let mut out = OffsetFetchResponsePartition::default();
                out.partition_index = p;
                out.committed_offset = -1;
                out.committed_leader_epoch = -1;
                out.metadata = Some(StrBytes::default());
                if known(&*self.log, &topic, p) {
                    match self.log.committed(&stored, &topic, p as u32).await {
                        Ok(Some(o)) => out.committed_offset = o,
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "Kafka listener: reading an offset failed.");
                            out.error_code = code(ResponseError::KafkaStorageError);
                        }
                    }
                }
                // Listing every partition: only those with an offset, as a broker lists them.
                if !listing_all || out.committed_offset >= 0 || out.error_code != 0 {
                    t.partitions.push(out);
                }
            }
            if !t.partitions.is_empty() || !listing_all {
                r.topics.push(t);
            }
        }
        r
    }

    /// The groups with committed offsets (their names without the storage prefix).
    async fn stored_groups(&self) -> Result<Vec<String>, i16> {
        match self.log.groups().await {
            Ok(all) => Ok(all
                .into_iter()
                .filter_map(|g| g.strip_prefix(STORED_PREFIX).map(str::to_string))
                .collect()),
            Err(e) => {
                tracing::warn!(error = %e, "Kafka listener: listing the groups failed.");
                Err(code(ResponseError::CoordinatorNotAvailable))
            }
        }
    }

    pub(super) async fn describe(&self, req: &DescribeGroupsRequest) -> DescribeGroupsResponse {
        // The stored group names are read only for a group without members in memory.
        let mut stored: Option<Vec<String>> = None;
        let mut r = DescribeGroupsResponse::default();
        for id in &req.groups {
            let name = id.0.as_str();
            let mut d = match self.membership.describe(name) {
                Some(d) => d,
                None => {
                    if stored.is_none() {
                        stored = Some(self.stored_groups().await.unwrap_or_default());
                    }
                    let offsets_only = stored.iter().flatten().any(|g| g == name);
                    let mut d = DescribedGroup::default();
                    if offsets_only {
                        // Offsets but no members (since the last start): an empty consumer group.
                        d.group_state = s("Empty");
                        d.protocol_type = s("consumer");
                    } else {
                        d.group_state = s("Dead");
                    }
                    d
                }
            };
            d.group_id = id.clone();
            d.authorized_operations = OPERATIONS_NOT_ASKED;
            r.groups.push(d);
        }
        r
    }

    pub(super) async fn list(&self, req: &ListGroupsRequest) -> ListGroupsResponse {
        let mut r = ListGroupsResponse::default();
        let stored = match self.stored_groups().await {
            Ok(s) => s,
            Err(e) => {
                r.error_code = e;
                return r;
            }
        };
        let mut listed = self.membership.listed();
        for name in stored {
            if !listed.iter().any(|(n, _, _)| *n == name) {
                listed.push((name, "Empty", "consumer".into()));
            }
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let wanted = |state: &str| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|f| f.as_str().eq_ignore_ascii_case(state))
        };
        r.groups = listed
            .into_iter()
            .filter(|(_, state, _)| wanted(state))
            .map(|(name, state, protocol_type)| {
                let mut g = ListedGroup::default();
                g.group_id = GroupId(s(&name));
                g.protocol_type = s(&protocol_type);
                g.group_state = s(state);
                g.group_type = s("classic");
                g
            })
            .collect();
        r
    }
}

/// The coordinator of every group is this process.
pub(super) fn find_coordinator(
    client: &Client,
    req: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = s(&client.local.ip().to_string());
    let port = client.local.port() as i32;
    // Key type 0 is a group; 1, a transaction, is not served (nothing here produces).
    let refused = (req.key_type != 0).then(|| {
        (
            code(ResponseError::CoordinatorNotAvailable),
            s("transactions are not served: this log is read-only"),
        )
    });
    let mut r = FindCoordinatorResponse::default();
    if version >= 4 {
        r.coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let mut c = Found::default();
                c.key = key.clone();
                match &refused {
                    Some((e, m)) => {
                        c.error_code = *e;
                        c.error_message = Some(m.clone());
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                    }
                    None => {
                        c.node_id = BrokerId(BROKER_ID);
                        c.host = host.clone();
                        c.port = port;
                    }
                }
                c
            })
            .collect();
    } else {
        match refused {
            Some((e, m)) => {
                r.error_code = e;
                r.error_message = Some(m);
                r.node_id = BrokerId(-1);
                r.port = -1;
            }
            None => {
                r.node_id = BrokerId(BROKER_ID);
                r.host = host;
                r.port = port;
            }
        }
    }
    r
}
