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

use super::model::{RegionGroupId, RegionGroupKind};

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
}

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
        }
    }

    /// The database the procedure works on, if any: nothing new is created in it while the
    /// procedure runs.
    pub fn database(&self) -> Option<&str> {
        match self {
            Procedure::DeleteDatabase { name, .. } => Some(name),
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
}

impl KillPoint {
    /// Every kill point, for tests that crash at each.
    pub const ALL: [KillPoint; 4] = [
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
