//! How a DataNode's control plane reaches the ConfigNode: in its own process (standalone)
//! or in another one (a cluster member), behind one interface.
//!
//! A member keeps a *mirror* of the ConfigNode state: every answer of the ConfigNode, and
//! every heartbeat of its leader, carries the commands the mirror lacks ([`Delta`]), which
//! the mirror applies with the same deterministic `ConfigState::apply`. Route tables,
//! partition lookups and placement questions are then answered from the mirror without a
//! round trip; only changes (and `SHOW` views, which include runtime statuses) travel.
//! When the mirror loses a region group this node holds (a database deleted through
//! another DataNode), the replicas are dropped here through the same [`ProcedureEnv`]
//! as a local procedure's.

use std::collections::BTreeMap;
use std::sync::Arc;

use iotdb_net::{Status, StatusCode};

use super::control::config_status;
use crate::cluster::link::CnLink;
use crate::cluster::protocol::{Delta, FromConfigNode, FromNode, ToConfigNode, ToNode};
use crate::confignode::{
    CommandHistory, ConfigCommand, ConfigNode, ConfigRequest, ConfigResponse, ConfigState, NodeId,
    ProcedureEnv, RegionGroupId, RegionGroupKind, RouteSnapshot,
};

/// How long a removed DataNode goes on answering before it stops. Why: the news of its
/// removal may come with the answer to the `REMOVE DATANODE` that this very node carried
/// to the ConfigNode (a node holding nothing is removed at once), and a stop at once
/// would close that client's connection before the answer went out. The route table no
/// longer names the node, so in this second it is given nothing new to hold.
const REMOVED_STOP_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Stops this process as SIGTERM does (flushing what it still has open), after
/// [`REMOVED_STOP_DELAY`], from a thread of its own: the caller (the control thread)
/// goes on answering meanwhile. Runs once, at the end of the node's life.
fn stop_after_removal() {
    let spawned = std::thread::Builder::new()
        .name("removed-stop".to_string())
        .spawn(|| {
            std::thread::sleep(REMOVED_STOP_DELAY);
            if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
                tracing::error!(error = %e, "stopping after the removal failed; stop this process");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "stopping after the removal failed; stop this process");
    }
}

/// The ConfigNode, local or remote.
pub enum ConfigAccess {
    Local(Box<ConfigNode>),
    Remote(RemoteConfig),
}

/// A ConfigNode in another process, and this node's mirror of its state.
pub struct RemoteConfig {
    link: CnLink,
    mirror: ConfigState,
    /// The route snapshot of some version of the mirror, rebuilt when asked for after the
    /// mirror moved.
    route: std::cell::RefCell<Arc<RouteSnapshot>>,
    /// The commands the mirror applied lately (from the deltas that brought them).
    history: CommandHistory,
    data_node_id: NodeId,
    /// The mirror listed this node once (so its absence later means a removal).
    seen_self: bool,
    /// The mirror no longer lists this node (it was removed); the stop was requested.
    removed_noticed: bool,
}

impl RemoteConfig {
    pub fn new(link: CnLink, mirror: ConfigState, data_node_id: NodeId) -> RemoteConfig {
        let route = std::cell::RefCell::new(Arc::new(RouteSnapshot::from_state(&mirror)));
        // The registration's state lists this node: a node removed before any later
        // delta reached it (one holding nothing goes at once) must still see its removal.
        let seen_self = mirror.data_nodes().contains_key(&data_node_id);
        RemoteConfig {
            link,
            history: CommandHistory::at(mirror.version()),
            mirror,
            route,
            data_node_id,
            seen_self,
            removed_noticed: false,
        }
    }

    /// Region groups with a replica on this node, and their kinds.
    fn local_groups(&self) -> BTreeMap<RegionGroupId, RegionGroupKind> {
        self.mirror
            .region_groups()
            .values()
            .filter(|group| {
                group
                    .replicas
                    .iter()
                    .any(|replica| replica.data_node_id == self.data_node_id)
            })
            .map(|group| (group.id, group.kind))
            .collect()
    }

