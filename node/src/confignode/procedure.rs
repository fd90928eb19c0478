//! Procedures: multi-step ConfigNode operations whose progress is part of the replicated
//! state, so a restarted (or, later, newly elected) ConfigNode resumes them.
//!
//! ```text
//!  request ─► StartProcedure{id, step 0} ─► step 0: effects, then AdvanceProcedure{id, step 1}
//!                (a command: persisted)          ─► ... ─► last step: FinishProcedure{id}
//!  crash anywhere ─► open: every unfinished procedure resumes at its recorded step
//! ```
//!
//! Rules every procedure follows:
//! - Each step's effects are **idempotent**: a crash after the effects but before the
//!   `AdvanceProcedure` that records them runs the step again on resume.
//! - A step's state changes are ordinary [`ConfigCommand`]s, each proposed and applied
//!   before the next is planned (from the state as it is then, never from what the step
//!   expected); the step's own command comes after them.
//! - Between two commands sits a named **kill point** ([`KillPoint`]); tests arm one to
//!   crash the ConfigNode exactly there and check the resumed procedure ends as an
//!   uninterrupted one would (IoTDB's `setKillPoint` does the same).
//!
//! Effects outside the ConfigNode state (telling DataNodes to drop or create region
//! replicas) go through [`ProcedureEnv`], which the ConfigNode's host provides.

use serde::{Deserialize, Serialize};

use super::model::{NodeId, RegionGroupId, RegionGroupKind, ShardId};

/// A procedure's id: from one sequence in the state, never reused.
pub type ProcedureId = u64;

/// A multi-step operation and the step it is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Procedure {
    /// Deletes a database: its region replicas are dropped on their DataNodes, then the
    /// database, its region groups and partitions are forgotten. While it runs, nothing new
    /// is created in the database.
    DeleteDatabase {
        /// The database.
        name: String,
        /// Where it is.
        step: DeleteDatabaseStep,
    },
    /// Moves one replica of a data region group from one DataNode to another (`MIGRATE
    /// REGION`, and each replica of a DataNode being removed): the new replica is added
    /// (`Adding`), catches up from the leader (its WAL, or a snapshot of the sealed files
    /// and the WAL tail), takes leadership if the old one led, and the old replica is
    /// removed (`Removing`), after which its DataNode deletes its files. The steps are
    /// driven by [`super::ConfigNode::advance_procedures`] from what the DataNodes
    /// report; until the old replica is removed the migration can be rolled back
    /// (`Cancel`), and a rollback leaves the group as it was.
    MigrateRegion {
        /// The region group.
        group: RegionGroupId,
        /// The DataNode giving its replica up.
        from: NodeId,
        /// The DataNode taking it.
        to: NodeId,
        /// The core of `to` that owns the new replica.
        shard: ShardId,
        /// Where it is.
        step: MigrateStep,
        /// The DataNode removal this migration is part of, if any.
        #[serde(default)]
        removal_of: Option<NodeId>,
    },
    /// Removes a DataNode (`REMOVE DATANODE`): it turns `Removing` (leaders move off it in
    /// the same command), every replica on it is migrated to another DataNode (a
    /// [`Procedure::MigrateRegion`] each, a few at a time), and then it is forgotten and
    /// stops itself.
    RemoveDataNode {
        /// The DataNode.
        node: NodeId,
        /// Where it is.
        step: RemoveDataNodeStep,
    },
}

/// The steps of [`Procedure::MigrateRegion`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrateStep {
    /// Add the new replica to the group (`AddRegionReplica`): out of the in-sync set,
    /// never chosen as leader while it is added.
    AddPeer,
    /// Wait until the group's leader reports the new replica caught up: shipping, and
    /// durable through the last index the leader reported when the ConfigNode first
    /// looked at this step (so everything acknowledged before the migration began is
    /// on it; with `in_sync` acknowledgement it must also be in the in-sync set).
    CatchUp,
    /// If the old replica leads, give leadership to the new one and wait until it leads
    /// (it catches up from the old leader first, so nothing acknowledged is lost).
    TransferLeader,
    /// Remove the old replica from the group; its DataNode then deletes its files.
    RemovePeer,
    /// Roll back: remove the new replica again (the catch-up failed or timed out).
    Cancel,
    /// A SchemaRegion with a single replica (not a Raft group): its DataNode stops taking
    /// changes to it, copies it to the new DataNode and reports it copied
    /// (`SchemaRegionCopied`); the ConfigNode then moves the replica in one command
    /// (`MoveSchemaReplica`) and finishes. Follows `AddPeer`, which adds nothing for
    /// such a group; one that waits longer than [`SCHEMA_COPY_TIMEOUT_MS`] is dropped and
    /// the region takes changes again where it was.
    CopySchema,
}

