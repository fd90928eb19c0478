//! The typed syntax tree of the supported IoTDB tree-model statements.
//!
//! The tree is purely syntactic: names are resolved against the schema and
//! `now()` against a clock by the node, not here. Times are milliseconds
//! since the epoch (see [`super::time`]).

use super::expr::Expr;
use super::path::{Path, PathPattern};
use std::fmt;
use std::str::FromStr;

/// One parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `CREATE DATABASE p [WITH ...]`, also `SET STORAGE GROUP TO p` and
    /// `CREATE STORAGE GROUP p`.
    CreateDatabase {
        /// The database path.
        database: Path,
        /// Settings given in the `WITH` clause.
        attributes: DatabaseAttributes,
    },
    /// `ALTER DATABASE p WITH ...`.
    AlterDatabase {
        /// The database path.
        database: Path,
        /// Settings to change.
        attributes: DatabaseAttributes,
    },
    /// `SHOW DATABASES [DETAILS] [p]`, also `SHOW STORAGE GROUP [p]`.
    ShowDatabases {
        /// Whether `DETAILS` was given.
        details: bool,
        /// Databases to show; `None` means all.
        pattern: Option<PathPattern>,
    },
    /// `DELETE DATABASE p[, p]` / `DROP DATABASE ...` / `DELETE STORAGE GROUP ...`.
    DeleteDatabases {
        /// Databases to delete.
        patterns: Vec<PathPattern>,
    },
    /// `COUNT DATABASES [p]`.
    CountDatabases {
        /// Databases to count; `None` means all.
        pattern: Option<PathPattern>,
    },
    /// `CREATE TIMESERIES p ...`.
    CreateTimeseries {
        /// The full timeseries path.
        path: Path,
        /// Type, encoding and compressor.
        spec: MeasurementSpec,
    },
    /// `CREATE ALIGNED TIMESERIES device(s1 TYPE ..., ...)`.
    CreateAlignedTimeseries {
        /// The device path.
        device: Path,
        /// One entry per measurement, in statement order.
        measurements: Vec<(String, MeasurementSpec)>,
    },
    /// `SHOW TIMESERIES [p]`.
    ShowTimeseries {
        /// Series to show; `None` means all.
        pattern: Option<PathPattern>,
    },
    /// `SHOW DEVICES [p]`.
    ShowDevices {
        /// Devices to show; `None` means all.
        pattern: Option<PathPattern>,
    },
    /// `COUNT TIMESERIES [p]`.
    CountTimeseries {
        /// Series to count; `None` means all.
        pattern: Option<PathPattern>,
    },
    /// `COUNT DEVICES [p]`.
    CountDevices {
        /// Devices to count; `None` means all.
        pattern: Option<PathPattern>,
    },
    /// `DELETE TIMESERIES p[, p]` / `DROP TIMESERIES ...`.
    DeleteTimeseries {
        /// Series to delete.
        patterns: Vec<PathPattern>,
    },
    /// `INSERT INTO device(time, s1, ...) [ALIGNED] VALUES (...), ...`.
    Insert(Insert),
    /// `SELECT ...`.
    Select(Select),
    /// `DELETE FROM p[, p] [WHERE time ...]`.
    DeleteData {
        /// Series whose points are deleted.
        patterns: Vec<PathPattern>,
        /// Time predicate; `None` deletes every point.
        time_filter: Option<TimeFilter>,
    },
    /// `SET TTL TO p <ms|INF>`.
    SetTtl {
        /// The path the rule applies to (a database path means `p.**`).
        path: PathPattern,
        /// The time to live.
        ttl: Ttl,
    },
    /// `UNSET TTL FROM|TO p`.
    UnsetTtl {
        /// The path whose rule is removed.
        path: PathPattern,
    },
    /// `SHOW ALL TTL`.
    ShowAllTtl,
    /// `SHOW TTL ON p[, p]`.
    ShowTtlOn {
        /// Paths whose rules are shown.
        patterns: Vec<PathPattern>,
    },
    /// `SHOW CLUSTER [DETAILS]`.
    ShowCluster {
        /// Whether `DETAILS` was given.
        details: bool,
    },
    /// `SHOW [DATA|SCHEMA] REGIONS [OF DATABASE p, ...] [ON NODEID n, ...]`.
    ShowRegions {
        /// Which regions.
        kind: RegionKind,
        /// Databases to restrict to; empty means all.
        databases: Vec<PathPattern>,
        /// DataNode ids to restrict to; empty means all.
        node_ids: Vec<u32>,
    },
    /// `MIGRATE REGION r FROM a TO b`: moves a DataRegion replica between DataNodes.
    MigrateRegion {
        /// The region group id.
        region: u32,
        /// The DataNode giving its replica up.
        from: u32,
        /// The DataNode taking it.
        to: u32,
    },
    /// `REMOVE DATANODE n[, n]`: migrates each node's replicas away and removes it.
    RemoveDataNode {
        /// DataNode ids.
        node_ids: Vec<u32>,
    },
    /// `REMOVE CONFIGNODE n`: takes a ConfigNode out of the cluster.
    RemoveConfigNode {
        /// The ConfigNode's id.
        node_id: u32,
    },
    /// `SHOW DATANODES`.
    ShowDataNodes,
    /// `SHOW CONFIGNODES`.
    ShowConfigNodes,
    /// `SHOW VARIABLES`.
    ShowVariables,
    /// `SHOW VERSION`.
    ShowVersion,
    /// `FLUSH [p, ...]`.
    Flush {
        /// Databases to flush; empty means all.
        databases: Vec<Path>,
    },
}

