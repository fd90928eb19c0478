//! The seeded scheduler: one thread, virtual time, events ordered by the seed.
//!
//! Events wait in a priority queue keyed by `(time, tie-break, sequence)`, the tie-break
//! drawn from the seed, so events due at the same millisecond run in an order the seed
//! picks. Processing one event runs one node hook; what the hook sends and the timers it
//! sets become new events. Nothing depends on wall-clock time, hash-map order or thread
//! scheduling, so a seed replays the same run, event for event (checked by the trace hash).
//!
//! ```text
//!   queue ──pop──► Deliver ──► network check ──► node.on_message(env)
//!                  Timer   ──► still armed?  ──► node.on_timer(env)
//!                  Crash   ──► node.on_crash(); drop node; disk.crash()
//!                  Restart ──► factory(id, disk) ──► node.on_start(env)
//!                  Chaos   ──► maybe crash a node / partition / heal; next Chaos
//!   env.send ──► network.plan_delivery ──► 0, 1 or 2 Deliver events (random delays)
//!   env.set_timer ──► Timer event (a re-arm makes the older one stale)
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use thiserror::Error;

use super::disk::{DiskConfig, SimDisk};
use super::network::{NetworkConfig, NetworkStats, SimNetwork};
use super::rng::SimRng;
use super::trace::Trace;
use crate::io::{Clock, Env, Node, NodeId, TimerId, Transport, TransportError};
use crate::limits::{SIM_NODES_MAX, SIM_STEPS_MAX_DEFAULT, TRANSPORT_PAYLOAD_BYTES_MAX};

/// Crashes and partitions the scheduler injects on its own, every `interval_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosConfig {
    /// Virtual time between two chaos decisions; 0 disables chaos.
    pub interval_ms: u64,
    /// Per decision: probability that one running node crashes.
    pub crash_probability: f64,
    /// A crashed node restarts after a delay in this range.
    pub restart_delay_min_ms: u64,
    pub restart_delay_max_ms: u64,
    /// Per decision, when whole: probability that the network partitions.
    pub partition_probability: f64,
    /// Per decision, when partitioned: probability that the network heals.
    pub heal_probability: f64,
}

impl ChaosConfig {
    /// No injected crashes or partitions.
    pub fn none() -> ChaosConfig {
        ChaosConfig {
            interval_ms: 0,
            crash_probability: 0.0,
            restart_delay_min_ms: 0,
            restart_delay_max_ms: 0,
            partition_probability: 0.0,
            heal_probability: 0.0,
        }
    }

    /// A crash about every half second of virtual time, partitions lasting ~100 ms.
    pub fn faulty() -> ChaosConfig {
        ChaosConfig {
            interval_ms: 25,
            crash_probability: 0.05,
            restart_delay_min_ms: 1,
            restart_delay_max_ms: 100,
            partition_probability: 0.03,
            heal_probability: 0.25,
        }
    }
}

/// Everything a simulation is configured with, besides its seed and its nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub nodes: usize,
    pub network: NetworkConfig,
    pub disk: DiskConfig,
    pub chaos: ChaosConfig,
    /// The run fails with `SimError::StepLimit` past this many events.
    pub max_steps: u64,
}

impl SimConfig {
    /// `nodes` nodes, no faults (a crash still loses unsynced data).
    pub fn reliable(nodes: usize) -> SimConfig {
        SimConfig {
            nodes,
            network: NetworkConfig::reliable(),
            disk: DiskConfig::reliable(),
            chaos: ChaosConfig::none(),
            max_steps: SIM_STEPS_MAX_DEFAULT,
        }
    }

    /// `nodes` nodes with every fault enabled at its default rate.
    pub fn faulty(nodes: usize) -> SimConfig {
        SimConfig {
            nodes,
            network: NetworkConfig::faulty(),
            disk: DiskConfig::faulty(),
            chaos: ChaosConfig::faulty(),
            max_steps: SIM_STEPS_MAX_DEFAULT,
        }
    }
}