impl MigrateStep {
    /// How `SHOW REGIONS` names the new replica's state at this step.
    pub fn new_replica_status(self) -> Option<&'static str> {
        match self {
            MigrateStep::AddPeer | MigrateStep::CatchUp | MigrateStep::CopySchema => Some("Adding"),
            MigrateStep::Cancel => Some("Removing"),
            MigrateStep::TransferLeader | MigrateStep::RemovePeer => None,
        }
    }

    /// Of a migration `from` -> `to`, the replica this step takes out of the group: the
    /// old one at `RemovePeer`, the new one at `Cancel` (a rollback).
    pub fn leaving(self, from: NodeId, to: NodeId) -> Option<NodeId> {
        match self {
            MigrateStep::RemovePeer => Some(from),
            MigrateStep::Cancel => Some(to),
            _ => None,
        }
    }

    /// How `SHOW REGIONS` names the old replica's state at this step.
    pub fn old_replica_status(self) -> Option<&'static str> {
        match self {
            MigrateStep::TransferLeader | MigrateStep::RemovePeer | MigrateStep::CopySchema => {
                Some("Removing")
            }
            MigrateStep::AddPeer | MigrateStep::CatchUp | MigrateStep::Cancel => None,
        }
    }
}

/// The steps of [`Procedure::RemoveDataNode`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoveDataNodeStep {
    /// Start a migration for each replica still on the node (at most
    /// [`MIGRATIONS_PER_REMOVAL`] at a time) until it holds none.
    MoveReplicas,
    /// Forget the node (`RemoveNode`), then finish; the node stops itself when its
    /// mirror no longer lists it.
    Forget,
}

/// What the leader of a replicated data region group says of it in its heartbeat answer:
/// runtime knowledge that drives migrations (never persisted). Only a replica that leads
/// (caught up, taking writes) reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderReport {
    /// The group.
    pub group: u32,
    /// The epoch it leads.
    pub epoch: u64,
    /// The DataNode it is on.
    pub leader: u32,
    /// The last index of its log.
    #[serde(default)]
    pub last_index: u64,
    /// Each other replica as the leader sees it.
    pub peers: Vec<PeerReport>,
}

/// One follower in a [`LeaderReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its DataNode.
    pub node: u32,
    /// Entries are being shipped to it (not probing, rebuilding or sending a snapshot).
    pub shipping: bool,
    /// How many entries of the leader's log it lacks durably.
    pub lag_entries: u64,
    /// Through which index it holds the leader's log durably.
    #[serde(default)]
    pub durable_index: u64,
}

/// Longest a migration waits for its new replica to catch up, or for it to take
/// leadership, before rolling back. Why 30 minutes: a snapshot of a large region crosses
/// a busy network in minutes; a migration stuck longer has failed and must not leave the
/// group (or a DataNode removal) hanging forever, as IoTDB's users report.
pub const MIGRATION_STEP_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// Longest a single-replica SchemaRegion's copy may take before the migration is dropped.
/// Why 2 minutes: the region refuses changes while it is copied, so a copy that cannot
/// finish (its destination down) must give the region back soon; a region of a million
/// series crosses in seconds.
pub const SCHEMA_COPY_TIMEOUT_MS: i64 = 2 * 60 * 1000;

/// Migrations a DataNode removal runs at once. Why 2: each ships a snapshot from a leader
/// while clients keep writing; two keep the network busy without starving client writes.
pub const MIGRATIONS_PER_REMOVAL: usize = 2;

/// The steps of [`Procedure::DeleteDatabase`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteDatabaseStep {
    /// Ask every DataNode holding a replica of the database's region groups to drop it.
    DropReplicas,
    /// Forget the database (one `DeleteDatabase` command), then finish.
    Forget,
}

impl Procedure {
    /// A short name for logs and `SHOW` views.
    pub fn kind(&self) -> &'static str {
        match self {
            Procedure::DeleteDatabase { .. } => "DeleteDatabase",
            Procedure::MigrateRegion { .. } => "MigrateRegion",
            Procedure::RemoveDataNode { .. } => "RemoveDataNode",
        }
    }

    /// The database the procedure works on, if any: nothing new is created in it while the
    /// procedure runs.
    pub fn database(&self) -> Option<&str> {
        match self {
            Procedure::DeleteDatabase { name, .. } => Some(name),
            Procedure::MigrateRegion { .. } | Procedure::RemoveDataNode { .. } => None,
        }
    }
}

