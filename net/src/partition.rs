//! Partitioning helpers shared by clients and servers, and the route table
//! the ConfigNode publishes.
//!
//! `series_slot` is IoTDB's BKDR hash of the device path (so slot numbers
//! match IoTDB's); `time_slot` is floor division by the time partition
//! interval. A [`RouteTable`] maps (database, series slot, time slot) to a
//! DataRegionGroup and each group to its replicas (DataNode, endpoint, shard,
//! leader flag). It is immutable and versioned: clients cache it and refetch
//! when a server answers [`crate::StatusCode::ROUTE_TABLE_STALE`].

use std::collections::HashMap;

use bytes::{BufMut, BytesMut};

use crate::codec::{WireReader, WireWrite};
use crate::error::DecodeError;

/// IoTDB's `BKDRHashExecutor`: `h = h * 131 + c` over the UTF-16 code units of
/// the device path in wrapping `i32`, then `(h & 0x7fffffff) % series_slot_num`.
///
/// Panics if `series_slot_num` is 0 (a configuration bug; decoded route
/// tables reject 0).
pub fn series_slot(device: &str, series_slot_num: u32) -> u32 {
    assert!(series_slot_num > 0, "series_slot_num must be positive");
    let mut hash: i32 = 0;
    for code_unit in device.encode_utf16() {
        hash = hash.wrapping_mul(131).wrapping_add(i32::from(code_unit));
    }
    ((hash & 0x7fff_ffff) as u32) % series_slot_num
}

/// IoTDB's time slot: `floor(t / interval)` (origin 0), also for negative `t`.
///
/// Panics if `time_partition_interval_ms` is not positive (a configuration bug).
pub fn time_slot(timestamp_ms: i64, time_partition_interval_ms: i64) -> i64 {
    assert!(
        time_partition_interval_ms > 0,
        "time_partition_interval must be positive"
    );
    timestamp_ms.div_euclid(time_partition_interval_ms)
}

/// One database's partitioning parameters and its DataPartition map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRoute {
    /// Full path, e.g. `root.sg`.
    pub name: String,
    pub series_slot_num: u32,
    pub time_partition_interval_ms: i64,
    /// (series slot, time slot) → DataRegionGroup id; sorted by (series slot, time slot)
    /// in a [`RouteTable`].
    pub data_partitions: Vec<DataPartitionEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPartitionEntry {
    pub series_slot: u32,
    pub time_slot: i64,
    pub region_group_id: u32,
}

/// A DataRegionGroup and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionGroupRoute {
    pub region_group_id: u32,
    pub replicas: Vec<ReplicaRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRoute {
    pub data_node_id: u32,
    /// Client RPC endpoint, `host:port`.
    pub rpc_endpoint: String,
    /// The core (shard) of that DataNode that owns the replica.
    pub shard_id: u32,
    pub is_leader: bool,
}

/// Where a write for one (device, time) should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTarget<'a> {
    pub region_group_id: u32,
    pub data_node_id: u32,
    pub rpc_endpoint: &'a str,
    pub shard_id: u32,
}

/// The order of a database's data partitions: by series slot, then time slot.
pub fn partition_key(entry: &DataPartitionEntry) -> (u32, i64) {
    (entry.series_slot, entry.time_slot)
}

/// Sorts data partitions by (series slot, time slot); of two entries for one pair the later
/// one is kept. A table the server built is sorted already: one pass checks it.
pub fn sort_partitions(partitions: &mut Vec<DataPartitionEntry>) {
    if partitions.is_sorted_by(|a, b| partition_key(a) < partition_key(b)) {
        return;
    }
    partitions.sort_by_key(partition_key);
    let mut kept: Vec<DataPartitionEntry> = Vec::with_capacity(partitions.len());
    for entry in partitions.drain(..) {
        match kept.last_mut() {
            Some(last) if partition_key(last) == partition_key(&entry) => *last = entry,
            _ => kept.push(entry),
        }
    }
    *partitions = kept;
}

/// An immutable, versioned route table (a cluster view; read-only snapshots
/// may be shared across cores behind an `Arc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    version: u64,
    databases: Vec<DatabaseRoute>,
    region_groups: Vec<RegionGroupRoute>,
    /// Region group id → its position in `region_groups` (a database's data partitions
    /// are kept sorted by (series slot, time slot) and searched, not indexed: building
    /// a table costs no hashing per partition, on the server or the client).
    region_group_index: HashMap<u32, usize>,
}

