//! The cluster roles as processes: `iotdb-server confignode` and `iotdb-server datanode`,
//! their registration, identities, heartbeats and the control messages between them.
//!
//! ```text
//!   iotdb-server confignode ◄──register / ConfigRequest + mirror delta── iotdb-server datanode
//!     (confignode_service)   ──heartbeat{delta} every heartbeat_interval──►   (link on shard 0,
//!                                                                              config_access)
//! ```
//!
//! A DataNode keeps a mirror of the ConfigNode state (`datanode::config_access`), kept
//! current by the deltas every answer and heartbeat carry, so routing needs no round trip.

pub mod confignode_service;
pub mod forward;
pub mod identity;
pub mod link;
pub mod protocol;
pub mod registration;
pub mod remote_read;
pub mod replicated;

/// The kill points of joining a cluster: between the steps of a registration that a crash
/// can separate. `IOTDB_KILL_POINT=<name>` (tests) aborts the process there.
///
/// - `DataNode.Registered`: the ConfigNode committed the DataNode, which dies before it
///   persisted its id; restarted, it registers again with its registration token and gets
///   the same id (a new node on that address would be refused).
/// - `ConfigNode.Registered`: the leading ConfigNode committed a joining ConfigNode and dies
///   before adding it to the Raft group; the joiner fails, and when it tries again (through
///   any ConfigNode, once a leader leads) it gets the same id and becomes a voter.
pub const KILL_POINTS: [&str; 2] = ["DataNode.Registered", "ConfigNode.Registered"];

/// Aborts the process when `IOTDB_KILL_POINT` names `point` (one of [`KILL_POINTS`]).
pub fn kill_point(point: &str) {
    debug_assert!(KILL_POINTS.contains(&point), "unknown kill point {point}");
    if std::env::var("IOTDB_KILL_POINT").is_ok_and(|name| name == point) {
        tracing::error!(kill_point = point, "IOTDB_KILL_POINT reached: aborting");
        std::process::abort();
    }
}
