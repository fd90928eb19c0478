//! Pure placement decisions: where new region replicas go, which replica
//! leads, and which region group a new partition goes to. Each function
//! reads a [`ConfigState`] and returns the command payload; nothing here
//! mutates state or touches a clock.
//!
//! - **Replicas** (IoTDB GREEDY, refined for cores): candidates are DataNodes
//!   that accept new regions (Running, Unknown), Running first; they are
//!   ordered by regions of the same kind *per shard* (so a 16-core node takes
//!   more regions than a 4-core one; with equal shard counts this is IoTDB's
//!   fewest-regions order), then by leaders per shard (so a single-replica
//!   group lands where it evens out leadership), then by all regions per
//!   shard, then by id. The
//!   first `replication_factor` nodes get a replica each, on the shard with
//!   the fewest regions of that kind (then fewest of any kind).
//! - **Leader**: the replica whose node, then shard, leads the fewest groups
//!   of that kind, Running nodes first. Counters are updated as each group is
//!   planned, so a batch spreads evenly.
//! - **SchemaPartition**: a new series slot goes to the group with the
//!   fewest series slots (ties: lowest id).
//! - **DataPartition**: balance is counted *per time slot*, because writes
//!   concentrate on the newest time slot and that is where the load is. A
//!   new (series slot, time slot) inherits the group of the nearest time slot
//!   of the same series slot (predecessor, else successor) when that group
//!   holds at most [`DATA_PARTITION_INHERIT_SLACK`] more partitions of this
//!   time slot than the emptiest group; otherwise it goes to the group with
//!   the fewest partitions in this time slot (ties: fewest in total, then
//!   lowest id). Inheriting keeps a device's history in few regions; the
//!   slack bounds the imbalance within a time slot to `slack + 1`, and new
//!   groups (after a scale-out) fill up with new time slots without moving
//!   old data.

use super::error::{ConfigNodeError, Result};
use super::model::{
    NodeId, NodeStatus, REGION_GROUPS_PER_DATABASE_MAX, RegionGroup, RegionGroupId,
    RegionGroupKind, RegionGroupPolicy, RegionReplica, ReplicationAck, ShardId,
};
use super::procedure::LeaderReport;
use super::state::{ConfigState, DatabaseState};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

/// How many more partitions of a time slot an inherited group may hold than
/// the emptiest group. 1 keeps almost every series slot in the same group
/// from one time slot to the next while bounding imbalance to 2.
pub const DATA_PARTITION_INHERIT_SLACK: u64 = 1;

/// Region and leader counts of one shard or node.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    /// Regions of the kind being placed.
    regions: u64,
    /// Regions of any kind.
    all_regions: u64,
    /// Leaders of the kind being placed.
    leaders: u64,
}

/// Loads of every DataNode and shard, for one region kind.
struct ClusterLoad {
    nodes: BTreeMap<NodeId, (Load, Vec<Load>)>,
}

impl ClusterLoad {
    fn of(state: &ConfigState, kind: RegionGroupKind) -> ClusterLoad {
        let mut nodes: BTreeMap<NodeId, (Load, Vec<Load>)> = state
            .data_nodes()
            .values()
            .map(|node| {
                let shards = vec![Load::default(); node.spec.shard_count as usize];
                (node.node_id, (Load::default(), shards))
            })
            .collect();
        for group in state.region_groups().values() {
            for replica in &group.replicas {
                let Some((node, shards)) = nodes.get_mut(&replica.data_node_id) else {
                    continue;
                };
                let same_kind = group.kind == kind;
                let leader = same_kind && group.leader == replica.data_node_id;
                for load in [node, &mut shards[replica.shard.index()]] {
                    load.all_regions += 1;
                    load.regions += u64::from(same_kind);
                    load.leaders += u64::from(leader);
                }
            }
        }
        ClusterLoad { nodes }
    }

    fn add(&mut self, replica: RegionReplica, leader: bool) {
        let (node, shards) = self
            .nodes
            .get_mut(&replica.data_node_id)
            .expect("placed on a known node");
        for load in [node, &mut shards[replica.shard.index()]] {
            load.all_regions += 1;
            load.regions += 1;
            load.leaders += u64::from(leader);
        }
    }

