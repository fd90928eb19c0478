//! The data model one region stores: data types, values, point columns and tablets.
//!
//! A *series* is a device path (`root.db.d1`) plus a measurement (`s1`). The write unit is a
//! columnar [`Tablet`]: one device, several measurements, N rows, and a null bitmap per
//! column. A null cell means "no point": the series simply has nothing at that timestamp, so
//! the engine drops nulls at ingest and stores only [`PointColumn`]s (timestamps + values,
//! no nulls).

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Result, StorageError};

/// A timestamp in milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// The earliest and latest of `timestamps` (in any order), `None` when empty.
pub fn time_bounds(timestamps: &[Timestamp]) -> Option<(Timestamp, Timestamp)> {
    let first = *timestamps.first()?;
    Some(
        timestamps
            .iter()
            .fold((first, first), |(min, max), &t| (min.min(t), max.max(t))),
    )
}

pub use iotdb_model::DataType;

/// One value of any type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float(f32),
    Double(f64),
    Text(Bytes),
}

impl Value {
    /// The type of this value.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Boolean(_) => DataType::Boolean,
            Value::Int32(_) => DataType::Int32,
            Value::Int64(_) => DataType::Int64,
            Value::Float(_) => DataType::Float,
            Value::Double(_) => DataType::Double,
            Value::Text(_) => DataType::Text,
        }
    }

    /// The value as f64, for numeric types.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int32(v) => Some(f64::from(*v)),
            Value::Int64(v) => Some(*v as f64),
            Value::Float(v) => Some(f64::from(*v)),
            Value::Double(v) => Some(*v),
            Value::Boolean(_) | Value::Text(_) => None,
        }
    }
}

/// A column of values of one type, without nulls' meaning: a tablet pairs it with a
/// [`NullBitmap`]; a [`PointColumn`] has no nulls at all.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Boolean(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Text(Vec<Bytes>),
}

/// Calls `$body` with `$v` bound to the inner vector of a [`Values`], whatever its type.
#[macro_export]
macro_rules! with_values {
    ($values:expr, $v:ident => $body:expr) => {
        match $values {
            $crate::types::Values::Boolean($v) => $body,
            $crate::types::Values::Int32($v) => $body,
            $crate::types::Values::Int64($v) => $body,
            $crate::types::Values::Float($v) => $body,
            $crate::types::Values::Double($v) => $body,
            $crate::types::Values::Text($v) => $body,
        }
    };
}

impl Values {
    /// An empty column of type `data_type`.
    pub fn new(data_type: DataType) -> Values {
        Values::with_capacity(data_type, 0)
    }

    /// An empty column of type `data_type` with room for `capacity` values.
    pub fn with_capacity(data_type: DataType, capacity: usize) -> Values {
        match data_type {
            DataType::Boolean => Values::Boolean(Vec::with_capacity(capacity)),
            DataType::Int32 => Values::Int32(Vec::with_capacity(capacity)),
            DataType::Int64 => Values::Int64(Vec::with_capacity(capacity)),
            DataType::Float => Values::Float(Vec::with_capacity(capacity)),
            DataType::Double => Values::Double(Vec::with_capacity(capacity)),
            DataType::Text => Values::Text(Vec::with_capacity(capacity)),
        }
    }

    /// The type of the values.
    pub fn data_type(&self) -> DataType {
        self.as_ref().data_type()
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        with_values!(self, v => v.len())
    }

    /// Whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `index`. Panics when out of bounds (a bug, not bad input).
    pub fn get(&self, index: usize) -> Value {
        self.as_ref().get(index)
    }

    /// Appends `value`; its type must match (checked by the caller; a mismatch is a bug).
    pub fn push(&mut self, value: Value) {
        match (self, value) {
            (Values::Boolean(v), Value::Boolean(x)) => v.push(x),
            (Values::Int32(v), Value::Int32(x)) => v.push(x),
            (Values::Int64(v), Value::Int64(x)) => v.push(x),
            (Values::Float(v), Value::Float(x)) => v.push(x),
            (Values::Double(v), Value::Double(x)) => v.push(x),
            (Values::Text(v), Value::Text(x)) => v.push(x),
            (column, value) => panic!(
                "pushing a {} value into a {} column",
                value.data_type(),
                column.data_type()
            ),
        }
    }

    /// Appends `other[range]`; the types must match (a mismatch is a bug).
    pub fn extend_from(&mut self, other: &Values, range: std::ops::Range<usize>) {
        self.extend_from_ref(other.as_ref(), range);
    }