/// `WITH` settings of `CREATE DATABASE` / `ALTER DATABASE`; `None` keeps the
/// cluster default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseAttributes {
    /// `TTL=ms|INF`.
    pub ttl: Option<Ttl>,
    /// `TIME_PARTITION_INTERVAL=ms`.
    pub time_partition_interval_ms: Option<i64>,
    /// `SCHEMA_REGION_GROUP_NUM=n`.
    pub schema_region_group_num: Option<u32>,
    /// `DATA_REGION_GROUP_NUM=n`.
    pub data_region_group_num: Option<u32>,
    /// `SCHEMA_REPLICATION_FACTOR=n`.
    pub schema_replication_factor: Option<u32>,
    /// `DATA_REPLICATION_FACTOR=n`.
    pub data_replication_factor: Option<u32>,
}

/// A time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ttl {
    /// Data older than this many milliseconds expires.
    Millis(u64),
    /// `INF`: data never expires.
    Infinite,
}

/// Which regions `SHOW REGIONS` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RegionKind {
    /// `SHOW REGIONS`.
    All,
    /// `SHOW DATA REGIONS`.
    Data,
    /// `SHOW SCHEMA REGIONS`.
    Schema,
}

/// Type, encoding and compressor of one measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasurementSpec {
    /// The data type.
    pub data_type: DataType,
    /// `ENCODING=...`; `None` means the type's default.
    pub encoding: Option<Encoding>,
    /// `COMPRESSOR=...` (or `COMPRESSION=...`); `None` means the default.
    pub compressor: Option<Compressor>,
}

/// Declares a keyword enum with IoTDB's spelling, case-insensitive
/// `FromStr` and `Display` in IoTDB's upper-case spelling.
macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_doc])* $variant),+
        }

        impl $name {
            /// Every value, in IoTDB's code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// IoTDB's upper-case spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ();

            fn from_str(text: &str) -> Result<$name, ()> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().eq_ignore_ascii_case(text))
                    .ok_or(())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// IoTDB data types (IOTDB_FACTS §4).
    DataType {
        /// `BOOLEAN`
        Boolean = "BOOLEAN",
        /// `INT32`
        Int32 = "INT32",
        /// `INT64`
        Int64 = "INT64",
        /// `FLOAT`
        Float = "FLOAT",
        /// `DOUBLE`
        Double = "DOUBLE",
        /// `TEXT`
        Text = "TEXT",
        /// `TIMESTAMP`
        Timestamp = "TIMESTAMP",
        /// `DATE`
        Date = "DATE",
        /// `BLOB`
        Blob = "BLOB",
        /// `STRING`
        String = "STRING",
    }
}

