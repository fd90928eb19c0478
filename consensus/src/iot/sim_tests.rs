//! A region group of 2 or 3 replicas of [`Replica`] in the simulator, with a model
//! ConfigNode and a model storage per replica, under message loss, delay, duplication,
//! reordering, partitions, crashes that lose unsynced writes, leader changes (failover
//! and balancer moves), WAL deletion and both ack modes.
//!
//! - **Model storage** (per replica, kept outside the nodes so it survives crashes): the
//!   region's log of entries with a durable prefix (synced on random ticks), the persisted
//!   epoch table, and the first index the WAL still holds (deleted below the leader's
//!   retention floor and past a per-seed cap, so `LogGone` happens). A crash keeps the
//!   durable prefix and a random part of the rest. `NeedSnapshot` wipes the replica; a
//!   snapshot (the leader's whole log and table, sent over the simulated network)
//!   replaces it.
//! - **Model ConfigNode**: picks a leader among running replicas (InSync: only from the
//!   in-sync set) when the leader has been down a while, when a restarted leader asks for
//!   a new epoch, and at random (balancer moves); answers `RequestInSync` when its epoch
//!   and version are current; publishes views that reach each replica after a random delay.
//!
//! Invariants, checked as they happen and at the end:
//! - entries are applied at exactly `last + 1`, densely, never twice (a wipe or snapshot
//!   resets the position);
//! - the epoch rule: one `(index, epoch)` carries one payload on every replica, ever;
//! - InSync: every acknowledged write is in a new leader's log when it starts accepting
//!   writes, and in every replica's log at the end;
//! - Leader mode (a sound weakening of "lost only if not shipped"): a write acknowledged in
//!   the final epoch (no leader change after it) is never lost, nor one that every replica
//!   held durably when the next leader change happened;
//! - after chaos stops and the network heals, the group converges: one leader in the
//!   ConfigNode's latest epoch, all replicas up and holding identical, durable logs.
//!
//! Counters over all seeds assert that every fault and path fired.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

use super::mutant::{self, Mutant};
use super::{
    AckMode, Command, Entry, Epoch, Epochs, Event, GroupView, Index, IotConfig, Message, PeerId,
    Recovered, Replica, Role,
};
use crate::io::{Env, Node, NodeId, TimerId};
use crate::sim::{ChaosConfig, NetworkConfig, SimConfig, SimRng, Simulation, check_seeds};

const TICK: TimerId = TimerId(1);
const TICK_MS: u64 = 10;
const CHAOS_MS: u64 = 10_000;
const CONVERGE_MS: u64 = 15_000;
/// Seeds a mutant gets to be caught in.
const MUTANT_SEEDS_MAX: u64 = 300;
/// The model ConfigNode fails over after the leader has been down this long.
const DETECT_MS: u64 = 40;

const WIRE_MESSAGE: u8 = 0;
const WIRE_SNAPSHOT: u8 = 1;
const WIRE_SNAPSHOT_ACK: u8 = 2;

#[derive(Clone, Debug, Default)]
struct Store {
    log: Vec<Entry>,
    durable: Index,
    wal_first: Index,
    epochs: Epochs,
    floor: Index,
    /// Wiped for a snapshot not yet installed (persisted with the wipe).
    awaiting: bool,
}

impl Store {
    fn last(&self) -> Index {
        self.log.len() as Index
    }

    fn holds(&self, index: Index, payload: &Bytes) -> bool {
        index >= 1
            && self
                .log
                .get(index as usize - 1)
                .is_some_and(|entry| entry.payload == payload)
    }
}

#[derive(Clone, Debug)]
struct Acked {
    index: Index,
    payload: Bytes,
    epoch: Epoch,
    /// Held durably by every replica when the next leader change happened.
    safe: bool,
}