impl RouteTable {
    /// Builds the table and its indexes. Fails on parameters that would make
    /// the slot functions undefined.
    pub fn new(
        version: u64,
        mut databases: Vec<DatabaseRoute>,
        region_groups: Vec<RegionGroupRoute>,
    ) -> Result<Self, DecodeError> {
        for database in &mut databases {
            if database.series_slot_num == 0 {
                return Err(DecodeError::invalid(
                    "route table",
                    format!("{}: series_slot_num is 0", database.name),
                ));
            }
            if database.time_partition_interval_ms <= 0 {
                return Err(DecodeError::invalid(
                    "route table",
                    format!("{}: time_partition_interval is not positive", database.name),
                ));
            }
            sort_partitions(&mut database.data_partitions);
        }
        let region_group_index = region_groups
            .iter()
            .enumerate()
            .map(|(index, group)| (group.region_group_id, index))
            .collect();
        Ok(Self {
            version,
            databases,
            region_groups,
            region_group_index,
        })
    }

    /// An empty table of version 0 (a client that has not fetched one yet).
    pub fn empty() -> Self {
        Self::new(0, Vec::new(), Vec::new()).expect("an empty table is valid")
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn databases(&self) -> &[DatabaseRoute] {
        &self.databases
    }

    pub fn region_groups(&self) -> &[RegionGroupRoute] {
        &self.region_groups
    }

    /// The database owning `device`: its name equals the device path or is a
    /// prefix ending at a `.` boundary. The longest match wins.
    pub fn database_of(&self, device: &str) -> Option<&DatabaseRoute> {
        self.database_index_of(device)
            .map(|index| &self.databases[index])
    }

    fn database_index_of(&self, device: &str) -> Option<usize> {
        self.databases
            .iter()
            .enumerate()
            .filter(|(_, database)| {
                device == database.name
                    || (device.starts_with(&database.name)
                        && device.as_bytes().get(database.name.len()) == Some(&b'.'))
            })
            .max_by_key(|(_, database)| database.name.len())
            .map(|(index, _)| index)
    }

    /// The DataRegionGroup holding (device, time), if that partition exists.
    pub fn region_group_for(&self, device: &str, timestamp_ms: i64) -> Option<u32> {
        let database_index = self.database_index_of(device)?;
        let database = &self.databases[database_index];
        let series = series_slot(device, database.series_slot_num);
        let time = time_slot(timestamp_ms, database.time_partition_interval_ms);
        database
            .data_partitions
            .binary_search_by_key(&(series, time), partition_key)
            .ok()
            .map(|index| database.data_partitions[index].region_group_id)
    }

    pub fn region_group(&self, region_group_id: u32) -> Option<&RegionGroupRoute> {
        self.region_group_index
            .get(&region_group_id)
            .map(|index| &self.region_groups[*index])
    }

    /// The leader replica for (device, time): where a shard-aware client sends
    /// the write. `None` when the partition does not exist yet (a new time
    /// slot) or the group has no leader: send to any server, it routes.
    pub fn route_for(&self, device: &str, timestamp_ms: i64) -> Option<RouteTarget<'_>> {
        let region_group_id = self.region_group_for(device, timestamp_ms)?;
        let leader = self
            .region_group(region_group_id)?
            .replicas
            .iter()
            .find(|replica| replica.is_leader)?;
        Some(RouteTarget {
            region_group_id,
            data_node_id: leader.data_node_id,
            rpc_endpoint: &leader.rpc_endpoint,
            shard_id: leader.shard_id,
        })
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.version);
        out.put_count(self.databases.len());
        for database in &self.databases {
            out.put_string(&database.name);
            out.put_u32_le(database.series_slot_num);
            out.put_i64_le(database.time_partition_interval_ms);
            out.put_count(database.data_partitions.len());
            for entry in &database.data_partitions {
                out.put_u32_le(entry.series_slot);
                out.put_i64_le(entry.time_slot);
                out.put_u32_le(entry.region_group_id);
            }
        }
        out.put_count(self.region_groups.len());
        for group in &self.region_groups {
            out.put_u32_le(group.region_group_id);
            out.put_count(group.replicas.len());
            for replica in &group.replicas {
                out.put_u32_le(replica.data_node_id);
                out.put_string(&replica.rpc_endpoint);
                out.put_u32_le(replica.shard_id);
                out.put_bool_byte(replica.is_leader);
            }
        }
    }

    pub fn decode(reader: &mut WireReader) -> Result<Self, DecodeError> {
        let version = reader.u64("route table version")?;
        let databases = reader.list("databases", 20, |reader| {
            Ok(DatabaseRoute {
                name: reader.string("database name")?,
                series_slot_num: reader.u32("series_slot_num")?,
                time_partition_interval_ms: reader.i64("time_partition_interval")?,
                data_partitions: reader.list("data partitions", 16, |reader| {
                    Ok(DataPartitionEntry {
                        series_slot: reader.u32("series slot")?,
                        time_slot: reader.i64("time slot")?,
                        region_group_id: reader.u32("region group id")?,
                    })
                })?,
            })
        })?;
        let region_groups = reader.list("region groups", 8, |reader| {
            Ok(RegionGroupRoute {
                region_group_id: reader.u32("region group id")?,
                replicas: reader.list("replicas", 13, |reader| {
                    Ok(ReplicaRoute {
                        data_node_id: reader.u32("data node id")?,
                        rpc_endpoint: reader.string("rpc endpoint")?,
                        shard_id: reader.u32("shard id")?,
                        is_leader: reader.bool("is leader")?,
                    })
                })?,
            })
        })?;
        Self::new(version, databases, region_groups)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bkdr_matches_hand_computed_values() {
        // "a" = 97 → 97 % 1000.
        assert_eq!(series_slot("a", 1000), 97);
        // "ab": 97 * 131 + 98 = 12805 → 805.
        assert_eq!(series_slot("ab", 1000), 805);
        // "abc": 12805 * 131 + 99 = 1677554 → 554.
        assert_eq!(series_slot("abc", 1000), 554);
        // "root": ((114*131 + 111)*131 + 111)*131 + 116 = 258_201_902 → 902.
        assert_eq!(series_slot("root", 1000), 902);
        // "root.": 258201902 * 131 + 46 = 33_824_449_208 wraps in i32 to
        // 33824449208 - 8 * 2^32 = -535_289_160; & 0x7fffffff = 1_612_194_488 → 488.
        assert_eq!(series_slot("root.", 1000), 488);
        // Cross-checked with an independent script of IoTDB's Java loop.
        assert_eq!(series_slot("root.sg.d1", 1000), 107);
        // A non-BMP character hashes as its two UTF-16 surrogates (0xD83D, 0xDE00).
        assert_eq!(
            series_slot("😀", 100_000),
            ((0xD83Du32 * 131 + 0xDE00) % 100_000)
        );
        assert_eq!(series_slot("", 1000), 0);
    }

    #[test]
    fn time_slot_floors_negative_times() {
        assert_eq!(time_slot(0, 604_800_000), 0);
        assert_eq!(time_slot(604_799_999, 604_800_000), 0);
        assert_eq!(time_slot(604_800_000, 604_800_000), 1);
        assert_eq!(time_slot(-1, 604_800_000), -1);
        assert_eq!(time_slot(-604_800_000, 604_800_000), -1);
        assert_eq!(time_slot(-604_800_001, 604_800_000), -2);
    }

    pub fn sample_table() -> RouteTable {
        let device = "root.sg.d1";
        let slot = series_slot(device, 1000);
        RouteTable::new(
            7,
            vec![DatabaseRoute {
                name: "root.sg".to_owned(),
                series_slot_num: 1000,
                time_partition_interval_ms: 1000,
                data_partitions: vec![DataPartitionEntry {
                    series_slot: slot,
                    time_slot: 0,
                    region_group_id: 3,
                }],
            }],
            vec![RegionGroupRoute {
                region_group_id: 3,
                replicas: vec![
                    ReplicaRoute {
                        data_node_id: 1,
                        rpc_endpoint: "127.0.0.1:1".into(),
                        shard_id: 0,
                        is_leader: false,
                    },
                    ReplicaRoute {
                        data_node_id: 2,
                        rpc_endpoint: "127.0.0.1:2".into(),
                        shard_id: 1,
                        is_leader: true,
                    },
                ],
            }],
        )
        .unwrap()
    }

    #[test]
    fn route_for_finds_the_leader() {
        let table = sample_table();
        let target = table.route_for("root.sg.d1", 999).unwrap();
        assert_eq!(
            (target.rpc_endpoint, target.shard_id, target.region_group_id),
            ("127.0.0.1:2", 1, 3)
        );
        assert!(
            table.route_for("root.sg.d1", 1000).is_none(),
            "new time slot has no partition"
        );
        assert!(
            table.route_for("root.sgx.d1", 0).is_none(),
            "prefix must end at a dot"
        );
        assert!(table.route_for("root.other.d1", 0).is_none());
    }

    /// Partitions arriving in any order (with one pair twice) are kept sorted, the later
    /// of the two wins, and every lookup finds its group by search.
    #[test]
    fn partitions_in_any_order_are_sorted_and_found() {
        let entry = |series_slot, time_slot, region_group_id| DataPartitionEntry {
            series_slot,
            time_slot,
            region_group_id,
        };
        let database = |data_partitions| DatabaseRoute {
            name: "root.sg".to_owned(),
            series_slot_num: 1000,
            time_partition_interval_ms: 1000,
            data_partitions,
        };
        let device = "root.sg.d1";
        let slot = series_slot(device, 1000);
        let table = RouteTable::new(
            1,
            vec![database(vec![
                entry(slot + 1, 0, 9),
                entry(slot, 2, 5),
                entry(slot, -1, 4),
                entry(slot, 2, 6),
                entry(slot - 1, 0, 8),
            ])],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            table.databases()[0].data_partitions,
            [
                entry(slot - 1, 0, 8),
                entry(slot, -1, 4),
                entry(slot, 2, 6),
                entry(slot + 1, 0, 9)
            ]
        );
        assert_eq!(table.region_group_for(device, -1), Some(4));
        assert_eq!(
            table.region_group_for(device, 2500),
            Some(6),
            "the later entry"
        );
        assert_eq!(
            table.region_group_for(device, 500),
            None,
            "time slot 0 of d1"
        );
        // A sorted table is kept as it is, and equal to its decoded copy.
        let mut bytes = BytesMut::new();
        table.encode(&mut bytes);
        let decoded = RouteTable::decode(&mut WireReader::new(bytes.freeze())).unwrap();
        assert_eq!(decoded, table);
    }

    pub fn arb_route_table() -> impl Strategy<Value = RouteTable> {
        let entry = (any::<u32>(), any::<i64>(), any::<u32>()).prop_map(
            |(series_slot, time_slot, region_group_id)| DataPartitionEntry {
                series_slot,
                time_slot,
                region_group_id,
            },
        );
        let database = (
            "root\\.[a-z]{1,5}",
            1u32..5000,
            1i64..i64::MAX,
            prop::collection::vec(entry, 0..6),
        )
            .prop_map(
                |(name, series_slot_num, time_partition_interval_ms, data_partitions)| {
                    DatabaseRoute {
                        name,
                        series_slot_num,
                        time_partition_interval_ms,
                        data_partitions,
                    }
                },
            );
        let replica = (
            any::<u32>(),
            "[a-z0-9.]{1,10}:[0-9]{1,5}",
            any::<u32>(),
            any::<bool>(),
        )
            .prop_map(
                |(data_node_id, rpc_endpoint, shard_id, is_leader)| ReplicaRoute {
                    data_node_id,
                    rpc_endpoint,
                    shard_id,
                    is_leader,
                },
            );
        let group = (any::<u32>(), prop::collection::vec(replica, 0..4)).prop_map(
            |(region_group_id, replicas)| RegionGroupRoute {
                region_group_id,
                replicas,
            },
        );
        (
            any::<u64>(),
            prop::collection::vec(database, 0..3),
            prop::collection::vec(group, 0..4),
        )
            .prop_map(|(version, databases, groups)| {
                RouteTable::new(version, databases, groups).unwrap()
            })
    }

    proptest! {
        #[test]
        fn route_table_roundtrip(table in arb_route_table()) {
            let mut out = BytesMut::new();
            table.encode(&mut out);
            let mut reader = WireReader::new(out.freeze());
            let decoded = RouteTable::decode(&mut reader).unwrap();
            reader.finish().unwrap();
            prop_assert_eq!(decoded, table);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = RouteTable::decode(&mut WireReader::new(bytes::Bytes::from(bytes)));
        }

        #[test]
        fn time_slot_is_floor(t in any::<i64>(), interval in 1i64..i64::MAX) {
            let slot = time_slot(t, interval);
            let start = i128::from(slot) * i128::from(interval);
            prop_assert!(start <= i128::from(t) && i128::from(t) < start + i128::from(interval));
        }
    }
}
