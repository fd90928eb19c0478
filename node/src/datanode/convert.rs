//! Between the wire (`iotdb-net`) and the engine (`iotdb-storage`): tablets in, points and
//! aggregates out, and the one place engine errors become wire status codes.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use iotdb_net::tablet::{ColumnValues, ColumnView};
use iotdb_net::{Status, StatusCode, TabletView, TypedColumn, WireColumn};
use iotdb_storage as storage;
use storage::{StorageError, Values, ValuesRef};

/// The engine tablet of a wire tablet, owned: one copy per column; TEXT cells share the
/// frame's bytes. The write path borrows instead ([`EngineView`]).
pub fn to_storage_tablet(view: &TabletView, device: &Arc<str>) -> storage::Tablet {
    EngineView::new(view, device).tablet().to_tablet()
}

/// A received tablet in the engine's terms, borrowed from the frame where it lies: the
/// timestamps and fixed-width columns are cast in place (copied only when the frame is
/// unaligned in memory or the host big-endian); BOOLEAN and TEXT columns, whose wire forms
/// differ from the engine's, are converted. The region logs and appends from it, so a
/// written tablet is copied into the WAL's batch and into the memtable, and nowhere else.
pub struct EngineView<'a> {
    device: &'a Arc<str>,
    timestamps: Cow<'a, [i64]>,
    columns: Vec<(ColumnView<'a>, Held<'a>)>,
}