    fn shard_count(&self, node_id: NodeId) -> u64 {
        self.nodes[&node_id].1.len() as u64
    }
}

/// Compares `a / a_shards` with `b / b_shards` without division.
fn per_shard(a: u64, a_shards: u64, b: u64, b_shards: u64) -> Ordering {
    (u128::from(a) * u128::from(b_shards)).cmp(&(u128::from(b) * u128::from(a_shards)))
}

/// Plans `count` new region groups of `kind` for `database`, with ids from
/// the region id sequence and `create_time_ms` as their creation time.
pub fn plan_region_groups(
    state: &ConfigState,
    database: &str,
    kind: RegionGroupKind,
    count: u32,
    create_time_ms: i64,
) -> Result<Vec<RegionGroup>> {
    let settings = &state.database(database)?.settings;
    let factor = settings.replication_factor(kind);
    let candidates: Vec<(NodeId, NodeStatus)> = state
        .data_nodes()
        .values()
        .filter(|node| node.status.accepts_new_regions())
        .map(|node| (node.node_id, node.status))
        .collect();
    if candidates.len() < factor as usize {
        return Err(ConfigNodeError::NotEnoughDataNodes {
            needed: factor,
            available: candidates.len() as u32,
        });
    }
    let mut load = ClusterLoad::of(state, kind);
    let mut groups = Vec::with_capacity(count as usize);
    for offset in 0..count {
        let mut ordered = candidates.clone();
        ordered.sort_by(|&(a, a_status), &(b, b_status)| {
            let (a_load, b_load) = (load.nodes[&a].0, load.nodes[&b].0);
            let (a_shards, b_shards) = (load.shard_count(a), load.shard_count(b));
            (a_status != NodeStatus::Running)
                .cmp(&(b_status != NodeStatus::Running))
                .then(per_shard(
                    a_load.regions,
                    a_shards,
                    b_load.regions,
                    b_shards,
                ))
                .then(per_shard(
                    a_load.leaders,
                    a_shards,
                    b_load.leaders,
                    b_shards,
                ))
                .then(per_shard(
                    a_load.all_regions,
                    a_shards,
                    b_load.all_regions,
                    b_shards,
                ))
                .then(a.cmp(&b))
        });
        ordered.truncate(factor as usize);
        let leader = ordered
            .iter()
            .min_by(|&&(a, a_status), &&(b, b_status)| {
                let (a_load, b_load) = (load.nodes[&a].0, load.nodes[&b].0);
                (a_status != NodeStatus::Running)
                    .cmp(&(b_status != NodeStatus::Running))
                    .then(per_shard(
                        a_load.leaders,
                        load.shard_count(a),
                        b_load.leaders,
                        load.shard_count(b),
                    ))
                    .then(a.cmp(&b))
            })
            .map(|&(node, _)| node)
            .expect("replication factor is at least 1");
        let mut replicas = Vec::with_capacity(ordered.len());
        for &(node_id, _) in &ordered {
            let is_leader = node_id == leader;
            let shard = choose_shard(&load.nodes[&node_id].1, is_leader);
            let replica = RegionReplica {
                data_node_id: node_id,
                shard,
            };
            load.add(replica, is_leader);
            replicas.push(replica);
        }
        let id = state
            .next_region_id()
            .checked_add(offset)
            .ok_or_else(|| ConfigNodeError::InvalidCommand("region ids exhausted".into()))?;
        groups.push(RegionGroup {
            id: RegionGroupId(id),
            kind,
            database: database.to_string(),
            replicas,
            leader,
            create_time_ms,
            epoch: 1,
            out_of_sync: Vec::new(),
            in_sync_version: 0,
        });
    }
    Ok(groups)
}

/// The shard for a new replica: fewest regions of the kind, then (for a
/// leader) fewest leaders, then fewest regions of any kind, then lowest.
fn choose_shard(shards: &[Load], leader: bool) -> ShardId {
    let best = shards
        .iter()
        .enumerate()
        .min_by_key(|(index, load)| {
            let leaders = if leader { load.leaders } else { 0 };
            (load.regions, leaders, load.all_regions, *index)
        })
        .map(|(index, _)| index)
        .expect("a DataNode has at least one shard");
    ShardId(u16::try_from(best).expect("a DataNode has at most SHARDS_PER_DATA_NODE_MAX shards"))
}

