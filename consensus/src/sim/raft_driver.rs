//! The driver shared by the deterministic simulations of a [`RaftGroup`] under faults
//! (`raft_group`'s toy state machine, the node crate's replicated `ConfigState`).
//!
//! What the tests have in common lives here; what differs (the node type and its state
//! machine, the model's own checks, the stats) stays in each test:
//! - [`Harness`]: the bookkeeping every such model embeds: log safety (the term and bytes
//!   first applied at each index, on any node, ever), the voters leaders steer towards,
//!   the quiet flag of the final phase, the nodes to restart after a disk error, and the
//!   first violation; a model exposes it through [`RaftModel`];
//! - node-side helpers: raft ids of simulator nodes, the group configuration, a group
//!   that stopped on an error ([`Harness::group_failed`]), steering the membership;
//! - [`drive`]: chaos in slices (a node whose group failed is restarted; a voter removed
//!   and added back in a third of the seeds), then the final phase: every node crashes
//!   onto a reliable disk, the network turns reliable, and within bounded virtual time
//!   there must be a leader, every node a voter, every node applied the same index (at
//!   least the highest acknowledged) and the model's state agreement holds;
//! - [`SimTotals`], [`first_failure`], [`same_seed_same_trace`]: the per-seed fault
//!   totals, the mutant and the determinism seed loops.
//!
//! Node ids: simulator node `n` is raft peer `n + 1`; node 0 founds the group alone.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::{NetworkConfig, SimDisk, Simulation, check_seeds};
use crate::io::{Env, Node, NodeId};
use crate::raft_group::{RaftGroup, RaftGroupConfig, RaftGroupError};
use crate::record_log::LogError;

/// The raft peer id of simulator node `node`.
pub fn raft_id(node: NodeId) -> u64 {
    u64::from(node.0) + 1
}

/// The simulator node of raft peer `raft`.
pub fn sim_node(raft: u64) -> NodeId {
    NodeId(raft.saturating_sub(1) as u32)
}

/// Every node of an `nodes`-node group as raft peers.
pub fn all_voters(nodes: usize) -> BTreeSet<u64> {
    (1..=nodes as u64).collect()
}

/// The group configuration of simulator node `node`: node 0 founds the group as its only
/// voter, the others join when the leader adds them; short election and heartbeat ticks.
pub fn group_config(node: NodeId, env: &mut dyn Env, max_size_per_msg: u64) -> RaftGroupConfig {
    let initial_voters = if node == NodeId(0) {
        vec![1]
    } else {
        Vec::new()
    };
    let mut config = RaftGroupConfig::new(raft_id(node), initial_voters, env.random_u64());
    config.election_tick = 15;
    config.heartbeat_tick = 3;
    config.max_size_per_msg = max_size_per_msg;
    config
}

/// On the leader: proposes one change towards `target` voters, if any is needed.
/// Returns the error when it is fatal (the caller stops the group).
pub fn steer_membership(
    group: &mut RaftGroup<SimDisk>,
    target: &BTreeSet<u64>,
) -> Option<RaftGroupError> {
    if !group.is_leader() {
        return None;
    }
    let voters: BTreeSet<u64> = group.voters().into_iter().collect();
    let result = if let Some(&add) = target.difference(&voters).next() {
        group.propose_add_voter(add)
    } else if let Some(&remove) = voters.difference(target).next() {
        group.propose_remove_voter(remove)
    } else {
        return None;
    };
    result.err().filter(RaftGroupError::is_fatal)
}

/// The bookkeeping shared by the models of the Raft simulations.
#[derive(Debug, Default)]
pub struct Harness {
    /// The term and bytes first applied at each index (conf changes as a marker).
    pub log: BTreeMap<u64, (u64, Vec<u8>)>,
    /// Voters the leaders steer the membership towards.
    pub target_voters: BTreeSet<u64>,
    /// Clients stop (the final convergence).
    pub quiet: bool,
    /// Nodes whose group stopped on a disk error: the driver restarts them.
    pub needs_restart: BTreeSet<NodeId>,
    /// The first violation seen.
    pub violation: Option<String>,
}

impl Harness {
    /// A harness steering towards all `nodes` as voters.
    pub fn new(nodes: usize) -> Harness {
        Harness {
            target_voters: all_voters(nodes),
            ..Harness::default()
        }
    }

    /// Records `reason` unless a violation was recorded already.
    pub fn violate(&mut self, reason: String) {
        if self.violation.is_none() {
            self.violation = Some(reason);
        }
    }

