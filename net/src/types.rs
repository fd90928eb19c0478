//! Data types, typed columns, null bitmaps and single values, as the wire
//! carries them. Type codes are IoTDB's (BOOLEAN 0 … TEXT 5).

use bytes::Bytes;

use crate::error::DecodeError;

pub use iotdb_model::DataType;

/// The type with IoTDB's code `code`, or a decode error naming it.
pub fn data_type_of_code(code: u8) -> Result<DataType, DecodeError> {
    DataType::from_code(code)
        .ok_or_else(|| DecodeError::invalid("data type", format!("unknown type code {code}")))
}

/// One value of any type. Floats compare by bit pattern so that NaN
/// round-trips compare equal in tests.
#[derive(Debug, Clone)]
pub enum Value {
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float(f32),
    Double(f64),
    Text(Bytes),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Boolean(a), Value::Boolean(b)) => a == b,
            (Value::Int32(a), Value::Int32(b)) => a == b,
            (Value::Int64(a), Value::Int64(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (Value::Text(a), Value::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
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
}

/// A column of values of one type (nulls hold a default value and are marked
/// in a separate [`NullBitmap`]).
#[derive(Debug, Clone)]
pub enum TypedColumn {
    Boolean(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Text(Vec<Bytes>),
}

impl PartialEq for TypedColumn {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (TypedColumn::Boolean(a), TypedColumn::Boolean(b)) => a == b,
            (TypedColumn::Int32(a), TypedColumn::Int32(b)) => a == b,
            (TypedColumn::Int64(a), TypedColumn::Int64(b)) => a == b,
            (TypedColumn::Float(a), TypedColumn::Float(b)) => a
                .iter()
                .map(|v| v.to_bits())
                .eq(b.iter().map(|v| v.to_bits())),
            (TypedColumn::Double(a), TypedColumn::Double(b)) => a
                .iter()
                .map(|v| v.to_bits())
                .eq(b.iter().map(|v| v.to_bits())),
            (TypedColumn::Text(a), TypedColumn::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl TypedColumn {
    pub fn empty(data_type: DataType) -> Self {
        match data_type {
            DataType::Boolean => TypedColumn::Boolean(Vec::new()),
            DataType::Int32 => TypedColumn::Int32(Vec::new()),
            DataType::Int64 => TypedColumn::Int64(Vec::new()),
            DataType::Float => TypedColumn::Float(Vec::new()),
            DataType::Double => TypedColumn::Double(Vec::new()),
            DataType::Text => TypedColumn::Text(Vec::new()),
        }
    }

    pub fn data_type(&self) -> DataType {
        match self {
            TypedColumn::Boolean(_) => DataType::Boolean,
            TypedColumn::Int32(_) => DataType::Int32,
            TypedColumn::Int64(_) => DataType::Int64,
            TypedColumn::Float(_) => DataType::Float,
            TypedColumn::Double(_) => DataType::Double,
            TypedColumn::Text(_) => DataType::Text,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TypedColumn::Boolean(values) => values.len(),
            TypedColumn::Int32(values) => values.len(),
            TypedColumn::Int64(values) => values.len(),
            TypedColumn::Float(values) => values.len(),
            TypedColumn::Double(values) => values.len(),
            TypedColumn::Text(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, row: usize) -> Option<Value> {
        Some(match self {
            TypedColumn::Boolean(values) => Value::Boolean(*values.get(row)?),
            TypedColumn::Int32(values) => Value::Int32(*values.get(row)?),
            TypedColumn::Int64(values) => Value::Int64(*values.get(row)?),
            TypedColumn::Float(values) => Value::Float(*values.get(row)?),
            TypedColumn::Double(values) => Value::Double(*values.get(row)?),
            TypedColumn::Text(values) => Value::Text(values.get(row)?.clone()),
        })
    }

    /// Appends a value of the column's type, or the type's default for `None`.
    /// Returns false (and appends nothing) on a type mismatch.
    pub fn push(&mut self, value: Option<&Value>) -> bool {
        match (self, value) {
            (TypedColumn::Boolean(values), None) => values.push(false),
            (TypedColumn::Int32(values), None) => values.push(0),
            (TypedColumn::Int64(values), None) => values.push(0),
            (TypedColumn::Float(values), None) => values.push(0.0),
            (TypedColumn::Double(values), None) => values.push(0.0),
            (TypedColumn::Text(values), None) => values.push(Bytes::new()),
            (TypedColumn::Boolean(values), Some(Value::Boolean(value))) => values.push(*value),
            (TypedColumn::Int32(values), Some(Value::Int32(value))) => values.push(*value),
            (TypedColumn::Int64(values), Some(Value::Int64(value))) => values.push(*value),
            (TypedColumn::Float(values), Some(Value::Float(value))) => values.push(*value),
            (TypedColumn::Double(values), Some(Value::Double(value))) => values.push(*value),
            (TypedColumn::Text(values), Some(Value::Text(value))) => values.push(value.clone()),
            _ => return false,
        }
        true
    }
}

/// IoTDB's null bitmap: bit `row % 8` of byte `row / 8` (LSB-first), 1 = null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullBitmap {
    bits: Vec<u8>,
    length_rows: usize,
}

impl NullBitmap {
    pub fn bytes_for(length_rows: usize) -> usize {
        length_rows.div_ceil(8)
    }

    /// All rows non-null.
    pub fn new(length_rows: usize) -> Self {
        Self {
            bits: vec![0; Self::bytes_for(length_rows)],
            length_rows,
        }
    }

    /// From packed bits; bits past `length_rows` are cleared.
    pub fn from_bytes(bits: &[u8], length_rows: usize) -> Self {
        assert_eq!(
            bits.len(),
            Self::bytes_for(length_rows),
            "null bitmap length does not match the row count"
        );
        let mut bitmap = Self {
            bits: bits.to_vec(),
            length_rows,
        };
        if !length_rows.is_multiple_of(8) {
            let last = bitmap.bits.len() - 1;
            bitmap.bits[last] &= (1u8 << (length_rows % 8)) - 1;
        }
        bitmap
    }

    pub fn from_nulls(nulls: &[bool]) -> Self {
        let mut bitmap = Self::new(nulls.len());
        for (row, is_null) in nulls.iter().enumerate() {
            bitmap.set(row, *is_null);
        }
        bitmap
    }

    pub fn len(&self) -> usize {
        self.length_rows
    }

    pub fn is_empty(&self) -> bool {
        self.length_rows == 0
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    pub fn is_null(&self, row: usize) -> bool {
        row < self.length_rows && self.bits[row / 8] & (1 << (row % 8)) != 0
    }

    pub fn set(&mut self, row: usize, is_null: bool) {
        assert!(
            row < self.length_rows,
            "row {row} outside a bitmap of {} rows",
            self.length_rows
        );
        if is_null {
            self.bits[row / 8] |= 1 << (row % 8);
        } else {
            self.bits[row / 8] &= !(1 << (row % 8));
        }
    }

    /// Grows by one row.
    pub fn push(&mut self, is_null: bool) {
        self.length_rows += 1;
        if self.bits.len() < Self::bytes_for(self.length_rows) {
            self.bits.push(0);
        }
        self.set(self.length_rows - 1, is_null);
    }

    pub fn null_count(&self) -> usize {
        self.bits
            .iter()
            .map(|byte| byte.count_ones() as usize)
            .sum()
    }
}

/// Whether `row` is null in an LSB-first bitmap slice straight off the wire.
pub fn bitmap_is_null(bits: &[u8], row: usize) -> bool {
    bits.get(row / 8)
        .is_some_and(|byte| byte & (1 << (row % 8)) != 0)
}
