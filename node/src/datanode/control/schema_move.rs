//! Moving a single-replica SchemaRegion to another DataNode (`MIGRATE REGION`, and each
//! SchemaRegion of a DataNode being removed): the ConfigNode's migration waits at
//! `MigrateStep::CopySchema` while the two DataNodes do this.
//!
//! ```text
//!  source (holds the only replica)            destination
//!  sees CopySchema from it in its mirror
//!  freeze: every change refused (606, retry)
//!  export: devices in parts ─InstallRegion{part 0..n}─► region-<g>.incoming (memory)
//!                                                       last part: snapshot, rename to
//!                                                       region-<g>, fsync the directory
//!  ─SchemaRegionCopied─► ConfigNode: MoveSchemaReplica (the group now names the
//!                        destination, which leads it), FinishProcedure
//!  mirror drops the group: region closed,      mirror lists it here: opened from
//!  directory deleted (DropReplicas)            region-<g> on first use
//! ```
//!
//! Nothing acknowledged is lost: the copy is taken after the source stopped taking
//! changes, and the group moves only once the copy is durable. A copy that cannot finish
//! (the destination down) is dropped by the ConfigNode after `SCHEMA_COPY_TIMEOUT_MS`, and
//! the source takes changes again as soon as its mirror no longer shows the migration.
//! Every step repeats safely: the source copies again (from part 0) every
//! [`COPY_RETRY_INTERVAL`] while the step lasts; the destination keeps `region-<g>` while
//! a migration to it copies, deletes it once none does, and a restart there deletes a
//! half-received `region-<g>.incoming`.
//!
//! A SchemaRegion replicated by Raft moves through its group's membership instead
//! ([`ControlPlane::follow_schema_membership`], run by the replica that leads): the voters
//! follow the state's replicas (a migration's new replica joins, an old one leaves), the
//! new replica is reported caught up, and an old replica that leads hands leadership over.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iotdb_net::Status;

use super::{ControlAnswer, ControlPlane, schema_status};
use crate::cluster::protocol::{FromNode, SchemaRequest, ToNode};
use crate::confignode::{
    ConfigRequest, ConfigState, MigrateStep, NodeId, Procedure, ProcedureId, RegionGroupId,
    RegionGroupKind,
};
use crate::schema::{SchemaRegion, StoredDevice};

/// About how many bytes of devices one `InstallRegion` request carries. Why 4 MiB: far
/// below an internal frame (16 MiB) even JSON-encoded, and a million series still cross
/// in a few dozen requests.
const COPY_PART_BYTES: usize = 4 << 20;

/// How often the source tries a copy again while the ConfigNode waits for it. Why 2 s:
/// a failed attempt (the destination restarting) is retried soon, without a loop of
/// attempts at the control thread's maintenance pace.
const COPY_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// A copy being received: the migration it belongs to, the next part expected, and the
/// region built from the parts so far (in `region-<g>.incoming`).
pub(super) struct Incoming {
    procedure: ProcedureId,
    next_part: u32,
    region: SchemaRegion,
}

/// A single-replica SchemaRegion this DataNode is copying away: (migration, group,
/// database, destination).
type Outgoing = (ProcedureId, u32, String, NodeId);

/// The migrations copying a SchemaRegion from `me`.
fn copies_from(state: &ConfigState, me: NodeId) -> Vec<Outgoing> {
    state
        .procedures()
        .iter()
        .filter_map(|(id, procedure)| match procedure {
            Procedure::MigrateRegion {
                group,
                from,
                to,
                step: MigrateStep::CopySchema,
                ..
            } if *from == me => {
                let current = state.region_groups().get(group)?;
                let only_here = current.kind == RegionGroupKind::Schema
                    && current.replicas.len() == 1
                    && current.replicas[0].data_node_id == me;
                only_here.then(|| (*id, group.0, current.database.clone(), *to))
            }
            _ => None,
        })
        .collect()
}

/// The migrations copying a SchemaRegion to `me` now: (migration, group).
fn copies_to_me(state: &ConfigState, me: NodeId) -> impl Iterator<Item = (ProcedureId, u32)> + '_ {
    state
        .procedures()
        .iter()
        .filter_map(move |(id, procedure)| match procedure {
            Procedure::MigrateRegion {
                group,
                to,
                step: MigrateStep::CopySchema,
                ..
            } if *to == me => Some((*id, group.0)),
            _ => None,
        })
}

