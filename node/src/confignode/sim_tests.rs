//! The ConfigNode — planner, state machine, procedures and its command store — on the
//! deterministic simulator's faulty disk, across many seeds (`SIM_SEEDS`, `SIM_SEED`).
//!
//! Each simulated node runs its own ConfigNode over a [`DiskStore`] on a [`SimDisk`] that
//! tears unsynced writes on a crash, fails fsyncs (losing what they covered) and runs out
//! of space. The node registers DataNodes, creates databases and partitions, changes node
//! status, writes snapshots and deletes databases (crashing at random kill points), in
//! group-committed batches; chaos crashes and restarts it.
//!
//! Invariants, checked at every recovery against what the test saw acknowledged:
//! - no acknowledged command is lost: the recovered version is at least the acknowledged
//!   one;
//! - ids are never reused: a region group id or node id always names the same group
//!   (database, kind) or node (address), and the id sequences never go back;
//! - partition assignments never move by themselves: an acknowledged (series slot, time
//!   slot) → group stays while the group exists;
//! - an interrupted procedure is resumed at open and leaves nothing behind.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use iotdb_consensus::io::{Env, Node, NodeId as SimNodeId, TimerId};
use iotdb_consensus::sim::{
    ChaosConfig, DiskConfig, NetworkConfig, SimConfig, SimDisk, Simulation, Writeback, check_seeds,
};

use super::store::DiskStore;
use super::tests::data_node;
use super::*;
use crate::sql::DatabaseAttributes;

const OPERATE: TimerId = TimerId(1);
const REOPEN: TimerId = TimerId(2);
const NODES: usize = 3;
const RUN_MS: u64 = 500;
const DATABASES: [&str; 3] = ["root.a", "root.b", "root.c"];

fn fixed_clock() -> i64 {
    1_700_000_000_000
}

/// What the test knows about one node, across its incarnations.
#[derive(Debug, Default)]
struct NodeModel {
    /// The version last acknowledged (a batch whose sync succeeded).
    acknowledged_version: u64,
    /// Every region group id ever seen → (database, kind).
    groups: BTreeMap<RegionGroupId, (String, RegionGroupKind)>,
    /// Every node id ever seen → its internal address.
    nodes: BTreeMap<NodeId, String>,
    /// Acknowledged partition assignments: (database, series slot, time slot) → group.
    assignments: BTreeMap<(String, u32, i64), RegionGroupId>,
    next_region_id: u32,
    next_node_id: u32,
}

#[derive(Debug, Default)]
struct Model {
    nodes: Vec<NodeModel>,
    violation: Option<String>,
    acknowledgements: u64,
    failed_batches: u64,
    failed_opens: u64,
    last_open_error: String,
    kills: u64,
    resumed: u64,
    snapshots: u64,
    deletions: u64,
}

impl Model {
    fn violate(&mut self, reason: String) {
        if self.violation.is_none() {
            self.violation = Some(reason);
        }
    }

    /// Ids in `state` must name what they always named.
    fn check_ids(&mut self, node: SimNodeId, state: &ConfigState) {
        let mut violations = Vec::new();
        let model = &mut self.nodes[node.0 as usize];
        for group in state.region_groups().values() {
            let seen = model
                .groups
                .entry(group.id)
                .or_insert_with(|| (group.database.clone(), group.kind));
            if *seen != (group.database.clone(), group.kind) {
                violations.push(format!(
                    "{node}: region group id {} reused: was {seen:?}, now ({}, {:?})",
                    group.id, group.database, group.kind
                ));
            }
        }
        for (id, info) in state.data_nodes() {
            let seen = model
                .nodes
                .entry(*id)
                .or_insert_with(|| info.spec.internal_address.clone());
            if *seen != info.spec.internal_address {
                violations.push(format!(
                    "{node}: node id {id} reused: was {seen}, now {}",
                    info.spec.internal_address
                ));
            }
        }
        for reason in violations {
            self.violate(reason);
        }
    }

    fn acknowledge(&mut self, node: SimNodeId, state: &ConfigState) {
        self.acknowledgements += 1;
        self.check_ids(node, state);
        let model = &mut self.nodes[node.0 as usize];
        model.acknowledged_version = state.version();
        model.next_region_id = state.next_region_id();
        model.next_node_id = state.next_node_id().0;
        for database in state.databases().values() {
            for (slot, times) in &database.data_partitions {
                for (time, group) in times {
                    model
                        .assignments
                        .insert((database.name.clone(), *slot, *time), *group);
                }
            }
        }
    }