/// Why a simulation stopped before its goal.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SimError {
    #[error("step limit of {max_steps} events reached at {now_ms} ms (livelock?)")]
    StepLimit { max_steps: u64, now_ms: u64 },
    #[error("goal not reached by {deadline_ms} ms: {what}")]
    Deadline { deadline_ms: u64, what: String },
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        payload: Bytes,
    },
    Timer {
        node: NodeId,
        incarnation: u64,
        timer: TimerId,
        generation: u64,
    },
    Crash {
        node: NodeId,
    },
    Restart {
        node: NodeId,
    },
    Chaos,
}

/// Queue key: due time, seeded tie-break, then insertion order (unique).
type Key = Reverse<(u64, u64, u64)>;

struct Slot<N> {
    node: Option<N>,
    disk: SimDisk,
    /// Bumped at every crash; timers of an older incarnation never fire.
    incarnation: u64,
    /// Armed timers and the generation of their latest setting.
    timers: BTreeMap<TimerId, u64>,
    next_generation: u64,
    rng: SimRng,
    /// A Restart event is queued (so chaos does not queue a second one).
    restart_pending: bool,
}

/// A node factory: builds the node `id`'s next incarnation over its disk.
pub type Factory<N> = Box<dyn FnMut(NodeId, SimDisk) -> N>;

/// A deterministic simulation of `N` nodes.
pub struct Simulation<N: Node> {
    seed: u64,
    config: SimConfig,
    rng: SimRng,
    now_ms: u64,
    steps: u64,
    queue: BinaryHeap<Key>,
    events: BTreeMap<u64, Event>,
    next_sequence: u64,
    slots: Vec<Slot<N>>,
    network: SimNetwork,
    factory: Factory<N>,
    trace: Trace,
    chaos_enabled: bool,
    /// A Chaos event is queued (so re-enabling chaos never starts a second chain).
    chaos_queued: bool,
}

impl<N: Node> std::fmt::Debug for Simulation<N> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Simulation")
            .field("seed", &self.seed)
            .field("now_ms", &self.now_ms)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// What a node sees while one of its hooks runs.
struct SimEnv<'a> {
    id: NodeId,
    now_ms: u64,
    node_count: usize,
    rng: &'a mut SimRng,
    timers: &'a mut BTreeMap<TimerId, u64>,
    next_generation: &'a mut u64,
    armed: Vec<(TimerId, u64, u64)>,
    outbox: Vec<(NodeId, Bytes)>,
}

impl Clock for SimEnv<'_> {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn set_timer(&mut self, timer: TimerId, after_ms: u64) {
        *self.next_generation += 1;
        let generation = *self.next_generation;
        self.timers.insert(timer, generation);
        self.armed
            .push((timer, generation, self.now_ms.saturating_add(after_ms)));
    }

    fn cancel_timer(&mut self, timer: TimerId) {
        self.timers.remove(&timer);
    }
}

impl Transport for SimEnv<'_> {
    fn send(&mut self, to: NodeId, payload: Bytes) -> Result<(), TransportError> {
        if to.0 as usize >= self.node_count {
            return Err(TransportError::UnknownNode(to));
        }
        if payload.len() > TRANSPORT_PAYLOAD_BYTES_MAX {
            return Err(TransportError::PayloadTooLarge {
                bytes: payload.len(),
                max: TRANSPORT_PAYLOAD_BYTES_MAX,
            });
        }
        self.outbox.push((to, payload));
        Ok(())
    }
}

impl Env for SimEnv<'_> {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