    /// Applies a delta; replicas of groups the state no longer has are dropped through
    /// `env`. A delta that does not join the mirror (it missed some) fetches the whole
    /// state instead.
    pub fn apply(&mut self, delta: Delta, env: &mut dyn ProcedureEnv) -> Result<(), Status> {
        let before = self.local_groups();
        let version = self.mirror.version();
        // The commands this delta brings beyond the mirror, kept if they are what it
        // applied (a delta that does not join it, or a whole state, resets the history).
        let brought = delta.commands_beyond(version);
        let applied = delta.apply_to(&mut self.mirror);
        match (&applied, brought) {
            (Ok(()), Some(commands))
                if version + commands.len() as u64 == self.mirror.version() =>
            {
                for command in commands {
                    self.history.push(command);
                }
            }
            // Set before anything below can fail: a delta applied in part, or a whole
            // state, leaves no history of how the mirror got where it is.
            _ => self.history.reset(self.mirror.version()),
        }
        if let Err(reason) = applied {
            tracing::warn!(%reason, "the ConfigNode state mirror missed changes; fetching it whole");
            match self.link.call(&ToConfigNode::Fetch { known_version: 0 })? {
                FromConfigNode::Answer { delta, .. } => {
                    let refreshed = delta.apply_to(&mut self.mirror);
                    self.history.reset(self.mirror.version());
                    refreshed.map_err(|reason| {
                        Status::internal(format!("refreshing the mirror: {reason}"))
                    })?
                }
                other => return Err(unexpected(&other)),
            }
        }
        let after = self.local_groups();
        let gone: Vec<_> = before
            .into_iter()
            .filter(|(group, _)| !after.contains_key(group))
            .collect();
        if !gone.is_empty() {
            env.drop_replicas(&gone).map_err(Status::internal)?;
        }
        let listed = self.mirror.data_nodes().contains_key(&self.data_node_id);
        self.seen_self |= listed;
        if self.seen_self && !listed && !self.removed_noticed {
            // `REMOVE DATANODE` finished: every replica moved away and the ConfigNode
            // forgot this node. It stops as on SIGTERM (flushing what it still has open).
            self.removed_noticed = true;
            tracing::warn!(
                data_node = %self.data_node_id,
                "this DataNode was removed from the cluster; stopping (its data directory \
                 can be destroyed with sbin/destroy-datanode.sh)"
            );
            stop_after_removal();
        }
        Ok(())
    }

