//! IoTDB's TsBlock serialization, the column format of `queryResult` in query answers.
//!
//! Big-endian throughout:
//!
//! ```text
//! i32 value_column_count | value_column_count × u8 type | i32 position_count
//! | (value_column_count + 1) × u8 encoding (time column first)
//! | time column | value columns
//! column = u8 may_have_null | [null bitmap: ceil(n/8) bytes, MSB first, 1 = null]
//!        | values of the non-null positions (INT32_ARRAY 4 B, INT64_ARRAY 8 B,
//!          BINARY_ARRAY i32 length + bytes); BYTE_ARRAY (booleans) is a packed bit
//!          array (MSB first) over all positions instead
//! ```
//!
//! Encodings: 0 BYTE_ARRAY, 1 INT32_ARRAY, 2 INT64_ARRAY, 3 BINARY_ARRAY (IoTDB also has
//! RLE and DICTIONARY; we never send them).

use iotdb_net::{DataType, Value};

const BYTE_ARRAY: u8 = 0;
const INT32_ARRAY: u8 = 1;
const INT64_ARRAY: u8 = 2;
const BINARY_ARRAY: u8 = 3;

fn encoding_of(data_type: DataType) -> u8 {
    match data_type {
        DataType::Boolean => BYTE_ARRAY,
        DataType::Int32 | DataType::Float => INT32_ARRAY,
        DataType::Int64 | DataType::Double => INT64_ARRAY,
        DataType::Text => BINARY_ARRAY,
    }
}

/// Packs `bits` MSB-first, as numpy's `unpackbits` reads them.
fn put_packed_bits(out: &mut Vec<u8>, bits: impl Iterator<Item = bool>) {
    let mut byte = 0u8;
    let mut count = 0usize;
    for bit in bits {
        if bit {
            byte |= 0x80 >> (count % 8);
        }
        count += 1;
        if count.is_multiple_of(8) {
            out.push(byte);
            byte = 0;
        }
    }
    if !count.is_multiple_of(8) {
        out.push(byte);
    }
}

/// Encodes rows `[start, end)` of a result as one TsBlock. `times` gives each row's time
/// (the time column); `columns` are the value columns' types; `cell(row, column)` the
/// value, `None` for null.
pub fn encode<'a>(
    times: &[i64],
    types: &[DataType],
    cell: impl Fn(usize, usize) -> Option<&'a Value>,
) -> Vec<u8> {
    let rows = times.len();
    let mut out = Vec::with_capacity(16 + rows * (8 + types.len() * 9));
    out.extend_from_slice(&(types.len() as i32).to_be_bytes());
    out.extend(types.iter().map(|t| *t as u8));
    out.extend_from_slice(&(rows as i32).to_be_bytes());
    out.push(INT64_ARRAY);
    out.extend(types.iter().map(|t| encoding_of(*t)));
    out.push(0);
    for time in times {
        out.extend_from_slice(&time.to_be_bytes());
    }
    for (column, data_type) in types.iter().enumerate() {
        let any_null = (0..rows).any(|row| cell(row, column).is_none());
        out.push(u8::from(any_null));
        if any_null {
            put_packed_bits(&mut out, (0..rows).map(|row| cell(row, column).is_none()));
        }
        if *data_type == DataType::Boolean {
            put_packed_bits(
                &mut out,
                (0..rows).map(|row| matches!(cell(row, column), Some(Value::Boolean(true)))),
            );
            continue;
        }
        for row in 0..rows {
            match cell(row, column) {
                None => {}
                Some(Value::Boolean(_)) => {}
                Some(Value::Int32(v)) => out.extend_from_slice(&v.to_be_bytes()),
                Some(Value::Int64(v)) => out.extend_from_slice(&v.to_be_bytes()),
                Some(Value::Float(v)) => out.extend_from_slice(&v.to_be_bytes()),
                Some(Value::Double(v)) => out.extend_from_slice(&v.to_be_bytes()),
                Some(Value::Text(v)) => {
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_a_small_block() {
        let values = [
            [Some(Value::Boolean(true)), Some(Value::Int32(7))],
            [None, None],
        ];
        let block = encode(&[10, 20], &[DataType::Boolean, DataType::Int32], |r, c| {
            values[r][c].as_ref()
        });
        let expected: Vec<u8> = [
            &2i32.to_be_bytes()[..],
            &[0, 1],
            &2i32.to_be_bytes(),
            &[INT64_ARRAY, BYTE_ARRAY, INT32_ARRAY],
            &[0],
            &10i64.to_be_bytes(),
            &20i64.to_be_bytes(),
            // boolean: nulls (row 1), then values (row 0 true)
            &[1, 0b0100_0000, 0b1000_0000],
            // int32: nulls (row 1), then the one non-null value
            &[1, 0b0100_0000],
            &7i32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(block, expected);
    }
}
