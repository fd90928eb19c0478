//! The route table as a shard reads it: a read-mostly snapshot shared by every core behind
//! an `Arc`, with this node's lookup indexes.
//!
//! Each database's data partitions are one vector sorted by (series slot, time slot), so a
//! device's partitions are one run of it, found by binary search. A version that only
//! assigns partitions (nearly every change while data arrives) is derived from the one
//! before ([`RouteView::with_partitions`]): it copies the vector of each database it extends
//! — 16 bytes an entry, no hashing, no allocation per entry — and shares everything else.
//! The wire form clients fetch ([`RouteTable`]) is built on the first fetch of a version.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use iotdb_net::{DataPartitionEntry, DatabaseRoute, RegionGroupRoute, RouteTable};
use iotdb_net::{series_slot, sort_partitions, time_slot};

/// The node's current route table. Written by the control thread, read by every shard: a
/// shard checks the version (one atomic load) per request and takes the lock only when
/// it changed.
pub struct SharedRoute {
    version: AtomicU64,
    table: RwLock<Arc<RouteView>>,
}

impl SharedRoute {
    pub fn new(view: RouteView) -> SharedRoute {
        SharedRoute {
            version: AtomicU64::new(view.version()),
            table: RwLock::new(Arc::new(view)),
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn load(&self) -> Arc<RouteView> {
        self.table.read().expect("route lock poisoned").clone()
    }

    /// Publishes a newer table; an older or equal version is ignored.
    pub fn publish(&self, view: RouteView) {
        let mut table = self.table.write().expect("route lock poisoned");
        if view.version() > table.version() {
            let version = view.version();
            *table = Arc::new(view);
            self.version.store(version, Ordering::Release);
        }
    }
}

/// Where one region group's replica on this node lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalReplica {
    pub region_group_id: u32,
    pub shard: u16,
}

/// A route table with this node's indexes.
#[derive(Clone)]
pub struct RouteView {
    version: u64,
    /// Each database with its data partitions sorted by (series slot, time slot); shared
    /// with the versions before and after that did not change it.
    databases: Vec<Arc<DatabaseRoute>>,
    /// The data region groups and their replicas (the wire form), by id.
    groups: Arc<Vec<RegionGroupRoute>>,
    /// The wire form, built when a client first fetches this version.
    wire: OnceLock<RouteTable>,
    /// region group → the shard of this node holding its replica.
    local: HashMap<u32, u16>,
    /// database → TTL in ms (`None`: forever); not part of the wire table.
    pub ttls: HashMap<String, Option<i64>>,
    /// DataNode id → its internal endpoint (a cluster member reads other DataNodes'
    /// regions there); not part of the wire table.
    pub internal_endpoints: HashMap<u32, std::net::SocketAddr>,
    /// Region group → its database (known before any partition is assigned to the
    /// group); not part of the wire table.
    pub group_databases: HashMap<u32, String>,
    /// Replicated data region groups (more than one replica) with a replica on this node.
    pub replication: HashMap<u32, GroupReplication>,
    /// Each DataNode's first data-region consensus address: shard `s` listens on its port
    /// + `s`.
    pub consensus_endpoints: HashMap<u32, std::net::SocketAddr>,
    /// Every data region group's replicas as a read sees them (who leads, who is in
    /// sync and Running); not part of the wire table.
    pub read_replicas: HashMap<u32, ReadReplicas>,
    /// This DataNode's id.
    pub data_node_id: u32,
}

/// The replicas of one data region group, as a read of it chooses among them (a cluster
/// view from this node's mirror of the ConfigNode state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReplicas {
    pub leader: u32,
    /// The DataNode of every replica, in placement order.
    pub data_nodes: Vec<u32>,
    /// Replicas in the group's in-sync set.
    pub in_sync: Vec<u32>,
    /// Replicas whose DataNode is Running.
    pub running: Vec<u32>,
    /// `data_replication_ack = in_sync`.
    pub ack_in_sync: bool,
}

