//! Query result types: the columnar [`ColumnBatch`] (raw and aggregate
//! queries), [`LastPoint`] (last query) and the generic [`ResultSet`] (SQL).

use bytes::{BufMut, BytesMut};

use crate::codec::{WireReader, WireWrite};
use crate::error::DecodeError;
use crate::tablet::{TabletView, WireColumn, WireTablet};
use crate::types::{DataType, Value};

/// A columnar block of rows: timestamps plus typed columns with null bitmaps.
/// Column names are full series paths (`root.sg.d1.s1`) or, for aggregates,
/// `count(root.sg.d1.s1)` style names. Encoded exactly as tablet contents
/// with an empty device, so the same zero-copy decoder serves both.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBatch {
    pub timestamps: Vec<i64>,
    pub columns: Vec<WireColumn>,
}

impl ColumnBatch {
    pub fn row_count(&self) -> usize {
        self.timestamps.len()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.as_tablet().validate()
    }

    fn as_tablet(&self) -> WireTablet {
        WireTablet {
            device: String::new(),
            is_aligned: false,
            timestamps: self.timestamps.clone(),
            columns: self.columns.clone(),
        }
    }

    /// Appends the batch; `out` must be 8-aligned relative to the body start.
    pub fn encode(&self, out: &mut BytesMut) {
        self.as_tablet().encode_contents(out);
    }

    /// Decodes a batch that fills the rest of the reader.
    pub fn decode(reader: &mut WireReader) -> Result<Self, DecodeError> {
        let bytes = reader.take(reader.remaining(), "column batch")?;
        let tablet = TabletView::decode(bytes, false)?.to_wire_tablet();
        Ok(Self {
            timestamps: tablet.timestamps,
            columns: tablet.columns,
        })
    }
}

/// The latest point of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct LastPoint {
    /// Full series path, e.g. `root.sg.d1.s1`.
    pub path: String,
    pub timestamp: i64,
    pub value: Value,
}

/// A generic result set (column names, types, rows of nullable cells), used
/// for SQL statements and the admin tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSet {
    pub column_names: Vec<String>,
    pub column_types: Vec<DataType>,
    pub rows: Vec<Vec<Option<Value>>>,
}

impl ResultSet {
    pub fn new(columns: &[(&str, DataType)]) -> Self {
        Self {
            column_names: columns.iter().map(|(name, _)| (*name).to_owned()).collect(),
            column_types: columns.iter().map(|(_, data_type)| *data_type).collect(),
            rows: Vec::new(),
        }
    }

    /// Checks that names, types and every row agree in width and type.
    pub fn validate(&self) -> Result<(), String> {
        if self.column_names.len() != self.column_types.len() {
            return Err(format!(
                "{} names but {} types",
                self.column_names.len(),
                self.column_types.len()
            ));
        }
        if self.column_types.is_empty() && !self.rows.is_empty() {
            return Err("rows without columns".to_owned());
        }
        for (index, row) in self.rows.iter().enumerate() {
            if row.len() != self.column_types.len() {
                return Err(format!(
                    "row {index} has {} cells, not {}",
                    row.len(),
                    self.column_types.len()
                ));
            }
            for (cell, data_type) in row.iter().zip(&self.column_types) {
                if let Some(value) = cell
                    && value.data_type() != *data_type
                {
                    return Err(format!(
                        "row {index}: a {} cell in a {} column",
                        value.data_type().name(),
                        data_type.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Panics if [`ResultSet::validate`] fails (the server builds result sets).
    pub fn encode(&self, out: &mut BytesMut) {
        if let Err(reason) = self.validate() {
            panic!("encoding an invalid result set: {reason}");
        }
        out.put_count(self.column_names.len());
        for (name, data_type) in self.column_names.iter().zip(&self.column_types) {
            out.put_string(name);
            out.put_u8(*data_type as u8);
        }
        out.put_count(self.rows.len());
        for row in &self.rows {
            for cell in row {
                out.put_option(cell.as_ref(), encode_value_untyped);
            }
        }
    }

    pub fn decode(reader: &mut WireReader) -> Result<Self, DecodeError> {
        let columns = reader.list("result set columns", 5, |reader| {
            Ok((
                reader.string("column name")?,
                crate::types::data_type_of_code(reader.u8("column type")?)?,
            ))
        })?;
        let (column_names, column_types): (Vec<_>, Vec<_>) = columns.into_iter().unzip();
        // Each row takes at least one presence byte per column (zero-width rows take none).
        let row_bytes_min = column_types.len();
        let row_count = reader.count("result set rows", row_bytes_min)?;
        if column_types.is_empty() && row_count > 0 {
            return Err(DecodeError::invalid("result set", "rows without columns"));
        }
        let mut rows = Vec::with_capacity(row_count);
        for _ in 0..row_count {
            let mut row = Vec::with_capacity(column_types.len());
            for data_type in &column_types {
                row.push(reader.option("cell", |reader| decode_value_untyped(reader, *data_type))?);
            }
            rows.push(row);
        }
        Ok(Self {
            column_names,
            column_types,
            rows,
        })
    }

    /// Appends another chunk's rows (a streamed result arrives in chunks).
    pub fn extend(&mut self, chunk: ResultSet) -> Result<(), String> {
        if chunk.column_names != self.column_names || chunk.column_types != self.column_types {
            return Err("result set chunks disagree on columns".to_owned());
        }
        self.rows.extend(chunk.rows);
        Ok(())
    }
}

/// A value whose type the reader already knows.
pub(crate) fn encode_value_untyped(out: &mut BytesMut, value: &Value) {
    match value {
        Value::Boolean(value) => out.put_bool_byte(*value),
        Value::Int32(value) => out.put_i32_le(*value),
        Value::Int64(value) => out.put_i64_le(*value),
        Value::Float(value) => out.put_f32_le(*value),
        Value::Double(value) => out.put_f64_le(*value),
        Value::Text(value) => out.put_byte_string(value),
    }
}

pub(crate) fn decode_value_untyped(
    reader: &mut WireReader,
    data_type: DataType,
) -> Result<Value, DecodeError> {
    Ok(match data_type {
        DataType::Boolean => Value::Boolean(reader.bool("boolean value")?),
        DataType::Int32 => Value::Int32(reader.i32("int32 value")?),
        DataType::Int64 => Value::Int64(reader.i64("int64 value")?),
        DataType::Float => Value::Float(reader.f32("float value")?),
        DataType::Double => Value::Double(reader.f64("double value")?),
        DataType::Text => Value::Text(reader.byte_string("text value")?),
    })
}

/// A type code then the value.
pub(crate) fn encode_value(out: &mut BytesMut, value: &Value) {
    out.put_u8(value.data_type() as u8);
    encode_value_untyped(out, value);
}

pub(crate) fn decode_value(reader: &mut WireReader) -> Result<Value, DecodeError> {
    let data_type = crate::types::data_type_of_code(reader.u8("value type")?)?;
    decode_value_untyped(reader, data_type)
}

impl LastPoint {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_string(&self.path);
        out.put_i64_le(self.timestamp);
        encode_value(out, &self.value);
    }

    pub(crate) fn decode(reader: &mut WireReader) -> Result<Self, DecodeError> {
        Ok(Self {
            path: reader.string("series path")?,
            timestamp: reader.i64("timestamp")?,
            value: decode_value(reader)?,
        })
    }
}
