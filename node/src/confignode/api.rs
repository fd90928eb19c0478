//! The ConfigNode's request API: what DataNodes (and administrative front ends) ask of
//! the ConfigNode, as typed values — never SQL statements.
//!
//! ```text
//!  DataNode (SQL, writes) ─► ConfigRequest ─► ConfigNode::handle ─► ConfigResponse
//!                             (serde: the body of an internal-protocol request when the
//!                              ConfigNode is another process)
//! ```
//!
//! Every request is one of: a mutation, planned by the ConfigNode into commands that are
//! each made durable (and, with a replicated ConfigNode group, committed) before the next
//! is planned; a procedure (see [`super::procedure`]); or a read of the state (`Show`,
//! lookups). Which ConfigNode leads is not part of the state: the host says it
//! ([`super::ConfigNode::set_leader`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigNode;
use super::error::{ConfigNodeError, Result};
use super::model::{ConfigNodeSpec, DataNodeSpec, NodeId, NodeStatus, RegionGroupId};
use super::procedure::{ProcedureEnv, ProcedureId};
use super::store::CommandStore;
use super::views::{RegionFilter, Table};
use crate::sql::{DatabaseAttributes, PathPattern, RegionKind};

/// A request to the ConfigNode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConfigRequest {
    /// Registers (or re-registers) a ConfigNode: [`ConfigResponse::NodeId`].
    RegisterConfigNode(ConfigNodeSpec),
    /// Registers (or re-registers) a DataNode: [`ConfigResponse::NodeId`].
    RegisterDataNode(DataNodeSpec),
    /// Sets a node's status; leadership leaves a DataNode that stops running.
    SetNodeStatus {
        /// The node.
        node_id: NodeId,
        /// Its new status.
        status: NodeStatus,
    },
    /// What a node says of itself (a heartbeat's status: `ReadOnly` when its disk is
    /// full); runtime knowledge, not persisted.
    ReportNodeStatus {
        /// The node.
        node_id: NodeId,
        /// Its status.
        status: NodeStatus,
    },
    /// Forgets a node (a DataNode must hold no replica).
    RemoveNode {
        /// The node.
        node_id: NodeId,
    },
    /// `MIGRATE REGION group FROM from TO to`: starts a migration procedure
    /// ([`ConfigResponse::Procedure`]).
    MigrateRegion {
        /// The data region group.
        group: RegionGroupId,
        /// The DataNode giving its replica up.
        from: NodeId,
        /// The DataNode taking it.
        to: NodeId,
    },
    /// `REMOVE DATANODE node`: starts (or finds) its removal procedure
    /// ([`ConfigResponse::Procedure`]).
    RemoveDataNode {
        /// The DataNode.
        node_id: NodeId,
    },
    /// `REMOVE CONFIGNODE node`: forgets a ConfigNode (not the last; the service has the
    /// leader hand leadership over before it asks this of the new one).
    RemoveConfigNode {
        /// The ConfigNode.
        node_id: NodeId,
    },
    /// A replicated region group's leader asks to change the in-sync set
    /// (`data_replication_ack = in_sync`): refused when the epoch or the version moved.
    ChangeInSync {
        /// The group.
        group: RegionGroupId,
        /// The leader epoch the leader is in.
        epoch: u64,
        /// The in-sync version it saw.
        version: u64,
        /// The members it wants in the set (the others leave it).
        in_sync: Vec<NodeId>,
    },
    /// A replica named leader of an epoch it already led before a restart asks for a new
    /// epoch (same leader); a no-op when the group moved past `epoch` already. With
    /// `step_down` (a replica wiped for a snapshot cannot lead) another Running replica
    /// is named instead, and nothing changes while none runs.
    NewLeaderEpoch {
        /// The group.
        group: RegionGroupId,
        /// The epoch it may not lead again.
        epoch: u64,
        /// Name another replica.
        #[serde(default)]
        step_down: bool,
    },
    /// The Raft leader of a replicated SchemaRegion group says so: the ConfigNode records
    /// it (`SHOW REGIONS`, where other DataNodes send schema questions). Schema groups of
    /// more than one replica elect their leader; the ConfigNode only follows.
    ReportSchemaLeader {
        /// The group.
        group: RegionGroupId,
        /// The DataNode whose replica leads it.
        leader: NodeId,
    },
    /// The DataNode holding the only replica of a SchemaRegion group copied it to the
    /// destination of migration `procedure` (see `MigrateStep::CopySchema`).
    SchemaRegionCopied {
        /// The migration.
        procedure: ProcedureId,
        /// The group.
        group: RegionGroupId,
        /// The DataNode that copied it (and stopped changing it).
        from: NodeId,
        /// The DataNode now holding the copy.
        to: NodeId,
    },
    /// The Raft leader of a replicated SchemaRegion group says the replica migration
    /// `procedure` adds on `node` caught up (see `ConfigNode::schema_replica_caught_up`).
    SchemaReplicaCaughtUp {
        /// The migration.
        procedure: ProcedureId,
        /// The group.
        group: RegionGroupId,
        /// The DataNode of the new replica.
        node: NodeId,
    },
    /// The Raft leader of a replicated SchemaRegion group says the replica migration
    /// `procedure` removes on `node` is no longer a voter (see
    /// `ConfigNode::schema_replica_removed`).
    SchemaReplicaRemoved {
        /// The migration.
        procedure: ProcedureId,
        /// The group.
        group: RegionGroupId,
        /// The DataNode of the removed replica.
        node: NodeId,
    },
    /// Creates a database.
    CreateDatabase {
        /// `root.x...`.
        name: String,
        /// `WITH` settings; `None`s take the cluster defaults.
        attributes: DatabaseAttributes,
    },
    /// Changes a database's TTL or region group counts.
    AlterDatabase {
        /// The database.
        name: String,
        /// The settings to change.
        attributes: DatabaseAttributes,
    },
    /// Sets (`Some`) or removes (`None`) a database's TTL.
    SetTtl {
        /// The database.
        name: String,
        /// Milliseconds.
        ttl_ms: Option<u64>,
    },
    /// Deletes every database matching a pattern (a procedure each):
    /// [`ConfigResponse::Deleted`].
    DeleteDatabases {
        /// `root.x`, `root.**`, ...
        patterns: Vec<PathPattern>,
    },
    /// The database of a device, created at the default level if none holds it:
    /// [`ConfigResponse::Database`].
    EnsureDatabaseOfDevice {
        /// The device path.
        device: String,
    },
    /// The SchemaRegionGroup of each series slot, assigning missing ones:
    /// [`ConfigResponse::Groups`].
    GetOrCreateSchemaPartitions {
        /// The database.
        database: String,
        /// Series slots.
        series_slots: Vec<u32>,
    },
    /// The DataRegionGroup of each (series slot, time slot), assigning missing ones:
    /// [`ConfigResponse::Groups`].
    GetOrCreateDataPartitions {
        /// The database.
        database: String,
        /// (series slot, time slot) pairs.
        partitions: Vec<(u32, i64)>,
    },
    /// A cluster view: [`ConfigResponse::Table`].
    Show(ShowRequest),
}