impl<N: Node> Simulation<N> {
    /// A simulation of `config.nodes` nodes built by `factory`, all starting at time 0.
    pub fn new(
        seed: u64,
        config: SimConfig,
        factory: impl FnMut(NodeId, SimDisk) -> N + 'static,
    ) -> Simulation<N> {
        assert!(
            (1..=SIM_NODES_MAX).contains(&config.nodes),
            "1..={SIM_NODES_MAX} nodes"
        );
        assert!(config.max_steps > 0);
        let mut rng = SimRng::new(seed);
        let slots = (0..config.nodes)
            .map(|_| Slot {
                node: None,
                disk: SimDisk::new(config.disk.clone(), rng.fork()),
                incarnation: 0,
                timers: BTreeMap::new(),
                next_generation: 0,
                rng: rng.fork(),
                restart_pending: true,
            })
            .collect();
        let mut simulation = Simulation {
            seed,
            network: SimNetwork::new(config.network.clone()),
            chaos_enabled: config.chaos.interval_ms > 0,
            config,
            rng,
            now_ms: 0,
            steps: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_sequence: 0,
            slots,
            factory: Box::new(factory),
            trace: Trace::new(),
            chaos_queued: false,
        };
        for index in 0..simulation.slots.len() {
            simulation.schedule(
                0,
                Event::Restart {
                    node: NodeId(index as u32),
                },
            );
        }
        if simulation.chaos_enabled {
            let first = simulation.config.chaos.interval_ms;
            simulation.chaos_queued = true;
            simulation.schedule(first, Event::Chaos);
        }
        simulation
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time now, in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The hash of the run's trace so far: equal for equal seeds.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    pub fn network(&self) -> &SimNetwork {
        &self.network
    }

    pub fn network_mut(&mut self) -> &mut SimNetwork {
        &mut self.network
    }

    pub fn network_stats(&self) -> &NetworkStats {
        self.network.stats()
    }

    /// Node `id`'s disk (a handle for inspection and fault settings).
    pub fn disk(&self, id: NodeId) -> SimDisk {
        self.slots[id.0 as usize].disk.handle()
    }

    /// Node `id` if it is running.
    pub fn node(&self, id: NodeId) -> Option<&N> {
        self.slots.get(id.0 as usize)?.node.as_ref()
    }

    /// Whether node `id` is running.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// Stops (or resumes) the injected crashes and partitions; a pending restart still
    /// happens. Heals the network when stopping.
    pub fn set_chaos(&mut self, enabled: bool) {
        self.chaos_enabled = enabled && self.config.chaos.interval_ms > 0;
        if !self.chaos_enabled {
            self.network.heal();
        } else if !self.chaos_queued {
            self.chaos_queued = true;
            let at = self.now_ms + self.config.chaos.interval_ms;
            self.schedule(at, Event::Chaos);
        }
    }

    /// Crashes node `id` now (if it is up). It stays down until [`Simulation::restart`],
    /// or until a restart that chaos queued before comes due.
    pub fn crash(&mut self, id: NodeId) {
        self.crash_node(id);
    }

    /// Crashes node `id` at `at_ms` (if it is up then); it stays down until restarted.
    pub fn crash_at(&mut self, id: NodeId, at_ms: u64) {
        assert!((id.0 as usize) < self.slots.len(), "unknown node {id}");
        self.schedule(at_ms.max(self.now_ms), Event::Crash { node: id });
    }

    /// Queues a restart of node `id` now (if it is down and none is queued).
    pub fn restart(&mut self, id: NodeId) {
        let slot = &mut self.slots[id.0 as usize];
        if slot.node.is_none() && !slot.restart_pending {
            slot.restart_pending = true;
            self.schedule(self.now_ms, Event::Restart { node: id });
        }
    }

    /// The final check of a faulty run: stops chaos, crashes every node (tearing what it
    /// had not synced), makes every disk reliable and queues every restart, so what the
    /// nodes recover next is judged on a disk that no longer fails.
    pub fn crash_all_onto_reliable_disks(&mut self) {
        self.set_chaos(false);
        for index in 0..self.slots.len() {
            let id = NodeId(index as u32);
            self.crash(id);
            self.disk(id).set_config(DiskConfig::reliable());
            self.restart(id);
        }
    }