    /// Appends `other[range]`, wherever the values live; the types must match (a mismatch
    /// is a bug).
    pub fn extend_from_ref(&mut self, other: ValuesRef<'_>, range: std::ops::Range<usize>) {
        match (self, other) {
            (Values::Boolean(a), ValuesRef::Boolean(b)) => a.extend_from_slice(&b[range]),
            (Values::Int32(a), ValuesRef::Int32(b)) => a.extend_from_slice(&b[range]),
            (Values::Int64(a), ValuesRef::Int64(b)) => a.extend_from_slice(&b[range]),
            (Values::Float(a), ValuesRef::Float(b)) => a.extend_from_slice(&b[range]),
            (Values::Double(a), ValuesRef::Double(b)) => a.extend_from_slice(&b[range]),
            (Values::Text(a), ValuesRef::Text(b)) => a.extend_from_slice(&b[range]),
            (a, b) => panic!(
                "extending a {} column with {} values",
                a.data_type(),
                b.data_type()
            ),
        }
    }

    /// The values borrowed.
    pub fn as_ref(&self) -> ValuesRef<'_> {
        match self {
            Values::Boolean(v) => ValuesRef::Boolean(v),
            Values::Int32(v) => ValuesRef::Int32(v),
            Values::Int64(v) => ValuesRef::Int64(v),
            Values::Float(v) => ValuesRef::Float(v),
            Values::Double(v) => ValuesRef::Double(v),
            Values::Text(v) => ValuesRef::Text(v),
        }
    }

    /// Appends `other[index]`; the types must match (a mismatch is a bug).
    pub fn push_from(&mut self, other: &Values, index: usize) {
        self.extend_from(other, index..index + 1);
    }

    /// Keeps the first `len` values.
    pub fn truncate(&mut self, len: usize) {
        with_values!(self, v => v.truncate(len))
    }

    /// Bytes of heap memory the values hold, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Values::Boolean(v) => v.capacity(),
            Values::Int32(v) => v.capacity() * 4,
            Values::Int64(v) => v.capacity() * 8,
            Values::Float(v) => v.capacity() * 4,
            Values::Double(v) => v.capacity() * 8,
            Values::Text(v) => {
                v.capacity() * std::mem::size_of::<Bytes>()
                    + v.iter().map(Bytes::len).sum::<usize>()
            }
        }
    }
}

