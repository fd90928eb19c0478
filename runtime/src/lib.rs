//! The thread-per-core runtime of a DataNode: shards, core pinning, the cross-core mesh and
//! timers.
//!
//! A DataNode runs one *shard* per core. A shard is a monoio runtime (io_uring, with epoll as
//! the fallback) on its own OS thread `shard-i`, pinned to core `i`. It owns its sockets,
//! regions, files and memory outright; no other core touches them, so the data path needs no
//! lock. The only way between cores is the *mesh*: a bounded ring for every ordered pair of
//! shards, with a wake-up per shard.
//!
//! ```text
//!   core 0 ─ thread shard-0                       core 1 ─ thread shard-1
//!  ┌────────────────────────────┐                ┌────────────────────────────┐
//!  │ monoio loop (io_uring)     │                │ monoio loop (io_uring)     │
//!  │                            │   ring 0→1     │                            │
//!  │ socket ─ frame (Bytes) ─┐  │  ┌──────────┐  │  ┌─► region owned by 1     │
//!  │                         └──┼─►│ M M M .. │──┼──┘   (WAL, memtable, files) │
//!  │                            │  └──────────┘  │          │                 │
//!  │                            │  wake shard-1  │          │ reply           │
//!  │                            │  (eventfd)     │          ▼                 │
//!  │ answer to client ◄──────┐  │   ring 1→0     │  Reply::send (oneshot) ──┐  │
//!  │                         └──┼──────────────◄─┼──────────────────────────┘  │
//!  │ region owned by 0          │  ┌──────────┐  │                            │
//!  │ (WAL, memtable, files)     │  │ M M ..   │  │                            │
//!  └────────────────────────────┘  └──────────┘  └────────────────────────────┘
//! ```
//!
//! A frame read on core 0 for a region owned by core 1 travels as a message carrying a
//! `bytes::Bytes` handle (no copy of the payload), plus a [`Reply`] for the answer
//! ([`MeshEndpoint::request`]). When a ring is full the sender waits ([`MeshEndpoint::send`]),
//! which is how back-pressure from a busy core reaches the clients that feed it. Everything
//! the mesh holds is bounded by [`limits`].
//!
//! Start shards with [`ShardSetBuilder`]:
//!
//! ```
//! use iotdb_runtime::{ShardContext, ShardId, ShardSetBuilder};
//!
//! let shards = ShardSetBuilder::new()
//!     .cores(2)
//!     .start(|context: ShardContext<u64>| async move {
//!         let next = ShardId(((context.id.index() + 1) % context.shards) as u16);
//!         context.mesh.send(next, u64::from(context.id.0)).await;
//!         context.mesh.recv().await
//!     })
//!     .unwrap();
//! let received: Vec<u64> = shards.join().into_iter().map(Result::unwrap).collect();
//! assert_eq!(received, vec![1, 0]);
//! ```
//!
//! # Allocator
//!
//! Binaries use mimalloc as the global allocator (per-thread heaps suit thread-per-core).
//! A library cannot choose it; each binary's `main.rs` declares it, with `mimalloc` in its
//! dependencies:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
//! ```
//!
//! and calls [`tune_allocator`] first thing in `main` (transparent huge pages off, freed
//! memory kept for reuse: see its doc for the profiles that asked for them).

pub mod error;
pub mod in_flight;
pub mod join;
pub mod limits;
pub mod mesh;
pub mod net;
pub mod shard;
pub mod thread;
pub mod time;
mod wait_list;

pub use error::{Full, RuntimeError};
pub use in_flight::{InFlightLimit, Permit};
pub use join::join_all;
pub use mesh::{MeshEndpoint, Reply};
pub use monoio::spawn;
pub use shard::{
    DriverKind, ShardContext, ShardId, ShardSet, ShardSetBuilder, StopSignal, UringSetup,
    runtime_builder,
};
pub use thread::{
    ALLOCATOR_PURGE_DELAY, available_cores, current_thread_cpu_time, current_thread_name,
    log_colours, process_cpu_time, set_current_thread_name, tune_allocator,
};
