//! Multi-process tests: they start real server processes on 127.0.0.x ports (see
//! `tests/`). The library holds the harness they share:
//!
//! - [`server`]: [`TestServer`], one `iotdb-server standalone` child process with its own
//!   data directory and loopback address;
//! - [`model`]: [`Model`], the in-test reference every query answer is compared with;
//! - [`raw`]: hand-made frames for the bad-input tests (what no well-behaved client sends).

#![forbid(unsafe_code)]

pub mod model;
pub mod raw;
pub mod server;

pub use model::{Model, SeriesId};
pub use server::{ServerOptions, TestServer};