    fn handle(
        &mut self,
        request: ConfigRequest,
        env: &mut dyn ProcedureEnv,
    ) -> Result<ConfigResponse, Status> {
        let known_version = self.mirror.version();
        match self.link.call(&ToConfigNode::Config {
            request,
            known_version,
        })? {
            FromConfigNode::Answer { result, delta } => {
                // The mirror first: whoever hears "created" must find it in the route table.
                self.apply(delta, env)?;
                result.map_err(Status::from)
            }
            FromConfigNode::Refused(status) => Err(status.into()),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(answer: &FromConfigNode) -> Status {
    Status::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("unexpected answer from the ConfigNode: {answer:?}"),
    )
}

impl ConfigAccess {
    /// Serves one request; `env` carries out the effects on this node's replicas.
    pub fn handle(
        &mut self,
        request: ConfigRequest,
        env: &mut dyn ProcedureEnv,
    ) -> Result<ConfigResponse, Status> {
        match self {
            ConfigAccess::Local(node) => node.handle(request, env).map_err(config_status),
            ConfigAccess::Remote(remote) => remote.handle(request, env),
        }
    }

    /// Asks DataNode `node` (a member only: a standalone node has no other), at the
    /// internal endpoint the state lists for it.
    pub fn call_data_node(&self, node: NodeId, request: &ToNode) -> Result<FromNode, Status> {
        let ConfigAccess::Remote(remote) = self else {
            return Err(Status::internal(
                "a standalone node has no other DataNode to ask",
            ));
        };
        let info =
            remote.mirror.data_nodes().get(&node).ok_or_else(|| {
                Status::internal(format!("DataNode {node} is not in the cluster"))
            })?;
        let endpoint = format!("{}:{}", info.spec.internal_address, info.spec.internal_port);
        let address = crate::config::parse_endpoint(&endpoint).ok_or_else(|| {
            Status::internal(format!(
                "DataNode {node}'s internal endpoint {endpoint} is not an address"
            ))
        })?;
        remote.link.call_data_node(node, address, request)
    }

    /// The state (a member's mirror of it).
    pub fn state(&self) -> &ConfigState {
        match self {
            ConfigAccess::Local(node) => node.state(),
            ConfigAccess::Remote(remote) => &remote.mirror,
        }
    }

    pub fn version(&self) -> u64 {
        self.state().version()
    }

    pub fn route_snapshot(&self) -> Arc<RouteSnapshot> {
        match self {
            ConfigAccess::Local(node) => node.route_snapshot(),
            ConfigAccess::Remote(remote) => {
                let mut route = remote.route.borrow_mut();
                if route.version != remote.mirror.version() {
                    *route = Arc::new(RouteSnapshot::from_state(&remote.mirror));
                }
                Arc::clone(&route)
            }
        }
    }

    /// The commands that moved the state (or the mirror) from `version` to the current
    /// one, oldest first; `None` when they are no longer kept.
    pub fn commands_since(&self, version: u64) -> Option<Vec<ConfigCommand>> {
        match self {
            ConfigAccess::Local(node) => node.commands_since(version),
            ConfigAccess::Remote(remote) => remote.history.since(version),
        }
    }

    /// The SchemaRegionGroup of a series slot, if assigned.
    pub fn schema_partition(&self, database: &str, series_slot: u32) -> Option<RegionGroupId> {
        self.state()
            .databases()
            .get(database)?
            .schema_partitions
            .get(&series_slot)
            .copied()
    }

    /// Starts a group-committed batch (local journal only).
    pub fn begin_batch(&mut self) {
        if let ConfigAccess::Local(node) = self {
            node.begin_batch();
        }
    }

    /// Writes a local ConfigNode's batch to its journal, not yet durable
    /// ([`ConfigNode::write_batch`]).
    pub fn write_batch(&mut self) -> Result<(), Status> {
        match self {
            ConfigAccess::Local(node) => node.write_batch().map_err(config_status),
            ConfigAccess::Remote(_) => Ok(()),
        }
    }

    /// Makes the batch durable (a remote ConfigNode made each change durable before it
    /// answered).
    pub fn end_batch(&mut self) -> Result<(), Status> {
        match self {
            ConfigAccess::Local(node) => node.end_batch().map_err(config_status),
            ConfigAccess::Remote(_) => Ok(()),
        }
    }

    /// Writes a checkpoint of a local ConfigNode.
    pub fn checkpoint(&mut self) {
        if let ConfigAccess::Local(node) = self
            && let Err(e) = node.checkpoint()
        {
            tracing::error!(error = %e, "checkpointing the ConfigNode state failed");
        }
    }

    /// Folds a local ConfigNode's log into a new snapshot if it holds records (`FLUSH`).
    pub fn fold_log(&mut self) -> Result<(), Status> {
        match self {
            ConfigAccess::Local(node) => node.fold_log().map_err(|e| {
                tracing::error!(error = %e, "folding the ConfigNode's log failed");
                Status::internal(format!(
                    "the data is flushed, but folding the ConfigNode's log failed: {e}"
                ))
            }),
            ConfigAccess::Remote(_) => Ok(()),
        }
    }

    /// Fetches what the ConfigNode changed since the mirror's version (a member only).
    pub fn refresh(&mut self, env: &mut dyn ProcedureEnv) -> Result<(), Status> {
        match self {
            ConfigAccess::Local(_) => Ok(()),
            ConfigAccess::Remote(remote) => {
                let known_version = remote.mirror.version();
                match remote.link.call(&ToConfigNode::Fetch { known_version })? {
                    FromConfigNode::Answer { delta, .. } => remote.apply(delta, env),
                    FromConfigNode::Refused(status) => Err(status.into()),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// Applies what a heartbeat of the ConfigNode leader brought (a member only).
    pub fn apply_delta(&mut self, delta: Delta, env: &mut dyn ProcedureEnv) -> Result<(), Status> {
        match self {
            ConfigAccess::Local(_) => Ok(()),
            ConfigAccess::Remote(remote) => remote.apply(delta, env),
        }
    }
}