#[derive(Debug, Default)]
struct Counters {
    failovers: u64,
    balancer_moves: u64,
    new_epoch_requests: u64,
    snapshots: u64,
    log_gone: u64,
    rebuilds: u64,
    divergent_rebuilds: u64,
    shrinks: u64,
    expands: u64,
    reorders: u64,
    fetched: u64,
    acknowledged: u64,
    /// Leader mode: acknowledged writes a failover lost (allowed when not shipped).
    lost_unshipped: u64,
    crashes: u64,
    partitioned: u64,
    duplicated: u64,
    dropped: u64,
    /// Replicas whose bounded epoch table dropped its oldest pairs.
    trimmed_tables: u64,
    groups_of_two: u64,
    groups_of_three: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        let Counters {
            failovers,
            balancer_moves,
            new_epoch_requests,
            snapshots,
            log_gone,
            rebuilds,
            divergent_rebuilds,
            shrinks,
            expands,
            reorders,
            fetched,
            acknowledged,
            lost_unshipped,
            crashes,
            partitioned,
            duplicated,
            dropped,
            trimmed_tables,
            groups_of_two,
            groups_of_three,
        } = other;
        self.failovers += failovers;
        self.balancer_moves += balancer_moves;
        self.new_epoch_requests += new_epoch_requests;
        self.snapshots += snapshots;
        self.log_gone += log_gone;
        self.rebuilds += rebuilds;
        self.divergent_rebuilds += divergent_rebuilds;
        self.shrinks += shrinks;
        self.expands += expands;
        self.reorders += reorders;
        self.fetched += fetched;
        self.acknowledged += acknowledged;
        self.lost_unshipped += lost_unshipped;
        self.crashes += crashes;
        self.partitioned += partitioned;
        self.duplicated += duplicated;
        self.dropped += dropped;
        self.trimmed_tables += trimmed_tables;
        self.groups_of_two += groups_of_two;
        self.groups_of_three += groups_of_three;
    }
}

#[derive(Debug)]
struct ConfigNode {
    view: Option<GroupView>,
    /// When the current view was published, and when it reaches each replica.
    arrives_ms: Vec<u64>,
    leader_down_since: Option<u64>,
}

struct Model {
    nodes: usize,
    ack: AckMode,
    wal_cap: u64,
    rng: SimRng,
    stores: Vec<Store>,
    up: Vec<bool>,
    cn: ConfigNode,
    requests: Vec<Command>,
    /// Client writes logged by a leader and not yet acknowledged: node → (epoch, index, payload).
    pending: Vec<Vec<(Epoch, Index, Bytes)>>,
    acked: Vec<Acked>,
    labels: BTreeMap<(Index, Epoch), Bytes>,
    writes: bool,
    counters: Counters,
    violation: Option<String>,
}

impl Model {
    fn violate(&mut self, reason: String) {
        if self.violation.is_none() {
            self.violation = Some(reason);
        }
    }

    /// The epoch rule, as stored: one payload per `(index, epoch)`.
    fn check_label(&mut self, node: usize, entry: &Entry) {
        let epochs = &self.stores[node].epochs;
        if entry.index < epochs.first_labelled() {
            return; // The bounded table dropped this label already.
        }
        let Some(epoch) = epochs.epoch_at(entry.index) else {
            self.violate(format!(
                "n{node}: index {} stored without a label",
                entry.index
            ));
            return;
        };
        let known = self
            .labels
            .entry((entry.index, epoch))
            .or_insert_with(|| entry.payload.clone());
        if *known != entry.payload {
            let reason = format!(
                "n{node}: index {} epoch {epoch} holds {:?}, elsewhere {:?}",
                entry.index, entry.payload, known
            );
            self.violate(reason);
        }
    }

    fn publish(&mut self, view: GroupView, now_ms: u64) {
        for node in 0..self.nodes {
            self.cn.arrives_ms[node] = now_ms + self.rng.below(60);
        }
        self.cn.view = Some(view);
    }

