//! Between the wire (`iotdb-net`) and the engine (`iotdb-storage`): tablets in, points and
//! aggregates out, and the one place engine errors become wire status codes.

use std::sync::Arc;

use bytes::Bytes;
use iotdb_net::tablet::ColumnValues;
use iotdb_net::{Status, StatusCode, TabletView, TypedColumn, WireColumn};
use iotdb_storage as storage;
use storage::{StorageError, Values};

/// The engine tablet of a wire tablet: one copy per fixed-width column; TEXT cells share
/// the frame's bytes.
pub fn to_storage_tablet(view: &TabletView, device: &Arc<str>) -> storage::Tablet {
    let columns = view
        .columns()
        .map(|column| {
            let values = match column.values() {
                ColumnValues::Boolean(v) => Values::Boolean(v.iter().map(|&b| b != 0).collect()),
                ColumnValues::Int32(v) => Values::Int32(v.into_owned()),
                ColumnValues::Int64(v) => Values::Int64(v.into_owned()),
                ColumnValues::Float(v) => Values::Float(v.into_owned()),
                ColumnValues::Double(v) => Values::Double(v.into_owned()),
                ColumnValues::Text(text) => {
                    let data = view.bytes();
                    Values::Text(
                        (0..text.len())
                            .map(|row| {
                                let cell = text.get(row).unwrap_or_default();
                                slice_of(data, cell)
                            })
                            .collect(),
                    )
                }
            };
            storage::TabletColumn {
                measurement: Arc::from(column.measurement()),
                values,
                nulls: column
                    .null_bitmap()
                    .map(|bits| storage::NullBitmap::from_bytes(bits.to_vec())),
            }
        })
        .collect();
    storage::Tablet {
        device: device.clone(),
        timestamps: view.timestamps().into_owned(),
        columns,
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
}