/// Where a migrated replica of `group` goes when its DataNode is removed: the Running
/// DataNode not holding the group (and not `excluded`) with the fewest regions of the
/// group's kind per shard (then fewest of any kind, then lowest id), on its shard with the
/// fewest regions of that kind. `None` when no DataNode qualifies.
pub fn plan_migration_target(
    state: &ConfigState,
    group: &RegionGroup,
    excluded: NodeId,
) -> Option<RegionReplica> {
    let load = ClusterLoad::of(state, group.kind);
    let holders: Vec<NodeId> = group.replicas.iter().map(|r| r.data_node_id).collect();
    let node = state
        .data_nodes()
        .values()
        .filter(|node| node.status == NodeStatus::Running)
        .map(|node| node.node_id)
        .filter(|node| *node != excluded && !holders.contains(node))
        .min_by(|&a, &b| {
            let (a_load, b_load) = (load.nodes[&a].0, load.nodes[&b].0);
            let (a_shards, b_shards) = (load.shard_count(a), load.shard_count(b));
            per_shard(a_load.regions, a_shards, b_load.regions, b_shards)
                .then(per_shard(
                    a_load.all_regions,
                    a_shards,
                    b_load.all_regions,
                    b_shards,
                ))
                .then(a.cmp(&b))
        })?;
    Some(RegionReplica {
        data_node_id: node,
        shard: choose_shard(&load.nodes[&node].1, false),
    })
}

/// The core of DataNode `node` that takes a migrated replica of a group of `kind` (`MIGRATE
/// REGION ... TO node`): the one with the fewest regions of that kind.
pub fn plan_migration_shard(state: &ConfigState, kind: RegionGroupKind, node: NodeId) -> ShardId {
    let load = ClusterLoad::of(state, kind);
    load.nodes
        .get(&node)
        .map_or(ShardId(0), |(_, shards)| choose_shard(shards, false))
}

/// How many region groups of `kind` the database should have now.
pub fn region_group_target(
    state: &ConfigState,
    database: &DatabaseState,
    kind: RegionGroupKind,
) -> u32 {
    match database.settings.region_group_policy(kind) {
        RegionGroupPolicy::Custom(count) => count,
        RegionGroupPolicy::Auto => match kind {
            RegionGroupKind::Schema => 1,
            RegionGroupKind::Data => {
                let cores: u64 = state
                    .data_nodes()
                    .values()
                    .filter(|node| node.status.accepts_new_regions())
                    .map(|node| u64::from(node.spec.shard_count))
                    .sum();
                let factor = u64::from(database.settings.data_replication_factor);
                (cores / factor).clamp(1, u64::from(REGION_GROUPS_PER_DATABASE_MAX)) as u32
            }
        },
    }
}

/// Assigns the not yet assigned `series_slots` to SchemaRegionGroups.
pub fn plan_schema_partitions(
    database: &DatabaseState,
    series_slots: &[u32],
) -> Vec<(u32, RegionGroupId)> {
    assert!(!database.schema_region_groups.is_empty());
    let mut counts: BTreeMap<RegionGroupId, u64> = database
        .schema_region_groups
        .iter()
        .map(|&group| (group, 0))
        .collect();
    for group in database.schema_partitions.values() {
        *counts.get_mut(group).expect("partition of a known group") += 1;
    }
    let mut planned: BTreeMap<u32, RegionGroupId> = BTreeMap::new();
    for &slot in series_slots {
        if database.schema_partitions.contains_key(&slot) || planned.contains_key(&slot) {
            continue;
        }
        let (&group, count) = counts
            .iter_mut()
            .min_by_key(|(group, count)| (**count, **group))
            .expect("at least one group");
        *count += 1;
        planned.insert(slot, group);
    }
    planned.into_iter().collect()
}