    /// One decision of the model ConfigNode.
    fn config_node_step(&mut self, now_ms: u64) {
        // A replica being rebuilt is not Running (IoTDB reports it inactive).
        let up: Vec<PeerId> = (0..self.nodes)
            .filter(|&node| self.up[node] && !self.stores[node].awaiting)
            .map(|node| node as PeerId)
            .collect();
        let Some(mut view) = self.cn.view.clone() else {
            // The region group is created with replica 0 leading, everything in sync.
            let all: Vec<PeerId> = (0..self.nodes as PeerId).collect();
            let view = GroupView {
                epoch: 1,
                leader: 0,
                replicas: all.clone(),
                in_sync: all.clone(),
                in_sync_version: 1,
                running: all,
                ack: self.ack,
            };
            self.publish(view, now_ms);
            return;
        };
        let mut requests = std::mem::take(&mut self.requests);
        let mut new_epoch = false;
        let mut step_down_from = None;
        for request in requests.drain(..) {
            match request {
                Command::RequestInSync {
                    epoch,
                    in_sync,
                    version,
                } if epoch == view.epoch
                    && version == view.in_sync_version
                    && in_sync.contains(&view.leader) =>
                {
                    if in_sync.len() < view.in_sync.len() {
                        self.counters.shrinks += 1;
                    } else {
                        self.counters.expands += 1;
                    }
                    view.in_sync = in_sync;
                    view.in_sync_version += 1;
                    self.publish(view.clone(), now_ms);
                }
                Command::RequestNewEpoch { epoch, step_down } if epoch == view.epoch => {
                    self.counters.new_epoch_requests += 1;
                    new_epoch = true;
                    // Only the named leader asks; a wiped one must not be named again.
                    step_down_from = step_down.then_some(view.leader).or(step_down_from);
                }
                _ => {}
            }
        }
        let leader_up = up.contains(&view.leader);
        if leader_up {
            self.cn.leader_down_since = None;
        } else if self.cn.leader_down_since.is_none() {
            self.cn.leader_down_since = Some(now_ms);
        }
        let down_long = self
            .cn
            .leader_down_since
            .is_some_and(|since| now_ms >= since + DETECT_MS);
        let balance = self.writes && leader_up && self.rng.chance(0.002);
        if new_epoch || down_long || balance {
            let candidates: Vec<PeerId> = up
                .iter()
                .copied()
                .filter(|peer| self.ack == AckMode::Leader || view.in_sync.contains(peer))
                .filter(|&peer| !balance || peer != view.leader)
                .filter(|&peer| step_down_from != Some(peer))
                .collect();
            if candidates.is_empty() {
                return;
            }
            let leader = candidates[self.rng.below(candidates.len() as u64) as usize];
            if balance {
                self.counters.balancer_moves += 1;
            } else {
                self.counters.failovers += 1;
            }
            self.mark_safe_writes();
            view.epoch += 1;
            view.leader = leader;
            view.in_sync_version += 1;
            view.running = up;
            self.cn.leader_down_since = None;
            self.publish(view, now_ms);
        } else if view.running != up {
            view.running = up;
            view.in_sync_version += 1;
            self.publish(view, now_ms);
        }
    }

    /// Leader mode: writes every replica holds durably at a leader change must survive.
    fn mark_safe_writes(&mut self) {
        for acked in &mut self.acked {
            acked.safe = acked.safe
                || self.stores.iter().all(|store| {
                    acked.index <= store.durable && store.holds(acked.index, &acked.payload)
                });
        }
    }
}

struct IotNode {
    id: usize,
    replica: Replica,
    model: Rc<RefCell<Model>>,
    seen: Option<(Epoch, u64)>,
    /// The next index this replica's storage must be written at.
    applied: Index,
    awaiting_snapshot: Option<PeerId>,
    /// The epoch whose leadership was checked against the acknowledged writes.
    checked_epoch: Option<Epoch>,
    write_seq: u64,
}

fn config_for(rng: &mut SimRng) -> IotConfig {
    IotConfig {
        max_batch_entries: rng.between(1, 8) as usize,
        max_batch_bytes: rng.between(40, 400) as usize,
        max_pending_batches: rng.between(1, 5) as usize,
        queue_bytes_max: rng.between(0, 1_000) as usize,
        resend_after_ms: 60,
        catch_up_timeout_ms: 200,
        unresponsive_after_ms: 250,
        snapshot_timeout_ms: 400,
        epochs_max: rng.between(2, 12) as usize,
    }
}

impl IotNode {
    fn new(id: usize, config: IotConfig, model: Rc<RefCell<Model>>) -> IotNode {
        let (recovered, applied) = {
            let model = model.borrow();
            let store = &model.stores[id];
            let recovered = Recovered {
                last_index: store.last(),
                durable_index: store.durable,
                epochs: store.epochs.clone(),
                awaiting_snapshot: store.awaiting,
            };
            (recovered, store.last())
        };
        IotNode {
            id,
            replica: Replica::new(id as PeerId, config, recovered),
            model,
            seen: None,
            applied,
            awaiting_snapshot: None,
            checked_epoch: None,
            write_seq: 0,
        }
    }