/// A column's values as [`EngineView`] holds them.
enum Held<'a> {
    Int32(Cow<'a, [i32]>),
    Int64(Cow<'a, [i64]>),
    Float(Cow<'a, [f32]>),
    Double(Cow<'a, [f64]>),
    Boolean(Vec<bool>),
    Text(Vec<Bytes>),
}

impl<'a> EngineView<'a> {
    pub fn new(view: &'a TabletView, device: &'a Arc<str>) -> EngineView<'a> {
        let columns = view
            .columns()
            .map(|column| {
                let held = match column.values() {
                    ColumnValues::Boolean(v) => Held::Boolean(v.iter().map(|&b| b != 0).collect()),
                    ColumnValues::Int32(v) => Held::Int32(v),
                    ColumnValues::Int64(v) => Held::Int64(v),
                    ColumnValues::Float(v) => Held::Float(v),
                    ColumnValues::Double(v) => Held::Double(v),
                    ColumnValues::Text(text) => {
                        let data = view.bytes();
                        Held::Text(
                            (0..text.len())
                                .map(|row| slice_of(data, text.get(row).unwrap_or_default()))
                                .collect(),
                        )
                    }
                };
                (column, held)
            })
            .collect();
        EngineView {
            device,
            timestamps: view.timestamps(),
            columns,
        }
    }

    /// The tablet, borrowed from the view.
    pub fn tablet(&self) -> storage::TabletRef<'_> {
        storage::TabletRef {
            device: self.device,
            timestamps: &self.timestamps,
            columns: self
                .columns
                .iter()
                .map(|(column, held)| storage::ColumnRef {
                    measurement: column.measurement(),
                    values: match held {
                        Held::Int32(v) => ValuesRef::Int32(v),
                        Held::Int64(v) => ValuesRef::Int64(v),
                        Held::Float(v) => ValuesRef::Float(v),
                        Held::Double(v) => ValuesRef::Double(v),
                        Held::Boolean(v) => ValuesRef::Boolean(v),
                        Held::Text(v) => ValuesRef::Text(v),
                    },
                    nulls: column.null_bitmap(),
                })
                .collect(),
        }
    }
}

/// `cell` as a slice of `frame` when it lies inside it (no copy), else a copy.
fn slice_of(frame: &Bytes, cell: &[u8]) -> Bytes {
    if cell.is_empty() {
        return Bytes::new();
    }
    let base = frame.as_ptr() as usize;
    let start = cell.as_ptr() as usize;
    if start >= base && start + cell.len() <= base + frame.len() {
        frame.slice(start - base..start - base + cell.len())
    } else {
        Bytes::copy_from_slice(cell)
    }
}

/// The wire tablet of an engine tablet (a write forwarded to another DataNode; the load
/// generator's requests).
pub fn to_wire_tablet(tablet: &storage::Tablet) -> iotdb_net::WireTablet {
    let rows = tablet.timestamps.len();
    iotdb_net::WireTablet {
        device: tablet.device.to_string(),
        is_aligned: false,
        timestamps: tablet.timestamps.clone(),
        columns: tablet
            .columns
            .iter()
            .map(|column| {
                let values = match &column.values {
                    Values::Boolean(v) => TypedColumn::Boolean(v.clone()),
                    Values::Int32(v) => TypedColumn::Int32(v.clone()),
                    Values::Int64(v) => TypedColumn::Int64(v.clone()),
                    Values::Float(v) => TypedColumn::Float(v.clone()),
                    Values::Double(v) => TypedColumn::Double(v.clone()),
                    Values::Text(v) => TypedColumn::Text(v.clone()),
                };
                let wire = WireColumn::new(column.measurement.to_string(), values);
                match &column.nulls {
                    Some(nulls) => {
                        let flags: Vec<bool> = (0..rows).map(|row| nulls.is_null(row)).collect();
                        wire.with_nulls(iotdb_net::NullBitmap::from_nulls(&flags))
                    }
                    None => wire,
                }
            })
            .collect(),
    }
}

/// A wire value of an engine value.
pub fn to_wire_value(value: storage::Value) -> iotdb_net::Value {
    match value {
        storage::Value::Boolean(v) => iotdb_net::Value::Boolean(v),
        storage::Value::Int32(v) => iotdb_net::Value::Int32(v),
        storage::Value::Int64(v) => iotdb_net::Value::Int64(v),
        storage::Value::Float(v) => iotdb_net::Value::Float(v),
        storage::Value::Double(v) => iotdb_net::Value::Double(v),
        storage::Value::Text(v) => iotdb_net::Value::Text(v),
    }
}

/// The engine value of a wire value.
pub fn to_storage_value(value: iotdb_net::Value) -> storage::Value {
    match value {
        iotdb_net::Value::Boolean(v) => storage::Value::Boolean(v),
        iotdb_net::Value::Int32(v) => storage::Value::Int32(v),
        iotdb_net::Value::Int64(v) => storage::Value::Int64(v),
        iotdb_net::Value::Float(v) => storage::Value::Float(v),
        iotdb_net::Value::Double(v) => storage::Value::Double(v),
        iotdb_net::Value::Text(v) => storage::Value::Text(v),
    }
}

/// An empty wire column of `data_type`.
pub fn empty_column(name: String, data_type: storage::DataType, rows: usize) -> WireColumn {
    let values = match data_type {
        storage::DataType::Boolean => TypedColumn::Boolean(Vec::with_capacity(rows)),
        storage::DataType::Int32 => TypedColumn::Int32(Vec::with_capacity(rows)),
        storage::DataType::Int64 => TypedColumn::Int64(Vec::with_capacity(rows)),
        storage::DataType::Float => TypedColumn::Float(Vec::with_capacity(rows)),
        storage::DataType::Double => TypedColumn::Double(Vec::with_capacity(rows)),
        storage::DataType::Text => TypedColumn::Text(Vec::with_capacity(rows)),
    };
    WireColumn {
        measurement: name,
        values,
        nulls: None,
    }
}

/// The status a client sees for an engine error.
pub fn status_of(error: &StorageError) -> Status {
    let code = match error {
        StorageError::TypeMismatch { .. } => StatusCode::DATA_TYPE_MISMATCH,
        StorageError::Overloaded { .. } => StatusCode::WRITE_PROCESS_REJECT,
        StorageError::ReadOnly(_) => StatusCode::SYSTEM_READ_ONLY,
        StorageError::Replication(_) => StatusCode::INTERNAL_SERVER_ERROR,
        StorageError::InvalidTablet(_) | StorageError::InvalidArgument(_) => {
            StatusCode::ILLEGAL_PARAMETER
        }
        StorageError::UnsupportedAggregation { .. } => StatusCode::EXECUTE_STATEMENT_ERROR,
        StorageError::Io { .. }
        | StorageError::Corruption { .. }
        | StorageError::BackgroundJob(_)
        | StorageError::Closed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Status::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotdb_net::{DataType, Value, WireTablet};

    #[test]
    fn wire_tablet_becomes_engine_tablet() {
        let mut tablet = WireTablet::new(
            "root.db.d1",
            &[("s1", DataType::Double), ("t", DataType::Text)],
        );
        tablet
            .push_row(
                5,
                &[
                    Some(Value::Double(1.5)),
                    Some(Value::Text(Bytes::from("ab"))),
                ],
            )
            .unwrap();
        tablet
            .push_row(6, &[None, Some(Value::Text(Bytes::from("c")))])
            .unwrap();
        let body = iotdb_net::encode_insert_tablets(&[tablet]);
        let request = iotdb_net::Request::decode(iotdb_net::Opcode::InsertTablets, body).unwrap();
        let iotdb_net::Request::InsertTablets(insert) = request else {
            panic!()
        };
        let view = &insert.tablets[0];
        let engine = to_storage_tablet(view, &Arc::from(view.device()));
        assert_eq!(engine.timestamps, vec![5, 6]);
        assert!(engine.columns[0].is_null(1));
        assert_eq!(engine.columns[0].values.get(0), storage::Value::Double(1.5));
        assert_eq!(
            engine.columns[1].values.get(1),
            storage::Value::Text(Bytes::from("c"))
        );
    }

    #[test]
    fn an_engine_view_borrows_numbers_from_the_frame_and_converts_the_rest() {
        let mut tablet = WireTablet::new(
            "root.db.d1",
            &[
                ("d", DataType::Double),
                ("b", DataType::Boolean),
                ("t", DataType::Text),
            ],
        );
        for row in 0..10 {
            let double = (row != 3).then_some(Value::Double(f64::from(row)));
            let cells = [
                double,
                Some(Value::Boolean(row % 2 == 0)),
                Some(Value::Text(Bytes::from(format!("v{row}")))),
            ];
            tablet.push_row(100 + i64::from(row), &cells).unwrap();
        }
        let body = iotdb_net::encode_insert_tablets(&[tablet]);
        let request = iotdb_net::Request::decode(iotdb_net::Opcode::InsertTablets, body).unwrap();
        let iotdb_net::Request::InsertTablets(insert) = request else {
            panic!()
        };
        let view = &insert.tablets[0];
        let device = Arc::from(view.device());
        let engine = EngineView::new(view, &device);
        // The frame keeps sections 8-aligned: on a little-endian host the timestamps and
        // the DOUBLE column are the frame's own bytes.
        if cfg!(target_endian = "little") {
            assert!(matches!(engine.timestamps, Cow::Borrowed(_)));
            assert!(matches!(
                engine.columns[0].1,
                Held::Double(Cow::Borrowed(_))
            ));
        }
        let borrowed = engine.tablet();
        assert_eq!(borrowed.timestamps, (100..110).collect::<Vec<i64>>());
        assert!(borrowed.columns[0].is_null(3) && !borrowed.columns[0].is_null(4));
        assert_eq!(
            borrowed.columns[0].values.get(4),
            storage::Value::Double(4.0)
        );
        assert_eq!(
            borrowed.columns[1].values.get(1),
            storage::Value::Boolean(false)
        );
        assert_eq!(
            borrowed.columns[2].values.get(7),
            storage::Value::Text(Bytes::from("v7"))
        );
        // The owned conversion is the borrowed tablet copied.
        assert_eq!(to_storage_tablet(view, &device), borrowed.to_tablet());
    }
}
