//! The ConfigNode role: cluster membership, databases, region groups,
//! partition tables and the route table, as a persistent state machine.
//!
//! ```text
//!  request ──▶ ConfigNode (edge) ──plan──▶ placement (pure) ──▶ ConfigCommand
//!                   │                                               │
//!                   │◀── check ── ConfigState (pure) ◀── apply ─────┤
//!                   └── append + fdatasync ──▶ Journal (log + snapshot)
//!                   └── Arc<RouteSnapshot> (immutable, versioned) ──▶ shards, clients
//! ```
//!
//! - [`ConfigState`] is the whole state; [`ConfigCommand`]s are the only way
//!   to change it, checked and applied deterministically, so the command log
//!   replays exactly (and can later be the Raft log of a 3-CN group).
//! - [`placement`] decides replicas, leaders and partition owners (IoTDB's
//!   GREEDY allocator refined for cores; partitions balanced per time slot).
//! - [`ConfigNode`] drives both and persists every command before it
//!   returns; [`RouteSnapshot`] is what DataNodes and clients route with;
//!   [`views`] renders the admin `SHOW` statements.
//! - [`journal`] is the small durable store (checksummed snapshot + log)
//!   shared with [`crate::schema`].
//!
//! Everything here is a cluster view owned by the ConfigNode's single
//! thread; only `Arc<RouteSnapshot>` crosses cores.

mod api;
mod error;
mod history;
pub mod journal;
mod model;
mod node;
pub mod placement;
pub mod procedure;
mod route;
mod state;
pub mod store;
pub mod views;

#[cfg(test)]
pub(crate) mod journal_faults;
#[cfg(test)]
mod raft_sim_tests;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use api::{ConfigRequest, ConfigResponse, ShowRequest};
pub use error::{ConfigNodeError, Result};
pub use history::CommandHistory;
pub use model::{
    ClusterSettings, ConfigNodeInfo, ConfigNodeSpec, DEFAULT_DATABASE_LEVEL, DataNodeInfo,
    DataNodeSpec, DatabaseSettings, NodeId, NodeStatus, REGION_GROUPS_PER_DATABASE_MAX,
    REPLICATION_FACTOR_MAX, RegionGroup, RegionGroupId, RegionGroupKind, RegionGroupPolicy,
    RegionReplica, ReplicationAck, Role, SERIES_SLOT_NUM_DEFAULT, SHARDS_PER_DATA_NODE_MAX,
    ShardId, TIME_PARTITION_INTERVAL_MS_DEFAULT,
};
pub use node::{
    ConfigNode, HISTORY_COMMANDS_MAX, LOG_RECORDS_PER_SNAPSHOT, check_settings_unchanged,
};
pub use procedure::{
    KillMode, KillPoint, MigrateStep, NoEffects, Procedure, ProcedureEnv, ProcedureId,
};
pub use route::{DataNodeRoute, DatabaseRoute, RegionGroupRoute, ReplicaRoute, RouteSnapshot};
pub use state::{
    ConfigCommand, ConfigState, DATABASE_NAME_BYTES_MAX, DatabaseState, database_of,
    validate_database_name,
};
pub use views::{ClusterGauges, RegionFilter, Table};