    /// The first violation, as an error.
    pub fn check(&self) -> Result<(), String> {
        match &self.violation {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        }
    }

    /// Log safety: checks (and the first time records) the entry `node` applied at `index`.
    pub fn check_entry(&mut self, node: NodeId, index: u64, term: u64, bytes: &[u8]) {
        match self.log.get(&index) {
            Some((first_term, first_bytes)) => {
                if *first_term != term || first_bytes != bytes {
                    self.violate(format!(
                        "{node}: index {index} applied as term {term} ({} bytes {:?}), first \
                         applied as term {first_term} ({} bytes {:?})",
                        bytes.len(),
                        &bytes[..bytes.len().min(32)],
                        first_bytes.len(),
                        &first_bytes[..first_bytes.len().min(32)],
                    ));
                }
            }
            None => {
                self.log.insert(index, (term, bytes.to_vec()));
            }
        }
    }

    /// `node`'s group stopped on `error`: the driver restarts the node. A corrupt log or
    /// snapshot is a violation (crashes only tear unsynced tails), and so is any error in
    /// the final phase (it runs on reliable disks: recovery must succeed there).
    pub fn group_failed(&mut self, node: NodeId, error: &RaftGroupError) {
        self.needs_restart.insert(node);
        let corrupt = matches!(
            error,
            RaftGroupError::Corrupt(_) | RaftGroupError::Log(LogError::Corrupt { .. })
        );
        if corrupt || self.quiet {
            self.violate(format!("{node}: {error}"));
        }
    }
}

/// A model that embeds a [`Harness`].
pub trait RaftModel {
    fn harness(&self) -> &Harness;
    fn harness_mut(&mut self) -> &mut Harness;
}

/// A simulated node hosting a group (none while stopped after an error).
pub trait RaftHost: Node {
    fn group(&self) -> Option<&RaftGroup<SimDisk>>;
}

/// The phases' timing.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Nodes in the simulation (all of them voters at the end).
    pub nodes: usize,
    /// Chaos runs in slices this long; failed nodes are restarted between slices.
    pub slice_ms: u64,
    /// Virtual time with chaos on.
    pub chaos_ms: u64,
    /// Virtual time the group gets to converge once chaos stopped.
    pub converge_ms: u64,
    /// In runs that change membership (seed % 3 == 1): a voter is removed at
    /// `remove_at_ms` and added back at `readd_at_ms`.
    pub remove_at_ms: u64,
    pub readd_at_ms: u64,
}

/// What [`drive`] did, for the totals.
#[derive(Clone, Copy, Debug)]
pub struct Driven {
    /// Whether a voter was removed and added back.
    pub changes_membership: bool,
    /// Virtual time the final phase took to converge.
    pub converge_ms: u64,
}