impl ReadReplicas {
    /// The DataNodes that may answer a read of the group, in the order a read tries them:
    /// the leader first (it holds every acknowledged point in both acknowledgement
    /// modes); then, only with `data_replication_ack = in_sync`, the followers that are
    /// in the in-sync set and Running — this node's own replica first (no network hop),
    /// the others by ascending DataNode id. With `leader` acknowledgement a follower may
    /// lack points the leader acknowledged and not yet shipped, so it never answers.
    pub fn read_order(&self, this_node: u32) -> Vec<u32> {
        let mut order = vec![self.leader];
        if !self.ack_in_sync {
            return order;
        }
        let mut followers: Vec<u32> = self
            .data_nodes
            .iter()
            .copied()
            .filter(|n| *n != self.leader && self.in_sync.contains(n) && self.running.contains(n))
            .collect();
        followers.sort_unstable_by_key(|n| (*n != this_node, *n));
        followers.dedup();
        order.extend(followers);
        order
    }
}

/// What the replica of a replicated region group on this node needs from the ConfigNode:
/// the leader it routes to, in which epoch, the in-sync set, which replicas run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReplication {
    pub epoch: u64,
    pub leader: u32,
    /// (DataNode, shard) of every replica.
    pub replicas: Vec<(u32, u16)>,
    pub in_sync: Vec<u32>,
    pub in_sync_version: u64,
    /// Replicas whose DataNode is Running.
    pub running: Vec<u32>,
    /// `data_replication_ack = in_sync`.
    pub ack_in_sync: bool,
}

/// The partition of one device: its database and where its data lives.
#[derive(Clone, Debug)]
pub struct DevicePartitions<'a> {
    pub database: &'a str,
    pub database_index: usize,
    pub series_slot: u32,
    pub time_partition_interval_ms: i64,
    /// Its series slot's partitions, in time order.
    pub slots: &'a [DataPartitionEntry],
}

impl RouteView {
    /// The view of route table `version`: `databases` with their data partitions (in any
    /// order), the data region groups `groups` (by id), this node's indexes.
    pub fn new(
        version: u64,
        databases: Vec<DatabaseRoute>,
        groups: Vec<RegionGroupRoute>,
        data_node_id: u32,
        shard_count: usize,
        ttls: HashMap<String, Option<i64>>,
    ) -> RouteView {
        let databases = databases
            .into_iter()
            .map(|mut database| {
                sort_partitions(&mut database.data_partitions);
                Arc::new(database)
            })
            .collect();
        let local = groups
            .iter()
            .filter_map(|group| {
                group
                    .replicas
                    .iter()
                    .find(|r| r.data_node_id == data_node_id)
                    .map(|r| {
                        (
                            group.region_group_id,
                            local_shard_of(r.shard_id, shard_count),
                        )
                    })
            })
            .collect();
        RouteView {
            version,
            databases,
            groups: Arc::new(groups),
            wire: OnceLock::new(),
            local,
            ttls,
            internal_endpoints: HashMap::new(),
            group_databases: HashMap::new(),
            replication: HashMap::new(),
            consensus_endpoints: HashMap::new(),
            read_replicas: HashMap::new(),
            data_node_id,
        }
    }

    /// This view at `version`, which differs from it only by the data partitions `added`
    /// ((database, series slot, time slot, region group); a pair assigned again takes the
    /// new group). `None` when a database is unknown here: the caller builds the view
    /// whole.
    pub fn with_partitions(
        &self,
        version: u64,
        added: &[(&str, u32, i64, u32)],
    ) -> Option<RouteView> {
        let mut databases = self.databases.clone();
        let mut by_database: HashMap<usize, Vec<DataPartitionEntry>> = HashMap::new();
        for (database, series_slot, time_slot, group) in added {
            let index = databases.iter().position(|d| d.name == *database)?;
            by_database
                .entry(index)
                .or_default()
                .push(DataPartitionEntry {
                    series_slot: *series_slot,
                    time_slot: *time_slot,
                    region_group_id: *group,
                });
        }
        for (index, new) in by_database {
            let old = &databases[index];
            // The old entries, then the new: of two entries for one pair the later (new)
            // one is kept.
            let mut entries = Vec::with_capacity(old.data_partitions.len() + new.len());
            entries.extend_from_slice(&old.data_partitions);
            entries.extend(new);
            sort_partitions(&mut entries);
            databases[index] = Arc::new(DatabaseRoute {
                name: old.name.clone(),
                series_slot_num: old.series_slot_num,
                time_partition_interval_ms: old.time_partition_interval_ms,
                data_partitions: entries,
            });
        }
        Some(RouteView {
            version,
            databases,
            wire: OnceLock::new(),
            ..self.clone()
        })
    }

