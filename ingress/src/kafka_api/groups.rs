//! The group coordinator: Kafka's classic consumer group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), offsets (OffsetCommit, OffsetFetch) and the groups' description
//! (DescribeGroups, ListGroups) for the admin tools.
//!
//! Membership lives in memory: a restart of LiveChat ends every session, as a coordinator's
//! failover does, and the clients join again. Committed offsets live in the log's own group
//! table under `kafka/<group>`, apart from LiveChat's own processors' groups, so a client can
//! neither read nor move a processor's position (`livechat replay` rebuilds a store).
//!
//! A rebalance: a join (or a member leaving, or its session running out) starts one; members
//! learn of it from their heartbeat's REBALANCE_IN_PROGRESS and join again; once every member
//! has (or the longest rebalance timeout passed, and the missing ones are dropped) the group
//! gets its next generation, the leader receives every member's subscription and answers with
//! the assignments in SyncGroup, which the coordinator hands to each member. Assignment bytes
//! are stored and handed on untouched.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    describe_groups_response::{DescribedGroup, DescribedGroupMember},
    find_coordinator_response::Coordinator as Found,
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
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
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::topics::{known, partitions, BROKER_ID};
use super::{CLIENT_GROUP_PREFIX as STORED_PREFIX, SERVED_TOPICS};

/// At most this many groups with members at once, and members per group.
const MAX_GROUPS: usize = 1024;
const MAX_MEMBERS: usize = 256;
/// Session timeouts a member may ask for (ms): Kafka's defaults are 6 s to 30 min.
const SESSION_TIMEOUTS: std::ops::RangeInclusive<i32> = 1_000..=1_800_000;
/// A group's first generation waits this long for more members, so consumers started
/// together share it (Kafka's `group.initial.rebalance.delay.ms`, shorter).
const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(300);
/// How often expired sessions are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    /// As the admin tools print it.
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

struct Member {
    id: String,
    client_id: String,
    host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    /// (protocol name, metadata), in the member's order of preference.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    /// Its JoinGroup, waiting for the rebalance to complete.
    joining: Option<oneshot::Sender<JoinGroupResponse>>,
    /// Its SyncGroup, waiting for the leader's assignments.
    syncing: Option<oneshot::Sender<SyncGroupResponse>>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    /// In the order they joined.
    members: Vec<Member>,
    /// Counts rebalances, so a rebalance's timer acts only on its own.
    round: u64,
    /// No generation before this (the initial delay).
    not_before: Option<Instant>,
}

impl Group {
    fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn sync_answer(&self, error: i16, assignment: Bytes) -> SyncGroupResponse {
        let mut r = SyncGroupResponse::default();
        r.error_code = error;
        r.assignment = assignment;
        r.protocol_type = Some(s(&self.protocol_type));
        r.protocol_name = self.protocol.as_deref().map(s);
        r
    }
}

type Groups = Arc<Mutex<HashMap<String, Group>>>;

fn locked(groups: &Groups) -> MutexGuard<'_, HashMap<String, Group>> {
    groups.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) struct Coordinator {
    log: Arc<dyn EventLog>,
    groups: Groups,
}

fn join_error(error: ResponseError, member_id: &str) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = code(error);
    r.generation_id = -1;
    r.member_id = s(member_id);
    r
}

/// Starts a rebalance: members must join again; syncs waiting are told to.
fn start_rebalance(groups: &Groups, name: &str, group: &mut Group, delay: Duration) {
    group.state = State::PreparingRebalance;
    group.round += 1;
    let now = Instant::now();
    group.not_before = Some(now + delay);
    for m in &mut group.members {
        if let Some(tx) = m.syncing.take() {
            let _ = tx.send(group_sync_error(ResponseError::RebalanceInProgress));
        }
    }
    let longest = group
        .members
        .iter()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or_default();
    let deadline = now + longest.max(delay);
    let (groups, name, round) = (groups.clone(), name.to_string(), group.round);
    let not_before = now + delay;
    tokio::spawn(async move {
        tokio::time::sleep_until(not_before).await;
        if !try_complete(&groups, &name, round, false) {
            tokio::time::sleep_until(deadline).await;
            try_complete(&groups, &name, round, true);
        }
    });
}

fn group_sync_error(error: ResponseError) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = code(error);
    r
}

/// Completes the rebalance `round` of a group when every member joined again (or, `force`,
/// with those that did). True when the round is over.
fn try_complete(groups: &Groups, name: &str, round: u64, force: bool) -> bool {
    let mut all = locked(groups);
    let Some(group) = all.get_mut(name) else {
        return true;
    };
    if group.round != round || group.state != State::PreparingRebalance {
        return true;
    }
    complete(group, force)
}

