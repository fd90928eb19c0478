//! Multi-process tests: they start real server processes on 127.0.0.x ports (see
//! `tests/`). The library holds the harness they share:
//!
//! - [`server`]: [`TestServer`], one `iotdb-server standalone` child process with its own
//!   data directory and loopback address;
//! - [`cluster`]: [`TestCluster`], a ConfigNode and DataNodes as separate processes;
//! - [`model`]: [`Model`], the in-test reference every query answer is compared with;
//! - [`dataset`]: a deterministic dataset and the checks of every query kind against it;
//! - [`raw`]: hand-made frames for the bad-input tests (what no well-behaved client sends);
//! - [`installation`]: the `sbin/` scripts run as an operator runs them, from an
//!   installation directory;
//! - [`load`]: a background writer of exactly checkable rounds, and their read-back.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod dataset;
pub mod installation;
pub mod load;
pub mod model;
pub mod raw;
pub mod server;

pub use cluster::TestCluster;
pub use model::{Model, SeriesId};
pub use server::{Role, ServerOptions, TestServer};