    /// The route table in its wire form (what clients fetch), built on first use.
    pub fn wire_table(&self) -> &RouteTable {
        self.wire.get_or_init(|| {
            let databases = self.databases.iter().map(|d| (**d).clone()).collect();
            RouteTable::new(self.version, databases, (*self.groups).clone())
                .expect("the ConfigNode keeps valid settings")
        })
    }

    /// The databases, with their data partitions sorted by (series slot, time slot).
    pub fn databases(&self) -> impl ExactSizeIterator<Item = &DatabaseRoute> {
        self.databases.iter().map(|d| &**d)
    }

    /// The leader of a replicated group when another DataNode leads it: where a client
    /// write (and a consistent read) of the group goes instead of this node's follower.
    pub fn leader_elsewhere(&self, group: u32) -> Option<(u32, std::net::SocketAddr)> {
        let replication = self.replication.get(&group)?;
        if replication.leader == self.data_node_id {
            return None;
        }
        let address = self.internal_endpoints.get(&replication.leader)?;
        Some((replication.leader, *address))
    }

    /// The consensus address of shard `shard` of DataNode `node`.
    pub fn consensus_address(&self, node: u32, shard: u16) -> Option<std::net::SocketAddr> {
        let base = self.consensus_endpoints.get(&node)?;
        let port = base.port().checked_add(shard)?;
        Some(std::net::SocketAddr::new(base.ip(), port))
    }

    /// Where another DataNode holds region group `group`: its id and internal endpoint
    /// (the leader replica's; `None` when unknown or when this node holds it).
    pub fn remote_holder(&self, group: u32) -> Option<(u32, std::net::SocketAddr)> {
        if let Some(leader) = self.leader_elsewhere(group) {
            return Some(leader);
        }
        if self.local.contains_key(&group) {
            return None;
        }
        let route = self.groups.iter().find(|g| g.region_group_id == group)?;
        let replica = route
            .replicas
            .iter()
            .find(|r| r.is_leader)
            .or_else(|| route.replicas.first())?;
        let address = self.internal_endpoints.get(&replica.data_node_id)?;
        Some((replica.data_node_id, *address))
    }

    /// The DataNodes a read of data region group `group` may go to, in the order it
    /// tries them ([`ReadReplicas::read_order`]); `None` when this node's mirror does not
    /// know the group.
    pub fn read_order(&self, group: u32) -> Option<Vec<u32>> {
        Some(
            self.read_replicas
                .get(&group)?
                .read_order(self.data_node_id),
        )
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The database and partitions of `device`, or `None` when no database holds it. As in
    /// IoTDB, a device may be the database itself (`CREATE DATABASE root.vehicle.d0`, then
    /// `INSERT INTO root.vehicle.d0(time, s0) ...`); its series slot is still the hash of
    /// the device path.
    pub fn device(&self, device: &str) -> Option<DevicePartitions<'_>> {
        let (database_index, database) = self
            .databases
            .iter()
            .enumerate()
            .find(|(_, d)| holds(&d.name, device))?;
        let slot = series_slot(device, database.series_slot_num);
        let partitions = &database.data_partitions;
        let first = partitions.partition_point(|p| p.series_slot < slot);
        let end = first + partitions[first..].partition_point(|p| p.series_slot == slot);
        Some(DevicePartitions {
            database: &database.name,
            database_index,
            series_slot: slot,
            time_partition_interval_ms: database.time_partition_interval_ms,
            slots: &partitions[first..end],
        })
    }

    /// The shard of this node holding region group `group`.
    pub fn local_shard(&self, group: u32) -> Option<u16> {
        self.local.get(&group).copied()
    }

    /// The shard of this node that serves clients' writes and reads of `group`: the
    /// local replica's, unless the group is replicated and another DataNode leads it.
    pub fn serving_shard(&self, group: u32) -> Option<u16> {
        if self.leader_elsewhere(group).is_some() {
            return None;
        }
        self.local_shard(group)
    }