fn complete(group: &mut Group, force: bool) -> bool {
    let waiting = group.members.iter().all(|m| m.joining.is_some());
    let early = group.not_before.is_some_and(|t| Instant::now() < t);
    if !force && (!waiting || early) {
        return false;
    }
    group.members.retain(|m| m.joining.is_some());
    if group.members.is_empty() {
        group.state = State::Empty;
        group.protocol = None;
        group.leader = None;
        return true;
    }
    group.generation += 1;
    // The protocol every member supports that most members prefer.
    let common: BTreeSet<&str> = group.members[0]
        .protocols
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| {
            group
                .members
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
        .collect();
    let mut votes: Vec<(&str, usize)> = common.iter().map(|n| (*n, 0)).collect();
    for m in &group.members {
        if let Some((first, _)) = m
            .protocols
            .iter()
            .find(|(n, _)| common.contains(n.as_str()))
        {
            if let Some(v) = votes.iter_mut().find(|(n, _)| n == first) {
                v.1 += 1;
            }
        }
    }
    let protocol = votes
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    let leader = match &group.leader {
        Some(l) if group.members.iter().any(|m| &m.id == l) => l.clone(),
        _ => group.members[0].id.clone(),
    };
    let roster: Vec<JoinGroupResponseMember> = group
        .members
        .iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = s(&m.id);
            jm.metadata = m.metadata(&protocol);
            jm
        })
        .collect();
    let now = Instant::now();
    for m in &mut group.members {
        let mut r = JoinGroupResponse::default();
        r.generation_id = group.generation;
        r.protocol_type = Some(s(&group.protocol_type));
        r.protocol_name = Some(s(&protocol));
        r.leader = s(&leader);
        r.member_id = s(&m.id);
        if m.id == leader {
            r.members = roster.clone();
        }
        m.assignment = Bytes::new();
        m.last_seen = now;
        if let Some(tx) = m.joining.take() {
            let _ = tx.send(r);
        }
    }
    group.protocol = Some(protocol);
    group.leader = Some(leader);
    group.state = State::CompletingRebalance;
    group.not_before = None;
    true
}

/// After members left or expired: a rebalance among the rest, or an empty group.
fn after_departures(groups: &Groups, name: &str, group: &mut Group) {
    if group.members.is_empty() {
        group.state = State::Empty;
        group.protocol = None;
        group.leader = None;
        return;
    }
    match group.state {
        State::Stable | State::CompletingRebalance => {
            start_rebalance(groups, name, group, Duration::ZERO)
        }
        State::PreparingRebalance => {
            complete(group, false);
        }
        State::Empty => {}
    }
}

/// Drops members whose session ran out, every [`SWEEP_EVERY`], and forgets empty groups (their
/// offsets stay in the log).
async fn sweep(groups: Groups, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let mut all = locked(&groups);
        let names: Vec<String> = all.keys().cloned().collect();
        for name in names {
            let Some(group) = all.get_mut(&name) else {
                continue;
            };
            let before = group.members.len();
            group.members.retain(|m| {
                let alive = m.joining.is_some() || now < m.last_seen + m.session_timeout;
                if !alive {
                    tracing::info!(group = %name, member = %m.id, "Kafka listener: a member's session expired.");
                }
                alive
            });
            if group.members.len() != before {
                after_departures(&groups, &name, group);
            }
            if group.members.is_empty() && group.state == State::Empty {
                all.remove(&name);
            }
        }
    }
}

impl Coordinator {
    pub(super) fn new(log: Arc<dyn EventLog>, shutdown: CancellationToken) -> Self {
        let groups: Groups = Arc::default();
        tokio::spawn(sweep(groups.clone(), shutdown));
        Coordinator { log, groups }
    }