/// The ConfigNode's `SHOW` views (IoTDB's columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShowRequest {
    /// `SHOW CLUSTER [DETAILS]`.
    Cluster {
        /// `DETAILS`.
        details: bool,
    },
    /// `SHOW DATANODES`.
    DataNodes,
    /// `SHOW CONFIGNODES`.
    ConfigNodes,
    /// `SHOW DATABASES [DETAILS] [pattern]`.
    Databases {
        /// `DETAILS`.
        details: bool,
        /// Which databases; `None` for all.
        pattern: Option<PathPattern>,
    },
    /// `SHOW VARIABLES`.
    Variables,
    /// `SHOW ALL TTL`.
    AllTtl,
    /// `SHOW [DATA|SCHEMA] REGIONS [OF DATABASE ...] [ON NODEID ...]`.
    Regions {
        /// Which kinds.
        kind: RegionKind,
        /// Databases; empty for all.
        databases: Vec<PathPattern>,
        /// DataNodes; empty for all.
        node_ids: Vec<u32>,
        /// Bytes on disk of each data region group, as the DataNodes reported them.
        sizes: BTreeMap<u32, u64>,
    },
}

/// The ConfigNode's answer to a [`ConfigRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConfigResponse {
    /// The request took effect (or changed nothing).
    Done,
    /// A registered node's id.
    NodeId(NodeId),
    /// A device's database.
    Database {
        /// Its name.
        name: String,
        /// Whether this request created it.
        created: bool,
    },
    /// One region group per requested slot, in order.
    Groups(Vec<RegionGroupId>),
    /// The databases a deletion removed.
    Deleted(Vec<String>),
    /// A view.
    Table(Table),
    /// The id of the procedure that carries the request out.
    Procedure(u64),
}

