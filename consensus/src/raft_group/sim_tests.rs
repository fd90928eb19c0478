//! Three ConfigNode-like replicas of a [`RaftGroup`] in the simulator: message loss,
//! delay, duplication and partitions, crashes and restarts (disks back to what was synced,
//! torn writes), fsync failures and full disks (the group stops; the test restarts the
//! node), membership growing from one voter to three and, in some runs, a voter removed
//! and added back, and a small compaction threshold so snapshots are installed often.
//!
//! Each node hosts a toy state machine shaped like the ConfigNode's: an id sequence
//! (`AllocateId`) and set-once assignments (`Assign`). Clients on every node propose at
//! random times, to the local group if it leads, else forwarded to the leader it names.
//!
//! Invariants, against a model kept outside the nodes:
//! - (a) safety: every node applies strictly increasing indexes, and an index carries the
//!   same term and bytes on every node, ever, across crashes and snapshots;
//! - (b) an id is handed out at one index only; a committed assignment never changes; a
//!   state restored from a snapshot at index i equals the state any node had after i;
//! - (c) a proposal acknowledged by its leader (applied with the index and term `propose`
//!   returned) survives every crash: after the final crash of every node the group
//!   reaches at least that index again, with the same entry there;
//! - (d) liveness: once chaos stops and every node is up on a reliable disk and network,
//!   within bounded virtual time there is a leader, the voters are all three nodes, and
//!   every node has applied the same index and holds the same state.
//!
//! Mutants (a storage that skips the fsync, one that acknowledges after a failed fsync)
//! must be caught by some seed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use super::mutant::{self, Mutant};
use super::{Committed, MembershipChange, Proposed, RaftGroup, RaftGroupError};
use crate::io::{Env, Node, NodeId, TimerId};
use crate::sim::raft_driver::{
    self, Harness, RaftHost, RaftModel, Schedule, SimTotals, group_config, raft_id, sim_node,
};
use crate::sim::{SimConfig, SimDisk, Simulation, check_seeds};

const TICK: TimerId = TimerId(1);
const CLIENT: TimerId = TimerId(2);
const NODES: usize = 3;
const TICK_MS: u64 = 10;
/// Virtual time with chaos on.
const CHAOS_MS: u64 = 6_000;
/// Virtual time the group gets to converge once chaos stopped.
const CONVERGE_MS: u64 = 20_000;
/// Compact once this many entries follow the snapshot: small, so snapshots move often.
const COMPACT_AFTER_ENTRIES: u64 = 12;
/// In runs that change membership: a voter is removed here and added back later.
const REMOVE_AT_MS: u64 = 2_000;
const READD_AT_MS: u64 = 4_000;

const WIRE_RAFT: u8 = 0;
const WIRE_FORWARD: u8 = 1;

/// A command of the toy state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    AllocateId { request: u64 },
    Assign { key: u8, value: u64, request: u64 },
}

impl Command {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        match self {
            Command::AllocateId { request } => {
                bytes.push(0);
                bytes.extend_from_slice(&request.to_le_bytes());
            }
            Command::Assign {
                key,
                value,
                request,
            } => {
                bytes.push(1);
                bytes.push(*key);
                bytes.extend_from_slice(&value.to_le_bytes());
                bytes.extend_from_slice(&request.to_le_bytes());
            }
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Command> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        match bytes.first()? {
            0 if bytes.len() == 9 => Some(Command::AllocateId { request: word(1)? }),
            1 if bytes.len() == 18 => Some(Command::Assign {
                key: bytes[1],
                value: word(2)?,
                request: word(10)?,
            }),
            _ => None,
        }
    }
}

/// The toy ConfigNode state: an id sequence and set-once assignments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ToyState {
    next_id: u64,
    assignments: BTreeMap<u8, u64>,
}

enum Outcome {
    Id(u64),
    Assigned,
}

impl ToyState {
    fn apply(&mut self, command: &Command) -> Outcome {
        match command {
            Command::AllocateId { .. } => {
                let id = self.next_id;
                self.next_id += 1;
                Outcome::Id(id)
            }
            Command::Assign { key, value, .. } => {
                self.assignments.entry(*key).or_insert(*value);
                Outcome::Assigned
            }
        }
    }

