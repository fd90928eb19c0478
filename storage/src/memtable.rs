//! The memtable: recent writes of one region, per time partition, columnar per series.
//!
//! Each time partition has a *sequence* side and an *unsequence* side (IoTDB's split): a
//! point newer than everything already flushed for its device in that partition goes to
//! the sequence side; an older one goes to the unsequence side, so sealed sequence files of
//! a partition never overlap in time for a device. Within a series buffer an in-order
//! append is a `memcpy`; an out-of-order one just marks the buffer unsorted, and
//! [`Memtable::freeze`] sorts it (stable, so for a repeated timestamp the newest write wins).
//!
//! Owned by the region's shard; a frozen memtable is immutable and may be shared with the
//! background flush thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::hash::FastMap;
use crate::types::{DataType, PointColumn, SeriesKey, Tablet, Timestamp, Values, time_bounds};
use crate::with_values;

/// The smallest capacity a series buffer grows to: small enough for millions of sparse
/// series, large enough that dense ones skip the tiny sizes.
const SERIES_CAPACITY_MIN: usize = 16;

/// What a memtable holds per series besides its point buffers: the map entry (key and
/// buffer headers) with the hash table's control byte and spare slots (hashbrown keeps at
/// most 7/8 of its slots full). Counted in the memory budget, so a flood of new series of
/// one point each is held to the budget too, not only bulky ones.
const SERIES_ENTRY_BYTES: usize = std::mem::size_of::<(Arc<str>, SeriesBuffer)>() * 8 / 7 + 1;
/// The same per device and side of a partition: its entry and its series map's header.
const DEVICE_ENTRY_BYTES: usize =
    std::mem::size_of::<(Arc<str>, FastMap<Arc<str>, SeriesBuffer>)>() * 8 / 7 + 1;

/// The points of one series in a memtable.
#[derive(Clone, Debug)]
pub struct SeriesBuffer {
    pub points: PointColumn,
    /// Whether timestamps are strictly increasing (no sort or dedup needed).
    sorted: bool,
}

impl SeriesBuffer {
    fn new(data_type: DataType) -> SeriesBuffer {
        SeriesBuffer {
            points: PointColumn::new(data_type),
            sorted: true,
        }
    }

    fn last_time(&self) -> Option<Timestamp> {
        self.points.timestamps.last().copied()
    }

    /// Appends `timestamps[rows]` and `values[rows]`; `increasing`: whether those
    /// timestamps are strictly increasing (the caller checks once for every column).
    fn append_run(
        &mut self,
        timestamps: &[Timestamp],
        values: &Values,
        rows: std::ops::Range<usize>,
        increasing: bool,
    ) {
        if rows.is_empty() {
            return;
        }
        let first = timestamps[rows.start];
        if !increasing || self.last_time().is_some_and(|last| last >= first) {
            self.sorted = false;
        }
        self.reserve(rows.len());
        self.points
            .timestamps
            .extend_from_slice(&timestamps[rows.clone()]);
        self.points.values.extend_from(values, rows);
    }

    /// Makes room for `additional` points, growing to powers of two: a series written in
    /// runs of 100 holds 1000 points in 1024 slots (Vec's own doubling from 100 would end
    /// at 1600, and touch twice the fresh memory on the way).
    fn reserve(&mut self, additional: usize) {
        let needed = self.points.len() + additional;
        if needed <= self.points.timestamps.capacity() {
            return;
        }
        let target = needed.next_power_of_two().max(SERIES_CAPACITY_MIN);
        let len = self.points.len();
        self.points.timestamps.reserve_exact(target - len);
        with_values!(&mut self.points.values, v => v.reserve_exact(target - len));
    }

    /// Sorts by time, keeping for each repeated timestamp the last-appended (newest) value.
    pub fn sort_dedup(&mut self) {
        if self.sorted {
            return;
        }
        self.points = sorted_newest_wins(&self.points);
        self.sorted = true;
    }

    fn heap_bytes(&self) -> usize {
        self.points.timestamps.capacity() * 8 + self.points.values.heap_bytes()
    }
}

