//! The bodies of the cluster's control messages on the internal protocol: what DataNodes
//! (and ConfigNodes that join) ask a ConfigNode, and what the ConfigNode leader asks every
//! node in its heartbeats. JSON (serde) bodies: control traffic is small and rare next to
//! data, and the ConfigNode's commands are already serde values.
//!
//! ```text
//!  DataNode ──ToConfigNode::Register{spec, settings, claimed id}──► ConfigNode
//!           ◄── FromConfigNode::Registered{id, delta} ────────────
//!  DataNode ──ToConfigNode::Config{request, known_version}────────► ConfigNode
//!           ◄── FromConfigNode::Answer{result, delta} ────────────   (delta: the commands
//!                                                                     the node's mirror lacks)
//!  ConfigNode leader ──ToNode::Heartbeat{delta}──► every node, each heartbeat interval
//!                    ◄── FromNode::Alive{status, version, regions}
//! ```

use iotdb_model::{DataType, StatusCode};
use iotdb_net::Status;
use serde::{Deserialize, Serialize};

use crate::confignode::{
    ClusterSettings, ConfigCommand, ConfigNodeSpec, ConfigRequest, ConfigResponse, ConfigState,
    DataNodeSpec, NodeId, NodeStatus,
};
use crate::sql::PathPattern;

/// A node asks a ConfigNode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToConfigNode {
    /// Join the cluster (or re-join after a restart, with the id it persisted).
    Register {
        node: NodeSpec,
        /// The cluster-wide settings the node was started with: they must equal the
        /// cluster's (a mismatch is refused naming the key).
        settings: ClusterSettings,
        /// The id the node persisted at its first registration; `None` for a new node.
        claimed_id: Option<NodeId>,
    },
    /// A ConfigNode request, and the version of the asker's mirror of the state.
    Config {
        request: ConfigRequest,
        known_version: u64,
    },
    /// Just the commands since `known_version` (a DataNode catching up).
    Fetch { known_version: u64 },
    /// Are you alive? (the ConfigNode leader's heartbeat to the other ConfigNodes)
    Ping,
}

/// What a registering node declares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeSpec {
    ConfigNode(ConfigNodeSpec),
    DataNode(DataNodeSpec),
}

/// A ConfigNode's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromConfigNode {
    Registered {
        node_id: NodeId,
        /// The leading ConfigNode's id and internal address (`host:port`).
        leader: NodeId,
        leader_address: String,
        delta: Delta,
        /// A joining ConfigNode's peers: every ConfigNode's consensus endpoint
        /// (`cn_internal_address:cn_consensus_port`), so it can answer the leader before
        /// the replicated state told it where the others are.
        #[serde(default)]
        consensus_peers: Vec<(NodeId, String)>,
    },
    Answer {
        result: Result<ConfigResponse, WireStatus>,
        delta: Delta,
    },
    /// Refused (a registration with the wrong settings, a malformed body, ...).
    Refused(WireStatus),
    /// This ConfigNode does not lead the ConfigNode group: ask the leader (when known).
    NotLeader {
        leader: Option<NodeId>,
        leader_address: Option<String>,
    },
}

/// The ConfigNode leader (or another DataNode) asks a DataNode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToNode {
    /// Are you alive? Here is what changed since the version you last reported. Names
    /// the leading ConfigNode (the sender) and every ConfigNode's internal endpoint, so a
    /// DataNode always knows where to ask, and whom to try when the leader fails.
    Heartbeat {
        leader: NodeId,
        config_nodes: Vec<(NodeId, String)>,
        delta: Delta,
    },
    /// A schema question for a SchemaRegion this node holds (asked by a DataNode that
    /// received a write or query for a device whose schema lives here).
    Schema(SchemaRequest),
    /// A read of a region group this node holds (asked by a DataNode serving a query).
    Read {
        group: u32,
        read: super::remote_read::WireRead,
    },
    /// `DELETE FROM` of series in a region group this node holds (leads, when
    /// replicated): the points of `series` (device, measurement) in `[start_ms, end_ms)`.
    /// Answered `Deleted` once durable; never forwarded again.
    Delete {
        group: u32,
        series: Vec<(String, String)>,
        start_ms: i64,
        end_ms: i64,
    },
}