/// Assigns the not yet assigned (series slot, time slot) pairs to
/// DataRegionGroups, in (time slot, series slot) order.
pub fn plan_data_partitions(
    database: &DatabaseState,
    partitions: &[(u32, i64)],
) -> Vec<(u32, i64, RegionGroupId)> {
    let groups = &database.data_region_groups;
    assert!(!groups.is_empty());
    let mut wanted: Vec<(i64, u32)> = partitions
        .iter()
        .filter(|&&(slot, time_slot)| database.data_partition(slot, time_slot).is_none())
        .map(|&(slot, time_slot)| (time_slot, slot))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Vec::new();
    }
    // Partitions per group (`totals`) and, for each time slot asked for, per group in
    // that time slot, from the counts the state keeps as partitions are assigned (not a
    // pass over the whole table per call); a group is addressed by its position in the
    // database's group list.
    let mut time_slots: Vec<i64> = wanted.iter().map(|&(time_slot, _)| time_slot).collect();
    time_slots.dedup();
    debug_assert!(groups.is_sorted(), "data region groups are kept ascending");
    let position = |group: &RegionGroupId| {
        groups
            .binary_search(group)
            .expect("partition of a known group")
    };
    let counts = database.partition_counts();
    let mut totals = vec![0u64; groups.len()];
    for (group, &count) in &counts.by_group {
        totals[position(group)] = count;
    }
    let mut per_time_slot = vec![vec![0u64; groups.len()]; time_slots.len()];
    for (k, time_slot) in time_slots.iter().enumerate() {
        for (group, &count) in counts.by_time_slot.get(time_slot).into_iter().flatten() {
            per_time_slot[k][position(group)] = count;
        }
    }
    let mut planned: BTreeMap<(u32, i64), RegionGroupId> = BTreeMap::new();
    let mut result = Vec::with_capacity(wanted.len());
    for (time_slot, slot) in wanted {
        let k = time_slots
            .binary_search(&time_slot)
            .expect("every wanted time slot is counted");
        let counts = &mut per_time_slot[k];
        let fewest = counts.iter().copied().min().expect("at least one group");
        let inherited = neighbour_group(database, &planned, slot, time_slot)
            .map(|group| position(&group))
            .filter(|&at| counts[at] <= fewest + DATA_PARTITION_INHERIT_SLACK);
        let at = inherited.unwrap_or_else(|| {
            (0..groups.len())
                .min_by_key(|&at| (counts[at], totals[at], groups[at]))
                .expect("at least one group")
        });
        counts[at] += 1;
        totals[at] += 1;
        planned.insert((slot, time_slot), groups[at]);
        result.push((slot, time_slot, groups[at]));
    }
    result
}

/// The group of the nearest assigned time slot of `slot`: the closest
/// earlier one, else the closest later one, among the state and the
/// assignments planned so far.
fn neighbour_group(
    database: &DatabaseState,
    planned: &BTreeMap<(u32, i64), RegionGroupId>,
    slot: u32,
    time_slot: i64,
) -> Option<RegionGroupId> {
    let existing = database.data_partitions.get(&slot);
    let before_existing = existing.and_then(|by_time| by_time.range(..time_slot).next_back());
    let before_planned = planned
        .range((slot, i64::MIN)..(slot, time_slot))
        .next_back()
        .map(|((_, time), group)| (time, group));
    let before = match (before_existing, before_planned) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    if let Some((_, group)) = before {
        return Some(*group);
    }
    let after_existing = existing.and_then(|by_time| {
        by_time
            .range((
                std::ops::Bound::Excluded(time_slot),
                std::ops::Bound::Unbounded,
            ))
            .next()
    });
    let after_planned = planned
        .range((
            std::ops::Bound::Excluded((slot, time_slot)),
            std::ops::Bound::Included((slot, i64::MAX)),
        ))
        .next()
        .map(|((_, time), group)| (time, group));
    let after = match (after_existing, after_planned) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    after.map(|(_, group)| *group)
}