/// Whether a migration copies SchemaRegion `group` to `me` now (its copy is kept here).
fn copy_to(state: &ConfigState, me: NodeId, group: u32) -> Option<ProcedureId> {
    copies_to_me(state, me).find_map(|(id, g)| (g == group).then_some(id))
}

/// Groups whose copy to `me` a migration is waiting for: their directories stay at
/// start-up even though the state does not list this node as a holder yet.
pub(super) fn copies_to(state: &ConfigState, me: NodeId) -> Vec<u32> {
    copies_to_me(state, me)
        .map(|(_, group)| group)
        .filter(|group| state.region_groups().contains_key(&RegionGroupId(*group)))
        .collect()
}

fn incoming_dir(schema_dir: &Path, group: u32) -> PathBuf {
    schema_dir.join(format!("region-{group}.incoming"))
}

fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// How often the leader of a Raft-replicated SchemaRegion group asks for the same
/// membership step again (a change proposed, leadership handed over, a replica reported
/// caught up). Why 1 s: a membership change commits in milliseconds; a second is room for
/// it to show up in the applied configuration before the next attempt.
const MEMBERSHIP_RETRY_INTERVAL: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// Moves the Raft-replicated SchemaRegion groups this node leads toward what the state
    /// says (every maintenance round): the voters become the group's replicas (a replica a
    /// migration adds joins, one it removes leaves, one change at a time), a new replica
    /// holding the log through the commit index seen when it joined is reported caught
    /// up, the old replica, if it leads, hands leadership to the new one, and a replica the
    /// migration removes is reported gone once no longer a voter. Each step is
    /// asked at most every [`MEMBERSHIP_RETRY_INTERVAL`] per group; Raft makes each safe
    /// to repeat.
    pub(super) fn follow_schema_membership(&mut self) {
        let Some(raft) = &self.schema_raft else {
            return;
        };
        let me = self.data_node_id;
        let state = self.config_node.state();
        // Groups that took a step this round, and new replicas to report caught up (a
        // ConfigNode request, made once the loop let go of the state).
        let mut attempted = Vec::new();
        let mut caught_up = Vec::new();
        // Replicas a migration removes that are no longer voters, to report likewise.
        let mut removed = Vec::new();
        for &group in &self.served {
            let Some(current) = state.region_groups().get(&RegionGroupId(group)) else {
                continue;
            };
            if !current.elects_leader() || !raft.serves(group) {
                continue;
            }
            let due = self
                .membership_attempts
                .get(&group)
                .is_none_or(|at| at.elapsed() >= MEMBERSHIP_RETRY_INTERVAL);
            let voters: BTreeSet<NodeId> = raft.voters(group).into_iter().collect();
            if !due || voters.is_empty() {
                continue;
            }
            let replicas: BTreeSet<NodeId> =
                current.replicas.iter().map(|r| r.data_node_id).collect();
            let mut asked = Vec::new();
            if let Some(add) = replicas.difference(&voters).next() {
                asked.push(raft.change_voters(group, *add, true));
            } else if let Some(remove) = voters.difference(&replicas).next() {
                asked.push(raft.change_voters(group, *remove, false));
            }
            match state.migration_of(current.id) {
                Some((id, _, to, MigrateStep::CatchUp)) if voters.contains(&to) => {
                    let target = *self
                        .catch_up_targets
                        .entry(id)
                        .or_insert_with(|| raft.commit_index(group));
                    if raft
                        .matched(group, to)
                        .is_some_and(|matched| matched >= target)
                    {
                        caught_up.push((id, group, to));
                    }
                }
                Some((_, from, to, MigrateStep::TransferLeader)) if from == me => {
                    asked.push(raft.transfer_leader(group, to));
                }
                Some((id, from, to, step)) => {
                    if let Some(leaving) = step.leaving(from, to)
                        && !voters.contains(&leaving)
                        && !replicas.contains(&leaving)
                    {
                        removed.push((id, group, leaving));
                    }
                }
                _ => {}
            }
            if !asked.is_empty() {
                attempted.push(group);
            }
            for error in asked.into_iter().filter_map(Result::err) {
                tracing::warn!(group, %error, "a schema region membership step failed; retried");
            }
        }
        let running: Vec<ProcedureId> = state.procedures().keys().copied().collect();
        self.catch_up_targets.retain(|id, _| running.contains(id));
        for (id, group, node) in caught_up {
            attempted.push(group);
            if let Err(status) = self.config(ConfigRequest::SchemaReplicaCaughtUp {
                procedure: id,
                group: RegionGroupId(group),
                node,
            }) {
                tracing::warn!(group, error = %status.message, "reporting a new schema replica caught up failed; retried");
            }
        }
        for (id, group, node) in removed {
            attempted.push(group);
            if let Err(status) = self.config(ConfigRequest::SchemaReplicaRemoved {
                procedure: id,
                group: RegionGroupId(group),
                node,
            }) {
                tracing::warn!(group, error = %status.message, "reporting a schema replica removed failed; retried");
            }
        }
        let now = Instant::now();
        for group in attempted {
            self.membership_attempts.insert(group, now);
        }
        let open: Vec<u32> = self.schemas.keys().copied().collect();
        self.membership_attempts
            .retain(|group, _| open.contains(group));
    }

    /// The single-replica SchemaRegion migrations as they concern this DataNode (every
    /// maintenance round): a region no copy runs for any more takes changes again, each
    /// region being copied away is sent (at most every [`COPY_RETRY_INTERVAL`]), and
    /// copies received here for migrations that no longer run are deleted.
    pub(super) fn move_schema_regions(&mut self) {
        let me = self.data_node_id;
        let outgoing = copies_from(self.config_node.state(), me);
        for (group, region) in &mut self.schemas {
            if region.is_frozen() && !outgoing.iter().any(|copy| copy.1 == *group) {
                region.set_frozen(None);
                tracing::info!(
                    group,
                    "schema region copy ended without a move: the region takes changes again"
                );
            }
        }
        self.copy_attempts
            .retain(|id, _| outgoing.iter().any(|copy| copy.0 == *id));
        for (id, group, database, to) in outgoing {
            let due = self
                .copy_attempts
                .get(&id)
                .is_none_or(|at| at.elapsed() >= COPY_RETRY_INTERVAL);
            if !due {
                continue;
            }
            self.copy_attempts.insert(id, Instant::now());
            match self.copy_schema_region(id, group, &database, to) {
                Ok(series) => tracing::info!(
                    id,
                    group,
                    to = %to,
                    series,
                    "schema region copied; the ConfigNode moves it"
                ),
                Err(status) => tracing::warn!(
                    id,
                    group,
                    to = %to,
                    error = %status.message,
                    "copying a schema region failed; retried"
                ),
            }
        }
        if let Err(e) = self.delete_stale_copies() {
            tracing::warn!(error = %e, "deleting schema region copies no migration uses failed");
        }
    }

    /// Stops changes to the region, sends it to `to` part by part and tells the ConfigNode
    /// it is copied. Returns how many series went.
    fn copy_schema_region(
        &mut self,
        id: ProcedureId,
        group: u32,
        database: &str,
        to: NodeId,
    ) -> Result<usize, Status> {
        let region = self
            .schema_region(group, database)
            .map_err(|e| Status::internal(format!("{e:#}")))?;
        if !region.is_frozen() {
            tracing::info!(
                id,
                group,
                to = %to,
                "schema region frozen for its copy to another DataNode"
            );
        }
        region.set_frozen(Some(format!(
            "schema region {group} is being moved to DataNode {to} (migration {id}); retry \
             in a moment"
        )));
        let series = region.series_count();
        let parts = region.export(COPY_PART_BYTES);
        let count = parts.len();
        for (part, devices) in parts.into_iter().enumerate() {
            let request = ToNode::Schema(SchemaRequest::InstallRegion {
                procedure: id,
                group,
                database: database.to_string(),
                part: part as u32,
                last: part + 1 == count,
                devices,
            });
            match self.config_node.call_data_node(to, &request)? {
                FromNode::Count(_) => {}
                FromNode::Refused(status) => return Err(status.into()),
                other => {
                    return Err(Status::internal(format!(
                        "DataNode {to} answered a schema region copy with {other:?}"
                    )));
                }
            }
        }
        self.config(ConfigRequest::SchemaRegionCopied {
            procedure: id,
            group: RegionGroupId(group),
            from: self.data_node_id,
            to,
        })?;
        Ok(series)
    }

    /// One part of a SchemaRegion copied here (see the module's documentation). Refused
    /// when no migration copies the group here (asked of the ConfigNode once, so a mirror
    /// a moment behind the source's is no reason), when this node holds it already, or
    /// when the part is not the one expected (the source then starts again from part 0).
    pub(super) fn install_schema_part(
        &mut self,
        id: ProcedureId,
        group: u32,
        database: &str,
        part: u32,
        last: bool,
        devices: Vec<StoredDevice>,
    ) -> Result<ControlAnswer, Status> {
        let me = self.data_node_id;
        if copy_to(self.config_node.state(), me, group) != Some(id) {
            self.refresh_mirror()?;
        }
        let refused = |reason: String| {
            Status::new(
                iotdb_net::StatusCode::EXECUTE_STATEMENT_ERROR,
                format!("schema region {group} is not copied to DataNode {me}: {reason}"),
            )
        };
        if copy_to(self.config_node.state(), me, group) != Some(id) {
            return Err(refused(format!("migration {id} is not copying it here")));
        }
        if self.schemas.contains_key(&group) {
            return Err(refused("this DataNode holds it already".into()));
        }
        let schema_dir = self.config.schema_dir();
        let staging = incoming_dir(&schema_dir, group);
        if part == 0 {
            self.incoming.remove(&group);
            remove_dir(&staging)
                .map_err(|e| Status::internal(format!("clearing {}: {e}", staging.display())))?;
            let region = SchemaRegion::open(&staging, database).map_err(schema_status)?;
            self.incoming.insert(
                group,
                Incoming {
                    procedure: id,
                    next_part: 0,
                    region,
                },
            );
        }
        let Some(incoming) = self
            .incoming
            .get_mut(&group)
            .filter(|incoming| incoming.procedure == id && incoming.next_part == part)
        else {
            self.incoming.remove(&group);
            return Err(refused(format!(
                "part {part} came out of order; send again from part 0"
            )));
        };
        incoming.region.import(devices).map_err(schema_status)?;
        incoming.next_part += 1;
        let series = incoming.region.series_count() as u64;
        if !last {
            return Ok(ControlAnswer::Count(series));
        }
        let mut incoming = self.incoming.remove(&group).expect("found above");
        incoming.region.checkpoint().map_err(schema_status)?;
        drop(incoming);
        let dir = self.schema_dir(group);
        let placed = remove_dir(&dir)
            .and_then(|()| std::fs::rename(&staging, &dir))
            .and_then(|()| std::fs::File::open(&schema_dir)?.sync_all());
        placed
            .map_err(|e| Status::internal(format!("placing the copy in {}: {e}", dir.display())))?;
        tracing::info!(id, group, series, "schema region copy received");
        Ok(ControlAnswer::Count(series))
    }

    /// Deletes copies received here that no migration waits for any more (dropped ones,
    /// and halves a restart interrupted).
    fn delete_stale_copies(&mut self) -> std::io::Result<()> {
        let me = self.data_node_id;
        let state = self.config_node.state();
        self.incoming
            .retain(|group, incoming| copy_to(state, me, *group) == Some(incoming.procedure));
        let schema_dir = self.config.schema_dir();
        let entries = match std::fs::read_dir(&schema_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str().and_then(|n| n.strip_prefix("region-")) else {
                continue;
            };
            let (id, staged) = match name.strip_suffix(".incoming") {
                Some(id) => (id, true),
                None => (name, false),
            };
            let Ok(group) = id.parse::<u32>() else {
                continue;
            };
            let stale = if staged {
                !self.incoming.contains_key(&group)
            } else {
                // Only a copy: a group that lists this node, or that the state does not
                // know (a mirror behind the start-up reconciliation), is left alone.
                !self.schemas.contains_key(&group)
                    && state
                        .region_groups()
                        .get(&RegionGroupId(group))
                        .is_some_and(|g| {
                            g.replicas.iter().all(|r| r.data_node_id != me)
                                && copy_to(state, me, group).is_none()
                        })
            };
            if stale {
                tracing::info!(group, dir = %entry.path().display(), "deleting a schema region copy no migration uses");
                remove_dir(&entry.path())?;
            }
        }
        Ok(())
    }
}