    /// Processes events due up to `deadline_ms`, then sets the time to it.
    pub fn run_until(&mut self, deadline_ms: u64) -> Result<(), SimError> {
        while let Some(&Reverse((at_ms, _, _))) = self.queue.peek() {
            if at_ms > deadline_ms {
                break;
            }
            self.step()?;
        }
        self.now_ms = self.now_ms.max(deadline_ms);
        Ok(())
    }

    /// Runs for `duration_ms` of virtual time.
    pub fn run_for(&mut self, duration_ms: u64) -> Result<(), SimError> {
        self.run_until(self.now_ms.saturating_add(duration_ms))
    }

    /// Runs until `goal` holds (checked after every event), failing at `deadline_ms`.
    pub fn run_until_goal(
        &mut self,
        deadline_ms: u64,
        what: &str,
        mut goal: impl FnMut(&Simulation<N>) -> bool,
    ) -> Result<(), SimError> {
        loop {
            if goal(self) {
                return Ok(());
            }
            match self.queue.peek() {
                Some(&Reverse((at_ms, _, _))) if at_ms <= deadline_ms => {
                    self.step()?;
                }
                _ => {
                    return Err(SimError::Deadline {
                        deadline_ms,
                        what: what.to_string(),
                    });
                }
            }
        }
    }