    fn feed(&mut self, env: &mut dyn Env, event: Event) {
        let mut events = VecDeque::from([event]);
        let trace = std::env::var_os("IOT_TRACE").is_some();
        while let Some(event) = events.pop_front() {
            let mut out = Vec::new();
            if trace && !matches!(event, Event::Tick { .. }) {
                eprintln!("{:>6} n{} <- {event:?}", env.now_ms(), self.id);
            }
            self.replica.step(event, &mut out);
            if trace {
                for command in &out {
                    eprintln!("{:>6} n{} -> {command:?}", env.now_ms(), self.id);
                }
            }
            for command in out {
                self.execute(env, command, &mut events);
            }
            self.after_step();
        }
    }

    fn send(&self, env: &mut dyn Env, to: PeerId, tag: u8, message: &Message) {
        let mut bytes = vec![tag];
        message.encode(&mut bytes);
        env.send(NodeId(to as u32), Bytes::from(bytes))
            .expect("known node");
    }

    fn execute(&mut self, env: &mut dyn Env, command: Command, events: &mut VecDeque<Event>) {
        let id = self.id;
        let mut model = self.model.borrow_mut();
        match command {
            Command::Send { to, message } => {
                drop(model);
                self.send(env, to, WIRE_MESSAGE, &message);
            }
            Command::Apply { entries } => {
                for entry in entries {
                    if entry.index != self.applied + 1 || model.stores[id].last() != self.applied {
                        let reason = format!(
                            "n{id}: applied index {} after {} (store ends at {})",
                            entry.index,
                            self.applied,
                            model.stores[id].last()
                        );
                        model.violate(reason);
                        return;
                    }
                    self.applied = entry.index;
                    model.stores[id].log.push(entry.clone());
                    model.check_label(id, &entry);
                }
            }
            Command::PersistEpochs(epochs) => model.stores[id].epochs = epochs,
            Command::ReadLog {
                peer,
                from,
                max_bytes,
            } => {
                let store = &model.stores[id];
                if from < store.wal_first {
                    let first_kept = store.wal_first;
                    if self.replica.progress().role == Role::Leader {
                        model.counters.log_gone += 1;
                    }
                    events.push_back(Event::LogGone { peer, first_kept });
                } else {
                    let mut bytes = 0;
                    let entries: Vec<Entry> = store
                        .log
                        .iter()
                        .skip(from as usize - 1)
                        .take_while(|entry| {
                            bytes += entry.payload.len();
                            bytes <= max_bytes || entry.index == from
                        })
                        .take(16)
                        .cloned()
                        .collect();
                    events.push_back(Event::LogRead { peer, entries });
                }
            }
            Command::SendSnapshot { peer } => {
                let store = &model.stores[id];
                let snapshot = Message::Fetched {
                    epoch: store.last(),
                    gone: false,
                    epochs: store.epochs.slice(0, store.last()),
                    entries: store.log.clone(),
                };
                drop(model);
                self.send(env, peer, WIRE_SNAPSHOT, &snapshot);
            }
            Command::NeedSnapshot { from } => {
                model.counters.rebuilds += 1;
                if model.stores[id].last() > 0 {
                    model.counters.divergent_rebuilds += 1;
                }
                let store = &mut model.stores[id];
                store.log.clear();
                store.durable = 0;
                store.wal_first = 1;
                store.epochs.truncate_from(1);
                store.awaiting = true;
                self.applied = 0;
                self.awaiting_snapshot = Some(from);
            }
            Command::Acknowledge { through } => {
                // Writes of an earlier leadership of this replica were failed back to
                // their clients when it stepped down; only this epoch's are acknowledged.
                let epoch = self.replica.progress().epoch;
                let pending = std::mem::take(&mut model.pending[id]);
                for (written_epoch, index, payload) in pending {
                    if written_epoch != epoch {
                        continue;
                    }
                    if index <= through {
                        model.counters.acknowledged += 1;
                        model.acked.push(Acked {
                            index,
                            payload,
                            epoch: written_epoch,
                            safe: false,
                        });
                    } else {
                        model.pending[id].push((written_epoch, index, payload));
                    }
                }
            }
            request @ (Command::RequestInSync { .. } | Command::RequestNewEpoch { .. }) => {
                model.requests.push(request)
            }
            Command::SetRetentionFloor(floor) => model.stores[id].floor = floor,
        }
    }