impl DataType {
    /// The shared model's type for this SQL type name, or `None` for the IoTDB 1.3 types
    /// the engine does not store (TIMESTAMP, DATE, BLOB, STRING).
    pub fn stored(self) -> Option<iotdb_model::DataType> {
        use iotdb_model::DataType as Stored;
        match self {
            DataType::Boolean => Some(Stored::Boolean),
            DataType::Int32 => Some(Stored::Int32),
            DataType::Int64 => Some(Stored::Int64),
            DataType::Float => Some(Stored::Float),
            DataType::Double => Some(Stored::Double),
            DataType::Text => Some(Stored::Text),
            DataType::Timestamp | DataType::Date | DataType::Blob | DataType::String => None,
        }
    }
}

impl From<iotdb_model::DataType> for DataType {
    fn from(data_type: iotdb_model::DataType) -> DataType {
        use iotdb_model::DataType as Stored;
        match data_type {
            Stored::Boolean => DataType::Boolean,
            Stored::Int32 => DataType::Int32,
            Stored::Int64 => DataType::Int64,
            Stored::Float => DataType::Float,
            Stored::Double => DataType::Double,
            Stored::Text => DataType::Text,
        }
    }
}

keyword_enum! {
    /// IoTDB encodings (IOTDB_FACTS §5).
    Encoding {
        /// `PLAIN`
        Plain = "PLAIN",
        /// `DICTIONARY`
        Dictionary = "DICTIONARY",
        /// `RLE`
        Rle = "RLE",
        /// `DIFF`
        Diff = "DIFF",
        /// `TS_2DIFF`
        Ts2Diff = "TS_2DIFF",
        /// `BITMAP`
        Bitmap = "BITMAP",
        /// `GORILLA_V1`
        GorillaV1 = "GORILLA_V1",
        /// `REGULAR`
        Regular = "REGULAR",
        /// `GORILLA`
        Gorilla = "GORILLA",
        /// `ZIGZAG`
        Zigzag = "ZIGZAG",
        /// `CHIMP`
        Chimp = "CHIMP",
        /// `SPRINTZ`
        Sprintz = "SPRINTZ",
        /// `RLBE`
        Rlbe = "RLBE",
    }
}

keyword_enum! {
    /// IoTDB compressors (IOTDB_FACTS §5).
    Compressor {
        /// `UNCOMPRESSED`
        Uncompressed = "UNCOMPRESSED",
        /// `SNAPPY`
        Snappy = "SNAPPY",
        /// `GZIP`
        Gzip = "GZIP",
        /// `LZO`
        Lzo = "LZO",
        /// `SDT`
        Sdt = "SDT",
        /// `PAA`
        Paa = "PAA",
        /// `PLA`
        Pla = "PLA",
        /// `LZ4`
        Lz4 = "LZ4",
        /// `ZSTD`
        Zstd = "ZSTD",
        /// `LZMA2`
        Lzma2 = "LZMA2",
    }
}

keyword_enum! {
    /// Aggregate functions; `MIN`, `MAX`, `FIRST` and `LAST` are accepted as
    /// aliases of the `_VALUE` forms by the parser.
    AggregateFunction {
        /// `COUNT`
        Count = "COUNT",
        /// `AVG`
        Avg = "AVG",
        /// `SUM`
        Sum = "SUM",
        /// `MIN_VALUE`
        MinValue = "MIN_VALUE",
        /// `MAX_VALUE`
        MaxValue = "MAX_VALUE",
        /// `FIRST_VALUE`
        FirstValue = "FIRST_VALUE",
        /// `LAST_VALUE`
        LastValue = "LAST_VALUE",
        /// `MIN_TIME`
        MinTime = "MIN_TIME",
        /// `MAX_TIME`
        MaxTime = "MAX_TIME",
        /// `EXTREME`
        Extreme = "EXTREME",
    }
}

impl AggregateFunction {
    /// Looks up a function name, including the short aliases.
    pub fn from_name(name: &str) -> Option<AggregateFunction> {
        let alias = match name.to_ascii_uppercase().as_str() {
            "MIN" => Some(AggregateFunction::MinValue),
            "MAX" => Some(AggregateFunction::MaxValue),
            "FIRST" => Some(AggregateFunction::FirstValue),
            "LAST" => Some(AggregateFunction::LastValue),
            _ => None,
        };
        alias.or_else(|| name.parse().ok())
    }
}