/// Schema questions a DataNode forwards to the holder of the device's SchemaRegion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SchemaRequest {
    /// The types of a device's measurements, creating missing series (all or nothing).
    /// With `use_existing`, a series that exists with another type answers its own type
    /// (the caller reports it: partial insert) instead of refusing the request.
    EnsureSeries {
        device: String,
        /// Whether the writing tablet is aligned (must match an existing device).
        aligned: bool,
        measurements: Vec<(String, DataType)>,
        use_existing: bool,
    },
    /// The types of existing series (`None` where missing); creates nothing.
    LookupSeries {
        device: String,
        measurements: Vec<String>,
    },
    /// The series matching each pattern (sorted by path within a pattern), in the
    /// SchemaRegions of the asked node; for SQL queries and deletions that name series
    /// with `*` and `**`. A cluster member's own shards merge every holder's answers.
    MatchSeries { patterns: Vec<PathPattern> },
    /// A `SHOW`/`COUNT` view of the SchemaRegions the asked node serves (leads):
    /// answered with its rows; the asker merges every serving node's.
    Show {
        view: SchemaView,
        pattern: Option<PathPattern>,
    },
    /// `CREATE [ALIGNED] TIMESERIES` of one device, on the node serving its SchemaRegion:
    /// answered with how many series were new ([`FromNode::Count`]).
    CreateSeries {
        device: String,
        aligned: bool,
        measurements: Vec<(String, crate::schema::StoredSchema)>,
    },
    /// `DELETE TIMESERIES`: the series matching `patterns` in the SchemaRegions the asked
    /// node serves, answered with how many went ([`FromNode::Count`]). Every DataNode
    /// is asked, holder or not, so each drops its cached types of them.
    DeleteSeries { patterns: Vec<PathPattern> },
    /// One part of a single-replica SchemaRegion copied here by the DataNode holding it
    /// (migration `procedure`, at `MigrateStep::CopySchema`): parts come in order from 0;
    /// the last one makes the copy durable under the region's directory. Answered with
    /// how many series the copy holds so far ([`FromNode::Count`]).
    InstallRegion {
        procedure: u64,
        group: u32,
        database: String,
        part: u32,
        last: bool,
        devices: Vec<crate::schema::StoredDevice>,
    },
}

/// The schema views a cluster merges from every schema region's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaView {
    /// `SHOW TIMESERIES`: rows by path.
    Timeseries,
    /// `SHOW DEVICES`: rows by device.
    Devices,
    /// `COUNT TIMESERIES`: one count.
    CountTimeseries,
    /// `COUNT DEVICES`: one count.
    CountDevices,
}

impl SchemaView {
    /// The view of a statement, with its pattern (`None`: not a schema view).
    pub fn of(statement: &crate::sql::Statement) -> Option<(SchemaView, Option<PathPattern>)> {
        use crate::sql::Statement;
        match statement {
            Statement::ShowTimeseries { pattern } => {
                Some((SchemaView::Timeseries, pattern.clone()))
            }
            Statement::ShowDevices { pattern } => Some((SchemaView::Devices, pattern.clone())),
            Statement::CountTimeseries { pattern } => {
                Some((SchemaView::CountTimeseries, pattern.clone()))
            }
            Statement::CountDevices { pattern } => {
                Some((SchemaView::CountDevices, pattern.clone()))
            }
            _ => None,
        }
    }

    /// The statement of a view.
    pub fn statement(self, pattern: Option<PathPattern>) -> crate::sql::Statement {
        use crate::sql::Statement;
        match self {
            SchemaView::Timeseries => Statement::ShowTimeseries { pattern },
            SchemaView::Devices => Statement::ShowDevices { pattern },
            SchemaView::CountTimeseries => Statement::CountTimeseries { pattern },
            SchemaView::CountDevices => Statement::CountDevices { pattern },
        }
    }
}

/// A node's answer to the ConfigNode leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromNode {
    Alive {
        /// `Running`, or `ReadOnly` when a region of it turned read-only (a full disk).
        status: NodeStatus,
        /// The version of its mirror of the ConfigNode state after this heartbeat.
        version: u64,
        /// Region replicas it has open.
        regions: u32,
        /// Bytes on disk of each data region it has open (`SHOW REGIONS`' TsFileSize).
        #[serde(default)]
        region_sizes: Vec<(u32, u64)>,
        /// What each replicated group it leads says of its followers (migrations wait on
        /// it).
        #[serde(default)]
        leading: Vec<crate::confignode::procedure::LeaderReport>,
    },
    Refused(WireStatus),
    /// The answer to [`SchemaRequest::EnsureSeries`].
    Types(Vec<DataType>),
    /// The answer to [`SchemaRequest::LookupSeries`].
    MaybeTypes(Vec<Option<DataType>>),
    /// The answer to [`SchemaRequest::MatchSeries`]: per pattern, (device, measurement,
    /// type).
    Series(Vec<Vec<(String, String, DataType)>>),
    /// The answer to a [`SchemaRequest`] this node does not serve: the DataNode that
    /// does, as far as this node knows (the leader of a replicated schema region group).
    /// The asker follows a few such answers at most.
    SchemaElsewhere {
        data_node: NodeId,
        /// Its internal endpoint, `host:port`.
        internal_endpoint: String,
    },
    /// The answer to [`SchemaRequest::Show`]: the view's rows (text cells).
    Rows(Vec<Vec<Option<String>>>),
    /// The answer to [`ToNode::Read`].
    Region(super::remote_read::WireAnswer),
    /// A forwarded write (`cluster::forward`) is durable.
    Written,
    /// A forwarded deletion ([`ToNode::Delete`]) is durable.
    Deleted,
    /// The answer to [`SchemaRequest::CreateSeries`] and [`SchemaRequest::DeleteSeries`]:
    /// how many series were created or deleted (durably).
    Count(u64),
}