    fn recovered(&mut self, node: SimNodeId, state: &ConfigState) {
        self.check_ids(node, state);
        let model = &self.nodes[node.0 as usize];
        let mut violations = Vec::new();
        if state.version() < model.acknowledged_version {
            violations.push(format!(
                "{node}: acknowledged commands lost: version {} recovered, {} acknowledged",
                state.version(),
                model.acknowledged_version
            ));
        }
        if state.next_region_id() < model.next_region_id
            || state.next_node_id().0 < model.next_node_id
        {
            violations.push(format!(
                "{node}: an id sequence went back: regions {} < {} or nodes {} < {}",
                state.next_region_id(),
                model.next_region_id,
                state.next_node_id(),
                model.next_node_id
            ));
        }
        for ((database, slot, time), group) in &model.assignments {
            if !state.region_groups().contains_key(group) {
                continue; // Its database was deleted since.
            }
            let now = state
                .databases()
                .get(database)
                .and_then(|db| db.data_partition(*slot, *time));
            if now != Some(*group) {
                violations.push(format!(
                    "{node}: partition ({database}, {slot}, {time}) moved from {group} to {now:?}"
                ));
            }
        }
        for reason in violations {
            self.violate(reason);
        }
    }
}

/// Effects the simulated DataNodes would carry out; the test only counts them.
struct CountDrops<'a>(&'a mut u64);

impl ProcedureEnv for CountDrops<'_> {
    fn drop_replicas(&mut self, groups: &[(RegionGroupId, RegionGroupKind)]) -> Result<(), String> {
        *self.0 += groups.len() as u64;
        Ok(())
    }
}

struct CnNode {
    id: SimNodeId,
    disk: SimDisk,
    node: Option<ConfigNode<DiskStore<SimDisk>>>,
    model: Rc<RefCell<Model>>,
    dropped: u64,
}

impl CnNode {
    /// Opens the ConfigNode from the disk, checks what it recovered, resumes procedures.
    fn open(&mut self, env: &mut dyn Env) {
        self.node = None;
        let opened = DiskStore::open(self.disk.handle()).and_then(|(store, recovered)| {
            ConfigNode::from_store(store, recovered, ClusterSettings::default())
        });
        let mut model = self.model.borrow_mut();
        let mut node = match opened {
            Ok(node) => node,
            Err(ConfigNodeError::Store(reason)) => {
                // An injected disk fault while recovering: try again a little later.
                model.failed_opens += 1;
                model.last_open_error = reason;
                let delay = 1 + env.random_u64() % 5;
                env.set_timer(REOPEN, delay);
                return;
            }
            Err(error) => {
                model.violate(format!("{}: recovery failed: {error}", self.id));
                return;
            }
        };
        node.set_clock(fixed_clock);
        model.recovered(self.id, node.state());
        let pending = node.state().procedures().len() as u64;
        match node.resume_procedures(&mut CountDrops(&mut self.dropped)) {
            Ok(_) => {
                model.resumed += pending;
                if !node.state().procedures().is_empty() {
                    model.violate(format!("{}: procedures left after resuming", self.id));
                }
            }
            Err(ConfigNodeError::Store(_)) => {
                model.failed_opens += 1;
                let delay = 1 + env.random_u64() % 5;
                env.set_timer(REOPEN, delay);
                return;
            }
            Err(error) => {
                model.violate(format!("{}: resuming procedures failed: {error}", self.id));
                return;
            }
        }
        self.node = Some(node);
        let delay = 1 + env.random_u64() % 3;
        env.set_timer(OPERATE, delay);
    }