    /// InSync: a replica that just started to lead holds every acknowledged write.
    fn after_step(&mut self) {
        let progress = self.replica.progress();
        if progress.role != Role::Leader || self.checked_epoch == Some(progress.epoch) {
            return;
        }
        self.checked_epoch = Some(progress.epoch);
        let mut model = self.model.borrow_mut();
        if model.ack != AckMode::InSync {
            return;
        }
        let store = &model.stores[self.id];
        let missing = model
            .acked
            .iter()
            .find(|acked| !store.holds(acked.index, &acked.payload))
            .cloned();
        if let Some(acked) = missing {
            let reason = format!(
                "n{}: leads epoch {} without acknowledged write {} ({:?})",
                self.id, progress.epoch, acked.index, acked.payload
            );
            model.violate(reason);
        }
    }

    fn tick(&mut self, env: &mut dyn Env) {
        let now_ms = env.now_ms();
        self.model.borrow_mut().config_node_step(now_ms);
        self.feed(env, Event::Tick { now_ms });
        // A view that reached this replica.
        let view = {
            let model = self.model.borrow();
            model.cn.view.clone().filter(|view| {
                Some((view.epoch, view.in_sync_version)) > self.seen
                    && now_ms >= model.cn.arrives_ms[self.id]
            })
        };
        if let Some(view) = view {
            self.seen = Some((view.epoch, view.in_sync_version));
            self.feed(env, Event::View(view));
        }
        // WAL sync at random moments.
        let synced = {
            let mut model = self.model.borrow_mut();
            let store = &mut model.stores[self.id];
            (store.durable < store.last() && env.random_u64().is_multiple_of(3)).then(|| {
                store.durable = store.last();
                store.durable
            })
        };
        if let Some(through) = synced {
            self.feed(env, Event::Durable { through });
        }
        // A client write, if this replica leads.
        let writes = self.model.borrow().writes;
        if writes
            && env.random_u64().is_multiple_of(4)
            && let Ok(index) = self.replica.write_allowed()
        {
            self.write(env, index);
        }
        self.delete_wal();
        env.set_timer(TICK, TICK_MS);
    }

    fn write(&mut self, env: &mut dyn Env, index: Index) {
        self.write_seq += 1;
        let epoch = self.replica.progress().epoch;
        let payload = Bytes::from(format!(
            "n{} e{epoch} i{index} s{}{}",
            self.id,
            self.write_seq,
            "x".repeat((env.random_u64() % 40) as usize)
        ));
        let entry = Entry {
            index,
            kind: (env.random_u64() % 3) as u8,
            payload: payload.clone(),
        };
        {
            let mut model = self.model.borrow_mut();
            let id = self.id;
            if model.stores[id].last() + 1 != index || self.applied + 1 != index {
                model.violate(format!("n{id}: write_allowed gave index {index}"));
                return;
            }
            model.stores[id].log.push(entry.clone());
            model.check_label(id, &entry);
            model.pending[id].push((epoch, index, payload));
        }
        self.applied = index;
        self.feed(env, Event::Written { entry });
    }

    /// The WAL keeps what the retention floor asks for, up to a cap of durable entries.
    fn delete_wal(&mut self) {
        let mut model = self.model.borrow_mut();
        let cap = model.wal_cap;
        let store = &mut model.stores[self.id];
        let mut first = store.wal_first.max(1);
        if store.floor > 0 {
            first = first.max(store.floor.min(store.durable + 1));
        }
        if store.durable + 1 > first + cap {
            first = store.durable + 1 - cap;
        }
        store.wal_first = first;
    }

