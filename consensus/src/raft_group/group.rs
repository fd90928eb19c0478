//! [`RaftGroup`]: a raft-rs `RawNode` over [`RaftStorage`], with the `Ready` handling done
//! once and correctly, so that a host only moves bytes and applies committed entries.

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType,
};
use raft::{RawNode, SnapshotStatus, StateRole};

use super::RaftGroupError;
use super::codec::{decode_message, encode_message};
use super::storage::{RaftStorage, snapshot_bytes_max};
use crate::io::Disk;
use crate::limits::{
    RAFT_ENTRY_BYTES_MAX, RAFT_INFLIGHT_MESSAGES_MAX, RAFT_MESSAGE_ENTRIES_BYTES_MAX,
    RAFT_READY_ROUNDS_MAX, RAFT_UNCOMMITTED_BYTES_MAX,
};

/// How a node takes part in a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftGroupConfig {
    /// This node's raft id (not 0; unique in the group, never reused for another node).
    pub id: u64,
    /// Voters of a group this node founds; empty when joining an existing group (the
    /// leader adds it with `propose_add_voter`). Ignored once the disk has state.
    pub initial_voters: Vec<u64>,
    /// Ticks without a leader before a follower campaigns (randomized in
    /// `[election_tick, 2 * election_tick)`).
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats; less than `election_tick`.
    pub heartbeat_tick: usize,
    /// Bytes of entries per append message.
    pub max_size_per_msg: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// Seeds the election-timeout randomization (the process's entropy in production,
    /// the simulator's seeded generator in tests).
    pub random_seed: u64,
}

impl RaftGroupConfig {
    /// Defaults for a ConfigNode: ticks of ~100 ms, elections after 1–2 s.
    pub fn new(id: u64, initial_voters: Vec<u64>, random_seed: u64) -> RaftGroupConfig {
        RaftGroupConfig {
            id,
            initial_voters,
            election_tick: 10,
            heartbeat_tick: 2,
            max_size_per_msg: RAFT_MESSAGE_ENTRIES_BYTES_MAX,
            max_inflight_msgs: RAFT_INFLIGHT_MESSAGES_MAX,
            random_seed,
        }
    }
}

/// A snapshot the host restores its state machine from. Empty `data` means the state
/// machine's initial state (the snapshot a new group is bootstrapped with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredSnapshot {
    pub index: u64,
    pub term: u64,
    pub data: Bytes,
    /// Voters as of `index`.
    pub voters: Vec<u64>,
}

/// A membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    AddVoter(u64),
    RemoveVoter(u64),
}

/// What the host applies, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// A proposed command, committed at `index`.
    Normal { index: u64, term: u64, data: Bytes },
    /// A membership change took effect at `index`; `voters` is the configuration now.
    ConfChange {
        index: u64,
        term: u64,
        change: MembershipChange,
        voters: Vec<u64>,
    },
    /// Replace the whole state machine by this snapshot (this node lagged too far).
    Snapshot(RestoredSnapshot),
}

/// What one `advance` produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send, `(to, bytes)`; deliver each to that peer's `step`.
    pub messages: Vec<(u64, Bytes)>,
    /// Committed entries and snapshots, to apply in this order.
    pub committed: Vec<Committed>,
    /// The leader as now known, when it changed during this call (None inside: unknown).
    pub leader_changed: Option<Option<u64>>,
    /// A follower needs a snapshot newer than the stored one: call `compact` soon, with
    /// the state machine as of `applied_index`.
    pub compact_requested: bool,
}

/// Where a proposal landed in the leader's log: it is committed iff a `Committed` with
/// this index *and* term comes out of `advance` (another term at that index: it was lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub index: u64,
    pub term: u64,
}

/// One node's replica of a Raft group, driven by its host: `tick`, `step`, `propose`,
/// then `advance` for the outputs. Single-threaded: owned by the host's event loop.
pub struct RaftGroup<D: Disk> {
    node: RawNode<RaftStorage<D>>,
    config: RaftGroupConfig,
    /// The configuration applied so far, and the conf states applied since the
    /// snapshot (index, state), for `compact` to name the one in force at its index.
    conf_history: Vec<(u64, ConfState)>,
    /// Index of the last entry handed to the host (or restored by a snapshot).
    applied: u64,
    leader: Option<u64>,
    /// Seeded generator state for the election timeout (splitmix64).
    random_state: u64,
    /// (term, role, leader, timeout) after the last override: a change means raft reset
    /// its election timeout from `thread_rng`, which the group then replaces.
    observed: (u64, StateRole, u64, usize),
    failed: bool,
}