    pub(super) async fn join(&self, conn: &Conn, req: JoinGroupRequest) -> JoinGroupResponse {
        let name = req.group_id.0.to_string();
        let asked_id = req.member_id.to_string();
        if name.is_empty() {
            return join_error(ResponseError::InvalidGroupId, &asked_id);
        }
        if !SESSION_TIMEOUTS.contains(&req.session_timeout_ms) {
            return join_error(ResponseError::InvalidSessionTimeout, &asked_id);
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return join_error(ResponseError::InconsistentGroupProtocol, &asked_id);
        }
        let protocols: Vec<(String, Bytes)> = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        let (tx, rx) = oneshot::channel();
        {
            let mut all = locked(&self.groups);
            if !all.contains_key(&name) && all.len() >= MAX_GROUPS {
                return join_error(ResponseError::CoordinatorNotAvailable, &asked_id);
            }
            let group = all.entry(name.clone()).or_default();
            if !group.members.is_empty() && group.protocol_type != req.protocol_type.as_str() {
                return join_error(ResponseError::InconsistentGroupProtocol, &asked_id);
            }
            let others_support = |g: &Group, id: &str| {
                protocols.iter().any(|(n, _)| {
                    g.members
                        .iter()
                        .filter(|m| m.id != id)
                        .all(|m| m.protocols.iter().any(|(p, _)| p == n))
                })
            };
            let id = if asked_id.is_empty() {
                if group.members.len() >= MAX_MEMBERS {
                    return join_error(ResponseError::GroupMaxSizeReached, "");
                }
                let client = if conn.client_id.is_empty() {
                    "consumer"
                } else {
                    &conn.client_id
                };
                format!("{client}-{}", uuid::Uuid::new_v4())
            } else if group.member(&asked_id).is_none() {
                return join_error(ResponseError::UnknownMemberId, &asked_id);
            } else {
                asked_id.clone()
            };
            if !others_support(group, &id) {
                return join_error(ResponseError::InconsistentGroupProtocol, &asked_id);
            }
            let session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
            // Version 0 has no rebalance timeout: the session timeout stands in, as in Kafka.
            let rebalance_ms = if req.rebalance_timeout_ms > 0 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            };
            let rebalance_timeout = Duration::from_millis(rebalance_ms as u64);
            let now = Instant::now();
            match group.member(&id) {
                Some(m) => {
                    if let Some(old) = m.joining.take() {
                        let _ = old.send(join_error(ResponseError::RebalanceInProgress, &id));
                    }
                    m.protocols = protocols;
                    m.session_timeout = session_timeout;
                    m.rebalance_timeout = rebalance_timeout;
                    m.last_seen = now;
                    m.joining = Some(tx);
                }
                None => group.members.push(Member {
                    id: id.clone(),
                    client_id: conn.client_id.clone(),
                    host: format!("/{}", conn.peer.ip()),
                    session_timeout,
                    rebalance_timeout,
                    protocols,
                    assignment: Bytes::new(),
                    last_seen: now,
                    joining: Some(tx),
                    syncing: None,
                }),
            }
            group.protocol_type = req.protocol_type.to_string();
            match group.state {
                State::Empty => {
                    start_rebalance(&self.groups, &name, group, INITIAL_REBALANCE_DELAY)
                }
                State::Stable | State::CompletingRebalance => {
                    start_rebalance(&self.groups, &name, group, Duration::ZERO)
                }
                State::PreparingRebalance => {}
            }
            complete(group, false);
        }
        rx.await
            .unwrap_or_else(|_| join_error(ResponseError::RebalanceInProgress, &asked_id))
    }

    pub(super) async fn sync(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let name = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let rx = {
            let mut all = locked(&self.groups);
            let Some(group) = all.get_mut(&name) else {
                return group_sync_error(ResponseError::UnknownMemberId);
            };
            if group.member(&member_id).is_none() {
                return group_sync_error(ResponseError::UnknownMemberId);
            }
            if req.generation_id != group.generation {
                return group_sync_error(ResponseError::IllegalGeneration);
            }
            match group.state {
                State::Empty | State::PreparingRebalance => {
                    return group_sync_error(ResponseError::RebalanceInProgress)
                }
                State::Stable => {
                    let assignment = group
                        .member(&member_id)
                        .map(|m| m.assignment.clone())
                        .unwrap_or_default();
                    return group.sync_answer(0, assignment);
                }
                State::CompletingRebalance => {}
            }
            let now = Instant::now();
            if group.leader.as_deref() == Some(member_id.as_str()) {
                for a in &req.assignments {
                    if let Some(m) = group.member(a.member_id.as_str()) {
                        m.assignment = a.assignment.clone();
                    }
                }
                group.state = State::Stable;
                let answers: Vec<_> = group
                    .members
                    .iter_mut()
                    .filter_map(|m| m.syncing.take().map(|tx| (tx, m.assignment.clone())))
                    .collect();
                for (tx, assignment) in answers {
                    let _ = tx.send(group.sync_answer(0, assignment));
                }
                let own = group.member(&member_id).map(|m| {
                    m.last_seen = now;
                    m.assignment.clone()
                });
                return group.sync_answer(0, own.unwrap_or_default());
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = group.member(&member_id) {
                m.last_seen = now;
                m.syncing = Some(tx);
            }
            rx
        };
        rx.await
            .unwrap_or_else(|_| group_sync_error(ResponseError::RebalanceInProgress))
    }

    pub(super) fn heartbeat(&self, req: &HeartbeatRequest) -> HeartbeatResponse {
        let mut r = HeartbeatResponse::default();
        let mut all = locked(&self.groups);
        let error = match all.get_mut(req.group_id.0.as_str()) {
            None => Some(ResponseError::UnknownMemberId),
            Some(group) => {
                let (state, generation) = (group.state, group.generation);
                match group.member(req.member_id.as_str()) {
                    None => Some(ResponseError::UnknownMemberId),
                    Some(_) if req.generation_id != generation => {
                        Some(ResponseError::IllegalGeneration)
                    }
                    Some(_) if state == State::PreparingRebalance => {
                        Some(ResponseError::RebalanceInProgress)
                    }
                    Some(m) => {
                        m.last_seen = Instant::now();
                        None
                    }
                }
            }
        };
        r.error_code = error.map_or(0, code);
        r
    }

    pub(super) fn leave(&self, req: &LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let name = req.group_id.0.to_string();
        let leaving: Vec<String> = if version >= 3 {
            req.members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect()
        } else {
            vec![req.member_id.to_string()]
        };
        let mut r = LeaveGroupResponse::default();
        let mut all = locked(&self.groups);
        let Some(group) = all.get_mut(&name) else {
            r.error_code = code(ResponseError::UnknownMemberId);
            return r;
        };
        let mut answers = Vec::new();
        for id in &leaving {
            let before = group.members.len();
            group.members.retain(|m| &m.id != id);
            let error = if group.members.len() < before {
                0
            } else {
                code(ResponseError::UnknownMemberId)
            };
            let mut mr = MemberResponse::default();
            mr.member_id = s(id);
            mr.error_code = error;
            answers.push(mr);
        }
        if version >= 3 {
            r.members = answers;
        } else {
            r.error_code = answers.first().map_or(0, |a| a.error_code);
        }
        after_departures(&self.groups, &name, group);
        r
    }

    pub(super) async fn commit(&self, req: &OffsetCommitRequest) -> OffsetCommitResponse {
        let name = req.group_id.0.to_string();
        let member_id = req.member_id.to_string();
        let refused = {
            let mut all = locked(&self.groups);
            match all.get_mut(&name) {
                // No members: an admin tool's commit (generation -1), or a consumer that
                // assigns its partitions itself.
                None => None,
                Some(g) if g.members.is_empty() => None,
                Some(g) => {
                    let (state, generation) = (g.state, g.generation);
                    match g.member(&member_id) {
                        None => Some(ResponseError::UnknownMemberId),
                        Some(_) if req.generation_id_or_member_epoch != generation => {
                            Some(ResponseError::IllegalGeneration)
                        }
                        Some(_) if state == State::CompletingRebalance => {
                            Some(ResponseError::RebalanceInProgress)
                        }
                        Some(m) => {
                            m.last_seen = Instant::now();
                            None
                        }
                    }
                }
            }
        };
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
        let stored = self.stored_groups().await.unwrap_or_default();
        let all = locked(&self.groups);
        let mut r = DescribeGroupsResponse::default();
        for id in &req.groups {
            let name = id.0.as_str();
            let mut d = DescribedGroup::default();
            d.group_id = id.clone();
            d.authorized_operations = OPERATIONS_NOT_ASKED;
            match all.get(name) {
                Some(g) => {
                    d.group_state = s(g.state.name());
                    d.protocol_type = s(&g.protocol_type);
                    let protocol = g.protocol.clone().unwrap_or_default();
                    d.protocol_data = s(&protocol);
                    d.members = g
                        .members
                        .iter()
                        .map(|m| {
                            let mut dm = DescribedGroupMember::default();
                            dm.member_id = s(&m.id);
                            dm.client_id = s(&m.client_id);
                            dm.client_host = s(&m.host);
                            dm.member_metadata = m.metadata(&protocol);
                            dm.member_assignment = m.assignment.clone();
                            dm
                        })
                        .collect();
                }
                // Offsets but no members (since the last start): an empty consumer group.
                None if stored.iter().any(|g| g == name) => {
                    d.group_state = s(State::Empty.name());
                    d.protocol_type = s("consumer");
                }
                None => d.group_state = s("Dead"),
            }
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
        let all = locked(&self.groups);
        let mut listed: Vec<(String, State, String)> = all
            .iter()
            .map(|(n, g)| (n.clone(), g.state, g.protocol_type.clone()))
            .collect();
        for name in stored {
            if !all.contains_key(&name) {
                listed.push((name, State::Empty, "consumer".into()));
            }
        }
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let wanted = |state: State| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|f| f.as_str().eq_ignore_ascii_case(state.name()))
        };
        r.groups = listed
            .into_iter()
            .filter(|(_, state, _)| wanted(*state))
            .map(|(name, state, protocol_type)| {
                let mut g = ListedGroup::default();
                g.group_id = GroupId(s(&name));
                g.protocol_type = s(&protocol_type);
                g.group_state = s(state.name());
                g.group_type = s("classic");
                g
            })
            .collect();
        r
    }
}

/// The coordinator of every group is this process.
pub(super) fn find_coordinator(
    conn: &Conn,
    req: &FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let host = s(&conn.local.ip().to_string());
    let port = conn.local.port() as i32;
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