/// A literal value in `INSERT ... VALUES`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An integer that fits in `i64`.
    Integer(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A quoted string.
    Text(String),
    /// `true` / `false`.
    Boolean(bool),
    /// `null`: no value for this measurement in this row.
    Null,
}

/// A point in time, unresolved when it is relative to `now()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeExpr {
    /// Milliseconds since the epoch.
    Absolute(i64),
    /// `now()` plus `offset_ms` (negative for `now() - 1h`).
    Now {
        /// Signed offset from the current time.
        offset_ms: i64,
    },
}

impl TimeExpr {
    /// The time in milliseconds, given the current time; saturates rather
    /// than overflowing.
    pub fn resolve(self, now_ms: i64) -> i64 {
        match self {
            TimeExpr::Absolute(millis) => millis,
            TimeExpr::Now { offset_ms } => now_ms.saturating_add(offset_ms),
        }
    }
}

/// A comparison operator on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterEqual,
    /// `=`
    Equal,
}

/// A conjunction of time comparisons (`time >= a AND time < b`, with
/// `BETWEEN a AND b` expanded to `>= a AND <= b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFilter {
    /// The comparisons, all of which must hold.
    pub comparisons: Vec<(Comparison, TimeExpr)>,
}

/// A half-open time interval `[start_ms, end_ms)`; empty when
/// `start_ms >= end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First included millisecond.
    pub start_ms: i64,
    /// First excluded millisecond.
    pub end_ms: i64,
}

impl TimeRange {
    /// Every representable time. `i64::MAX` itself is excluded, a price of
    /// the half-open form.
    pub const ALL: TimeRange = TimeRange {
        start_ms: i64::MIN,
        end_ms: i64::MAX,
    };

    /// Whether no time is in the range.
    pub fn is_empty(&self) -> bool {
        self.start_ms >= self.end_ms
    }

    /// Whether `time_ms` is in the range.
    pub fn contains(&self, time_ms: i64) -> bool {
        self.start_ms <= time_ms && time_ms < self.end_ms
    }
}

impl TimeFilter {
    /// The interval the comparisons select, given the current time.
    pub fn resolve(&self, now_ms: i64) -> TimeRange {
        let mut range = TimeRange::ALL;
        for &(comparison, time) in &self.comparisons {
            let time_ms = time.resolve(now_ms);
            let (start_ms, end_ms) = match comparison {
                Comparison::Less => (i64::MIN, time_ms),
                Comparison::LessEqual => (i64::MIN, time_ms.saturating_add(1)),
                Comparison::Greater => (time_ms.saturating_add(1), i64::MAX),
                Comparison::GreaterEqual => (time_ms, i64::MAX),
                Comparison::Equal => (time_ms, time_ms.saturating_add(1)),
            };
            range.start_ms = range.start_ms.max(start_ms);
            range.end_ms = range.end_ms.min(end_ms);
        }
        range
    }
}

/// `INSERT INTO device(time, m1, ...) [ALIGNED] VALUES (t, v1, ...), ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// The device path.
    pub device: Path,
    /// Whether `ALIGNED` was given.
    pub aligned: bool,
    /// Measurement names, without the time column.
    pub measurements: Vec<String>,
    /// The rows; each has one value per measurement.
    pub rows: Vec<InsertRow>,
}

/// One row of an insert.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertRow {
    /// The row's time; `now()` when the statement had no time column.
    pub time: TimeExpr,
    /// One value per measurement, in column order.
    pub values: Vec<Literal>,
}

/// What a `SELECT` computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    /// Raw points of the listed series (suffix patterns joined to each FROM
    /// pattern).
    Raw(Vec<PathPattern>),
    /// One aggregate per item.
    Aggregates(Vec<Aggregate>),
    /// Aggregate items of which at least one is an expression of aggregates and constants
    /// (`count(s1) + 1`, `sum(s1) / count(s1)`), evaluated on the aggregated rows; a plain
    /// aggregate is its call, [`Expr::Function`](Expr::Function).
    AggregateExpressions(Vec<Expr>),
    /// Raw items of which at least one is an expression (`s1 + 1`, `sin(s1)`,
    /// `cast(s1 AS INT32)`), evaluated on each row; plain paths are [`Expr::Path`].
    Computed(Vec<super::expr::Expr>),
    /// `SELECT LAST ...`: the latest point of each listed series.
    Last(Vec<PathPattern>),
}