/// A column of values borrowed from wherever they live: a [`Values`], or the bytes of a
/// received request (a write appends from them without an owned copy first).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValuesRef<'a> {
    Boolean(&'a [bool]),
    Int32(&'a [i32]),
    Int64(&'a [i64]),
    Float(&'a [f32]),
    Double(&'a [f64]),
    Text(&'a [Bytes]),
}

impl ValuesRef<'_> {
    /// An owned copy.
    pub fn to_values(&self) -> Values {
        match self {
            ValuesRef::Boolean(v) => Values::Boolean(v.to_vec()),
            ValuesRef::Int32(v) => Values::Int32(v.to_vec()),
            ValuesRef::Int64(v) => Values::Int64(v.to_vec()),
            ValuesRef::Float(v) => Values::Float(v.to_vec()),
            ValuesRef::Double(v) => Values::Double(v.to_vec()),
            ValuesRef::Text(v) => Values::Text(v.to_vec()),
        }
    }

    /// The type of the values.
    pub fn data_type(&self) -> DataType {
        match self {
            ValuesRef::Boolean(_) => DataType::Boolean,
            ValuesRef::Int32(_) => DataType::Int32,
            ValuesRef::Int64(_) => DataType::Int64,
            ValuesRef::Float(_) => DataType::Float,
            ValuesRef::Double(_) => DataType::Double,
            ValuesRef::Text(_) => DataType::Text,
        }
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            ValuesRef::Boolean(v) => v.len(),
            ValuesRef::Int32(v) => v.len(),
            ValuesRef::Int64(v) => v.len(),
            ValuesRef::Float(v) => v.len(),
            ValuesRef::Double(v) => v.len(),
            ValuesRef::Text(v) => v.len(),
        }
    }

    /// Whether the column is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `index`. Panics when out of bounds (a bug, not bad input).
    pub fn get(&self, index: usize) -> Value {
        match self {
            ValuesRef::Boolean(v) => Value::Boolean(v[index]),
            ValuesRef::Int32(v) => Value::Int32(v[index]),
            ValuesRef::Int64(v) => Value::Int64(v[index]),
            ValuesRef::Float(v) => Value::Float(v[index]),
            ValuesRef::Double(v) => Value::Double(v[index]),
            ValuesRef::Text(v) => Value::Text(v[index].clone()),
        }
    }
}

/// Which rows of a tablet column are null: bit `row % 8` of byte `row / 8` (LSB first) set
/// means null, as in IoTDB's tablets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NullBitmap {
    bytes: Vec<u8>,
}

impl NullBitmap {
    /// A bitmap of `rows` rows, none null.
    pub fn new(rows: usize) -> NullBitmap {
        NullBitmap {
            bytes: vec![0; rows.div_ceil(8)],
        }
    }

    /// A bitmap over the given bytes (LSB first, 1 = null).
    pub fn from_bytes(bytes: Vec<u8>) -> NullBitmap {
        NullBitmap { bytes }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `row` is null. Rows past the end are not null.
    pub fn is_null(&self, row: usize) -> bool {
        bit_is_null(&self.bytes, row)
    }

    /// Marks `row` null, growing the bitmap as needed.
    pub fn set_null(&mut self, row: usize) {
        if self.bytes.len() <= row / 8 {
            self.bytes.resize(row / 8 + 1, 0);
        }
        self.bytes[row / 8] |= 1 << (row % 8);
    }

    /// Whether no row at all is null.
    pub fn none_null(&self) -> bool {
        no_bit_null(&self.bytes)
    }
}

/// Whether bit `row` of a null bitmap's `bytes` is set (rows past the end are not null).
fn bit_is_null(bytes: &[u8], row: usize) -> bool {
    bytes
        .get(row / 8)
        .is_some_and(|byte| byte & (1 << (row % 8)) != 0)
}

/// Whether no bit of a null bitmap's `bytes` is set.
fn no_bit_null(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// One measurement's column in a tablet.
#[derive(Clone, Debug, PartialEq)]
pub struct TabletColumn {
    pub measurement: Arc<str>,
    /// One value per row; a null row holds a placeholder (0, false, empty).
    pub values: Values,
    /// `None`: no row is null.
    pub nulls: Option<NullBitmap>,
}

impl TabletColumn {
    /// Whether `row` is null in this column.
    pub fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }

    /// Appends row `row`'s cell, of a tablet of `rows` rows: a value of the column's type,
    /// or `None`, a null (its type's placeholder, marked in the bitmap). A value of another
    /// type is refused, and its type returned.
    pub fn push_cell(
        &mut self,
        row: usize,
        rows: usize,
        cell: Option<Value>,
    ) -> std::result::Result<(), DataType> {
        let data_type = self.values.data_type();
        match cell {
            Some(value) if value.data_type() != data_type => Err(value.data_type()),
            Some(value) => {
                self.values.push(value);
                Ok(())
            }
            None => {
                self.values.push(placeholder(data_type));
                self.nulls
                    .get_or_insert_with(|| NullBitmap::new(rows))
                    .set_null(row);
                Ok(())
            }
        }
    }
}

/// The write unit: one device, several measurements, N rows, a null bitmap per column.
///
/// Rows need not be in time order and may repeat a timestamp: the later row wins.
#[derive(Clone, Debug, PartialEq)]
pub struct Tablet {
    pub device: Arc<str>,
    pub timestamps: Vec<Timestamp>,
    pub columns: Vec<TabletColumn>,
}

impl Tablet {
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }

    /// The number of non-null cells: the points this tablet writes.
    pub fn points(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match &c.nulls {
                None => self.rows(),
                Some(n) => (0..self.rows()).filter(|&r| !n.is_null(r)).count(),
            })
            .sum()
    }

    /// A tablet of one row (the single-row write form). `None` values are nulls.
    pub fn single_row(
        device: Arc<str>,
        timestamp: Timestamp,
        cells: Vec<(Arc<str>, Option<Value>)>,
        types: &[DataType],
    ) -> Result<Tablet> {
        if cells.len() != types.len() {
            return Err(StorageError::InvalidTablet(format!(
                "{} cells but {} types",
                cells.len(),
                types.len()
            )));
        }
        let mut columns = Vec::with_capacity(cells.len());
        for ((measurement, value), &data_type) in cells.into_iter().zip(types) {
            let mut column = TabletColumn {
                measurement,
                values: Values::with_capacity(data_type, 1),
                nulls: None,
            };
            column
                .push_cell(0, 1, value)
                .map_err(|actual| StorageError::TypeMismatch {
                    series: format!("{device}.{}", column.measurement),
                    expected: data_type,
                    actual,
                })?;
            columns.push(column);
        }
        Ok(Tablet {
            device,
            timestamps: vec![timestamp],
            columns,
        })
    }

    /// Checks the tablet's shape: every column as long as the timestamps, no repeated
    /// measurement, names non-empty and at most [`NAME_BYTES_MAX`] bytes. Types are checked
    /// against the series by the region.
    pub fn validate(&self) -> Result<()> {
        self.as_ref().validate()
    }

    /// The tablet borrowed, as the region writes it.
    pub fn as_ref(&self) -> TabletRef<'_> {
        TabletRef {
            device: &self.device,
            timestamps: &self.timestamps,
            columns: self
                .columns
                .iter()
                .map(|column| ColumnRef {
                    measurement: &column.measurement,
                    values: column.values.as_ref(),
                    nulls: column.nulls.as_ref().map(NullBitmap::as_bytes),
                })
                .collect(),
        }
    }
}

