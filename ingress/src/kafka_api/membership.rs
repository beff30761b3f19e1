//! Group membership, Kafka's classic rebalance protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), in memory: a restart of LiveChat ends every session, as a coordinator's
//! failover does, and the clients join again.
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
    join_group_response::JoinGroupResponseMember,
    leave_group_response::MemberResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::s;

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

fn code(e: ResponseError) -> i16 {
    e.code()
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

/// Every group's members and rebalance state.
pub(super) struct Membership {
    groups: Groups,
}

impl Membership {
    /// Starts the sweeper of expired sessions (until shutdown).
    pub(super) fn new(shutdown: CancellationToken) -> Self {
        let groups: Groups = Arc::default();
        tokio::spawn(sweep(groups.clone(), shutdown));
        Membership { groups }
    }

    /// A member joins (`client_id` and `host` describe it to the admin tools); answered once
    /// the rebalance it starts, or takes part in, completes.
    pub(super) async fn join(
        &self,
        client_id: &str,
        host: String,
        req: JoinGroupRequest,
    ) -> JoinGroupResponse {
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
                let client = if client_id.is_empty() {
                    "consumer"
                } else {
                    client_id
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
                    client_id: client_id.to_string(),
                    host,
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

    /// Why a commit from `member_id` in `generation_id` is refused, if it is: a group with
    /// members takes commits from its current generation's members only (outside a rebalance's
    /// completion); a group without any (an admin tool's commit, generation -1, or a consumer
    /// that assigns partitions itself) takes any.
    pub(super) fn commit_refusal(
        &self,
        name: &str,
        member_id: &str,
        generation_id: i32,
    ) -> Option<ResponseError> {
        let mut all = locked(&self.groups);
        match all.get_mut(name) {
            // No members: an admin tool's commit (generation -1), or a consumer that
            // assigns its partitions itself.
            None => None,
            Some(g) if g.members.is_empty() => None,
            Some(g) => {
                let (state, generation) = (g.state, g.generation);
                match g.member(member_id) {
                    None => Some(ResponseError::UnknownMemberId),
                    Some(_) if generation_id != generation => {
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
    }

    /// A group's description for DescribeGroups; None when it has no members in memory.
    pub(super) fn describe(&self, name: &str) -> Option<DescribedGroup> {
        let all = locked(&self.groups);
        let g = all.get(name)?;
        let mut d = DescribedGroup::default();
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
        Some(d)
    }

    /// (name, state, protocol type) of every group in memory.
    pub(super) fn listed(&self) -> Vec<(String, &'static str, String)> {
        locked(&self.groups)
            .iter()
            .map(|(n, g)| (n.clone(), g.state.name(), g.protocol_type.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::GroupId;

    const GROUP: &str = "g";

    fn join_req(member: &str, protocols: &[&str], session_ms: i32) -> JoinGroupRequest {
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(s(GROUP));
        r.member_id = s(member);
        r.session_timeout_ms = session_ms;
        r.rebalance_timeout_ms = 60_000;
        r.protocol_type = s("consumer");
        r.protocols = protocols
            .iter()
            .map(|p| {
                let mut jp = JoinGroupRequestProtocol::default();
                jp.name = s(p);
                jp.metadata = Bytes::from(format!("subscription of {member}"));
                jp
            })
            .collect();
        r
    }

    fn sync_req(member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncGroupRequest {
        let mut r = SyncGroupRequest::default();
        r.group_id = GroupId(s(GROUP));
        r.member_id = s(member);
        r.generation_id = generation;
        r.assignments = assignments
            .iter()
            .map(|(m, a)| {
                let mut sa = SyncGroupRequestAssignment::default();
                sa.member_id = s(m);
                sa.assignment = Bytes::from(a.to_string());
                sa
            })
            .collect();
        r
    }

    fn heartbeat(m: &Membership, member: &str, generation: i32) -> i16 {
        let mut r = HeartbeatRequest::default();
        r.group_id = GroupId(s(GROUP));
        r.member_id = s(member);
        r.generation_id = generation;
        m.heartbeat(&r).error_code
    }

    fn membership() -> Arc<Membership> {
        Arc::new(Membership::new(CancellationToken::new()))
    }

    /// A new member's join, answered once its generation forms.
    fn join_new(
        m: &Arc<Membership>,
        client: &'static str,
        protocols: &'static [&'static str],
    ) -> tokio::task::JoinHandle<JoinGroupResponse> {
        let m = m.clone();
        tokio::spawn(async move {
            m.join(client, "/127.0.0.1".into(), join_req("", protocols, 6_000))
                .await
        })
    }

    fn rejoin(m: &Arc<Membership>, member: &str) -> tokio::task::JoinHandle<JoinGroupResponse> {
        let (m, member) = (m.clone(), member.to_string());
        tokio::spawn(async move {
            m.join(
                "c",
                "/127.0.0.1".into(),
                join_req(&member, &["range"], 6_000),
            )
            .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_member_leads_its_first_generation_and_gets_its_own_assignment() {
        let m = membership();
        let a = join_new(&m, "a", &["range"]).await.unwrap();
        assert_eq!(a.error_code, 0);
        assert_eq!(a.generation_id, 1);
        assert_eq!(a.leader, a.member_id, "the only member leads");
        assert_eq!(a.members.len(), 1);
        assert!(a.member_id.starts_with("a-"));
        let id = a.member_id.to_string();
        let synced = m.sync(sync_req(&id, 1, &[(&id, "all of it")])).await;
        assert_eq!(synced.error_code, 0);
        assert_eq!(synced.assignment, Bytes::from("all of it"));
        assert_eq!(heartbeat(&m, &id, 1), 0);
        assert_eq!(
            heartbeat(&m, &id, 0),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            heartbeat(&m, "stranger", 1),
            ResponseError::UnknownMemberId.code()
        );
    }

    /// Two members in a stable generation 2, A leading: (A, B).
    async fn two_members(m: &Arc<Membership>) -> (String, String) {
        let a = join_new(m, "a", &["range"]).await.unwrap();
        let a_id = a.member_id.to_string();
        m.sync(sync_req(&a_id, 1, &[(&a_id, "0-3")])).await;
        let b = join_new(m, "b", &["range"]);
        // A learns of the rebalance from its heartbeat, and joins again.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            heartbeat(m, &a_id, 1),
            ResponseError::RebalanceInProgress.code()
        );
        let a2 = rejoin(m, &a_id).await.unwrap();
        let b = b.await.unwrap();
        assert_eq!((a2.generation_id, b.generation_id), (2, 2));
        assert_eq!(a2.leader.as_str(), a_id, "the leader stays the leader");
        assert_eq!(a2.members.len(), 2, "the leader gets every subscription");
        assert!(b.members.is_empty(), "a follower gets none");
        let b_id = b.member_id.to_string();
        // B's sync waits for the leader's assignments.
        let b_sync = {
            let (m, b_id) = (m.clone(), b_id.clone());
            tokio::spawn(async move { m.sync(sync_req(&b_id, 2, &[])).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!b_sync.is_finished());
        let a_sync = m
            .sync(sync_req(&a_id, 2, &[(&a_id, "0-1"), (&b_id, "2-3")]))
            .await;
        assert_eq!(a_sync.assignment, Bytes::from("0-1"));
        let b_sync = b_sync.await.unwrap();
        assert_eq!(b_sync.error_code, 0);
        assert_eq!(b_sync.assignment, Bytes::from("2-3"));
        (a_id, b_id)
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_member_rebalances_the_group_and_gets_the_leaders_assignment() {
        let m = membership();
        let (a, b) = two_members(&m).await;
        assert_eq!(heartbeat(&m, &a, 2), 0);
        assert_eq!(heartbeat(&m, &b, 2), 0);
        let described = m.describe(GROUP).unwrap();
        assert_eq!(described.group_state.as_str(), "Stable");
        assert_eq!(described.members.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_whose_session_runs_out_is_dropped_and_the_rest_rebalance() {
        let m = membership();
        let (a, b) = two_members(&m).await;
        // A keeps heartbeating, B falls silent past its 6 s session.
        let mut told = false;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if heartbeat(&m, &a, 2) == ResponseError::RebalanceInProgress.code() {
                told = true;
                break;
            }
        }
        assert!(told, "A was told to rejoin once B expired");
        let a3 = rejoin(&m, &a).await.unwrap();
        assert_eq!(a3.generation_id, 3);
        assert_eq!(a3.members.len(), 1, "only A is left");
        assert_eq!(heartbeat(&m, &b, 2), ResponseError::UnknownMemberId.code());
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_leaving_hands_the_group_to_the_rest() {
        let m = membership();
        let (a, b) = two_members(&m).await;
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(s(GROUP));
        leave.member_id = s(&a);
        assert_eq!(m.leave(&leave, 1).error_code, 0);
        assert_eq!(
            heartbeat(&m, &b, 2),
            ResponseError::RebalanceInProgress.code()
        );
        let b3 = rejoin(&m, &b).await.unwrap();
        assert_eq!((b3.generation_id, b3.leader.to_string()), (3, b.clone()));
        // The last one leaving empties the group.
        leave.member_id = s(&b);
        assert_eq!(m.leave(&leave, 1).error_code, 0);
        assert_eq!(m.describe(GROUP).unwrap().group_state.as_str(), "Empty");
    }

    #[tokio::test(start_paused = true)]
    async fn members_agree_on_a_protocol_they_all_support_or_are_refused() {
        let m = membership();
        let first = join_new(&m, "a", &["range", "cooperative-sticky"]);
        let second = join_new(&m, "b", &["cooperative-sticky", "range"]);
        let third = join_new(&m, "c", &["cooperative-sticky"]);
        let answers = [
            first.await.unwrap(),
            second.await.unwrap(),
            third.await.unwrap(),
        ];
        for a in &answers {
            assert_eq!(a.error_code, 0);
            assert_eq!(a.generation_id, 1, "started together: one generation");
            assert_eq!(
                a.protocol_name.as_ref().map(|p| p.to_string()),
                Some("cooperative-sticky".to_string())
            );
        }
        let refused = join_new(&m, "d", &["roundrobin"]).await.unwrap();
        assert_eq!(
            refused.error_code,
            ResponseError::InconsistentGroupProtocol.code()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn commits_come_only_from_the_current_generations_members() {
        let m = membership();
        assert_eq!(
            m.commit_refusal(GROUP, "", -1),
            None,
            "no group: an admin's commit"
        );
        let (a, _) = two_members(&m).await;
        assert_eq!(m.commit_refusal(GROUP, &a, 2), None);
        assert_eq!(
            m.commit_refusal(GROUP, &a, 1),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            m.commit_refusal(GROUP, "", -1),
            Some(ResponseError::UnknownMemberId),
            "an admin's commit while the group has members"
        );
    }
}