    /// One random operation; `Err` when the ConfigNode must be reopened (a store failure
    /// or a kill point).
    fn operate(&mut self, env: &mut dyn Env) -> Result<(), ConfigNodeError> {
        let node = self.node.as_mut().expect("operating on an open node");
        let database = DATABASES[(env.random_u64() % DATABASES.len() as u64) as usize];
        let outcome = match env.random_u64() % 10 {
            0 => node
                .register_data_node(data_node(
                    (env.random_u64() % 5) as u32,
                    1 + (env.random_u64() % 3) as u32,
                ))
                .map(drop),
            1 | 2 => node.create_database(database, &DatabaseAttributes::default()),
            3..=5 => {
                let partitions: Vec<(u32, i64)> = (0..1 + env.random_u64() % 4)
                    .map(|_| {
                        (
                            (env.random_u64() % 64) as u32,
                            (env.random_u64() % 6) as i64,
                        )
                    })
                    .collect();
                node.get_or_create_data_partitions(database, &partitions)
                    .map(drop)
            }
            6 => node
                .get_or_create_schema_partitions(database, &[(env.random_u64() % 64) as u32])
                .map(drop),
            7 => {
                let ids: Vec<NodeId> = node.state().data_nodes().keys().copied().collect();
                if ids.is_empty() {
                    Ok(())
                } else {
                    let id = ids[(env.random_u64() % ids.len() as u64) as usize];
                    let status = if env.random_u64().is_multiple_of(2) {
                        NodeStatus::Running
                    } else {
                        NodeStatus::Unknown
                    };
                    node.set_node_status(id, status)
                }
            }
            _ => {
                let kill = env.random_u64().is_multiple_of(3);
                if kill {
                    let point = KillPoint::DELETE_DATABASE
                        [(env.random_u64() % KillPoint::DELETE_DATABASE.len() as u64) as usize];
                    node.set_kill_mode(KillMode::Fail(point));
                }
                let result = node.delete_database(database, &mut CountDrops(&mut self.dropped));
                node.set_kill_mode(KillMode::Disarmed);
                if result.is_ok() {
                    self.model.borrow_mut().deletions += 1;
                }
                result
            }
        };
        match outcome {
            Err(error @ (ConfigNodeError::Store(_) | ConfigNodeError::Killed(_))) => Err(error),
            // Refusals (no such database, not enough DataNodes, ...) change nothing.
            _ => Ok(()),
        }
    }
}

impl Node for CnNode {
    fn on_start(&mut self, env: &mut dyn Env) {
        self.open(env);
    }

    fn on_message(&mut self, _: &mut dyn Env, _: SimNodeId, _: Bytes) {}

    fn on_timer(&mut self, env: &mut dyn Env, timer: TimerId) {
        if timer == REOPEN {
            self.open(env);
            return;
        }
        if self.node.is_none() {
            return;
        }
        let node = self.node.as_mut().expect("checked");
        // Mostly group-committed batches (a process crash loses the batch's buffered
        // commands with it); sometimes every command synced on its own, so a kill point
        // finds the procedure's first commands durable and the restart must resume it.
        if !env.random_u64().is_multiple_of(4) {
            node.begin_batch();
        }
        let mut outcome = Ok(());
        for _ in 0..1 + env.random_u64() % 4 {
            outcome = self.operate(env);
            if outcome.is_err() {
                break;
            }
        }
        let node = self.node.as_mut().expect("checked");
        let outcome = outcome.and_then(|()| node.end_batch());
        let outcome = outcome.and_then(|()| {
            if env.random_u64().is_multiple_of(20) {
                self.model.borrow_mut().snapshots += 1;
                node.checkpoint()
            } else {
                Ok(())
            }
        });
        let mut model = self.model.borrow_mut();
        match outcome {
            Ok(()) => {
                model.acknowledge(self.id, node.state());
                let delay = 1 + env.random_u64() % 3;
                env.set_timer(OPERATE, delay);
            }
            Err(ConfigNodeError::Killed(_)) => {
                // A process crash at the kill point: what was written stays in the page
                // cache; the restarted process recovers and resumes.
                model.kills += 1;
                drop(model);
                self.open(env);
            }
            Err(_) => {
                // The store failed: nothing of the batch was acknowledged; restart.
                model.failed_batches += 1;
                self.node = None;
                let delay = 1 + env.random_u64() % 5;
                env.set_timer(REOPEN, delay);
            }
        }
    }

    fn on_crash(&mut self) {
        self.node = None;
    }
}

