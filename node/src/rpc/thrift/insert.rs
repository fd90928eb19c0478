//! IoTDB's insert payloads (Thrift tablets and records) as native tablets, so that a
//! Thrift write takes exactly the native write path (`Shard::insert`: schema check and
//! auto-creation, routing to the owning shard, group commit).
//!
//! A Thrift tablet (`TSInsertTabletReq`) is big-endian and column-major:
//!
//! ```text
//! timestamps: size × i64
//! values:     per column, size values: BOOLEAN 1 B, INT32/FLOAT 4 B, INT64/DOUBLE 8 B,
//!             TEXT i32 length + bytes (a null holds 0 / empty)
//!             then, only if any cell is null: per column u8 has_bitmap, and if set
//!             size/8 + 1 bytes, bit (row % 8) of byte (row / 8) = null (LSB first)
//! ```
//!
//! The native tablet is little-endian, so every value is converted once (the layouts
//! differ; nothing can be viewed in place). A record (`TSInsertRecordReq` values) is per
//! measurement a type byte and one big-endian value.

use bytes::{Bytes, BytesMut};
use iotdb_net::{
    DataType, NullBitmap, Status, StatusCode, TabletView, TypedColumn, Value, WireColumn,
    WireTablet,
};

/// Most rows one Thrift tablet may declare (the frame bounds it anyway; this keeps the
/// `Vec`s of one column from being sized by a bogus count before the bytes are checked).
pub const TABLET_ROWS_MAX: usize = 10_000_000;

fn malformed(what: impl Into<String>) -> Status {
    Status::illegal_parameter(format!("malformed insert: {}", what.into()))
}

/// IoTDB's type code as a type this server stores; the others get a clear status.
pub fn data_type(code: i32) -> Result<DataType, Status> {
    let name = match code {
        0..=5 => return DataType::from_code(code as u8).map_err(|e| malformed(e.to_string())),
        8 => "TIMESTAMP",
        9 => "DATE",
        10 => "BLOB",
        11 => "STRING",
        _ => return Err(malformed(format!("unknown data type code {code}"))),
    };
    Err(Status::new(
        StatusCode::UNSUPPORTED_OPERATION,
        format!(
            "data type {name} ({code}) is not supported by this server; \
             BOOLEAN, INT32, INT64, FLOAT, DOUBLE and TEXT are"
        ),
    ))
}

/// A cursor over big-endian bytes that never reads past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], Status> {
        if length > self.bytes.len() - self.position {
            return Err(malformed(format!("{what} runs past the end of its bytes")));
        }
        let taken = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Status> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, what)?);
        Ok(array)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn text(&mut self) -> Result<Bytes, Status> {
        let length = i32::from_be_bytes(self.array("text length")?);
        let length = usize::try_from(length).map_err(|_| malformed("negative text length"))?;
        Ok(Bytes::copy_from_slice(self.take(length, "text value")?))
    }

    fn value(&mut self, data_type: DataType) -> Result<Value, Status> {
        Ok(match data_type {
            DataType::Boolean => Value::Boolean(self.array::<1>("boolean")?[0] != 0),
            DataType::Int32 => Value::Int32(i32::from_be_bytes(self.array("int32")?)),
            DataType::Int64 => Value::Int64(i64::from_be_bytes(self.array("int64")?)),
            DataType::Float => Value::Float(f32::from_be_bytes(self.array("float")?)),
            DataType::Double => Value::Double(f64::from_be_bytes(self.array("double")?)),
            DataType::Text => Value::Text(self.text()?),
        })
    }
}