impl ConfigResponse {
    fn unexpected(&self, wanted: &str) -> ConfigNodeError {
        ConfigNodeError::InvalidCommand(format!(
            "expected {wanted}, the ConfigNode answered {self:?}"
        ))
    }

    /// The node id of a registration.
    pub fn into_node_id(self) -> Result<NodeId> {
        match self {
            ConfigResponse::NodeId(id) => Ok(id),
            other => Err(other.unexpected("a node id")),
        }
    }

    /// The database name of [`ConfigRequest::EnsureDatabaseOfDevice`].
    pub fn into_database(self) -> Result<String> {
        match self {
            ConfigResponse::Database { name, .. } => Ok(name),
            other => Err(other.unexpected("a database")),
        }
    }

    /// The groups of a partition request.
    pub fn into_groups(self) -> Result<Vec<RegionGroupId>> {
        match self {
            ConfigResponse::Groups(groups) => Ok(groups),
            other => Err(other.unexpected("region groups")),
        }
    }

    /// The names a deletion removed.
    pub fn into_deleted(self) -> Result<Vec<String>> {
        match self {
            ConfigResponse::Deleted(names) => Ok(names),
            other => Err(other.unexpected("deleted databases")),
        }
    }

    /// The procedure id of a request that started one.
    pub fn into_procedure(self) -> Result<u64> {
        match self {
            ConfigResponse::Procedure(id) => Ok(id),
            other => Err(other.unexpected("a procedure id")),
        }
    }

    /// A view.
    pub fn into_table(self) -> Result<Table> {
        match self {
            ConfigResponse::Table(table) => Ok(table),
            other => Err(other.unexpected("a table")),
        }
    }
}