    fn on_snapshot(&mut self, env: &mut dyn Env, from: PeerId, snapshot: Message) {
        let Message::Fetched {
            epochs, entries, ..
        } = snapshot
        else {
            return;
        };
        let through = entries.last().map_or(0, |entry| entry.index);
        let installing = self.awaiting_snapshot == Some(from)
            && self.replica.progress().role == Role::Installing;
        if installing {
            let mut model = self.model.borrow_mut();
            model.counters.snapshots += 1;
            let id = self.id;
            let store = &mut model.stores[id];
            let fence = store.epochs.leader_fence();
            store.log = entries.clone();
            store.durable = through;
            store.wal_first = through + 1;
            store.awaiting = false;
            store.epochs = epochs.clone();
            store.epochs.set_leader_fence(fence);
            for entry in &entries {
                model.check_label(id, entry);
            }
            drop(model);
            self.applied = through;
            self.awaiting_snapshot = None;
            self.feed(env, Event::SnapshotInstalled { through, epochs });
        }
        let ack = Message::Appended {
            epoch: 0,
            through,
            last: 0,
            durable: u64::from(installing),
        };
        self.send(env, from, WIRE_SNAPSHOT_ACK, &ack);
    }
}

impl Node for IotNode {
    fn on_start(&mut self, env: &mut dyn Env) {
        self.model.borrow_mut().up[self.id] = true;
        let now_ms = env.now_ms();
        self.feed(env, Event::Tick { now_ms });
        let first_tick_ms = 1 + env.random_u64() % TICK_MS;
        env.set_timer(TICK, first_tick_ms);
    }

    fn on_message(&mut self, env: &mut dyn Env, from: NodeId, payload: Bytes) {
        let Some(&tag) = payload.first() else {
            return;
        };
        let message = match Message::decode(&payload.slice(1..)) {
            Ok(message) => message,
            Err(error) => {
                self.model
                    .borrow_mut()
                    .violate(format!("undecodable message: {error}"));
                return;
            }
        };
        let from = PeerId::from(from.0);
        match tag {
            WIRE_MESSAGE => {
                {
                    let mut model = self.model.borrow_mut();
                    match &message {
                        Message::Append { prev, .. } if *prev > model.stores[self.id].last() => {
                            model.counters.reorders += 1;
                        }
                        Message::Fetched { entries, .. } if !entries.is_empty() => {
                            model.counters.fetched += 1;
                        }
                        _ => {}
                    }
                }
                self.feed(env, Event::Received { from, message });
            }
            WIRE_SNAPSHOT => self.on_snapshot(env, from, message),
            WIRE_SNAPSHOT_ACK => {
                if let Message::Appended {
                    through, durable, ..
                } = message
                {
                    let event = Event::SnapshotSent {
                        peer: from,
                        through,
                        ok: durable == 1,
                    };
                    self.feed(env, event);
                }
            }
            _ => {}
        }
    }

    fn on_timer(&mut self, env: &mut dyn Env, timer: TimerId) {
        if timer == TICK {
            self.tick(env);
        }
    }

    fn on_crash(&mut self) {
        if std::env::var_os("IOT_TRACE").is_some() {
            eprintln!("crash n{}", self.id);
        }
        let mut model = self.model.borrow_mut();
        let id = self.id;
        model.counters.crashes += 1;
        model.up[id] = false;
        model.pending[id].clear();
        // The durable prefix survives, and some of what was written after it.
        let store_last = model.stores[id].last();
        let durable = model.stores[id].durable;
        let kept = durable + model.rng.below(store_last - durable + 1);
        let store = &mut model.stores[id];
        store.log.truncate(kept as usize);
        store.durable = kept;
    }
}