/// `points` sorted by time; for a repeated timestamp the value appended last wins.
pub fn sorted_newest_wins(points: &PointColumn) -> PointColumn {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Stable: equal timestamps keep arrival order, so the last of a run is the newest.
    order.sort_by_key(|&i| points.timestamps[i]);
    let mut out = PointColumn {
        timestamps: Vec::with_capacity(order.len()),
        values: Values::with_capacity(points.data_type(), order.len()),
    };
    for (n, &i) in order.iter().enumerate() {
        let t = points.timestamps[i];
        if order
            .get(n + 1)
            .is_some_and(|&next| points.timestamps[next] == t)
        {
            continue;
        }
        out.timestamps.push(t);
        out.values.push_from(&points.values, i);
    }
    out
}

/// One side (sequence or unsequence) of one time partition.
#[derive(Clone, Debug, Default)]
pub struct SideTable {
    /// device → measurement → buffer.
    pub devices: FastMap<Arc<str>, FastMap<Arc<str>, SeriesBuffer>>,
}

impl SideTable {
    pub fn get(&self, key: &SeriesKey) -> Option<&SeriesBuffer> {
        self.devices.get(&key.device)?.get(&key.measurement)
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Every series, sorted by key (the order sealed files want).
    pub fn sorted_series(&self) -> Vec<(SeriesKey, &SeriesBuffer)> {
        let mut all: Vec<(SeriesKey, &SeriesBuffer)> = self
            .devices
            .iter()
            .flat_map(|(device, series)| {
                series.iter().map(|(measurement, buffer)| {
                    (
                        SeriesKey {
                            device: device.clone(),
                            measurement: measurement.clone(),
                        },
                        buffer,
                    )
                })
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Both sides of one time partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionTable {
    pub sequence: SideTable,
    pub unsequence: SideTable,
}

/// Where the rows of one tablet column land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Sequence,
    Unsequence,
}

/// The mutable memtable of a region.
#[derive(Clone, Debug, Default)]
pub struct Memtable {
    /// time slot → partition.
    pub partitions: BTreeMap<i64, PartitionTable>,
    heap_bytes: usize,
    points: u64,
}

impl Memtable {
    /// Approximate heap bytes held, for the flush threshold and back-pressure.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    /// Points written (before dedup).
    pub fn points(&self) -> u64 {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Appends the non-null cells of `tablet`. `partition_of` maps a timestamp to its time
    /// slot; `side_of(slot, t)` says whether a point at `t` is sequence or unsequence for
    /// the tablet's device. Both are monotone in `t` (later times: the same or a later
    /// slot; within a slot, unsequence up to a time and sequence after it), so a tablet
    /// whose earliest and latest rows agree on both is one run, found without a look at
    /// each row. Types were checked by the caller.
    pub fn apply(
        &mut self,
        tablet: &Tablet,
        partition_of: impl Fn(Timestamp) -> i64,
        side_of: impl Fn(i64, Timestamp) -> Side,
    ) {
        let rows = tablet.rows();
        let Some((min, max)) = time_bounds(&tablet.timestamps) else {
            return;
        };
        let first = key_of(min, &partition_of, &side_of);
        if first == key_of(max, &partition_of, &side_of) {
            self.append_rows(tablet, first, 0..rows);
            return;
        }
        // Split the rows into runs of one (partition, side).
        let mut start = 0;
        let mut current = key_of(tablet.timestamps[0], &partition_of, &side_of);
        for row in 1..rows {
            let key = key_of(tablet.timestamps[row], &partition_of, &side_of);
            if key != current {
                self.append_rows(tablet, current, start..row);
                start = row;
                current = key;
            }
        }
        self.append_rows(tablet, current, start..rows);
    }

    /// Appends the non-null cells of `tablet`'s `rows` to partition `slot`'s `side`.
    fn append_rows(
        &mut self,
        tablet: &Tablet,
        (slot, side): (i64, Side),
        rows: std::ops::Range<usize>,
    ) {
        let (first, end) = (rows.start, rows.end);
        let partition = self.partitions.entry(slot).or_default();
        let table = match side {
            Side::Sequence => &mut partition.sequence,
            Side::Unsequence => &mut partition.unsequence,
        };
        let device = match table.devices.get_mut(&tablet.device) {
            Some(d) => d,
            None => {
                self.heap_bytes += DEVICE_ENTRY_BYTES;
                table.devices.entry(tablet.device.clone()).or_default()
            }
        };
        let increasing = strictly_increasing(&tablet.timestamps[rows.clone()]);
        for column in &tablet.columns {
            let buffer = match device.get_mut(&column.measurement) {
                Some(b) => b,
                None => {
                    self.heap_bytes += SERIES_ENTRY_BYTES;
                    device
                        .entry(column.measurement.clone())
                        .or_insert_with(|| SeriesBuffer::new(column.values.data_type()))
                }
            };
            let before = buffer.heap_bytes();
            match &column.nulls {
                Some(nulls) if !nulls.none_null() => {
                    // Append maximal runs of non-null rows.
                    let mut row = first;
                    while row < end {
                        if nulls.is_null(row) {
                            row += 1;
                            continue;
                        }
                        let run_start = row;
                        while row < end && !nulls.is_null(row) {
                            row += 1;
                        }
                        let run = run_start..row;
                        let increasing =
                            increasing || strictly_increasing(&tablet.timestamps[run.clone()]);
                        buffer.append_run(&tablet.timestamps, &column.values, run, increasing);
                        self.points += (row - run_start) as u64;
                    }
                }
                _ => {
                    buffer.append_run(&tablet.timestamps, &column.values, first..end, increasing);
                    self.points += (end - first) as u64;
                }
            }
            self.heap_bytes = self.heap_bytes + buffer.heap_bytes() - before;
        }
    }

    /// Sorts and dedups every buffer and returns the memtable as an immutable value.
    pub fn freeze(mut self) -> FrozenMemtable {
        for partition in self.partitions.values_mut() {
            for side in [&mut partition.sequence, &mut partition.unsequence] {
                for series in side.devices.values_mut() {
                    for buffer in series.values_mut() {
                        buffer.sort_dedup();
                    }
                }
            }
        }
        FrozenMemtable {
            heap_bytes: self.heap_bytes,
            partitions: self.partitions,
        }
    }

    /// The points of `key` in partition `slot`, sorted and deduplicated, sequence and
    /// unsequence sides merged (they never hold the same timestamp: see the module doc).
    pub fn read(&self, slot: i64, key: &SeriesKey) -> Option<PointColumn> {
        read_partition(self.partitions.get(&slot)?, key)
    }
}

fn strictly_increasing(timestamps: &[Timestamp]) -> bool {
    timestamps.windows(2).all(|w| w[0] < w[1])
}

fn key_of(
    t: Timestamp,
    partition_of: &impl Fn(Timestamp) -> i64,
    side_of: &impl Fn(i64, Timestamp) -> Side,
) -> (i64, Side) {
    let slot = partition_of(t);
    (slot, side_of(slot, t))
}

fn read_partition(partition: &PartitionTable, key: &SeriesKey) -> Option<PointColumn> {
    let sides: Vec<PointColumn> = [&partition.sequence, &partition.unsequence]
        .into_iter()
        .filter_map(|side| side.get(key))
        .map(|buffer| {
            if buffer.sorted {
                buffer.points.clone()
            } else {
                sorted_newest_wins(&buffer.points)
            }
        })
        .collect();
    match sides.len() {
        0 => None,
        1 => sides.into_iter().next(),
        _ => {
            let mut all = sides[0].clone();
            all.timestamps.extend_from_slice(&sides[1].timestamps);
            all.values.extend_from(&sides[1].values, 0..sides[1].len());
            Some(sorted_newest_wins(&all))
        }
    }
}

/// A memtable that no longer takes writes: sorted, deduplicated, shared with the flush
/// thread and read by queries until its files are installed.
#[derive(Debug)]
pub struct FrozenMemtable {
    pub partitions: BTreeMap<i64, PartitionTable>,
    pub heap_bytes: usize,
}

impl FrozenMemtable {
    /// The points of `key` in partition `slot`.
    pub fn read(&self, slot: i64, key: &SeriesKey) -> Option<PointColumn> {
        read_partition(self.partitions.get(&slot)?, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NullBitmap, TabletColumn, Value};

    fn tablet(device: &str, ts: &[i64], values: &[f64], nulls: Option<NullBitmap>) -> Tablet {
        Tablet {
            device: Arc::from(device),
            timestamps: ts.to_vec(),
            columns: vec![TabletColumn {
                measurement: Arc::from("s1"),
                values: Values::Double(values.to_vec()),
                nulls,
            }],
        }
    }

    #[test]
    fn the_budget_counts_every_new_series_and_device() {
        let mut m = Memtable::default();
        let devices = 1000;
        for d in 0..devices {
            m.apply(
                &tablet(&format!("root.db.d{d}"), &[1], &[1.0], None),
                |_| 0,
                |_, _| Side::Sequence,
            );
        }
        let buffers = SERIES_CAPACITY_MIN * 16; // timestamps and doubles
        assert_eq!(
            m.heap_bytes(),
            devices * (DEVICE_ENTRY_BYTES + SERIES_ENTRY_BYTES + buffers)
        );
        assert!(SERIES_ENTRY_BYTES > std::mem::size_of::<SeriesBuffer>());
        // Writing again to known series adds no entry overhead.
        let before = m.heap_bytes();
        m.apply(
            &tablet("root.db.d0", &[2], &[2.0], None),
            |_| 0,
            |_, _| Side::Sequence,
        );
        assert_eq!(m.heap_bytes(), before);
    }

    #[test]
    fn out_of_order_and_duplicates_newest_wins() {
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[5, 1, 5], &[1.0, 2.0, 3.0], None),
            |_| 0,
            |_, _| Side::Sequence,
        );
        m.apply(
            &tablet("root.db.d1", &[1], &[9.0], None),
            |_| 0,
            |_, _| Side::Sequence,
        );
        let key = SeriesKey::new("root.db.d1", "s1");
        let points = m.read(0, &key).unwrap();
        assert_eq!(points.timestamps, vec![1, 5]);
        assert_eq!(points.values, Values::Double(vec![9.0, 3.0]));
        let frozen = m.freeze();
        assert_eq!(frozen.read(0, &key).unwrap(), points);
    }

    #[test]
    fn nulls_are_not_points() {
        let mut nulls = NullBitmap::new(3);
        nulls.set_null(1);
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[1, 2, 3], &[1.0, 2.0, 3.0], Some(nulls)),
            |_| 0,
            |_, _| Side::Sequence,
        );
        let points = m.read(0, &SeriesKey::new("root.db.d1", "s1")).unwrap();
        assert_eq!(points.timestamps, vec![1, 3]);
        assert_eq!(points.values.get(1), Value::Double(3.0));
        assert_eq!(m.points(), 2);
    }

    #[test]
    fn rows_split_by_partition_and_side() {
        let mut m = Memtable::default();
        // Partition 0 flushed up to time 1: earlier rows there are unsequence.
        let side = |slot: i64, t: i64| {
            if slot == 0 && t <= 1 {
                Side::Unsequence
            } else {
                Side::Sequence
            }
        };
        m.apply(
            &tablet("root.db.d1", &[1, 2, 11, 12], &[1.0, 2.0, 3.0, 4.0], None),
            |t| t / 10,
            side,
        );
        assert_eq!(m.partitions.len(), 2);
        let p0 = &m.partitions[&0];
        let key = SeriesKey::new("root.db.d1", "s1");
        assert_eq!(p0.unsequence.get(&key).unwrap().points.timestamps, vec![1]);
        assert_eq!(p0.sequence.get(&key).unwrap().points.timestamps, vec![2]);
        assert_eq!(m.read(0, &key).unwrap().timestamps, vec![1, 2]);
        assert_eq!(m.read(1, &key).unwrap().timestamps, vec![11, 12]);

        // One partition, rows out of order across the flushed time: split by side even
        // though the first and last rows are both sequence.
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[3, 0, 1, 4], &[1.0, 2.0, 3.0, 4.0], None),
            |_| 0,
            side,
        );
        let p0 = &m.partitions[&0];
        assert_eq!(
            p0.unsequence.get(&key).unwrap().points.timestamps,
            vec![0, 1]
        );
        let sequence = p0.sequence.get(&key).unwrap();
        assert_eq!(sequence.points.timestamps, vec![3, 4]);
        assert_eq!(sequence.points.values, Values::Double(vec![1.0, 4.0]));
        assert_eq!(m.points(), 4);

        // Every row on one side of one partition: one run, order kept, sorted at freeze.
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[7, 5, 6], &[1.0, 2.0, 3.0], None),
            |_| 0,
            side,
        );
        let p0 = &m.partitions[&0];
        assert!(p0.unsequence.is_empty());
        assert_eq!(
            p0.sequence.get(&key).unwrap().points.timestamps,
            vec![7, 5, 6]
        );
        let frozen = m.freeze();
        assert_eq!(frozen.read(0, &key).unwrap().timestamps, vec![5, 6, 7]);
    }
}