/// One aggregate in a select list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// The function.
    pub function: AggregateFunction,
    /// Its argument, a suffix pattern such as `s1` or `*`.
    pub path: PathPattern,
}

impl Aggregate {
    /// The aggregate an expression is when it is one call of an aggregate function on
    /// one path (`count(s1)`).
    pub fn of_call(expr: &Expr) -> Option<Aggregate> {
        match expr {
            Expr::Function { name, args } => match args.as_slice() {
                [Expr::Path(path)] => Some(Aggregate {
                    function: AggregateFunction::from_name(name)?,
                    path: path.clone(),
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

impl Projection {
    /// Whether the query aggregates (plain aggregates or expressions of them).
    pub fn is_aggregate(&self) -> bool {
        matches!(
            self,
            Projection::Aggregates(_) | Projection::AggregateExpressions(_)
        )
    }
}

/// `GROUP BY ([start, end), interval[, step])`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupByTime {
    /// The windowed range, when given; otherwise the WHERE clause bounds it.
    pub range: Option<GroupByRange>,
    /// Window length.
    pub interval_ms: i64,
    /// Distance between window starts; `None` means `interval_ms`.
    pub sliding_step_ms: Option<i64>,
    /// Calendar months (`GROUP BY ([a, b), 1mo[, 2mo])`): windows of `interval` natural
    /// months starting every `step` months from `a` (UTC); `interval_ms` and
    /// `sliding_step_ms` are then unused.
    pub months: Option<CalendarWindows>,
}

/// Window length and step in calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarWindows {
    pub interval: u32,
    pub step: u32,
}

/// The range of a `GROUP BY` time clause: `[start, end)` or `(start, end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupByRange {
    /// Range start.
    pub start: TimeExpr,
    /// Range end.
    pub end: TimeExpr,
    /// `true` for `[start, end)`, `false` for `(start, end]`.
    pub left_closed: bool,
}

/// Result order by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrder {
    /// Oldest first (the default).
    Ascending,
    /// Newest first.
    Descending,
}

/// How a `SELECT LAST` result is sorted: by one of its columns, as IoTDB allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOrder {
    /// The column sorted on.
    pub key: LastSortKey,
    /// `DESC`.
    pub descending: bool,
}

/// A column of a `SELECT LAST` result to sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastSortKey {
    /// The last point's time.
    Time,
    /// The series path.
    Timeseries,
    /// The value, compared as the text IoTDB's `Value` column holds.
    Value,
    /// The type's name.
    DataType,
}

/// `FILL(PREVIOUS | LINEAR | constant)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    /// The latest earlier non-null value of the column; with a bound (`FILL(PREVIOUS,
    /// 2m)`, in milliseconds) only a value at most that much older than the row.
    Previous(Option<i64>),
    /// Linear interpolation in time between the neighbouring non-null values (numbers).
    Linear,
    /// A constant, for the columns whose type it fits.
    Constant(Literal),
}