    /// Never empty (empty snapshot bytes mean the initial state).
    fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![1];
        bytes.extend_from_slice(&self.next_id.to_le_bytes());
        for (key, value) in &self.assignments {
            bytes.push(*key);
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<ToyState> {
        if bytes.is_empty() {
            return Some(ToyState::default());
        }
        if bytes[0] != 1 || bytes.len() < 9 || !(bytes.len() - 9).is_multiple_of(9) {
            return None;
        }
        let mut state = ToyState {
            next_id: u64::from_le_bytes(bytes[1..9].try_into().ok()?),
            assignments: BTreeMap::new(),
        };
        for pair in bytes[9..].chunks_exact(9) {
            let value = u64::from_le_bytes(pair[1..9].try_into().ok()?);
            state.assignments.insert(pair[0], value);
        }
        Some(state)
    }
}

/// What the test knows, across every node and incarnation.
#[derive(Debug, Default)]
struct Model {
    /// Log safety, the voters to steer towards, the final phase's quiet, restarts.
    harness: Harness,
    /// The state after applying everything up to each applied index.
    state_at: BTreeMap<u64, ToyState>,
    /// Index at which each id was handed out.
    ids: BTreeMap<u64, u64>,
    /// First committed value of each key.
    assignments: BTreeMap<u8, u64>,
    /// Proposals applied by the leader that proposed them: index -> (term, bytes).
    acknowledged: BTreeMap<u64, (u64, Vec<u8>)>,
    stats: Stats,
}

#[derive(Clone, Debug, Default)]
struct Stats {
    proposals: u64,
    forwarded: u64,
    acknowledged: u64,
    applied_entries: u64,
    conf_changes: u64,
    snapshots_installed: u64,
    compactions: u64,
    fatal_errors: u64,
    max_term: u64,
}

impl RaftModel for Model {
    fn harness(&self) -> &Harness {
        &self.harness
    }

    fn harness_mut(&mut self) -> &mut Harness {
        &mut self.harness
    }
}

impl Model {
    fn violate(&mut self, reason: String) {
        self.harness.violate(reason);
    }

    /// Checks (and the first time records) the state after `index`.
    fn check_state(&mut self, node: NodeId, index: u64, state: &ToyState) {
        match self.state_at.get(&index) {
            Some(first) if first != state => self.violate(format!(
                "{node}: state after {index} is {state:?}, another node had {first:?}"
            )),
            Some(_) => {}
            None => {
                self.state_at.insert(index, state.clone());
            }
        }
    }
}

/// A ConfigNode stand-in: the group, the toy state machine and a client.
struct ConfigNodeSim {
    id: NodeId,
    disk: Option<SimDisk>,
    group: Option<RaftGroup<SimDisk>>,
    state: ToyState,
    /// Last index applied to `state` (noops are not handed out, so it may trail the
    /// group's applied index).
    applied: u64,
    /// This incarnation's own proposals, by index, until they commit or are overwritten.
    pending: BTreeMap<u64, (u64, Vec<u8>)>,
    model: Rc<RefCell<Model>>,
}

impl ConfigNodeSim {
    fn fail(&mut self, error: &RaftGroupError) {
        let mut model = self.model.borrow_mut();
        model.stats.fatal_errors += 1;
        model.harness.group_failed(self.id, error);
        self.group = None;
    }

    fn restore(&mut self, index: u64, data: &[u8], at_start: bool) {
        let mut model = self.model.borrow_mut();
        if !at_start && index <= self.applied {
            model.violate(format!(
                "{}: snapshot at {index} would rewind applied {}",
                self.id, self.applied
            ));
        }
        let Some(state) = ToyState::decode(data) else {
            model.violate(format!("{}: snapshot at {index} does not decode", self.id));
            return;
        };
        let expected = model
            .state_at
            .range(..=index)
            .next_back()
            .map(|(_, state)| state.clone());
        match expected {
            Some(expected) if expected != state => model.violate(format!(
                "{}: snapshot at {index} holds {state:?}, expected {expected:?}",
                self.id
            )),
            Some(_) => {}
            None => model.violate(format!("{}: snapshot at {index} of no state", self.id)),
        }
        if !at_start {
            model.stats.snapshots_installed += 1;
        }
        self.state = state;
        self.applied = index;
        self.pending = self.pending.split_off(&(index + 1));
    }

