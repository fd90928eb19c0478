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

use bytes::{BufMut, Bytes, BytesMut};
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
        0..=5 => {
            return DataType::from_code(code as u8)
                .ok_or_else(|| malformed(format!("unknown type code {code}")));
        }
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

impl<'a> ThriftTablet<'a> {
    /// The parts of an `insertTablet` request; `is_aligned` as the caller resolved it.
    pub fn of_request(
        request: &'a super::generated::TSInsertTabletReq,
        is_aligned: bool,
    ) -> ThriftTablet<'a> {
        ThriftTablet {
            device: &request.prefix_path,
            measurements: &request.measurements,
            types: &request.types,
            values: &request.values,
            timestamps: &request.timestamps,
            size: request.size,
            is_aligned,
        }
    }
}

/// The row count of a Thrift tablet, once its shape is checked: a row count within
/// [`TABLET_ROWS_MAX`], one type per measurement, eight timestamp bytes per row.
fn checked_rows(thrift: &ThriftTablet<'_>) -> Result<usize, Status> {
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
    Ok(rows)
}

/// Converts a Thrift tablet to an owned native one (value by value; the reference that
/// [`tablet_view`]'s direct conversion is tested against).
pub fn tablet(thrift: &ThriftTablet<'_>) -> Result<WireTablet, Status> {
    let rows = checked_rows(thrift)?;
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

/// A Thrift tablet's checked parts, before conversion.
struct Located<'a> {
    rows: usize,
    types: Vec<DataType>,
    /// Each column's big-endian values (TEXT: the length-prefixed values).
    regions: Vec<&'a [u8]>,
    /// Each column's null bitmap (LSB first, `ceil(rows / 8)` bytes), when it marks a null.
    nulls: Vec<Option<&'a [u8]>>,
}

/// Checks a Thrift tablet and finds its columns and bitmaps without converting anything.
fn locate<'a>(thrift: &ThriftTablet<'a>) -> Result<Located<'a>, Status> {
    let rows = checked_rows(thrift)?;
    for (index, name) in thrift.measurements.iter().enumerate() {
        if thrift.measurements[..index].contains(name) {
            return Err(malformed(format!("measurement {name} appears twice")));
        }
    }
    let types: Vec<DataType> = thrift
        .types
        .iter()
        .map(|code| data_type(*code))
        .collect::<Result<_, _>>()?;
    let mut reader = Reader {
        bytes: thrift.values,
        position: 0,
    };
    let mut regions = Vec::with_capacity(types.len());
    for data_type in &types {
        let start = reader.position;
        match data_type.fixed_width_bytes() {
            Some(width) => {
                reader.take(rows * width, "a value column")?;
            }
            None => {
                for _ in 0..rows {
                    reader.text()?;
                }
            }
        }
        regions.push(&thrift.values[start..reader.position]);
    }
    let mut nulls = vec![None; types.len()];
    if reader.remaining() > 0 {
        let used = NullBitmap::bytes_for(rows);
        for column in &mut nulls {
            if reader.array::<1>("bitmap flag")?[0] != 0 {
                let bits = &reader.take(rows / 8 + 1, "null bitmap")?[..used];
                let any_null = (0..rows).any(|row| bits[row / 8] & (1 << (row % 8)) != 0);
                *column = any_null.then_some(bits);
            }
        }
    }
    if reader.remaining() > 0 {
        return Err(malformed(format!(
            "{} bytes after the last column",
            reader.remaining()
        )));
    }
    Ok(Located {
        rows,
        types,
        regions,
        nulls,
    })
}

fn put_string(out: &mut BytesMut, text: &[u8]) {
    out.put_u32_le(text.len() as u32);
    out.put_slice(text);
}

fn pad(out: &mut BytesMut) {
    let padding = (8 - out.len() % 8) % 8;
    out.put_bytes(0, padding);
}