impl<S: CommandStore> ConfigNode<S> {
    /// Serves one request; `env` carries out procedure effects on DataNodes.
    pub fn handle(
        &mut self,
        request: ConfigRequest,
        env: &mut dyn ProcedureEnv,
    ) -> Result<ConfigResponse> {
        Ok(match request {
            ConfigRequest::RegisterConfigNode(spec) => {
                ConfigResponse::NodeId(self.register_config_node(spec)?)
            }
            ConfigRequest::RegisterDataNode(spec) => {
                ConfigResponse::NodeId(self.register_data_node(spec)?)
            }
            ConfigRequest::SetNodeStatus { node_id, status } => {
                self.set_node_status(node_id, status)?;
                ConfigResponse::Done
            }
            ConfigRequest::ReportNodeStatus { node_id, status } => {
                self.report_status(node_id, status)?;
                ConfigResponse::Done
            }
            ConfigRequest::RemoveNode { node_id } => {
                self.remove_node(node_id)?;
                ConfigResponse::Done
            }
            ConfigRequest::MigrateRegion { group, from, to } => {
                ConfigResponse::Procedure(self.migrate_region(group, from, to)?)
            }
            ConfigRequest::RemoveConfigNode { node_id } => {
                self.remove_config_node(node_id)?;
                ConfigResponse::Done
            }
            ConfigRequest::RemoveDataNode { node_id } => {
                ConfigResponse::Procedure(self.remove_data_node(node_id)?)
            }
            ConfigRequest::ChangeInSync {
                group,
                epoch,
                version,
                in_sync,
            } => {
                self.change_in_sync(group, epoch, version, &in_sync)?;
                ConfigResponse::Done
            }
            ConfigRequest::NewLeaderEpoch {
                group,
                epoch,
                step_down,
            } => {
                self.new_leader_epoch(group, epoch, step_down)?;
                ConfigResponse::Done
            }
            ConfigRequest::ReportSchemaLeader { group, leader } => {
                self.report_schema_leader(group, leader)?;
                ConfigResponse::Done
            }
            ConfigRequest::SchemaRegionCopied {
                procedure,
                group,
                from,
                to,
            } => {
                self.schema_region_copied(procedure, group, from, to)?;
                ConfigResponse::Done
            }
            ConfigRequest::SchemaReplicaCaughtUp {
                procedure,
                group,
                node,
            } => {
                self.schema_replica_caught_up(procedure, group, node)?;
                ConfigResponse::Done
            }
            ConfigRequest::SchemaReplicaRemoved {
                procedure,
                group,
                node,
            } => {
                self.schema_replica_removed(procedure, group, node)?;
                ConfigResponse::Done
            }
            ConfigRequest::CreateDatabase { name, attributes } => {
                self.create_database(&name, &attributes)?;
                ConfigResponse::Done
            }
            ConfigRequest::AlterDatabase { name, attributes } => {
                self.alter_database(&name, &attributes)?;
                ConfigResponse::Done
            }
            ConfigRequest::SetTtl { name, ttl_ms } => {
                self.set_ttl(&name, ttl_ms)?;
                ConfigResponse::Done
            }
            ConfigRequest::DeleteDatabases { patterns } => {
                ConfigResponse::Deleted(self.delete_databases(&patterns, env)?)
            }
            ConfigRequest::EnsureDatabaseOfDevice { device } => {
                let (name, created) = self.ensure_database_of_device(&device)?;
                ConfigResponse::Database { name, created }
            }
            ConfigRequest::GetOrCreateSchemaPartitions {
                database,
                series_slots,
            } => ConfigResponse::Groups(
                self.get_or_create_schema_partitions(&database, &series_slots)?
                    .0,
            ),
            ConfigRequest::GetOrCreateDataPartitions {
                database,
                partitions,
            } => ConfigResponse::Groups(
                self.get_or_create_data_partitions(&database, &partitions)?
                    .0,
            ),
            ConfigRequest::Show(show) => ConfigResponse::Table(self.show(show)),
        })
    }

    fn show(&self, show: ShowRequest) -> Table {
        match show {
            ShowRequest::Cluster { details } => self.show_cluster(details),
            ShowRequest::DataNodes => self.show_data_nodes(),
            ShowRequest::ConfigNodes => self.show_config_nodes(),
            ShowRequest::Databases { details, pattern } => {
                self.show_databases(details, pattern.as_ref())
            }
            ShowRequest::Variables => self.show_variables(),
            ShowRequest::AllTtl => self.show_all_ttl(),
            ShowRequest::Regions {
                kind,
                databases,
                node_ids,
                sizes,
            } => self.show_regions(
                &RegionFilter {
                    kind,
                    databases: &databases,
                    node_ids: &node_ids,
                },
                &|group, _| sizes.get(&group.0).map(u64::to_string),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::PathNode;

    /// Requests and responses cross process boundaries: they round-trip through serde.
    #[test]
    fn requests_and_responses_round_trip() {
        let requests = vec![
            ConfigRequest::CreateDatabase {
                name: "root.sg".into(),
                attributes: DatabaseAttributes {
                    data_region_group_num: Some(3),
                    ..DatabaseAttributes::default()
                },
            },
            ConfigRequest::DeleteDatabases {
                patterns: vec![PathPattern::new(vec![
                    PathNode::Name("root".into()),
                    PathNode::MultiLevel,
                ])],
            },
            ConfigRequest::GetOrCreateDataPartitions {
                database: "root.sg".into(),
                partitions: vec![(1, -5), (999, 7)],
            },
            ConfigRequest::Show(ShowRequest::Regions {
                kind: RegionKind::Data,
                databases: Vec::new(),
                node_ids: vec![1],
                sizes: [(3, 4096)].into_iter().collect(),
            }),
        ];
        for request in requests {
            let bytes = serde_json::to_vec(&request).unwrap();
            let back: ConfigRequest = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back, request);
        }
        let response = ConfigResponse::Table(Table {
            columns: vec!["NodeID".into(), "Status".into()],
            rows: vec![vec![Some("1".into()), None]],
        });
        let bytes = serde_json::to_vec(&response).unwrap();
        let back: ConfigResponse = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, response);
    }
}