    fn apply(&mut self, committed: Committed) {
        match committed {
            Committed::Normal { index, term, data } => {
                self.check_order(index);
                let mut model = self.model.borrow_mut();
                model.harness.check_entry(self.id, index, term, &data);
                model.stats.applied_entries += 1;
                let Some(command) = Command::decode(&data) else {
                    model.violate(format!("{}: entry {index} does not decode", self.id));
                    return;
                };
                match self.state.apply(&command) {
                    Outcome::Id(id) => {
                        if let Some(first) = model.ids.insert(id, index)
                            && first != index
                        {
                            model.violate(format!(
                                "{}: id {id} handed out at {index} and at {first}",
                                self.id
                            ));
                        }
                    }
                    Outcome::Assigned => {
                        for (key, value) in &self.state.assignments {
                            let first = *model.assignments.entry(*key).or_insert(*value);
                            if first != *value {
                                model.violate(format!(
                                    "{}: key {key} changed from {first} to {value}",
                                    self.id
                                ));
                            }
                        }
                    }
                }
                self.applied = index;
                model.check_state(self.id, index, &self.state);
                if let Some((proposed_term, proposed)) = self.pending.remove(&index)
                    && proposed_term == term
                    && proposed == data
                {
                    model.stats.acknowledged += 1;
                    model.acknowledged.insert(index, (term, proposed));
                }
                self.pending = self.pending.split_off(&(index + 1));
            }
            Committed::ConfChange {
                index,
                term,
                change,
                voters,
            } => {
                self.check_order(index);
                let marker = format!("{change:?} -> {voters:?}").into_bytes();
                let mut model = self.model.borrow_mut();
                model.harness.check_entry(self.id, index, term, &marker);
                model.stats.conf_changes += 1;
                self.applied = index;
                model.check_state(self.id, index, &self.state);
            }
            Committed::Snapshot(snapshot) => self.restore(snapshot.index, &snapshot.data, false),
        }
    }

    fn check_order(&mut self, index: u64) {
        if index <= self.applied {
            self.model.borrow_mut().violate(format!(
                "{}: applied {index} after {}",
                self.id, self.applied
            ));
        }
    }

    /// Advances the group: sends, applies, compacts.
    fn pump(&mut self, env: &mut dyn Env) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        let output = match group.advance() {
            Ok(output) => output,
            Err(error) => return self.fail(&error),
        };
        for (to, bytes) in output.messages {
            let mut payload = Vec::with_capacity(bytes.len() + 1);
            payload.push(WIRE_RAFT);
            payload.extend_from_slice(&bytes);
            let _ = env.send(sim_node(to), Bytes::from(payload));
        }
        for committed in output.committed {
            self.apply(committed);
        }
        let Some(group) = self.group.as_mut() else {
            return;
        };
        {
            let mut model = self.model.borrow_mut();
            model.stats.max_term = model.stats.max_term.max(group.term());
        }
        if output.compact_requested || group.entries_since_snapshot() > COMPACT_AFTER_ENTRIES {
            let index = group.applied_index();
            let before = group.entries_since_snapshot();
            match group.compact(index, self.state.encode()) {
                Ok(()) => {
                    if group.entries_since_snapshot() < before {
                        self.model.borrow_mut().stats.compactions += 1;
                    }
                }
                Err(error) if error.is_fatal() => self.fail(&error),
                Err(error) => self
                    .model
                    .borrow_mut()
                    .violate(format!("{}: compact at {index}: {error}", self.id)),
            }
        }
    }

    fn propose(&mut self, data: Vec<u8>) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        match group.propose(data.clone()) {
            Ok(Proposed { index, term }) => {
                self.pending.insert(index, (term, data));
                self.model.borrow_mut().stats.proposals += 1;
            }
            Err(error) if error.is_fatal() => self.fail(&error),
            Err(_) => {}
        }
    }

    /// A client request arrives at this node: propose, or forward to the leader.
    fn client(&mut self, env: &mut dyn Env) {
        let Some(group) = self.group.as_ref() else {
            return;
        };
        let request = env.random_u64();
        let command = if env.random_u64().is_multiple_of(2) {
            Command::AllocateId { request }
        } else {
            Command::Assign {
                key: (env.random_u64() % 16) as u8,
                value: env.random_u64() % 1000,
                request,
            }
        };
        if group.is_leader() {
            self.propose(command.encode());
        } else if let Some(leader) = group.leader() {
            let mut payload = vec![WIRE_FORWARD];
            payload.extend_from_slice(&command.encode());
            let _ = env.send(sim_node(leader), Bytes::from(payload));
            self.model.borrow_mut().stats.forwarded += 1;
        }
    }

    /// The leader steers the membership towards the model's target, one change at a time.
    fn steer_membership(&mut self) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        let target = self.model.borrow().harness.target_voters.clone();
        if let Some(error) = raft_driver::steer_membership(group, &target) {
            self.fail(&error);
        }
    }
}