/// One column of a [`TabletRef`].
#[derive(Clone, Copy, Debug)]
pub struct ColumnRef<'a> {
    pub measurement: &'a str,
    /// One value per row; a null row holds a placeholder.
    pub values: ValuesRef<'a>,
    /// The null bitmap's bytes (LSB first, 1 = null; rows past its end are not null);
    /// `None`: no row is null.
    pub nulls: Option<&'a [u8]>,
}

impl ColumnRef<'_> {
    /// Whether `row` is null in this column.
    pub fn is_null(&self, row: usize) -> bool {
        self.nulls.is_some_and(|bytes| bit_is_null(bytes, row))
    }

    /// Whether some row of this column is null.
    pub fn has_nulls(&self) -> bool {
        self.nulls.is_some_and(|bytes| !no_bit_null(bytes))
    }
}

/// The longest device path or measurement name a tablet may carry, in bytes: the WAL
/// records each with a 16-bit length (the DataNode's schema allows far less: 4,096 and
/// 256).
pub const NAME_BYTES_MAX: usize = u16::MAX as usize;

/// A [`Tablet`] borrowed from wherever it lives: an owned tablet, or a received request's
/// bytes, whose columns the region logs and appends without an owned copy in between.
#[derive(Clone, Debug)]
pub struct TabletRef<'a> {
    pub device: &'a Arc<str>,
    pub timestamps: &'a [Timestamp],
    pub columns: Vec<ColumnRef<'a>>,
}

impl TabletRef<'_> {
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }

    /// An owned copy.
    pub fn to_tablet(&self) -> Tablet {
        Tablet {
            device: self.device.clone(),
            timestamps: self.timestamps.to_vec(),
            columns: self
                .columns
                .iter()
                .map(|column| TabletColumn {
                    measurement: Arc::from(column.measurement),
                    values: column.values.to_values(),
                    nulls: column
                        .nulls
                        .map(|bytes| NullBitmap::from_bytes(bytes.to_vec())),
                })
                .collect(),
        }
    }

    /// See [`Tablet::validate`].
    pub fn validate(&self) -> Result<()> {
        if self.device.is_empty() {
            return Err(StorageError::InvalidTablet("empty device path".into()));
        }
        if self.device.len() > NAME_BYTES_MAX {
            return Err(StorageError::InvalidTablet(format!(
                "a device path of {} bytes, at most {NAME_BYTES_MAX}",
                self.device.len()
            )));
        }
        // Repeated names: pair by pair for a few columns, through a set for many (a wide
        // tablet of a thousand columns would otherwise compare half a million pairs).
        let mut seen = (self.columns.len() > PAIRWISE_NAMES_MAX).then(|| {
            crate::hash::FastSet::with_capacity_and_hasher(self.columns.len(), Default::default())
        });
        for (i, column) in self.columns.iter().enumerate() {
            if column.measurement.is_empty() {
                return Err(StorageError::InvalidTablet(format!(
                    "column {i} has an empty measurement name"
                )));
            }
            if column.measurement.len() > NAME_BYTES_MAX {
                return Err(StorageError::InvalidTablet(format!(
                    "column {i} has a measurement name of {} bytes, at most {NAME_BYTES_MAX}",
                    column.measurement.len()
                )));
            }
            if column.values.len() != self.rows() {
                return Err(StorageError::InvalidTablet(format!(
                    "column {} has {} values for {} rows",
                    column.measurement,
                    column.values.len(),
                    self.rows()
                )));
            }
            let repeated = match &mut seen {
                Some(seen) => !seen.insert(column.measurement),
                None => self.columns[..i]
                    .iter()
                    .any(|c| c.measurement == column.measurement),
            };
            if repeated {
                return Err(StorageError::InvalidTablet(format!(
                    "measurement {} appears twice",
                    column.measurement
                )));
            }
        }
        Ok(())
    }
}

