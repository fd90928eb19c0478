//! The deterministic simulator: many nodes, one thread, virtual time, seeded faults.
//!
//! A simulated test builds a [`Simulation`] from a seed, a [`SimConfig`] and a factory
//! that builds a node (anything implementing [`crate::io::Node`]) over its [`SimDisk`].
//! The scheduler then delivers messages, fires timers, crashes and restarts nodes,
//! partitions and heals the network — every choice drawn from the seed. The test checks
//! its invariants in the nodes' hooks (shared model state, e.g. `Rc<RefCell<Model>>`,
//! outlives crashes) and at the end, and runs many seeds through [`check_seeds`]:
//!
//! ```no_run
//! use iotdb_consensus::sim::{SimConfig, Simulation, check_seeds};
//! # struct MyNode;
//! # impl iotdb_consensus::io::Node for MyNode {
//! #     fn on_start(&mut self, _: &mut dyn iotdb_consensus::io::Env) {}
//! #     fn on_message(&mut self, _: &mut dyn iotdb_consensus::io::Env,
//! #                   _: iotdb_consensus::io::NodeId, _: bytes::Bytes) {}
//! #     fn on_timer(&mut self, _: &mut dyn iotdb_consensus::io::Env,
//! #                 _: iotdb_consensus::io::TimerId) {}
//! # }
//! check_seeds(module_path!(), "my_invariant_holds", |seed| {
//!     let mut sim = Simulation::new(seed, SimConfig::faulty(3), |_id, _disk| MyNode);
//!     sim.run_until(5_000).map_err(|error| error.to_string())?;
//!     // ... check the model; return Err(reason) (or panic) on a violation
//!     Ok(())
//! });
//! ```
//!
//! A failing seed panics with the command that replays it alone, e.g.
//! `SIM_SEED=1234 cargo test --release -p iotdb-consensus -- --exact
//! record_log::sim_tests::acknowledged_records_survive_crashes`; add `SIM_TRACE=1` to print
//! every event. `SIM_SEEDS=<n>` runs more seeds, `SIM_SEED_BASE=<n>` other ones.
//!
//! Rules for code under simulation, all for determinism: take time only from `Clock`,
//! randomness only from `Env::random_u64`, never iterate a `HashMap` where the order
//! matters, never spawn threads; bound every loop (the scheduler fails a run past
//! `SimConfig::max_steps` events with its seed).

mod disk;
mod network;
pub mod raft_driver;
mod rng;
mod scheduler;
mod seeds;
mod trace;

#[cfg(test)]
mod tests;

pub use disk::{DiskConfig, DiskStats, PAGE_BYTES, SimDisk, Writeback};
pub use network::{NetworkConfig, NetworkStats, SimNetwork};
pub use rng::SimRng;
pub use scheduler::{ChaosConfig, Factory, SimConfig, SimError, Simulation};
pub use seeds::{SEED_BASE_ENV, SEED_ENV, SEEDS_ENV, check_seeds, replay_command, seeds_from_env};
pub use trace::{TRACE_ENV, Trace};