    /// Every region group this node holds on `shard`.
    pub fn groups_on_shard(&self, shard: u16) -> Vec<u32> {
        let mut groups: Vec<u32> = self
            .local
            .iter()
            .filter(|(_, s)| **s == shard)
            .map(|(g, _)| *g)
            .collect();
        groups.sort_unstable();
        groups
    }

    /// The database holding region group `group`.
    pub fn database_of_group(&self, group: u32) -> Option<&DatabaseRoute> {
        if let Some(name) = self.group_databases.get(&group) {
            return self.databases().find(|d| d.name == *name);
        }
        self.databases()
            .find(|d| d.data_partitions.iter().any(|p| p.region_group_id == group))
    }
}

/// Whether database `database` holds `device`: the device is the database or lies below it
/// (at a node boundary, so `root.ln` does not hold `root.lnx`).
fn holds(database: &str, device: &str) -> bool {
    device.starts_with(database)
        && (device.len() == database.len() || device.as_bytes()[database.len()] == b'.')
}

/// The shard of this node that owns a replica placed on core `placed`: the same core, or,
/// when the node restarted with fewer shards than it was placed with, the core it maps to
/// (the same on every shard, so each region still has exactly one owner).
fn local_shard_of(placed: u32, shard_count: usize) -> u16 {
    (placed as usize % shard_count.max(1)) as u16
}

impl DevicePartitions<'_> {
    /// The region group of time `t`, if that partition exists.
    pub fn group_at(&self, t: i64) -> Option<u32> {
        let slot = time_slot(t, self.time_partition_interval_ms);
        self.slots
            .binary_search_by_key(&slot, |p| p.time_slot)
            .ok()
            .map(|i| self.slots[i].region_group_id)
    }

    /// The (time slot, group) pairs overlapping `[start, end)`, in time order.
    pub fn groups_in(&self, start: i64, end: i64) -> impl Iterator<Item = (i64, u32)> + '_ {
        let (first, last) = if start >= end {
            (1, 0)
        } else {
            (
                time_slot(start, self.time_partition_interval_ms),
                time_slot(end - 1, self.time_partition_interval_ms),
            )
        };
        self.slots
            .iter()
            .filter(move |p| p.time_slot >= first && p.time_slot <= last)
            .map(|p| (p.time_slot, p.region_group_id))
    }
}

#[cfg(test)]
mod tests {
    use super::{ReadReplicas, holds};

    /// The leader always comes first; followers only with in-sync acknowledgement, only
    /// in sync and Running, this node's own first, then by id — whatever the placement
    /// order.
    #[test]
    fn reads_try_the_leader_then_in_sync_running_followers() {
        let group = ReadReplicas {
            leader: 3,
            data_nodes: vec![5, 3, 1, 4, 2],
            in_sync: vec![1, 2, 3, 4, 5],
            running: vec![1, 2, 3, 5],
            ack_in_sync: true,
        };
        assert_eq!(group.read_order(9), [3, 1, 2, 5], "4 is not Running");
        assert_eq!(
            group.read_order(5),
            [3, 5, 1, 2],
            "this node's replica first"
        );
        assert_eq!(group.read_order(3), [3, 1, 2, 5], "the leader is this node");
        let lagging = ReadReplicas {
            in_sync: vec![3, 5],
            ..group.clone()
        };
        assert_eq!(
            lagging.read_order(1),
            [3, 5],
            "1 and 2 may miss acknowledged points"
        );
        let leader_ack = ReadReplicas {
            ack_in_sync: false,
            ..group
        };
        assert_eq!(
            leader_ack.read_order(5),
            [3],
            "followers may miss what the leader acknowledged"
        );
    }

    #[test]
    fn a_database_holds_itself_and_paths_below_it_only() {
        assert!(holds("root.vehicle.d0", "root.vehicle.d0"));
        assert!(holds("root.vehicle", "root.vehicle.d0"));
        assert!(!holds("root.vehicle", "root.vehiclex.d0"));
        assert!(!holds("root.vehicle.d0", "root.vehicle"));
    }
}