/// How a node's mirror of the ConfigNode state catches up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub enum Delta {
    /// Nothing changed since the asker's version.
    #[default]
    None,
    /// The commands after `from_version`, oldest first.
    Commands {
        from_version: u64,
        commands: Vec<ConfigCommand>,
    },
    /// The whole state (the asker is too far behind, or new).
    Full(Box<ConfigState>),
}

impl Delta {
    /// The commands this delta brings beyond a mirror at `version`, in order: what
    /// [`Delta::apply_to`] applies to it when it joins (none when it is older). `None` for
    /// a whole state, or commands that start past `version`.
    pub fn commands_beyond(&self, version: u64) -> Option<Vec<ConfigCommand>> {
        match self {
            Delta::None => Some(Vec::new()),
            Delta::Full(_) => None,
            Delta::Commands {
                from_version,
                commands,
            } => {
                let skip = version.checked_sub(*from_version)?;
                let skip = usize::try_from(skip).unwrap_or(usize::MAX);
                Some(commands.get(skip..).unwrap_or_default().to_vec())
            }
        }
    }

    /// Brings `mirror` up to date. A `Commands` delta that does not start at the mirror's
    /// version is refused (the caller asks for the whole state).
    pub fn apply_to(self, mirror: &mut ConfigState) -> Result<(), String> {
        match self {
            Delta::None => Ok(()),
            Delta::Full(state) => {
                if state.version() >= mirror.version() {
                    *mirror = *state;
                }
                Ok(())
            }
            Delta::Commands {
                from_version,
                commands,
            } => {
                let end = from_version + commands.len() as u64;
                if end <= mirror.version() {
                    return Ok(()); // Already applied (an older answer arrived late).
                }
                if from_version > mirror.version() {
                    return Err(format!(
                        "the commands start at version {from_version}, the mirror is at {}",
                        mirror.version()
                    ));
                }
                let skip = (mirror.version() - from_version) as usize;
                for command in commands.into_iter().skip(skip) {
                    mirror
                        .apply(&command)
                        .map_err(|e| format!("applying {command:?}: {e}"))?;
                }
                Ok(())
            }
        }
    }
}

/// A status on the wire (IoTDB's code and the message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireStatus {
    pub code: i32,
    pub message: String,
}

impl From<Status> for WireStatus {
    fn from(status: Status) -> WireStatus {
        WireStatus {
            code: status.code.code(),
            message: status.message,
        }
    }
}

impl From<WireStatus> for Status {
    fn from(wire: WireStatus) -> Status {
        Status::new(StatusCode::from_code(wire.code), wire.message)
    }
}

/// Encodes a body.
pub fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(value).expect("protocol values serialize"))
}

/// Decodes a body; a malformed one is a typed error naming what was expected.
pub fn decode<T: for<'de> Deserialize<'de>>(what: &str, body: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(body).map_err(|e| {
        Status::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("a malformed {what} message on the internal port: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confignode::{ClusterSettings, ConfigNode, ConfigRequest, NoEffects};

    /// A mirror fed with command deltas ends equal to the ConfigNode's state, and a delta
    /// that does not join the mirror is refused instead of applied out of order.
    #[test]
    fn a_mirror_follows_the_config_node_by_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = ConfigNode::open(dir.path(), ClusterSettings::default()).unwrap();
        let mut mirror = node.state().clone();
        let first = mirror.version();
        node.handle(
            ConfigRequest::CreateDatabase {
                name: "root.a".into(),
                attributes: Default::default(),
            },
            &mut NoEffects,
        )
        .unwrap();
        node.handle(
            ConfigRequest::CreateDatabase {
                name: "root.b".into(),
                attributes: Default::default(),
            },
            &mut NoEffects,
        )
        .unwrap();
        let commands = node.commands_since(first + 1).unwrap();
        let gap = Delta::Commands {
            from_version: first + 1,
            commands,
        };
        assert!(gap.commands_beyond(first).is_none(), "a gap brings nothing");
        assert!(gap.apply_to(&mut mirror).is_err(), "a gap is refused");
        let delta = Delta::Commands {
            from_version: first,
            commands: node.commands_since(first).unwrap(),
        };
        assert_eq!(
            delta.commands_beyond(first + 1).unwrap(),
            node.commands_since(first + 1).unwrap(),
            "what a mirror one command ahead lacks"
        );
        assert_eq!(delta.commands_beyond(first + 9).unwrap(), vec![], "older");
        assert!(
            Delta::Full(Box::new(mirror.clone()))
                .commands_beyond(first)
                .is_none()
        );
        let body = encode(&delta);
        let delta: Delta = decode("delta", &body).unwrap();
        delta.clone().apply_to(&mut mirror).unwrap();
        assert_eq!(&mirror, node.state());
        // Applying it again changes nothing.
        delta.apply_to(&mut mirror).unwrap();
        assert_eq!(&mirror, node.state());
        assert!(node.commands_since(node.version() + 1).is_none());
        assert!(decode::<Delta>("delta", b"{nonsense").is_err());
    }
}