impl<D: Disk> std::fmt::Debug for RaftGroup<D> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RaftGroup")
            .field("id", &self.config.id)
            .field("term", &self.node.raft.term)
            .field("leader", &self.leader)
            .field("applied", &self.applied)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<D: Disk> RaftGroup<D> {
    /// Recovers (or bootstraps, see [`RaftGroupConfig::initial_voters`]) the group's
    /// storage on `disk`. Returns the snapshot the host must restore its state machine
    /// from first, if any; the committed entries after it come out of the next `advance`.
    pub fn open(
        disk: D,
        config: RaftGroupConfig,
    ) -> Result<(RaftGroup<D>, Option<RestoredSnapshot>), RaftGroupError> {
        if config.id == 0 || config.initial_voters.contains(&0) {
            return Err(RaftGroupError::InvalidConfig("raft id 0".to_string()));
        }
        let storage = RaftStorage::open(disk, &config.initial_voters)?;
        let snapshot = storage.latest_snapshot().clone();
        let metadata = snapshot.get_metadata().clone();
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            applied: metadata.index,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            max_uncommitted_size: RAFT_UNCOMMITTED_BYTES_MAX,
            ..raft::Config::default()
        };
        raft_config
            .validate()
            .map_err(|error| RaftGroupError::InvalidConfig(error.to_string()))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_config, storage, &logger)?;
        let restored = (metadata.index > 0).then(|| RestoredSnapshot {
            index: metadata.index,
            term: metadata.term,
            data: snapshot.data.clone(),
            voters: metadata.get_conf_state().voters.clone(),
        });
        let mut group = RaftGroup {
            node,
            conf_history: vec![(metadata.index, metadata.get_conf_state().clone())],
            applied: metadata.index,
            leader: None,
            random_state: config.random_seed,
            observed: (0, StateRole::Follower, 0, 0),
            failed: false,
            config,
        };
        group.settle_election_timeout(true);
        Ok((group, restored))
    }

    /// This node's raft id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        let leader = self.node.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Whether this node leads and has committed an entry of its own term: every entry
    /// committed by earlier leaders is then committed here too (and handed out by
    /// `advance`), so a state machine that applied them may serve linearizable reads.
    pub fn leader_ready(&self) -> bool {
        self.is_leader() && self.node.raft.commit_to_current_term()
    }

    /// The voters of the configuration applied so far, sorted.
    pub fn voters(&self) -> Vec<u64> {
        let mut voters = self.current_conf_state().voters.clone();
        voters.sort_unstable();
        voters
    }

    /// Through which index the leader knows voter `id` holds its log; `None` when this
    /// node does not lead or `id` is no peer.
    pub fn matched(&self, id: u64) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        self.node
            .raft
            .prs()
            .get(id)
            .map(|progress| progress.matched)
    }

    /// Asks voter `to` to take leadership (a leader only): once `to` holds the whole log it
    /// campaigns at once, and this node steps down when it hears of the new term. Until
    /// then (at most an election timeout) this node refuses proposals.
    pub fn transfer_leader(&mut self, to: u64) -> Result<(), RaftGroupError> {
        self.check_alive()?;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.node.transfer_leader(to);
        Ok(())
    }

    /// Index of the last entry handed to the host (what its state machine reflects once
    /// it applied every `Output`).
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// The commit index this node knows.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// Entries kept since the last snapshot: the host compacts when this grows large.
    pub fn entries_since_snapshot(&self) -> u64 {
        self.node.store().entries_since_snapshot()
    }

    /// The leader's view of every peer's replication, for a test's failure message.
    #[cfg(test)]
    pub(crate) fn progress_summary(&self) -> String {
        let raft = &self.node.raft;
        let mut peers: Vec<String> = raft
            .prs()
            .iter()
            .map(|(id, progress)| {
                format!(
                    "{id}: match {} next {} {:?} pending_snapshot {} paused {}",
                    progress.matched,
                    progress.next_idx,
                    progress.state,
                    progress.pending_snapshot,
                    progress.is_paused()
                )
            })
            .collect();
        peers.sort();
        format!(
            "commit {} last {} first {} role {:?} peers {peers:?}",
            raft.raft_log.committed,
            raft.raft_log.last_index(),
            self.node.store().first_index(),
            raft.state
        )
    }

    /// Whether a disk failure stopped the group (every call now fails; restart).
    pub fn has_failed(&self) -> bool {
        self.failed || self.node.store().has_failed()
    }

    fn check_alive(&self) -> Result<(), RaftGroupError> {
        if self.has_failed() {
            Err(RaftGroupError::Failed)
        } else {
            Ok(())
        }
    }

    fn current_conf_state(&self) -> &ConfState {
        &self
            .conf_history
            .last()
            .expect("the history starts with the snapshot's conf state")
            .1
    }

    /// One tick of the host's clock.
    pub fn tick(&mut self) -> Result<(), RaftGroupError> {
        self.check_alive()?;
        self.node.tick();
        self.settle_election_timeout(false);
        Ok(())
    }

    /// A message from peer `from`. Malformed or misaddressed bytes are a typed error and
    /// change nothing.
    pub fn step(&mut self, from: u64, payload: &[u8]) -> Result<(), RaftGroupError> {
        self.check_alive()?;
        let malformed = |reason: String| RaftGroupError::Malformed { from, reason };
        let message = decode_message(payload).map_err(malformed)?;
        self.validate(from, &message).map_err(malformed)?;
        let result = self.node.step(message);
        self.settle_election_timeout(false);
        result.map_err(RaftGroupError::from)
    }

    /// Checks what raft-rs would otherwise trust (or panic on).
    fn validate(&self, from: u64, message: &Message) -> Result<(), String> {
        if message.from != from || message.to != self.config.id {
            return Err(format!(
                "addressed {} -> {}, arrived {from} -> {}",
                message.from, message.to, self.config.id
            ));
        }
        if from == self.config.id || from == raft::INVALID_ID {
            return Err(format!("sender id {from}"));
        }
        let mut expected = message.index + 1;
        for entry in message.get_entries() {
            let bytes = entry.data.len() + entry.context.len();
            if bytes > RAFT_ENTRY_BYTES_MAX {
                return Err(format!("entry of {bytes} bytes"));
            }
            if message.get_msg_type() == MessageType::MsgAppend {
                if entry.index != expected {
                    return Err(format!("entry {} where {expected} belongs", entry.index));
                }
                expected += 1;
            }
        }
        let last_index = self.node.raft.raft_log.last_index();
        if message.get_msg_type() == MessageType::MsgHeartbeat && message.commit > last_index {
            // raft-rs would panic: the leader counts entries here this replica lacks.
            return Err(format!(
                "a heartbeat committing through {} where this replica's log ends at \
                 {last_index}: its log was lost (a wiped or replaced data directory) while \
                 it stayed a voter",
                message.commit
            ));
        }
        if message.get_msg_type() == MessageType::MsgSnapshot {
            let snapshot = message.get_snapshot();
            let max = snapshot_bytes_max(snapshot.get_metadata());
            if snapshot.data.len() > max {
                return Err(format!("snapshot of {} bytes", snapshot.data.len()));
            }
        }
        Ok(())
    }

    fn not_leader(&self) -> RaftGroupError {
        RaftGroupError::NotLeader {
            leader: self.leader().filter(|&leader| leader != self.config.id),
        }
    }

    fn last_proposed(&self) -> Proposed {
        Proposed {
            index: self.node.raft.raft_log.last_index(),
            term: self.node.raft.raft_log.last_term(),
        }
    }

    /// Proposes a command. Only the leader accepts; others answer `NotLeader` with the
    /// leader they know, and the host forwards the command there itself.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<Proposed, RaftGroupError> {
        self.check_alive()?;
        if data.len() > RAFT_ENTRY_BYTES_MAX {
            return Err(RaftGroupError::EntryTooLarge {
                bytes: data.len(),
                max: RAFT_ENTRY_BYTES_MAX,
            });
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        match self.node.propose(Vec::new(), data) {
            Ok(()) => Ok(self.last_proposed()),
            Err(raft::Error::ProposalDropped) => Err(RaftGroupError::ProposalDropped),
            Err(error) => Err(error.into()),
        }
    }

    /// Proposes adding `id` as a voter (one membership change at a time).
    pub fn propose_add_voter(&mut self, id: u64) -> Result<Proposed, RaftGroupError> {
        self.propose_membership(ConfChangeType::AddNode, id)
    }

    /// Proposes removing voter `id` (one membership change at a time).
    pub fn propose_remove_voter(&mut self, id: u64) -> Result<Proposed, RaftGroupError> {
        self.propose_membership(ConfChangeType::RemoveNode, id)
    }

    fn propose_membership(
        &mut self,
        change_type: ConfChangeType,
        id: u64,
    ) -> Result<Proposed, RaftGroupError> {
        self.check_alive()?;
        if id == raft::INVALID_ID {
            return Err(RaftGroupError::InvalidConfig("raft id 0".to_string()));
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if self.node.raft.has_pending_conf() {
            return Err(RaftGroupError::ConfChangePending);
        }
        let mut change = ConfChange::default();
        change.set_change_type(change_type);
        change.node_id = id;
        match self.node.propose_conf_change(Vec::new(), change) {
            Ok(()) => Ok(self.last_proposed()),
            Err(raft::Error::ProposalDropped) => Err(RaftGroupError::ProposalDropped),
            Err(error) => Err(error.into()),
        }
    }

    /// Starts an election now (a test or an operator's nudge; ticks do it on their own).
    pub fn campaign(&mut self) -> Result<(), RaftGroupError> {
        self.check_alive()?;
        let result = self.node.campaign();
        self.settle_election_timeout(false);
        result.map_err(RaftGroupError::from)
    }

    /// Handles everything raft has ready: persists (one fsync per round), then releases
    /// the messages that needed it and the committed entries. Call after every `tick`,
    /// `step` and `propose` (or after a batch of them) and act on the output in order.
    /// An error from the disk stops the group for good (`Failed` from then on).
    pub fn advance(&mut self) -> Result<Output, RaftGroupError> {
        self.check_alive()?;
        let mut output = Output::default();
        for _ in 0..RAFT_READY_ROUNDS_MAX {
            if !self.node.has_ready() {
                break;
            }
            if let Err(error) = self.handle_ready(&mut output) {
                // Whatever failed, the Ready was not given back: raft-rs cannot go on.
                self.failed = true;
                if error.is_fatal() {
                    return Err(error);
                }
                return Err(RaftGroupError::Ready(error.to_string()));
            }
        }
        self.settle_election_timeout(false);
        output.compact_requested = self.node.store().snapshot_wanted();
        let leader = self.leader();
        if leader != self.leader {
            self.leader = leader;
            output.leader_changed = Some(leader);
        }
        Ok(output)
    }

    fn handle_ready(&mut self, output: &mut Output) -> Result<(), RaftGroupError> {
        let mut ready = self.node.ready();
        let mut snapshot_targets = Vec::new();
        // 1. A leader's messages may go before it persists (raft thesis 10.2.1).
        emit(output, ready.take_messages(), &mut snapshot_targets);
        // 2. A snapshot from the leader replaces the log, durably.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.node.mut_store().install_snapshot(&snapshot)?;
            let metadata = snapshot.get_metadata();
            self.conf_history = vec![(metadata.index, metadata.get_conf_state().clone())];
            self.applied = metadata.index;
            output.committed.push(Committed::Snapshot(RestoredSnapshot {
                index: metadata.index,
                term: metadata.term,
                data: snapshot.data.clone(),
                voters: metadata.get_conf_state().voters.clone(),
            }));
        }
        // 3. Committed entries (durable in earlier rounds: raft releases only persisted ones).
        self.apply_committed(ready.take_committed_entries(), output)?;
        // 4. Entries and hard state, then one fsync.
        self.node.mut_store().append(ready.entries())?;
        if let Some(hard_state) = ready.hs() {
            let hard_state = hard_state.clone();
            self.node.mut_store().set_hard_state(&hard_state)?;
        }
        self.node.mut_store().sync()?;
        // 5. Votes and append acknowledgements only now.
        emit(
            output,
            ready.take_persisted_messages(),
            &mut snapshot_targets,
        );
        // 6. What became possible now that the round is durable.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Not synced on its own: a lost commit index is learnt again from the leader.
            let mut hard_state = self.node.store().hard_state().clone();
            hard_state.commit = commit;
            self.node.mut_store().set_hard_state(&hard_state)?;
        }
        emit(output, light.take_messages(), &mut snapshot_targets);
        self.apply_committed(light.take_committed_entries(), output)?;
        self.node.advance_apply();
        // The transport is fire-and-forget: report a snapshot sent as finished, so a lost
        // one is detected by the follower's rejection and sent again.
        for to in snapshot_targets {
            self.node.report_snapshot(to, SnapshotStatus::Finish);
        }
        Ok(())
    }

    fn apply_committed(
        &mut self,
        entries: Vec<Entry>,
        output: &mut Output,
    ) -> Result<(), RaftGroupError> {
        for entry in entries {
            if entry.index <= self.applied {
                continue;
            }
            self.applied = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        output.committed.push(Committed::Normal {
                            index: entry.index,
                            term: entry.term,
                            data: entry.data.clone(),
                        });
                    }
                }
                EntryType::EntryConfChange => {
                    let change = ConfChange::parse_from_bytes(&entry.data).map_err(|error| {
                        RaftGroupError::Corrupt(format!("conf change {}: {error}", entry.index))
                    })?;
                    let conf_state = self.node.apply_conf_change(&change)?;
                    let membership = match change.get_change_type() {
                        ConfChangeType::RemoveNode => MembershipChange::RemoveVoter(change.node_id),
                        _ => MembershipChange::AddVoter(change.node_id),
                    };
                    self.record_conf_change(&entry, membership, conf_state, output);
                }
                EntryType::EntryConfChangeV2 => {
                    // Never proposed by this group; applied so raft stays consistent.
                    let change = ConfChangeV2::parse_from_bytes(&entry.data).map_err(|error| {
                        RaftGroupError::Corrupt(format!("conf change {}: {error}", entry.index))
                    })?;
                    let conf_state = self.node.apply_conf_change(&change)?;
                    let membership = match change.get_changes().first() {
                        Some(single) if single.get_change_type() == ConfChangeType::RemoveNode => {
                            MembershipChange::RemoveVoter(single.node_id)
                        }
                        Some(single) => MembershipChange::AddVoter(single.node_id),
                        None => continue,
                    };
                    self.record_conf_change(&entry, membership, conf_state, output);
                }
            }
        }
        Ok(())
    }

    fn record_conf_change(
        &mut self,
        entry: &Entry,
        change: MembershipChange,
        conf_state: ConfState,
        output: &mut Output,
    ) {
        let mut voters = conf_state.voters.clone();
        voters.sort_unstable();
        if self.is_leader() && !voters.contains(&self.config.id) {
            // raft-rs 0.7 leaves a removed leader leading, and then panics on its own
            // missing progress (`maybe_commit`, `on_persist_entries`). Step down in the
            // same term: no message is pending (raft emits none after a self-removal),
            // and a non-voter never campaigns, so it stays quiet until added back.
            let term = self.node.raft.term;
            self.node.raft.become_follower(term, raft::INVALID_ID);
        }
        self.conf_history.push((entry.index, conf_state));
        output.committed.push(Committed::ConfChange {
            index: entry.index,
            term: entry.term,
            change,
            voters,
        });
    }

    /// Stores `snapshot`, the host's state machine as of `applied_index` (an index it
    /// applied from this group's outputs), and drops the log up to it. Durable on return.
    /// Followers too far behind then get this snapshot from the leader.
    pub fn compact(&mut self, applied_index: u64, snapshot: Vec<u8>) -> Result<(), RaftGroupError> {
        self.check_alive()?;
        if applied_index > self.applied {
            return Err(RaftGroupError::InvalidCompaction {
                index: applied_index,
                reason: format!("beyond the applied index {}", self.applied),
            });
        }
        let position = self
            .conf_history
            .iter()
            .rposition(|(index, _)| *index <= applied_index)
            .ok_or_else(|| RaftGroupError::InvalidCompaction {
                index: applied_index,
                reason: "before the latest snapshot".to_string(),
            })?;
        let conf_state = self.conf_history[position].1.clone();
        let result =
            self.node
                .mut_store()
                .compact(applied_index, conf_state, Bytes::from(snapshot));
        if let Err(error) = result {
            if error.is_fatal() {
                self.failed = true;
            }
            return Err(error);
        }
        self.conf_history.drain(..position);
        Ok(())
    }

    /// Replaces raft-rs's `thread_rng` election timeout by a seeded one whenever raft
    /// may have reset it (a change of term, role, leader or of the timeout itself).
    fn settle_election_timeout(&mut self, force: bool) {
        let raft = &self.node.raft;
        let now = (
            raft.term,
            raft.state,
            raft.leader_id,
            raft.randomized_election_timeout(),
        );
        if !force && now == self.observed {
            return;
        }
        let low = self.config.election_tick;
        let span = self.config.election_tick as u64;
        let timeout = low + (self.next_random() % span.max(1)) as usize;
        self.node.raft.set_randomized_election_timeout(timeout);
        self.observed = (now.0, now.1, now.2, timeout);
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.random_state = self.random_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Encodes raft's messages for the transport, noting snapshot sends.
fn emit(output: &mut Output, messages: Vec<Message>, snapshot_targets: &mut Vec<u64>) {
    for message in messages {
        if message.get_msg_type() == MessageType::MsgSnapshot {
            snapshot_targets.push(message.to);
        }
        output.messages.push((message.to, encode_message(&message)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{DiskConfig, SimDisk, SimRng};

    fn open(disk: &SimDisk, id: u64, voters: Vec<u64>) -> RaftGroup<SimDisk> {
        let (group, _) =
            RaftGroup::open(disk.handle(), RaftGroupConfig::new(id, voters, 7)).expect("open");
        group
    }

    /// Ticks until the single voter leads, then drains its output.
    fn elect(group: &mut RaftGroup<SimDisk>) -> Output {
        for _ in 0..100 {
            if group.is_leader() {
                break;
            }
            group.tick().unwrap();
            group.advance().unwrap();
        }
        assert!(group.is_leader());
        group.advance().unwrap()
    }

    #[test]
    fn a_single_voter_elects_itself_commits_and_recovers() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(1));
        let mut group = open(&disk, 1, vec![1]);
        assert_eq!(group.voters(), vec![1]);
        elect(&mut group);
        let proposed = group.propose(b"one".to_vec()).unwrap();
        let output = group.advance().unwrap();
        let one = Committed::Normal {
            index: proposed.index,
            term: proposed.term,
            data: Bytes::from_static(b"one"),
        };
        assert_eq!(output.committed, vec![one.clone()]);
        drop(group);
        disk.crash();
        let (mut group, restored) =
            RaftGroup::open(disk.handle(), RaftGroupConfig::new(1, vec![], 7)).unwrap();
        let restored = restored.expect("the bootstrap snapshot");
        assert_eq!((restored.index, restored.data.len()), (1, 0));
        // The commit index is not synced on its own: "one" is committed again once the
        // node leads again, and handed out again (the state machine restarts from the
        // snapshot).
        let mut committed = group.advance().unwrap().committed;
        for _ in 0..100 {
            group.tick().unwrap();
            committed.extend(group.advance().unwrap().committed);
        }
        assert!(group.is_leader());
        assert!(committed.contains(&one), "{committed:?}");
    }

    #[test]
    fn followers_refuse_proposals_and_garbage_is_a_typed_error() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(2));
        let mut group = open(&disk, 2, vec![]);
        assert!(matches!(
            group.propose(b"x".to_vec()),
            Err(RaftGroupError::NotLeader { leader: None })
        ));
        assert!(matches!(
            group.propose_add_voter(3),
            Err(RaftGroupError::NotLeader { .. })
        ));
        for garbage in [&b"\xff\xff\xff"[..], b"\x08\x01\x10", b"\x12\x05abc"] {
            assert!(group.step(1, garbage).is_err());
        }
        // Well-formed but misaddressed.
        let mut message = Message {
            from: 5,
            to: 9,
            ..Message::default()
        };
        message.set_msg_type(MessageType::MsgHeartbeat);
        let bytes = encode_message(&message);
        assert!(matches!(
            group.step(5, &bytes),
            Err(RaftGroupError::Malformed { .. })
        ));
        assert!(!group.has_failed());
    }

    /// A replica whose log was lost while it stayed a voter (its data directory wiped, or
    /// it joined again before the group removed it): the leader's heartbeat commits
    /// entries it lacks, which raft-rs would panic on. It is refused, and the replica
    /// stays usable.
    #[test]
    fn a_heartbeat_committing_past_the_log_is_refused() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(4));
        let mut group = open(&disk, 2, vec![]);
        let mut message = Message {
            from: 1,
            to: 2,
            term: 3,
            commit: 690,
            ..Message::default()
        };
        message.set_msg_type(MessageType::MsgHeartbeat);
        let refused = group.step(1, &encode_message(&message)).unwrap_err();
        assert!(
            refused.to_string().contains("its log was lost"),
            "{refused}"
        );
        assert!(!group.has_failed());
        message.commit = 0;
        group.step(1, &encode_message(&message)).unwrap();
        group.advance().unwrap();
    }

    #[test]
    fn one_membership_change_at_a_time() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(3));
        let mut group = open(&disk, 1, vec![1]);
        elect(&mut group);
        group.propose_add_voter(2).unwrap();
        assert!(matches!(
            group.propose_remove_voter(2),
            Err(RaftGroupError::ConfChangePending)
        ));
        let output = group.advance().unwrap();
        assert!(output.committed.iter().any(|committed| matches!(
            committed,
            Committed::ConfChange {
                change: MembershipChange::AddVoter(2),
                ..
            }
        )));
        assert_eq!(group.voters(), vec![1, 2]);
    }

    #[test]
    fn a_failed_fsync_stops_the_group_for_good() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(4));
        let mut group = open(&disk, 1, vec![1]);
        elect(&mut group);
        disk.set_config(DiskConfig {
            sync_failure_probability: 1.0,
            ..DiskConfig::reliable()
        });
        group.propose(b"lost".to_vec()).unwrap();
        let error = group.advance().unwrap_err();
        assert!(error.is_fatal(), "{error}");
        disk.set_config(DiskConfig::reliable());
        assert!(matches!(group.advance(), Err(RaftGroupError::Failed)));
        assert!(matches!(group.tick(), Err(RaftGroupError::Failed)));
        assert!(matches!(
            group.propose(b"x".to_vec()),
            Err(RaftGroupError::Failed)
        ));
    }

    #[test]
    fn compaction_keeps_one_bounded_log_and_checks_its_index() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(5));
        let mut group = open(&disk, 1, vec![1]);
        elect(&mut group);
        for round in 0..50u8 {
            group.propose(vec![round]).unwrap();
            group.advance().unwrap();
            if group.entries_since_snapshot() > 8 {
                let index = group.applied_index();
                group.compact(index, vec![round]).unwrap();
            }
        }
        assert!(group.entries_since_snapshot() <= 8);
        let beyond = group.applied_index() + 1;
        assert!(matches!(
            group.compact(beyond, Vec::new()),
            Err(RaftGroupError::InvalidCompaction { .. })
        ));
        let logs = disk
            .handle()
            .list()
            .unwrap()
            .into_iter()
            .filter(|name| name.starts_with(super::super::storage::LOG_FILE_PREFIX))
            .count();
        assert_eq!(logs, 1);
    }

    /// A snapshot far beyond an ordinary atomic file (a ConfigNode state with years of
    /// partitions) is kept and survives a restart; one beyond what a message carries is
    /// refused with a typed error and changes nothing.
    #[test]
    fn large_snapshots_up_to_a_message_are_kept() {
        let disk = SimDisk::new(DiskConfig::reliable(), SimRng::new(6));
        let mut group = open(&disk, 1, vec![1]);
        elect(&mut group);
        group.propose(b"x".to_vec()).unwrap();
        group.advance().unwrap();
        let index = group.applied_index();
        let large = vec![7u8; 4 * 1024 * 1024];
        group.compact(index, large.clone()).unwrap();
        group.propose(b"y".to_vec()).unwrap();
        group.advance().unwrap();
        let too_large = vec![7u8; crate::limits::RAFT_SNAPSHOT_FILE_BYTES_MAX + 1];
        assert!(matches!(
            group.compact(group.applied_index(), too_large),
            Err(RaftGroupError::SnapshotTooLarge { .. })
        ));
        drop(group);
        let (_, restored) =
            RaftGroup::open(disk.handle(), RaftGroupConfig::new(1, vec![1], 6)).expect("reopen");
        let restored = restored.expect("a snapshot");
        assert_eq!((restored.index, restored.data.len()), (index, large.len()));
    }
}
