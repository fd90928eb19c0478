//! Replication for the cluster, written as pure state machines, and the deterministic
//! simulator they are tested on.
//!
//! The crate is built in the order the cluster needs it:
//!
//! - [`io`]: the narrow seams every state machine and driver is written against — a
//!   [`io::Clock`] (time and timers), a [`io::Transport`] (send bytes to a node), a
//!   [`io::Disk`] (named files in one directory), and the [`io::Node`] hooks a driver calls.
//!   Each has a simulated implementation in [`sim`]; the cheap real ones ([`io::SystemClock`],
//!   [`io::StdDisk`]) are here, and the io_uring transport comes with the internal protocol.
//! - [`sim`]: one thread, virtual time, a seeded scheduler driving many nodes over a faulty
//!   network and faulty disks; `SIM_SEED=<n>` replays one run exactly.
//! - [`rpc`]: request/response correlation by id over any `Transport`, with typed timeouts.
//! - [`record_log`]: a small checksummed, group-committed log over any `Disk`, with the
//!   WAL's recovery rules; the pattern the storage WAL and the Raft log store follow.
//! - [`atomic_file`]: a small file replaced whole (temp, fsync, rename, fsync directory):
//!   the Raft hard state, snapshot metadata, a node's persisted id.
//! - [`raft_group`]: one Raft group on raft-rs (the ConfigNodes' consensus), its log and
//!   snapshot persisted through a `Disk`, driven as events in, outputs out.
//! - [`iot`]: IoTConsensus-style replication of one region group (the DataRegions'
//!   consensus): leader epochs from the ConfigNode, per-peer dispatchers, divergence found
//!   by epoch tables, snapshots, and two ack modes (leader-durable, in-sync set).
//!
//! Nothing here opens a socket or reads the system clock on its own: the drivers pass those
//! in, so the same code runs on a shard and in the simulator. See `SIMULATOR.md` beside this
//! crate's `Cargo.toml` for how to write a simulated test.

#![forbid(unsafe_code)]

/// The switch of a module's deliberate bugs (`Mutant`): tests turn one on (`set`) to check
/// that the simulation catches it; outside tests `active` is always false, so the checks
/// compile away. Expands, inside a module that defines `enum Mutant`, to `set` and
/// `active`.
#[macro_export]
#[doc(hidden)]
macro_rules! mutant_switch {
    ($mutant:ident) => {
        #[cfg(test)]
        thread_local! {
            static ACTIVE: std::cell::Cell<Option<$mutant>> = const { std::cell::Cell::new(None) };
        }

        #[cfg(test)]
        pub(crate) fn set(mutant: Option<$mutant>) {
            ACTIVE.with(|active| active.set(mutant));
        }

        #[cfg(test)]
        pub(crate) fn active(mutant: $mutant) -> bool {
            ACTIVE.with(|active| active.get() == Some(mutant))
        }

        #[cfg(not(test))]
        pub(crate) fn active(_: $mutant) -> bool {
            false
        }
    };
}

pub mod atomic_file;
pub mod io;
pub mod iot;
pub mod limits;
pub mod raft_group;
pub mod record_log;
pub mod rpc;
pub mod sim;