/// A query.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// What is selected.
    pub projection: Projection,
    /// `AS alias` of each select item, in order (`None`: no alias).
    pub aliases: Vec<Option<String>>,
    /// FROM prefixes (full patterns).
    pub from: Vec<PathPattern>,
    /// The WHERE conjuncts that bound time only.
    pub time_filter: Option<TimeFilter>,
    /// The rest of WHERE: a predicate on series values (and time), evaluated per row.
    pub value_filter: Option<Expr>,
    /// `HAVING` predicate on the aggregates of a `GROUP BY` row.
    pub having: Option<Expr>,
    /// `ALIGN BY DEVICE`: one row per device and time, with a `Device` column.
    pub align_by_device: bool,
    /// `FILL(...)`: how null cells of the result are filled.
    pub fill: Option<Fill>,
    /// `SLIMIT n`: most series (columns) returned.
    pub slimit: Option<u64>,
    /// `SOFFSET m`: series (columns) skipped first.
    pub soffset: Option<u64>,
    /// GROUP BY time windows (aggregate queries only).
    pub group_by: Option<GroupByTime>,
    /// `GROUP BY LEVEL = l[, l]`: series whose paths agree at these levels (root is
    /// level 0) are aggregated together (aggregate queries only).
    pub group_by_level: Option<Vec<usize>>,
    /// `ORDER BY TIME ASC|DESC`.
    pub order: TimeOrder,
    /// `ORDER BY TIME | TIMESERIES | VALUE | DATATYPE [ASC|DESC]` of a `SELECT LAST`
    /// (sorting its rows; `order` stays ascending); `None` elsewhere.
    pub last_order: Option<LastOrder>,
    /// `LIMIT n`: most rows returned.
    pub limit: Option<u64>,
    /// `OFFSET m`: rows skipped first.
    pub offset: Option<u64>,
}

impl Select {
    /// Every full series pattern the query reads: each select item joined to
    /// each FROM prefix.
    pub fn series_patterns(&self) -> Vec<PathPattern> {
        let suffixes: Vec<&PathPattern> = match &self.projection {
            Projection::Raw(paths) | Projection::Last(paths) => paths.iter().collect(),
            Projection::Computed(items) | Projection::AggregateExpressions(items) => {
                items.iter().flat_map(|item| item.paths()).collect()
            }
            Projection::Aggregates(aggregates) => {
                aggregates.iter().map(|aggregate| &aggregate.path).collect()
            }
        };
        let mut patterns = Vec::new();
        for prefix in &self.from {
            for suffix in &suffixes {
                let joined = prefix.join(suffix);
                if !patterns.contains(&joined) {
                    patterns.push(joined);
                }
            }
        }
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_enums_parse_case_insensitively() {
        assert_eq!("double".parse(), Ok(DataType::Double));
        assert_eq!("Ts_2Diff".parse(), Ok(Encoding::Ts2Diff));
        assert_eq!("lz4".parse(), Ok(Compressor::Lz4));
        assert_eq!("nope".parse::<DataType>(), Err(()));
        assert_eq!(DataType::Int64.to_string(), "INT64");
    }

    #[test]
    fn stored_types_keep_their_names() {
        for data_type in iotdb_model::DataType::ALL {
            let sql = DataType::from(data_type);
            assert_eq!(sql.as_str(), data_type.name());
            assert_eq!(sql.stored(), Some(data_type));
        }
        assert_eq!(DataType::String.stored(), None);
    }

    #[test]
    fn aggregate_aliases() {
        assert_eq!(
            AggregateFunction::from_name("min"),
            Some(AggregateFunction::MinValue)
        );
        assert_eq!(
            AggregateFunction::from_name("LAST"),
            Some(AggregateFunction::LastValue)
        );
        assert_eq!(
            AggregateFunction::from_name("max_value"),
            Some(AggregateFunction::MaxValue)
        );
        assert_eq!(AggregateFunction::from_name("median"), None);
    }

    #[test]
    fn time_filters_resolve_to_half_open_ranges() {
        let filter = TimeFilter {
            comparisons: vec![
                (Comparison::GreaterEqual, TimeExpr::Absolute(10)),
                (Comparison::LessEqual, TimeExpr::Absolute(20)),
            ],
        };
        assert_eq!(
            filter.resolve(0),
            TimeRange {
                start_ms: 10,
                end_ms: 21
            }
        );
        let filter = TimeFilter {
            comparisons: vec![
                (Comparison::Greater, TimeExpr::Now { offset_ms: -100 }),
                (Comparison::Less, TimeExpr::Absolute(5)),
            ],
        };
        let range = filter.resolve(1000);
        assert_eq!((range.start_ms, range.end_ms), (901, 5));
        assert!(range.is_empty());
        let equal = TimeFilter {
            comparisons: vec![(Comparison::Equal, TimeExpr::Absolute(7))],
        };
        let range = equal.resolve(0);
        assert!(range.contains(7) && !range.contains(8) && !range.contains(6));
    }
}