/// Tablets of up to this many columns are checked for a repeated measurement name pair by
/// pair (no allocation); wider ones through a hash set.
const PAIRWISE_NAMES_MAX: usize = 16;

/// The placeholder a null cell holds in a tablet column.
pub fn placeholder(data_type: DataType) -> Value {
    match data_type {
        DataType::Boolean => Value::Boolean(false),
        DataType::Int32 => Value::Int32(0),
        DataType::Int64 => Value::Int64(0),
        DataType::Float => Value::Float(0.0),
        DataType::Double => Value::Double(0.0),
        DataType::Text => Value::Text(Bytes::new()),
    }
}

/// Points of one series: strictly increasing timestamps and one value each, no nulls.
#[derive(Clone, Debug, PartialEq)]
pub struct PointColumn {
    pub timestamps: Vec<Timestamp>,
    pub values: Values,
}

impl PointColumn {
    /// An empty column of type `data_type`.
    pub fn new(data_type: DataType) -> PointColumn {
        PointColumn {
            timestamps: Vec::new(),
            values: Values::new(data_type),
        }
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The type of the values.
    pub fn data_type(&self) -> DataType {
        self.values.data_type()
    }

    /// The column borrowed as [`Points`].
    pub fn as_points(&self) -> Points<'_> {
        Points {
            timestamps: &self.timestamps,
            values: &self.values,
        }
    }
}

/// Points of one series, borrowed: timestamps and values of the same length (what the
/// sealed-file writer and the statistics read, whoever owns the columns).
#[derive(Clone, Copy, Debug)]
pub struct Points<'a> {
    pub timestamps: &'a [Timestamp],
    pub values: &'a Values,
}

impl Points<'_> {
    /// The number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The type of the values.
    pub fn data_type(&self) -> DataType {
        self.values.data_type()
    }
}

/// A series' name inside a region: device path and measurement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub device: Arc<str>,
    pub measurement: Arc<str>,
}

impl SeriesKey {
    pub fn new(device: &str, measurement: &str) -> SeriesKey {
        SeriesKey {
            device: Arc::from(device),
            measurement: Arc::from(measurement),
        }
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.device, self.measurement)
    }
}

/// A half-open time range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl TimeRange {
    /// Every representable timestamp.
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };

    pub fn new(start: Timestamp, end: Timestamp) -> TimeRange {
        TimeRange { start, end }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Whether `[min, max]` (both inclusive) overlaps this range.
    pub fn overlaps(&self, min: Timestamp, max: Timestamp) -> bool {
        min < self.end && max >= self.start
    }

    /// Whether `[min, max]` (both inclusive) lies wholly inside this range.
    pub fn covers(&self, min: Timestamp, max: Timestamp) -> bool {
        self.start <= min && max < self.end
    }

    pub fn intersect(&self, other: TimeRange) -> TimeRange {
        TimeRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tablet_of(names: &[String]) -> Tablet {
        Tablet {
            device: Arc::from("root.sg.d1"),
            timestamps: vec![1, 2],
            columns: names
                .iter()
                .map(|name| TabletColumn {
                    measurement: Arc::from(name.as_str()),
                    values: Values::Int64(vec![1, 2]),
                    nulls: None,
                })
                .collect(),
        }
    }

    /// A repeated measurement name is refused, naming the first column that repeats one,
    /// in narrow tablets (checked pair by pair) and wide ones (through a set) alike.
    #[test]
    fn a_repeated_measurement_is_refused_in_narrow_and_wide_tablets() {
        for width in [1, 3, PAIRWISE_NAMES_MAX, PAIRWISE_NAMES_MAX + 1, 1000] {
            let mut names: Vec<String> = (0..width).map(|i| format!("s{i}")).collect();
            assert!(tablet_of(&names).validate().is_ok(), "{width} distinct");
            if width < 2 {
                continue;
            }
            // The last column repeats the second; a later one repeats the first.
            names[width - 1] = "s1".to_string();
            names.push("s0".to_string());
            match tablet_of(&names).validate() {
                Err(StorageError::InvalidTablet(reason)) => {
                    assert_eq!(reason, "measurement s1 appears twice", "{width} columns");
                }
                other => panic!("{width} columns: {other:?}"),
            }
        }
    }
}