/// A named point between two commands of a procedure, where a test can crash the
/// ConfigNode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillPoint {
    /// `StartProcedure` of a database deletion is durable; nothing else happened.
    DeleteDatabaseStarted,
    /// The replicas were dropped; the step is not recorded yet.
    DeleteDatabaseReplicasDropped,
    /// The step `Forget` is recorded; the database still exists.
    DeleteDatabaseForgetRecorded,
    /// The database is forgotten; the procedure is not finished yet.
    DeleteDatabaseForgotten,
    /// `StartProcedure` of a migration is durable; the new replica is not added yet.
    MigrateStarted,
    /// The new replica is added; the step `CatchUp` is not recorded yet.
    MigratePeerAdded,
    /// The new replica caught up; the next step is not recorded yet.
    MigrateCaughtUp,
    /// Leadership moved to the new replica; the step `RemovePeer` is not recorded yet.
    MigrateLeaderMoved,
    /// The old replica is removed; the procedure is not finished yet.
    MigratePeerRemoved,
    /// A single-replica SchemaRegion moved to the new DataNode; the procedure is not
    /// finished yet.
    MigrateSchemaMoved,
    /// The DataNode turned `Removing`; its migrations have not started.
    RemoveDataNodeStarted,
    /// A migration of the removal started; the next one has not.
    RemoveDataNodeMigrationStarted,
    /// The node holds nothing and is forgotten; the procedure is not finished yet.
    RemoveDataNodeForgotten,
}

impl KillPoint {
    /// Every kill point, for tests that crash at each.
    pub const ALL: [KillPoint; 13] = [
        KillPoint::DeleteDatabaseStarted,
        KillPoint::DeleteDatabaseReplicasDropped,
        KillPoint::DeleteDatabaseForgetRecorded,
        KillPoint::DeleteDatabaseForgotten,
        KillPoint::MigrateStarted,
        KillPoint::MigratePeerAdded,
        KillPoint::MigrateCaughtUp,
        KillPoint::MigrateLeaderMoved,
        KillPoint::MigratePeerRemoved,
        KillPoint::MigrateSchemaMoved,
        KillPoint::RemoveDataNodeStarted,
        KillPoint::RemoveDataNodeMigrationStarted,
        KillPoint::RemoveDataNodeForgotten,
    ];

    /// The kill points of a database deletion.
    pub const DELETE_DATABASE: [KillPoint; 4] = [
        KillPoint::DeleteDatabaseStarted,
        KillPoint::DeleteDatabaseReplicasDropped,
        KillPoint::DeleteDatabaseForgetRecorded,
        KillPoint::DeleteDatabaseForgotten,
    ];

    /// Its name, as `IOTDB_KILL_POINT` spells it.
    pub fn name(self) -> &'static str {
        match self {
            KillPoint::DeleteDatabaseStarted => "DeleteDatabase.Started",
            KillPoint::DeleteDatabaseReplicasDropped => "DeleteDatabase.ReplicasDropped",
            KillPoint::DeleteDatabaseForgetRecorded => "DeleteDatabase.ForgetRecorded",
            KillPoint::DeleteDatabaseForgotten => "DeleteDatabase.Forgotten",
            KillPoint::MigrateStarted => "MigrateRegion.Started",
            KillPoint::MigratePeerAdded => "MigrateRegion.PeerAdded",
            KillPoint::MigrateCaughtUp => "MigrateRegion.CaughtUp",
            KillPoint::MigrateLeaderMoved => "MigrateRegion.LeaderMoved",
            KillPoint::MigratePeerRemoved => "MigrateRegion.PeerRemoved",
            KillPoint::MigrateSchemaMoved => "MigrateRegion.SchemaMoved",
            KillPoint::RemoveDataNodeStarted => "RemoveDataNode.Started",
            KillPoint::RemoveDataNodeMigrationStarted => "RemoveDataNode.MigrationStarted",
            KillPoint::RemoveDataNodeForgotten => "RemoveDataNode.Forgotten",
        }
    }

    /// The kill point named `name`.
    pub fn from_name(name: &str) -> Option<KillPoint> {
        KillPoint::ALL
            .into_iter()
            .find(|point| point.name() == name)
    }
}

/// What a kill point does when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KillMode {
    /// Nothing: production.
    #[default]
    Disarmed,
    /// The operation stops with `ConfigNodeError::Killed` (unit tests then drop the
    /// ConfigNode and reopen it from its directory, as a restart would).
    Fail(KillPoint),
    /// The process aborts on the spot (multi-process tests; `IOTDB_KILL_POINT=<name>`).
    Abort(KillPoint),
}

/// Effects of procedures outside the ConfigNode state, provided by the ConfigNode's host.
/// Every call must be idempotent: a resumed step repeats it.
pub trait ProcedureEnv {
    /// Drops the replicas of these region groups wherever they are (a replica already
    /// gone is not an error).
    fn drop_replicas(&mut self, groups: &[(RegionGroupId, RegionGroupKind)]) -> Result<(), String>;
}

/// A [`ProcedureEnv`] that does nothing: for a ConfigNode with no DataNode to tell (tests
/// of the state alone).
#[derive(Debug, Default)]
pub struct NoEffects;

impl ProcedureEnv for NoEffects {
    fn drop_replicas(
        &mut self,
        _groups: &[(RegionGroupId, RegionGroupKind)],
    ) -> Result<(), String> {
        Ok(())
    }
}