/// Drives `sim` through chaos and the final convergence (see the module doc), checking
/// the model's violation after every slice and at the end. `acknowledged_max` gives the
/// highest index the model saw acknowledged (read once chaos stopped); `agree` is the
/// model's extra condition on the converged nodes (their states are equal, ...);
/// `describe` a node for the failure message.
pub fn drive<N: RaftHost, M: RaftModel>(
    sim: &mut Simulation<N>,
    model: &RefCell<M>,
    schedule: &Schedule,
    acknowledged_max: impl FnOnce(&M) -> u64,
    agree: impl Fn(&[&N]) -> bool,
    describe: impl Fn(&N) -> String,
) -> Result<Driven, String> {
    let seed = sim.seed();
    let nodes = schedule.nodes;
    let changes_membership = seed % 3 == 1;
    let victim = 1 + (seed / 3) % nodes as u64;
    // Chaos, in slices: a node whose group stopped on a disk error is restarted.
    let mut bounded = 0;
    while sim.now_ms() < schedule.chaos_ms {
        bounded += 1;
        assert!(bounded <= schedule.chaos_ms, "slices are bounded");
        sim.run_for(schedule.slice_ms)
            .map_err(|error| error.to_string())?;
        model.borrow().harness().check()?;
        let failed = {
            let mut model = model.borrow_mut();
            let harness = model.harness_mut();
            if changes_membership {
                if sim.now_ms() == schedule.remove_at_ms {
                    harness.target_voters.remove(&victim);
                } else if sim.now_ms() == schedule.readd_at_ms {
                    harness.target_voters.insert(victim);
                }
            }
            std::mem::take(&mut harness.needs_restart)
        };
        for id in failed {
            sim.crash(id);
            sim.restart(id);
        }
    }

    // The final phase: chaos stops, every node crashes (tearing what it had not synced)
    // and restarts on a disk that no longer fails, over a reliable network; clients stop.
    {
        let mut model = model.borrow_mut();
        let harness = model.harness_mut();
        harness.quiet = true;
        harness.target_voters = all_voters(nodes);
    }
    sim.crash_all_onto_reliable_disks();
    sim.network_mut().set_config(NetworkConfig::reliable());
    let started = sim.now_ms();
    let deadline = started + schedule.converge_ms;
    let acknowledged_max = acknowledged_max(&model.borrow());
    let all: Vec<u64> = all_voters(nodes).into_iter().collect();
    let converged = |sim: &Simulation<N>| {
        let hosts: Vec<&N> = (0..nodes as u32)
            .filter_map(|index| sim.node(NodeId(index)))
            .collect();
        if hosts.len() != nodes {
            return false;
        }
        let groups: Vec<&RaftGroup<SimDisk>> =
            hosts.iter().filter_map(|host| host.group()).collect();
        if groups.len() != nodes {
            return false;
        }
        let Some(leader) = groups.iter().find(|group| group.is_leader()) else {
            return false;
        };
        let commit = leader.commit_index();
        commit >= acknowledged_max
            && groups
                .iter()
                .all(|group| group.applied_index() == commit && group.voters() == all)
            && agree(&hosts)
    };
    sim.run_until_goal(
        deadline,
        "a leader, every node a voter, every node applied the same index and state",
        converged,
    )
    .map_err(|error| {
        if let Some(reason) = model.borrow().harness().violation.clone() {
            return reason;
        }
        let detail: Vec<String> = (0..nodes as u32)
            .map(|index| match sim.node(NodeId(index)) {
                Some(host) => describe(host),
                None => format!("n{index}: down"),
            })
            .collect();
        format!("{error}; acknowledged up to {acknowledged_max}; {detail:?}")
    })?;
    model.borrow().harness().check()?;
    Ok(Driven {
        changes_membership,
        converge_ms: sim.now_ms() - started,
    })
}

/// Fault totals over seeds, to show the faults were exercised.
#[derive(Debug, Default)]
pub struct SimTotals {
    pub removal_runs: u64,
    pub crashes: u64,
    pub torn_writes: u64,
    pub lost_on_sync_failure: u64,
    /// Messages dropped by a partition, and by loss.
    pub partitioned: u64,
    pub dropped: u64,
    pub converge_ms_max: u64,
}

impl SimTotals {
    /// Adds one driven run of `nodes` nodes.
    pub fn add<N: Node>(&mut self, sim: &Simulation<N>, nodes: usize, driven: &Driven) {
        self.removal_runs += u64::from(driven.changes_membership);
        self.converge_ms_max = self.converge_ms_max.max(driven.converge_ms);
        self.partitioned += sim.network_stats().partitioned;
        self.dropped += sim.network_stats().dropped;
        for index in 0..nodes as u32 {
            let disk = sim.disk(NodeId(index)).stats();
            self.crashes += disk.crashes;
            self.torn_writes += disk.torn_writes;
            self.lost_on_sync_failure += disk.lost_on_sync_failure;
        }
    }
}

/// Runs seeds `0..seeds` with a mutant switched on (`switch(true)`, and `switch(false)`
/// after) until one fails: its reason (`seed N: ...`), or a panic's message.
pub fn first_failure(
    switch: impl Fn(bool),
    seeds: u64,
    run: impl Fn(u64) -> Result<(), String>,
) -> Option<String> {
    switch(true);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        (0..seeds).find_map(|seed| {
            run(seed)
                .err()
                .map(|reason| format!("seed {seed}: {reason}"))
        })
    }));
    switch(false);
    outcome.unwrap_or_else(|panic| {
        Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".to_string()),
        )
    })
}

/// Determinism: for every `every`-th seed (a sample is enough: determinism does not
/// depend on the seed), two runs must end with the same trace hash.
pub fn same_seed_same_trace(
    module: &str,
    test: &str,
    every: u64,
    run: impl Fn(u64) -> Result<u64, String>,
) {
    check_seeds(module, test, |seed| {
        if seed % every != 0 {
            return Ok(());
        }
        let first = run(seed)?;
        let second = run(seed)?;
        if first == second {
            Ok(())
        } else {
            Err(format!("trace hashes differ: {first:x} vs {second:x}"))
        }
    });
}