/// Runs one seed.
fn run(seed: u64, ack: AckMode) -> Result<Outcome, String> {
    let mut rng = SimRng::new(seed ^ 0x10C0_25E5);
    let nodes = if rng.chance(0.5) { 2 } else { 3 };
    let config = config_for(&mut rng);
    let model = Rc::new(RefCell::new(Model {
        nodes,
        ack,
        wal_cap: rng.between(5, 60),
        rng: rng.fork(),
        stores: vec![Store::default(); nodes],
        up: vec![false; nodes],
        cn: ConfigNode {
            view: None,
            arrives_ms: vec![0; nodes],
            leader_down_since: None,
        },
        requests: Vec::new(),
        pending: vec![Vec::new(); nodes],
        acked: Vec::new(),
        labels: BTreeMap::new(),
        writes: true,
        counters: Counters::default(),
        violation: None,
    }));
    let mut sim_config = SimConfig::reliable(nodes);
    sim_config.network = NetworkConfig {
        drop_probability: 0.05,
        duplicate_probability: 0.05,
        delay_min_ms: 1,
        delay_max_ms: 40,
    };
    sim_config.chaos = ChaosConfig {
        interval_ms: 25,
        crash_probability: 0.04,
        restart_delay_min_ms: 1,
        restart_delay_max_ms: 150,
        partition_probability: 0.03,
        heal_probability: 0.2,
    };
    let shared = Rc::clone(&model);
    let mut sim = Simulation::new(seed, sim_config, move |id, _disk| {
        IotNode::new(id.0 as usize, config.clone(), Rc::clone(&shared))
    });
    let stop = |model: &Rc<RefCell<Model>>| model.borrow().violation.clone().map_or(Ok(()), Err);
    sim.run_until(CHAOS_MS).map_err(|error| error.to_string())?;
    stop(&model)?;
    // Heal: no more chaos or client writes, a reliable network, everyone up.
    sim.set_chaos(false);
    sim.network_mut().set_config(NetworkConfig::reliable());
    model.borrow_mut().writes = false;
    for node in 0..nodes {
        sim.restart(NodeId(node as u32));
    }
    let watched = Rc::clone(&model);
    sim.run_until_goal(CHAOS_MS + CONVERGE_MS, "the group converges", |sim| {
        converged(sim, &watched.borrow())
    })
    .map_err(|error| {
        let model = model.borrow();
        let logs: Vec<String> = model
            .stores
            .iter()
            .map(|store| format!("last {} durable {}", store.last(), store.durable))
            .collect();
        let roles: Vec<String> = (0..nodes)
            .map(|node| {
                sim.node(NodeId(node as u32)).map_or("down".into(), |node| {
                    format!("{:?}", node.replica.progress())
                })
            })
            .collect();
        format!(
            "{error}: view {:?}; stores {logs:?}; {roles:?}",
            model.cn.view
        )
    })?;
    stop(&model)?;
    check_acknowledged(&model.borrow())?;
    let mut model = model.borrow_mut();
    let network = sim.network_stats().clone();
    let model = &mut *model;
    let counters = &mut model.counters;
    counters.partitioned = network.partitioned;
    counters.duplicated = network.duplicated;
    counters.dropped = network.dropped;
    counters.trimmed_tables = model
        .stores
        .iter()
        .filter(|store| store.epochs.first_labelled() > 1)
        .count() as u64;
    counters.lost_unshipped = model
        .acked
        .iter()
        .filter(|acked| !model.stores[0].holds(acked.index, &acked.payload))
        .count() as u64;
    if nodes == 2 {
        counters.groups_of_two += 1;
    } else {
        counters.groups_of_three += 1;
    }
    Ok(Outcome {
        trace_hash: sim.trace_hash(),
        counters: std::mem::take(&mut model.counters),
        log: model.stores[0].log.clone(),
        acked: model.acked.len(),
    })
}

/// What a passing seed leaves: the counters and, for the determinism check, the log.
struct Outcome {
    trace_hash: u64,
    counters: Counters,
    log: Vec<Entry>,
    acked: usize,
}

/// One leader in the latest epoch, every replica up, identical durable logs.
fn converged(sim: &Simulation<IotNode>, model: &Model) -> bool {
    let Some(view) = &model.cn.view else {
        return false;
    };
    let first = &model.stores[0];
    (0..model.nodes).all(|node| {
        let Some(running) = sim.node(NodeId(node as u32)) else {
            return false;
        };
        let progress = running.replica.progress();
        let store = &model.stores[node];
        let role_ok = if node as PeerId == view.leader {
            progress.role == Role::Leader && progress.epoch == view.epoch
        } else {
            progress.role == Role::Follower && progress.epoch == view.epoch
        };
        role_ok && store.durable == store.last() && store.log == first.log
    })
}