/// Converts a Thrift tablet straight into the native tablet layout (`docs/protocol.md`,
/// *Insert body*) and views it: one pass that swaps each value's byte order, no per-value
/// allocation. Same result as `view(&tablet(..))`, which the tests check.
pub fn tablet_view(thrift: &ThriftTablet<'_>) -> Result<TabletView, Status> {
    let located = locate(thrift)?;
    let rows = located.rows;
    if u32::try_from(located.types.len()).is_err()
        || located
            .regions
            .iter()
            .any(|r| u32::try_from(r.len()).is_err())
    {
        return Err(malformed("tablet too large"));
    }
    let estimate = 64
        + thrift.device.len()
        + thrift
            .measurements
            .iter()
            .map(|m| m.len() + 16)
            .sum::<usize>()
        + rows * 8
        + located
            .regions
            .iter()
            .map(|r| r.len() + rows / 8 + 32)
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(estimate);
    put_string(&mut out, thrift.device.as_bytes());
    out.put_u32_le(rows as u32);
    out.put_u32_le(located.types.len() as u32);
    for ((measurement, data_type), nulls) in thrift
        .measurements
        .iter()
        .zip(&located.types)
        .zip(&located.nulls)
    {
        put_string(&mut out, measurement.as_bytes());
        out.put_u8(*data_type as u8);
        out.put_u8(u8::from(nulls.is_some()));
    }
    pad(&mut out);
    for chunk in thrift.timestamps.chunks_exact(8) {
        out.put_slice(&u64::from_be_bytes(chunk.try_into().unwrap_or_default()).to_le_bytes());
    }
    for ((data_type, region), nulls) in located
        .types
        .iter()
        .zip(&located.regions)
        .zip(&located.nulls)
    {
        if let Some(bits) = nulls {
            out.put_slice(bits);
            if !rows.is_multiple_of(8) {
                // Bits past the last row are padding, which must be zero.
                let last = out.len() - 1;
                out[last] &= (1u8 << (rows % 8)) - 1;
            }
            pad(&mut out);
        }
        match data_type {
            DataType::Boolean => out.put_slice(region),
            DataType::Int32 | DataType::Float => {
                for chunk in region.chunks_exact(4) {
                    out.put_slice(
                        &u32::from_be_bytes(chunk.try_into().unwrap_or_default()).to_le_bytes(),
                    );
                }
            }
            DataType::Int64 | DataType::Double => {
                for chunk in region.chunks_exact(8) {
                    out.put_slice(
                        &u64::from_be_bytes(chunk.try_into().unwrap_or_default()).to_le_bytes(),
                    );
                }
            }
            DataType::Text => {
                // Offsets first, then the bytes: two walks over the length-prefixed values.
                let mut reader = Reader {
                    bytes: region,
                    position: 0,
                };
                let mut offset = 0u32;
                out.put_u32_le(0);
                let mut spans = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let length = i32::from_be_bytes(reader.array("text length")?) as usize;
                    spans.push(reader.position..reader.position + length);
                    reader.take(length, "text value")?;
                    offset += length as u32;
                    out.put_u32_le(offset);
                }
                for span in spans {
                    out.put_slice(&region[span]);
                }
            }
        }
        pad(&mut out);
    }
    TabletView::decode(out.freeze(), thrift.is_aligned)
        .map_err(|e| malformed(format!("converted tablet: {e}")))
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
        let reference = view(&tablet).unwrap();
        let direct = tablet_view(&ThriftTablet {
            device: "root.sg.d",
            measurements: &measurements,
            types: &[0, 5],
            values: &values,
            timestamps: &timestamps,
            size: 2,
            is_aligned: false,
        })
        .unwrap();
        assert_eq!(direct.bytes(), reference.bytes());
    }

    /// Builds a Thrift tablet as IoTDB's Python client does (nulls on rows where
    /// `(row + column) % 3 == 1` for odd columns).
    fn thrift_bytes(rows: usize, types: &[i32]) -> (Vec<u8>, Vec<u8>) {
        let null = |row: usize, column: usize| column % 2 == 1 && (row + column) % 3 == 1;
        let mut values = Vec::new();
        for (column, code) in types.iter().enumerate() {
            for row in 0..rows {
                let n = if null(row, column) {
                    0
                } else {
                    (row * 7 + column) as i64 - 5
                };
                match code {
                    0 => values.push(u8::from(n % 2 == 0)),
                    1 => values.extend_from_slice(&(n as i32).to_be_bytes()),
                    2 => values.extend_from_slice(&(n << 40).to_be_bytes()),
                    3 => values.extend_from_slice(&(n as f32 / 4.0).to_be_bytes()),
                    4 => values.extend_from_slice(&(n as f64 / 3.0).to_be_bytes()),
                    _ => {
                        let text = if null(row, column) {
                            String::new()
                        } else {
                            "x".repeat(row % 5)
                        };
                        values.extend_from_slice(&(text.len() as i32).to_be_bytes());
                        values.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
        if (0..rows).any(|r| (0..types.len()).any(|c| null(r, c))) {
            for column in 0..types.len() {
                if column % 2 == 1 {
                    values.push(1);
                    let mut bits = vec![0u8; rows / 8 + 1];
                    for row in (0..rows).filter(|r| null(*r, column)) {
                        bits[row / 8] |= 1 << (row % 8);
                    }
                    values.extend_from_slice(&bits);
                } else {
                    values.push(0);
                }
            }
        }
        let timestamps = (0..rows as i64)
            .flat_map(|t| (t * 1000 - 3).to_be_bytes())
            .collect();
        (values, timestamps)
    }

    #[test]
    fn direct_conversion_matches_the_reference() {
        let types = [0, 1, 2, 3, 4, 5, 4, 0];
        let measurements: Vec<String> = (0..types.len()).map(|i| format!("m{i}")).collect();
        for rows in [0, 1, 2, 7, 8, 9, 16, 17, 100] {
            let (values, timestamps) = thrift_bytes(rows, &types);
            let thrift = ThriftTablet {
                device: "root.sg.dev",
                measurements: &measurements,
                types: &types,
                values: &values,
                timestamps: &timestamps,
                size: rows as i32,
                is_aligned: rows % 2 == 0,
            };
            let reference = view(&tablet(&thrift).unwrap()).unwrap();
            let direct = tablet_view(&thrift).unwrap();
            assert_eq!(direct.bytes(), reference.bytes(), "{rows} rows");
            assert_eq!(direct.is_aligned(), reference.is_aligned());
        }
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
        assert!(tablet_view(&base).is_err());
        assert!(tablet_view(&ThriftTablet { size: -1, ..base }).is_err());
        assert!(
            tablet_view(&ThriftTablet {
                types: &[11],
                ..base
            })
            .is_err()
        );
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
