//! The simulated network: what happens to each message between `send` and delivery.
//!
//! Each message independently may be dropped, delayed by a random time (which is what
//! reorders messages), and duplicated (the copy gets its own delay). A partition splits
//! the nodes into two sides; a message crossing it is lost when it would be delivered.
//! All decisions are drawn from the scheduler's seeded generator.

use std::collections::BTreeSet;

use super::rng::SimRng;
use crate::io::NodeId;

/// Fault probabilities and delays of the simulated network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Probability that a message is lost.
    pub drop_probability: f64,
    /// Probability that a delivered message is delivered a second time.
    pub duplicate_probability: f64,
    /// Smallest delivery delay.
    pub delay_min_ms: u64,
    /// Largest delivery delay; a range wider than the sending interval reorders messages.
    pub delay_max_ms: u64,
}

impl NetworkConfig {
    /// No loss, no duplicates, a fixed 1 ms delay (order still varies between senders).
    pub fn reliable() -> NetworkConfig {
        NetworkConfig {
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            delay_min_ms: 1,
            delay_max_ms: 1,
        }
    }

    /// A hostile but usable network: 5% loss, 5% duplicates, 1–40 ms delays.
    pub fn faulty() -> NetworkConfig {
        NetworkConfig {
            drop_probability: 0.05,
            duplicate_probability: 0.05,
            delay_min_ms: 1,
            delay_max_ms: 40,
        }
    }
}

/// Counters of what the network did, over a whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delivered: u64,
    /// Lost to a partition at delivery time.
    pub partitioned: u64,
    /// Arrived at a node that was down.
    pub to_down_node: u64,
}

/// The network's state: its config and the current partition.
#[derive(Debug)]
pub struct SimNetwork {
    config: NetworkConfig,
    /// One side of the partition; empty when the network is whole.
    side: BTreeSet<NodeId>,
    pub(super) stats: NetworkStats,
}

impl SimNetwork {
    pub fn new(config: NetworkConfig) -> SimNetwork {
        assert!(config.delay_min_ms <= config.delay_max_ms, "delay range");
        assert!((0.0..=1.0).contains(&config.drop_probability));
        assert!((0.0..=1.0).contains(&config.duplicate_probability));
        SimNetwork {
            config,
            side: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    /// The delays after which copies of one sent message arrive: none when it is dropped,
    /// two when it is duplicated.
    pub(super) fn plan_delivery(&mut self, rng: &mut SimRng) -> Vec<u64> {
        self.stats.sent += 1;
        if rng.chance(self.config.drop_probability) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        let mut delays = vec![self.delay(rng)];
        if rng.chance(self.config.duplicate_probability) {
            self.stats.duplicated += 1;
            delays.push(self.delay(rng));
        }
        delays
    }

    fn delay(&self, rng: &mut SimRng) -> u64 {
        rng.between(self.config.delay_min_ms, self.config.delay_max_ms)
    }

    /// Whether a message can go from `from` to `to` now.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.side.contains(&from) == self.side.contains(&to)
    }

    /// Cuts `side` off from every other node (replacing an earlier partition).
    pub fn partition(&mut self, side: impl IntoIterator<Item = NodeId>) {
        self.side = side.into_iter().collect();
    }

    /// Makes the network whole again.
    pub fn heal(&mut self) {
        self.side.clear();
    }

    /// The nodes on the cut-off side; empty when whole.
    pub fn partitioned_side(&self) -> &BTreeSet<NodeId> {
        &self.side
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Replaces the fault probabilities (e.g. a calm network to let a run settle).
    pub fn set_config(&mut self, config: NetworkConfig) {
        let mut next = SimNetwork::new(config);
        next.side = std::mem::take(&mut self.side);
        next.stats = std::mem::take(&mut self.stats);
        *self = next;
    }

    pub fn stats(&self) -> &NetworkStats {
        &self.stats
    }
}