fn check_acknowledged(model: &Model) -> Result<(), String> {
    let final_epoch = model.cn.view.as_ref().map_or(0, |view| view.epoch);
    for acked in &model.acked {
        let required = match model.ack {
            AckMode::InSync => true,
            AckMode::Leader => acked.safe || acked.epoch == final_epoch,
        };
        if required && !model.stores[0].holds(acked.index, &acked.payload) {
            return Err(format!(
                "acknowledged write {} ({:?}, epoch {}) lost",
                acked.index, acked.payload, acked.epoch
            ));
        }
    }
    Ok(())
}

fn run_seeds(name: &str, ack: AckMode) -> Counters {
    let mut totals = Counters::default();
    check_seeds(module_path!(), name, |seed| {
        let outcome = run(seed, ack)?;
        totals.add(&outcome.counters);
        Ok(())
    });
    eprintln!("{name}: {totals:?}");
    totals
}

fn assert_faults_fired(totals: &Counters, ack: AckMode) {
    if std::env::var_os(crate::sim::SEED_ENV).is_some() {
        return; // One replayed seed need not hit every fault.
    }
    assert!(totals.failovers > 0, "{totals:?}");
    assert!(totals.balancer_moves > 0, "{totals:?}");
    assert!(totals.new_epoch_requests > 0, "{totals:?}");
    assert!(totals.snapshots > 0, "{totals:?}");
    assert!(totals.log_gone > 0, "{totals:?}");
    assert!(totals.divergent_rebuilds > 0, "{totals:?}");
    assert!(totals.reorders > 0, "{totals:?}");
    assert!(totals.fetched > 0, "{totals:?}");
    assert!(totals.acknowledged > 0, "{totals:?}");
    assert!(totals.crashes > 0 && totals.partitioned > 0, "{totals:?}");
    assert!(totals.duplicated > 0 && totals.dropped > 0, "{totals:?}");
    assert!(totals.trimmed_tables > 0, "{totals:?}");
    assert!(
        totals.groups_of_two > 0 && totals.groups_of_three > 0,
        "{totals:?}"
    );
    if ack == AckMode::Leader {
        // The check of lost writes must have had something to judge.
        assert!(totals.lost_unshipped > 0, "{totals:?}");
    }
    if ack == AckMode::InSync {
        assert!(totals.shrinks > 0, "{totals:?}");
        assert!(totals.expands > 0, "{totals:?}");
    }
}

#[test]
fn leader_ack_group_converges_and_keeps_shipped_writes() {
    let totals = run_seeds(
        "leader_ack_group_converges_and_keeps_shipped_writes",
        AckMode::Leader,
    );
    assert_faults_fired(&totals, AckMode::Leader);
}

#[test]
fn in_sync_ack_never_loses_an_acknowledged_write() {
    let totals = run_seeds(
        "in_sync_ack_never_loses_an_acknowledged_write",
        AckMode::InSync,
    );
    assert_faults_fired(&totals, AckMode::InSync);
}

#[test]
fn same_seed_same_run() {
    let trace = |seed| {
        let outcome = run(seed, AckMode::InSync).expect("seed passes");
        (outcome.trace_hash, outcome.acked, outcome.log)
    };
    assert_eq!(trace(7), trace(7));
}

#[test]
fn mutants_are_caught() {
    if std::env::var_os(crate::sim::SEED_ENV).is_some() {
        return;
    }
    let cases = [
        (Mutant::AckWithoutInSync, AckMode::InSync),
        (Mutant::TrustEveryFollower, AckMode::Leader),
        (Mutant::IgnoreLeaderFence, AckMode::Leader),
    ];
    for (bug, ack) in cases {
        mutant::set(Some(bug));
        let caught = (0..MUTANT_SEEDS_MAX).find_map(|seed| {
            std::panic::catch_unwind(|| run(seed, ack))
                .map_or(Some((seed, "panic".to_string())), |outcome| {
                    outcome.err().map(|reason| (seed, reason))
                })
        });
        mutant::set(None);
        let (seed, reason) = caught.unwrap_or_else(|| panic!("{bug:?} survived"));
        eprintln!("{bug:?} caught at seed {seed}: {reason}");
    }
}
