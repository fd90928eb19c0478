//! The seams between pure state machines and the outside world: time, network, disk.
//!
//! A state machine of this crate never calls `Instant::now`, opens a socket or touches
//! `std::fs`. It is written against these traits and driven through the [`Node`] hooks:
//!
//! ```text
//!            driver (shard loop, or sim::Simulation)
//!   start ──► Node::on_start(env)          env: &mut dyn Env = Clock + Transport + ids/rng
//!   bytes ──► Node::on_message(env, from, payload)
//!   timer ──► Node::on_timer(env, timer)
//!   crash ──► Node::on_crash(); the node is dropped, a new one is built and started
//! ```
//!
//! The disk is handed to the node when it is built (each incarnation gets a fresh handle),
//! so a node generic over `D: Disk` runs on [`StdDisk`] and on `sim::SimDisk` alike.
//!
//! Implementations: the simulator's (`sim`) for all of them; [`SystemClock`] and
//! [`StdDisk`] are the cheap real ones. The real `Transport` is the io_uring internal
//! protocol (`iotdb_node::internal::InternalEndpoint`); the real `Disk` on a shard loop must sit
//! behind io_uring or the bounded I/O pool (item 5), since these calls are synchronous.
//!
//! Everything here is single-threaded: an `Env` and a `Disk` belong to the core (shard, or
//! the simulator's one thread) that drives the node.

mod clock;
mod disk;
mod std_disk;
mod transport;

use bytes::Bytes;

pub use clock::{Clock, SystemClock};
pub use disk::{Disk, DiskError, DiskOp, validate_file_name};
pub use std_disk::StdDisk;
pub use transport::{Transport, TransportError};

pub use iotdb_model::NodeId;

/// A timer a node names itself (`ELECTION`, `HEARTBEAT`, ...). Setting a timer that is
/// armed re-arms it; a timer fires at most once per setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u64);

/// What a driver lends a node while one hook runs.
pub trait Env: Clock + Transport {
    /// The node being driven.
    fn node_id(&self) -> NodeId;
    /// A random number. Nodes must take randomness only from here (never `thread_rng`),
    /// so a simulated run is reproducible from its seed.
    fn random_u64(&mut self) -> u64;
}

/// A state machine a driver runs: the simulator, or later a shard loop.
///
/// Hooks must not block and must not loop without bound; they react to one event and
/// return. A node's volatile state dies with it: after a crash the driver builds a new
/// one, which must rebuild itself from its disk in `on_start`.
pub trait Node {
    /// The node (re)starts: recover from disk, arm timers, greet peers.
    fn on_start(&mut self, env: &mut dyn Env);
    /// A message from `from` arrived (at most once per delivery; the network may deliver
    /// a message twice, late, or never).
    fn on_message(&mut self, env: &mut dyn Env, from: NodeId, payload: Bytes);
    /// A timer set with `Clock::set_timer` fired.
    fn on_timer(&mut self, env: &mut dyn Env, timer: TimerId);
    /// The process is about to die. Only for a test's bookkeeping (a real crash runs no
    /// code): it gets no `Env` and must not touch the disk.
    fn on_crash(&mut self) {}
}