impl Node for ConfigNodeSim {
    fn on_start(&mut self, env: &mut dyn Env) {
        let disk = self.disk.take().expect("started once");
        let config = group_config(self.id, env, 4096);
        match RaftGroup::open(disk, config) {
            Ok((group, restored)) => {
                self.group = Some(group);
                if let Some(snapshot) = restored {
                    self.restore(snapshot.index, &snapshot.data, true);
                }
            }
            Err(error) => {
                if !error.is_fatal() {
                    self.model
                        .borrow_mut()
                        .violate(format!("{}: open: {error}", self.id));
                }
                return self.fail(&error);
            }
        }
        env.set_timer(TICK, TICK_MS);
        let delay = 1 + env.random_u64() % 10;
        env.set_timer(CLIENT, delay);
        self.pump(env);
    }

    fn on_message(&mut self, env: &mut dyn Env, from: NodeId, payload: Bytes) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        match payload.first() {
            Some(&WIRE_RAFT) => {
                if let Err(error) = group.step(raft_id(from), &payload[1..])
                    && error.is_fatal()
                {
                    return self.fail(&error);
                }
            }
            Some(&WIRE_FORWARD) => {
                if group.is_leader() {
                    self.propose(payload[1..].to_vec());
                }
            }
            _ => self
                .model
                .borrow_mut()
                .violate(format!("{}: unknown payload from {from}", self.id)),
        }
        self.pump(env);
    }

    fn on_timer(&mut self, env: &mut dyn Env, timer: TimerId) {
        if self.group.is_none() {
            return;
        }
        if timer == TICK {
            if let Some(Err(error)) = self.group.as_mut().map(RaftGroup::tick) {
                return self.fail(&error);
            }
            env.set_timer(TICK, TICK_MS);
        } else {
            if !self.model.borrow().harness.quiet {
                self.client(env);
            }
            self.steer_membership();
            let delay = 3 + env.random_u64() % 15;
            env.set_timer(CLIENT, delay);
        }
        self.pump(env);
    }
}

fn config() -> SimConfig {
    let mut config = SimConfig::faulty(NODES);
    // Crashes a little less often than the default, so that elections (150-300 ms) and
    // catch-up happen between them and the runs exercise progress, not only recovery.
    config.chaos.crash_probability = 0.03;
    config.chaos.restart_delay_max_ms = 300;
    config.disk.sync_failure_probability = 0.003;
    config.disk.no_space_probability = 0.0005;
    config
}

impl RaftHost for ConfigNodeSim {
    fn group(&self) -> Option<&RaftGroup<SimDisk>> {
        self.group.as_ref()
    }
}

const SCHEDULE: Schedule = Schedule {
    nodes: NODES,
    slice_ms: TICK_MS,
    chaos_ms: CHAOS_MS,
    converge_ms: CONVERGE_MS,
    remove_at_ms: REMOVE_AT_MS,
    readd_at_ms: READD_AT_MS,
};

/// Totals over all seeds, to show the faults and features were exercised.
#[derive(Debug, Default)]
struct Totals {
    stats: Stats,
    acknowledged_survived: u64,
    sim: SimTotals,
}