/// Reads `rows` fixed-width big-endian values at once.
fn fixed_column(
    reader: &mut Reader<'_>,
    data_type: DataType,
    rows: usize,
) -> Result<TypedColumn, Status> {
    let width = data_type.fixed_width_bytes().unwrap_or(0);
    let bytes = reader.take(rows * width, "a value column")?;
    Ok(match data_type {
        DataType::Boolean => TypedColumn::Boolean(bytes.iter().map(|b| *b != 0).collect()),
        DataType::Int32 => TypedColumn::Int32(
            bytes
                .chunks_exact(4)
                .map(|c| i32::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        DataType::Int64 => TypedColumn::Int64(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        DataType::Float => TypedColumn::Float(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        DataType::Double => TypedColumn::Double(
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_be_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ),
        DataType::Text => {
            // Each value needs at least its 4-byte length: reserve no more than can come.
            let mut values = Vec::with_capacity(rows.min(reader.remaining() / 4));
            for _ in 0..rows {
                values.push(reader.text()?);
            }
            TypedColumn::Text(values)
        }
    })
}

/// The parts of one Thrift tablet.
pub struct ThriftTablet<'a> {
    pub device: &'a str,
    pub measurements: &'a [String],
    pub types: &'a [i32],
    pub values: &'a [u8],
    pub timestamps: &'a [u8],
    pub size: i32,
    pub is_aligned: bool,
}

/// Converts a Thrift tablet to a native one.
pub fn tablet(thrift: &ThriftTablet<'_>) -> Result<WireTablet, Status> {
    let rows = usize::try_from(thrift.size).map_err(|_| malformed("negative row count"))?;
    if rows > TABLET_ROWS_MAX {
        return Err(malformed(format!(
            "{rows} rows (at most {TABLET_ROWS_MAX})"
        )));
    }
    if thrift.measurements.len() != thrift.types.len() {
        return Err(malformed(format!(
            "{} measurements but {} types",
            thrift.measurements.len(),
            thrift.types.len()
        )));
    }
    if thrift.timestamps.len() != rows * 8 {
        return Err(malformed(format!(
            "{} timestamp bytes for {rows} rows",
            thrift.timestamps.len()
        )));
    }
    let types: Vec<DataType> = thrift
        .types
        .iter()
        .map(|code| data_type(*code))
        .collect::<Result<_, _>>()?;
    let timestamps: Vec<i64> = thrift
        .timestamps
        .chunks_exact(8)
        .map(|c| i64::from_be_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let mut reader = Reader {
        bytes: thrift.values,
        position: 0,
    };
    let mut columns = Vec::with_capacity(types.len());
    for (measurement, data_type) in thrift.measurements.iter().zip(&types) {
        columns.push(WireColumn::new(
            measurement.clone(),
            fixed_column(&mut reader, *data_type, rows)?,
        ));
    }
    if reader.remaining() > 0 {
        let bitmap_bytes = rows / 8 + 1;
        for column in &mut columns {
            let has_bitmap = reader.array::<1>("bitmap flag")?[0] != 0;
            if has_bitmap {
                let bits = reader.take(bitmap_bytes, "null bitmap")?;
                let nulls = NullBitmap::from_bytes(&bits[..NullBitmap::bytes_for(rows)], rows);
                if nulls.null_count() > 0 {
                    column.nulls = Some(nulls);
                }
            }
        }
    }
    if reader.remaining() > 0 {
        return Err(malformed(format!(
            "{} bytes after the last column",
            reader.remaining()
        )));
    }
    for (index, column) in columns.iter().enumerate() {
        if columns[..index]
            .iter()
            .any(|c| c.measurement == column.measurement)
        {
            return Err(malformed(format!(
                "measurement {} appears twice",
                column.measurement
            )));
        }
    }
    Ok(WireTablet {
        device: thrift.device.to_owned(),
        is_aligned: thrift.is_aligned,
        timestamps,
        columns,
    })
}

/// One record (`values` = per measurement a type byte and a value) as a one-row tablet.
pub fn record(
    device: &str,
    measurements: &[String],
    values: &[u8],
    timestamp: i64,
    is_aligned: bool,
) -> Result<WireTablet, Status> {
    let mut reader = Reader {
        bytes: values,
        position: 0,
    };
    let mut schema = Vec::with_capacity(measurements.len());
    let mut cells = Vec::with_capacity(measurements.len());
    for measurement in measurements {
        let code = reader.array::<1>("type code")?[0];
        let data_type = data_type(i32::from(code))?;
        cells.push(Some(reader.value(data_type)?));
        schema.push((measurement.as_str(), data_type));
    }
    if reader.remaining() > 0 {
        return Err(malformed(format!(
            "{} bytes after the last value",
            reader.remaining()
        )));
    }
    for (index, (name, _)) in schema.iter().enumerate() {
        if schema[..index].iter().any(|(other, _)| other == name) {
            return Err(malformed(format!("measurement {name} appears twice")));
        }
    }
    let mut tablet = WireTablet::new(device, &schema);
    tablet.is_aligned = is_aligned;
    tablet
        .push_row(timestamp, &cells)
        .map_err(|e| Status::internal(format!("building a record's tablet: {e}")))?;
    Ok(tablet)
}

/// The native view of a tablet: encoded once, then viewed in place like a received frame.
pub fn view(tablet: &WireTablet) -> Result<TabletView, Status> {
    tablet.validate().map_err(malformed)?;
    let mut encoded = BytesMut::new();
    tablet.encode_contents(&mut encoded);
    TabletView::decode(encoded.freeze(), tablet.is_aligned)
        .map_err(|e| Status::internal(format!("viewing a converted tablet: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablet_with_nulls_and_text() {
        let measurements = vec!["b".to_owned(), "t".to_owned()];
        let mut values = vec![1u8, 0];
        for text in ["ab", ""] {
            values.extend_from_slice(&(text.len() as i32).to_be_bytes());
            values.extend_from_slice(text.as_bytes());
        }
        // bitmaps: column b none, column t row 1 null
        values.extend_from_slice(&[0, 1, 0b10]);
        let timestamps: Vec<u8> = [5i64, 6].iter().flat_map(|t| t.to_be_bytes()).collect();
        let tablet = tablet(&ThriftTablet {
            device: "root.sg.d",
            measurements: &measurements,
            types: &[0, 5],
            values: &values,
            timestamps: &timestamps,
            size: 2,
            is_aligned: false,
        })
        .unwrap();
        assert_eq!(tablet.timestamps, vec![5, 6]);
        assert_eq!(tablet.columns[0].value(0), Some(Value::Boolean(true)));
        assert!(!tablet.columns[0].is_null(1));
        assert_eq!(
            tablet.columns[1].value(0),
            Some(Value::Text(Bytes::from_static(b"ab")))
        );
        assert!(tablet.columns[1].is_null(1));
        view(&tablet).unwrap();
    }

    #[test]
    fn short_or_bogus_payloads_are_refused() {
        let measurements = vec!["x".to_owned()];
        let base = ThriftTablet {
            device: "root.sg.d",
            measurements: &measurements,
            types: &[2],
            values: &[0; 4],
            timestamps: &[0; 8],
            size: 1,
            is_aligned: false,
        };
        assert!(tablet(&base).is_err());
        assert!(tablet(&ThriftTablet { size: -1, ..base }).is_err());
        assert!(
            tablet(&ThriftTablet {
                types: &[11],
                ..base
            })
            .is_err()
        );
        assert!(
            record(
                "root.sg.d",
                &measurements,
                &[5, 0x7f, 0xff, 0xff, 0xff],
                1,
                false
            )
            .is_err()
        );
    }
}