/// Leaders per (node, shard) of one kind of group: the tie-break that spreads leaders over
/// a node's cores (each core serves the writes of the groups it leads).
fn core_leaders(state: &ConfigState, kind: RegionGroupKind) -> HashMap<(NodeId, ShardId), u64> {
    let mut counts = HashMap::new();
    for group in state.region_groups().values().filter(|g| g.kind == kind) {
        if let Some(replica) = group
            .replicas
            .iter()
            .find(|r| r.data_node_id == group.leader)
        {
            *counts
                .entry((replica.data_node_id, replica.shard))
                .or_default() += 1;
        }
    }
    counts
}

/// Moves one leader count from the leader replica's core to `to`'s, for the tie-break.
fn move_core_leader(counts: &mut HashMap<(NodeId, ShardId), u64>, group: &RegionGroup, to: NodeId) {
    let core = |node: NodeId| {
        group
            .replicas
            .iter()
            .find(|r| r.data_node_id == node)
            .map(|r| (r.data_node_id, r.shard))
    };
    if let Some(from) = core(group.leader)
        && let Some(count) = counts.get_mut(&from)
    {
        *count = count.saturating_sub(1);
    }
    if let Some(to) = core(to) {
        *counts.entry(to).or_default() += 1;
    }
}

/// Leader moves for groups whose leader's node is not Running: to the
/// replica (never one a migration is still adding) on a Running node that leads the fewest groups of that kind (then the one
/// whose core leads the fewest).
/// Groups with no Running replica keep their leader. With `data_replication_ack =
/// in_sync` only replicas of the in-sync set are candidates (the others may lack
/// acknowledged writes).
pub fn plan_leader_failover(state: &ConfigState) -> Vec<(RegionGroupId, NodeId)> {
    plan_new_leaders(state, |group| !is_running(state, group.leader))
}

/// The replica to lead `group` instead of its leader, which cannot (it was wiped for a
/// snapshot: it holds nothing), chosen as [`plan_leader_failover`] chooses; `None` when no
/// other replica is a candidate.
pub fn plan_step_down(state: &ConfigState, group: RegionGroupId) -> Option<NodeId> {
    plan_new_leaders(state, |candidate| candidate.id == group)
        .pop()
        .map(|(_, leader)| leader)
}

fn is_running(state: &ConfigState, node_id: NodeId) -> bool {
    state
        .data_nodes()
        .get(&node_id)
        .is_some_and(|node| node.status == NodeStatus::Running)
}

/// New leaders, away from their current one, for the groups `replace` names.
fn plan_new_leaders(
    state: &ConfigState,
    replace: impl Fn(&RegionGroup) -> bool,
) -> Vec<(RegionGroupId, NodeId)> {
    let running = |node_id: &NodeId| is_running(state, *node_id);
    let mut leaders: HashMap<(NodeId, RegionGroupKind), u64> = HashMap::new();
    for group in state.region_groups().values() {
        *leaders.entry((group.leader, group.kind)).or_default() += 1;
    }
    let mut cores: HashMap<RegionGroupKind, HashMap<(NodeId, ShardId), u64>> =
        [RegionGroupKind::Data, RegionGroupKind::Schema]
            .into_iter()
            .map(|kind| (kind, core_leaders(state, kind)))
            .collect();
    let in_sync_only = state.settings().data_replication_ack == ReplicationAck::InSync;
    let mut changes = Vec::new();
    for group in state.region_groups().values() {
        // A group that elects its leader reports the new one itself.
        if !replace(group) || group.elects_leader() {
            continue;
        }
        let core_counts = cores.get_mut(&group.kind).expect("both kinds");
        let adding = state.adding_replica(group.id);
        let best = group
            .replicas
            .iter()
            .filter(|replica| replica.data_node_id != group.leader)
            .filter(|replica| running(&replica.data_node_id))
            .filter(|replica| !in_sync_only || group.in_sync(replica.data_node_id))
            .filter(|replica| Some(replica.data_node_id) != adding)
            .min_by_key(|replica| {
                let node = replica.data_node_id;
                (
                    leaders.get(&(node, group.kind)).copied().unwrap_or(0),
                    core_counts
                        .get(&(node, replica.shard))
                        .copied()
                        .unwrap_or(0),
                    node,
                )
            })
            .map(|replica| replica.data_node_id);
        if let Some(node) = best {
            *leaders.entry((node, group.kind)).or_default() += 1;
            if let Some(count) = leaders.get_mut(&(group.leader, group.kind)) {
                *count = count.saturating_sub(1);
            }
            move_core_leader(core_counts, group, node);
            changes.push((group.id, node));
        }
    }
    changes
}