fn config() -> SimConfig {
    let mut config = SimConfig::reliable(NODES);
    config.network = NetworkConfig::reliable();
    config.disk = DiskConfig {
        sync_failure_probability: 0.003,
        sync_failure_loses_probability: 0.5,
        no_space_probability: 0.0005,
        capacity_bytes: 64 * 1024 * 1024,
        writeback_probability: 0.6,
        torn_write_probability: 0.5,
        writeback: Writeback::InOrder,
    };
    config.chaos = ChaosConfig {
        interval_ms: 25,
        crash_probability: 0.1,
        restart_delay_min_ms: 1,
        restart_delay_max_ms: 30,
        partition_probability: 0.0,
        heal_probability: 0.0,
    };
    config
}

/// One seed: a faulty run, then every node crashes and recovers on a reliable disk.
fn run(seed: u64, totals: &mut Model) -> Result<u64, String> {
    let model = Rc::new(RefCell::new(Model {
        nodes: (0..NODES).map(|_| NodeModel::default()).collect(),
        ..Model::default()
    }));
    let shared = Rc::clone(&model);
    let mut sim = Simulation::new(seed, config(), move |id, disk| CnNode {
        id,
        disk,
        node: None,
        model: Rc::clone(&shared),
        dropped: 0,
    });
    let check = |model: &Rc<RefCell<Model>>| match model.borrow().violation.clone() {
        Some(reason) => Err(reason),
        None => Ok(()),
    };
    sim.run_until(RUN_MS).map_err(|error| error.to_string())?;
    check(&model)?;
    let nodes: Vec<SimNodeId> = (0..NODES as u32).map(SimNodeId).collect();
    sim.crash_all_onto_reliable_disks();
    let deadline = sim.now_ms() + config().chaos.restart_delay_max_ms + 50;
    sim.run_until_goal(deadline, "every ConfigNode recovers", |sim| {
        nodes
            .iter()
            .all(|&id| sim.is_up(id) && sim.node(id).is_some_and(|node| node.node.is_some()))
    })
    .map_err(|error| match model.borrow().violation.clone() {
        Some(reason) => reason,
        None => {
            let states: Vec<String> = nodes
                .iter()
                .map(|&id| {
                    format!(
                        "{id}: up {} open {}",
                        sim.is_up(id),
                        sim.node(id).is_some_and(|node| node.node.is_some())
                    )
                })
                .collect();
            format!(
                "{error} ({}; last failed open: {})",
                states.join(", "),
                model.borrow().last_open_error
            )
        }
    })?;
    check(&model)?;
    let model = model.borrow();
    totals.acknowledgements += model.acknowledgements;
    totals.failed_batches += model.failed_batches;
    totals.failed_opens += model.failed_opens;
    totals.kills += model.kills;
    totals.resumed += model.resumed;
    totals.snapshots += model.snapshots;
    totals.deletions += model.deletions;
    Ok(sim.trace_hash())
}

#[test]
fn config_node_survives_crashes_and_disk_faults() {
    let mut totals = Model::default();
    let mut seeds = 0;
    check_seeds(
        module_path!(),
        "config_node_survives_crashes_and_disk_faults",
        |seed| {
            seeds += 1;
            run(seed, &mut totals).map(drop)
        },
    );
    eprintln!(
        "ConfigNode simulation, {seeds} seeds: {} acknowledged batches, {} failed batches, \
         {} failed opens, {} kills, {} procedures resumed, {} snapshots, {} deletions",
        totals.acknowledgements,
        totals.failed_batches,
        totals.failed_opens,
        totals.kills,
        totals.resumed,
        totals.snapshots,
        totals.deletions
    );
    if seeds >= 50 {
        // Over many seeds every path must have been taken, or the test proves little.
        assert!(totals.acknowledgements > 0, "{totals:?}");
        assert!(totals.failed_batches > 0, "{totals:?}");
        assert!(totals.kills > 0, "{totals:?}");
        assert!(totals.resumed > 0, "{totals:?}");
        assert!(totals.snapshots > 0, "{totals:?}");
        assert!(totals.deletions > 0, "{totals:?}");
    }
}

#[test]
fn same_seed_same_config_node_run() {
    check_seeds(module_path!(), "same_seed_same_config_node_run", |seed| {
        if seed % 10 != 0 {
            return Ok(());
        }
        let first = run(seed, &mut Model::default())?;
        let second = run(seed, &mut Model::default())?;
        if first == second {
            Ok(())
        } else {
            Err(format!("trace hashes differ: {first:x} vs {second:x}"))
        }
    });
}