fn run(seed: u64, totals: &mut Totals) -> Result<u64, String> {
    let model = Rc::new(RefCell::new(Model {
        harness: Harness::new(NODES),
        ..Model::default()
    }));
    // The bootstrap snapshot at index 1 holds the initial state.
    model.borrow_mut().state_at.insert(1, ToyState::default());
    let shared = Rc::clone(&model);
    let mut sim = Simulation::new(seed, config(), move |id, disk| ConfigNodeSim {
        id,
        disk: Some(disk),
        group: None,
        state: ToyState::default(),
        applied: 0,
        pending: BTreeMap::new(),
        model: Rc::clone(&shared),
    });
    let driven = raft_driver::drive(
        &mut sim,
        &model,
        &SCHEDULE,
        |model| model.acknowledged.keys().next_back().copied().unwrap_or(0),
        |nodes| nodes.iter().all(|node| node.state == nodes[0].state),
        |node| match node.group.as_ref() {
            Some(group) => format!(
                "{group:?} voters {:?} {}",
                group.voters(),
                group.progress_summary()
            ),
            None => format!("{}: down", node.id),
        },
    )?;

    // (c), explicitly: every acknowledged entry is what the converged nodes applied there.
    let model = model.borrow();
    for (index, entry) in &model.acknowledged {
        if model.harness.log.get(index) != Some(entry) {
            return Err(format!("acknowledged entry {index} was lost"));
        }
    }
    totals.acknowledged_survived += model.acknowledged.len() as u64;
    let stats = &model.stats;
    let sum = &mut totals.stats;
    sum.proposals += stats.proposals;
    sum.forwarded += stats.forwarded;
    sum.acknowledged += stats.acknowledged;
    sum.applied_entries += stats.applied_entries;
    sum.conf_changes += stats.conf_changes;
    sum.snapshots_installed += stats.snapshots_installed;
    sum.compactions += stats.compactions;
    sum.fatal_errors += stats.fatal_errors;
    sum.max_term = sum.max_term.max(stats.max_term);
    totals.sim.add(&sim, NODES, &driven);
    Ok(sim.trace_hash())
}

#[test]
fn raft_group_is_safe_and_live_under_faults() {
    let mut totals = Totals::default();
    let mut seeds = 0;
    check_seeds(
        module_path!(),
        "raft_group_is_safe_and_live_under_faults",
        |seed| {
            seeds += 1;
            run(seed, &mut totals).map(drop)
        },
    );
    eprintln!("raft group simulation, {seeds} seeds: {totals:?}");
    if seeds >= 50 {
        // Over many seeds every fault and feature must have been hit.
        let stats = &totals.stats;
        assert!(stats.acknowledged > seeds, "{totals:?}");
        assert!(stats.snapshots_installed > 0, "{totals:?}");
        assert!(stats.compactions > 0, "{totals:?}");
        assert!(stats.fatal_errors > 0, "{totals:?}");
        assert!(stats.conf_changes >= 2 * seeds, "{totals:?}");
        assert!(totals.sim.torn_writes > 0, "{totals:?}");
        assert!(totals.sim.lost_on_sync_failure > 0, "{totals:?}");
        assert!(totals.sim.removal_runs > 0, "{totals:?}");
        assert!(
            totals.sim.partitioned > 0 && totals.sim.dropped > 0,
            "{totals:?}"
        );
    }
}

#[test]
fn same_seed_same_raft_run() {
    raft_driver::same_seed_same_trace(module_path!(), "same_seed_same_raft_run", 20, |seed| {
        run(seed, &mut Totals::default())
    });
}

/// Runs seeds with `bug` switched on until one fails; the harness must catch it.
fn caught(bug: Mutant, seeds: u64) -> Option<String> {
    raft_driver::first_failure(
        |on| mutant::set(on.then_some(bug)),
        seeds,
        |seed| run(seed, &mut Totals::default()).map(drop),
    )
}

#[test]
fn a_group_that_skips_the_fsync_is_caught() {
    let reason = caught(Mutant::SkipSync, 200).expect("some seed exposes the skipped fsync");
    eprintln!("skipped fsync caught: {reason}");
}

#[test]
fn a_group_that_acknowledges_after_a_failed_fsync_is_caught() {
    let reason = caught(Mutant::IgnoreSyncFailure, 300)
        .expect("some seed exposes the acknowledgement after a failed fsync");
    eprintln!("ignored fsync failure caught: {reason}");
}

/// `MembershipChange` is what the host sees; keep the test's marker format honest.
#[test]
fn membership_changes_print_as_markers() {
    let marker = format!("{:?}", MembershipChange::AddVoter(2));
    assert_eq!(marker, "AddVoter(2)");
}