    /// Processes the next event; false when none is queued.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let Some(Reverse((at_ms, _, sequence))) = self.queue.pop() else {
            return Ok(false);
        };
        if self.steps >= self.config.max_steps {
            return Err(SimError::StepLimit {
                max_steps: self.config.max_steps,
                now_ms: self.now_ms,
            });
        }
        self.steps += 1;
        assert!(at_ms >= self.now_ms, "time never goes back");
        self.now_ms = at_ms;
        let event = self.events.remove(&sequence).expect("queued events exist");
        self.process(event);
        Ok(true)
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let tie_break = self.rng.next_u64();
        self.queue.push(Reverse((at_ms, tie_break, sequence)));
        self.events.insert(sequence, event);
    }

    fn process(&mut self, event: Event) {
        let now_ms = self.now_ms;
        match event {
            Event::Deliver { from, to, payload } => {
                let checksum = crc32c::crc32c(&payload);
                self.trace.record(
                    &[
                        1,
                        now_ms,
                        u64::from(from.0),
                        u64::from(to.0),
                        u64::from(checksum),
                    ],
                    || format!("{now_ms:>6} ms deliver {from}→{to} {} bytes", payload.len()),
                );
                if !self.network.connected(from, to) {
                    self.network.stats.partitioned += 1;
                    return;
                }
                if self.slots[to.0 as usize].node.is_none() {
                    self.network.stats.to_down_node += 1;
                    return;
                }
                self.network.stats.delivered += 1;
                self.with_node(to, |node, env| node.on_message(env, from, payload));
            }
            Event::Timer {
                node,
                incarnation,
                timer,
                generation,
            } => {
                let slot = &mut self.slots[node.0 as usize];
                let live = slot.node.is_some()
                    && slot.incarnation == incarnation
                    && slot.timers.get(&timer) == Some(&generation);
                if !live {
                    return;
                }
                slot.timers.remove(&timer);
                self.trace
                    .record(&[2, now_ms, u64::from(node.0), timer.0], || {
                        format!("{now_ms:>6} ms timer {node} {timer:?}")
                    });
                self.with_node(node, |state, env| state.on_timer(env, timer));
            }
            Event::Crash { node } => self.crash_node(node),
            Event::Restart { node } => {
                let slot = &mut self.slots[node.0 as usize];
                slot.restart_pending = false;
                if slot.node.is_some() {
                    return;
                }
                self.trace.record(&[4, now_ms, u64::from(node.0)], || {
                    format!("{now_ms:>6} ms start {node}")
                });
                let disk = slot.disk.handle();
                let built = (self.factory)(node, disk);
                self.slots[node.0 as usize].node = Some(built);
                self.with_node(node, |state, env| state.on_start(env));
            }
            Event::Chaos => self.chaos(),
        }
    }

    fn crash_node(&mut self, node: NodeId) {
        let now_ms = self.now_ms;
        let slot = &mut self.slots[node.0 as usize];
        let Some(mut state) = slot.node.take() else {
            return;
        };
        self.trace.record(&[3, now_ms, u64::from(node.0)], || {
            format!("{now_ms:>6} ms crash {node}")
        });
        state.on_crash();
        drop(state);
        slot.incarnation += 1;
        slot.timers.clear();
        slot.disk.crash();
    }

    fn chaos(&mut self) {
        self.chaos_queued = false;
        if !self.chaos_enabled {
            return;
        }
        let now_ms = self.now_ms;
        let chaos = self.config.chaos.clone();
        if self.rng.chance(chaos.crash_probability) {
            let up: Vec<NodeId> = (0..self.slots.len())
                .map(|index| NodeId(index as u32))
                .filter(|&id| self.is_up(id))
                .collect();
            if !up.is_empty() {
                let victim = up[self.rng.below(up.len() as u64) as usize];
                self.crash_node(victim);
                let delay = self
                    .rng
                    .between(chaos.restart_delay_min_ms, chaos.restart_delay_max_ms);
                self.slots[victim.0 as usize].restart_pending = true;
                self.schedule(now_ms + delay, Event::Restart { node: victim });
            }
        }
        let whole = self.network.partitioned_side().is_empty();
        if whole && self.slots.len() > 1 && self.rng.chance(chaos.partition_probability) {
            let count = self.slots.len() as u64;
            let size = self.rng.between(1, count - 1);
            let mut side: Vec<NodeId> = (0..count).map(|index| NodeId(index as u32)).collect();
            // A seeded shuffle, then the first `size` nodes form one side.
            for index in (1..side.len()).rev() {
                let other = self.rng.below(index as u64 + 1) as usize;
                side.swap(index, other);
            }
            side.truncate(size as usize);
            side.sort();
            self.trace.record(&[5, now_ms, size], || {
                format!("{now_ms:>6} ms partition {side:?} from the rest")
            });
            self.network.partition(side);
        } else if !whole && self.rng.chance(chaos.heal_probability) {
            self.trace
                .record(&[6, now_ms], || format!("{now_ms:>6} ms heal"));
            self.network.heal();
        }
        self.chaos_queued = true;
        self.schedule(now_ms + chaos.interval_ms, Event::Chaos);
    }

    /// Runs one hook of node `id` with an `Env`, then turns its sends and timers into events.
    fn with_node(&mut self, id: NodeId, hook: impl FnOnce(&mut N, &mut dyn Env)) {
        let node_count = self.slots.len();
        let slot = &mut self.slots[id.0 as usize];
        let mut state = slot.node.take().expect("hooks run on running nodes");
        let incarnation = slot.incarnation;
        let mut env = SimEnv {
            id,
            now_ms: self.now_ms,
            node_count,
            rng: &mut slot.rng,
            timers: &mut slot.timers,
            next_generation: &mut slot.next_generation,
            armed: Vec::new(),
            outbox: Vec::new(),
        };
        hook(&mut state, &mut env);
        let SimEnv { armed, outbox, .. } = env;
        slot.node = Some(state);
        for (timer, generation, at_ms) in armed {
            self.schedule(
                at_ms,
                Event::Timer {
                    node: id,
                    incarnation,
                    timer,
                    generation,
                },
            );
        }
        for (to, payload) in outbox {
            let delays = self.network.plan_delivery(&mut self.rng);
            let now_ms = self.now_ms;
            self.trace.record(
                &[
                    7,
                    now_ms,
                    u64::from(id.0),
                    u64::from(to.0),
                    delays.len() as u64,
                ],
                || format!("{now_ms:>6} ms send {id}→{to} copies {delays:?}"),
            );
            for delay in delays {
                self.schedule(
                    now_ms + delay,
                    Event::Deliver {
                        from: id,
                        to,
                        payload: payload.clone(),
                    },
                );
            }
        }
    }
}
