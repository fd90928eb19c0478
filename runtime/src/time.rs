//! Timers for shards: monoio's timer wheel, driven by each shard's own loop.
//!
//! These work only on a shard thread (inside a runtime built by [`crate::ShardSetBuilder`],
//! which enables timers); each shard has its own wheel, so a timer never crosses cores.

pub use monoio::time::{
    Duration, Instant, Interval, MissedTickBehavior, Sleep, Timeout, interval, interval_at, sleep,
    sleep_until, timeout, timeout_at,
};