/// How far behind its leader's log (entries it lacks durably) a replica may be for the
/// leader balancer to move leadership to it: the new leader fetches what it lacks before
/// taking writes, so a small lag only delays them.
pub const BALANCE_MAX_LAG_ENTRIES: u64 = 10_000;

/// Leader moves that even out leadership of data region groups over the Running
/// DataNodes (IoTDB balances leaders the same way after a node returns; greedy here):
/// while one node leads at least two groups more than another node holding a replica of
/// one of them, that group's leadership moves to the other. Every data group's leader
/// counts; only replicated groups move. Only Running
/// replicas are candidates, and with `data_replication_ack = in_sync` only members of
/// the in-sync set; among equally loaded candidates, the one whose core leads the fewest.
/// A candidate must also be one the group's leader reports (in `reports`, for its current
/// epoch) shipping entries to and at most [`BALANCE_MAX_LAG_ENTRIES`] behind: a replica
/// that returned behind its leader's WAL waits for a snapshot, holds nothing, and could
/// not lead (with `leader` acknowledgement nothing else says so).
/// Each group moves at most once per plan, so a plan never undoes itself; an even
/// cluster gives an empty plan.
pub fn plan_leader_balance(
    state: &ConfigState,
    reports: &HashMap<u32, LeaderReport>,
) -> Vec<(RegionGroupId, NodeId)> {
    let running = |node_id: &NodeId| is_running(state, *node_id);
    let caught_up = |group: &RegionGroup, node: NodeId| {
        reports.get(&group.id.0).is_some_and(|report| {
            report.epoch == group.epoch
                && report.leader == group.leader.0
                && report.peers.iter().any(|peer| {
                    peer.node == node.0
                        && peer.shipping
                        && peer.lag_entries <= BALANCE_MAX_LAG_ENTRIES
                })
        })
    };
    let in_sync_only = state.settings().data_replication_ack == ReplicationAck::InSync;
    let replicated = || {
        state
            .region_groups()
            .values()
            .filter(|group| group.kind == RegionGroupKind::Data && group.replicas.len() > 1)
    };
    let mut leaders: BTreeMap<NodeId, u64> = state
        .data_nodes()
        .keys()
        .filter(|node| running(node))
        .map(|node| (*node, 0))
        .collect();
    // Single-replica groups count as the load they are (their leader cannot move): a node
    // that leads many of them gives its replicated groups' leadership away first.
    for group in state
        .region_groups()
        .values()
        .filter(|group| group.kind == RegionGroupKind::Data)
    {
        if let Some(count) = leaders.get_mut(&group.leader) {
            *count += 1;
        }
    }
    let mut cores = core_leaders(state, RegionGroupKind::Data);
    let mut changes = Vec::new();
    for group in replicated() {
        let Some(&from) = leaders.get(&group.leader) else {
            continue;
        };
        if state.migration_of(group.id).is_some() {
            // A migration moves this group's leader itself.
            continue;
        }
        let best = group
            .replicas
            .iter()
            .filter(|replica| {
                replica.data_node_id != group.leader && running(&replica.data_node_id)
            })
            .filter(|replica| !in_sync_only || group.in_sync(replica.data_node_id))
            .filter(|replica| caught_up(group, replica.data_node_id))
            .min_by_key(|replica| {
                let node = replica.data_node_id;
                (
                    leaders[&node],
                    cores.get(&(node, replica.shard)).copied().unwrap_or(0),
                    node,
                )
            })
            .map(|replica| replica.data_node_id);
        if let Some(to) = best
            && from >= leaders[&to] + 2
        {
            *leaders.get_mut(&group.leader).expect("counted") -= 1;
            *leaders.get_mut(&to).expect("counted") += 1;
            move_core_leader(&mut cores, group, to);
            changes.push((group.id, to));
        }
    }
    changes
}
