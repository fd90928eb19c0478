//! Column codecs: timestamps, integers, floats, text and booleans.
//!
//! Pure functions from a column to bytes and back; no I/O. Each encoded column starts with
//! a tag byte naming its encoding, so a decoder needs only the data type and the number of
//! values (both kept in the sealed file's chunk metadata):
//!
//! | column            | encoding                                                          |
//! |-------------------|-------------------------------------------------------------------|
//! | timestamps        | delta of delta, constant or frame-of-reference blocks ([`integer`]) |
//! | INT32, INT64      | order 0, 1 or 2 differencing, whichever is smallest ([`integer`])  |
//! | FLOAT, DOUBLE     | ALP decimals, else Gorilla XOR, else plain ([`float`])            |
//! | TEXT              | dictionary when it pays, else length-prefixed ([`text`])          |
//! | BOOLEAN           | bit-packed ([`text`])                                             |
//!
//! Decoders validate every length and tag against the bytes that remain and insist that
//! the column ends exactly where the bytes do: random or truncated input gives a
//! [`CodecError`], never a panic and never a silently shorter column.
//!
//! # Wider vectors where the CPU has them
//!
//! The binaries are built for x86-64's baseline (SSE2), so they run on any x86-64 machine,
//! including the small ones IoT gateways use. The loops a flush spends most of its time in
//! (`integer`'s residuals with their bounds, `float`'s decimal conversion, the chunk
//! statistics' bounds) are compiled a second and third time for AVX2 and SSE4.2 with the
//! `multiversion` crate, which picks the widest the CPU has when the process first calls
//! them. The source, and so every result, is the same for all three (Rust never fuses or
//! reorders floating-point operations on its own); the instructions differ: SSE2 has no
//! 64-bit integer comparison, so the bounds of the residuals were a scalar loop. The sealed
//! writer's bench under `callgrind` (2 M points of the standard workload, evenly spaced):
//! 181.7 M instructions with the baseline only, 130.1 M with the clones on this AVX2 machine,
//! 127.9 M with the whole build for `x86-64-v3`. The files are the same bytes.

pub mod bits;
pub mod float;
pub mod integer;
pub mod text;

use std::ops::Range;
use std::path::Path;

use crate::error::StorageError;
use crate::types::{DataType, Timestamp, Values};
use bits::ByteReader;

/// The most values one encoded column may hold. It bounds what a decoder allocates for a
/// count read from disk (a constant column encodes millions of values in a few bytes).
pub const COLUMN_VALUES_MAX: usize = 1 << 24;

/// Why bytes failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {what}")]
    Truncated { what: &'static str },
    #[error("invalid {what}")]
    Invalid { what: &'static str },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{count} values exceed the column limit {COLUMN_VALUES_MAX}")]
    TooManyValues { count: usize },
}

impl CodecError {
    /// This error as corruption of the file at `path`, in the block at `offset`.
    pub fn into_corruption(self, path: &Path, offset: u64) -> StorageError {
        StorageError::corruption(path, offset, self.to_string())
    }
}

fn check_count(count: usize) -> Result<(), CodecError> {
    if count > COLUMN_VALUES_MAX {
        return Err(CodecError::TooManyValues { count });
    }
    Ok(())
}

/// Appends the encoding of a timestamp column (any i64s; strictly increasing ones are what
/// it is tuned for).
pub fn encode_timestamps(timestamps: &[Timestamp], out: &mut Vec<u8>) {
    assert!(timestamps.len() <= COLUMN_VALUES_MAX, "column too long");
    integer::encode(timestamps, integer::ORDER_MAX, out);
}

/// Decodes a timestamp column of `count` values; `bytes` must be exactly the column.
pub fn decode_timestamps(bytes: &[u8], count: usize) -> Result<Vec<Timestamp>, CodecError> {
    check_count(count)?;
    let mut reader = ByteReader::new(bytes);
    let timestamps = integer::decode(&mut reader, count)?;
    reader.finish("timestamp column trailing bytes")?;
    Ok(timestamps)
}

/// Appends the encoding of a value column.
pub fn encode_values(values: &Values, out: &mut Vec<u8>) {
    encode_values_range(values, 0..values.len(), out);
}

/// Appends the encoding of the column `values[range]`, as [`encode_values`] of a copy of
/// that range would, without the copy (a sealed-file chunk is a range of a series).
pub fn encode_values_range(values: &Values, range: Range<usize>, out: &mut Vec<u8>) {
    assert!(range.len() <= COLUMN_VALUES_MAX, "column too long");
    match values {
        Values::Boolean(v) => text::encode_boolean(&v[range], out),
        Values::Int32(v) => {
            let wide: Vec<i64> = v[range].iter().map(|&x| i64::from(x)).collect();
            integer::encode_best(&wide, &[0, 1, 2], out);
        }
        Values::Int64(v) => integer::encode_best(&v[range], &[0, 1, 2], out),
        Values::Float(v) => float::encode(&v[range], out),
        Values::Double(v) => float::encode(&v[range], out),
        Values::Text(v) => text::encode_text(&v[range], out),
    }
}

/// Decodes a value column of `count` values of `data_type`; `bytes` must be exactly the
/// column.
pub fn decode_values(
    data_type: DataType,
    bytes: &[u8],
    count: usize,
) -> Result<Values, CodecError> {
    check_count(count)?;
    Ok(match data_type {
        DataType::Boolean => Values::Boolean(text::decode_boolean(bytes, count)?),
        DataType::Int32 => {
            let wide = decode_integers(bytes, count)?;
            let narrow = wide
                .into_iter()
                .map(|x| {
                    i32::try_from(x).map_err(|_| CodecError::Invalid {
                        what: "INT32 value out of range",
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Values::Int32(narrow)
        }
        DataType::Int64 => Values::Int64(decode_integers(bytes, count)?),
        DataType::Float => Values::Float(float::decode(bytes, count)?),
        DataType::Double => Values::Double(float::decode(bytes, count)?),
        DataType::Text => Values::Text(text::decode_text(bytes, count)?),
    })
}

fn decode_integers(bytes: &[u8], count: usize) -> Result<Vec<i64>, CodecError> {
    let mut reader = ByteReader::new(bytes);
    let values = integer::decode(&mut reader, count)?;
    reader.finish("integer column trailing bytes")?;
    Ok(values)
}

#[cfg(test)]
mod tests;
