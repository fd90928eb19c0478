//! The sealed file's on-disk layout: header, checksummed blocks, the tail index and the
//! footer. Serialisation both ways; the reader and writer add the I/O.
//!
//! ```text
//! header  : MAGIC (8) | FORMAT_VERSION u32 LE | reserved u32 = 0                 16 bytes
//! chunks  : per series in key order, per chunk in time order:
//!           time block | value block
//!   block : compression u8 | raw length varint (compressed only) | payload | crc32c u32 LE
//!           (the checksum covers every byte of the block before it)
//! index   : series count varint, then per series:
//!             device (length + 1 varint, bytes; 0 = the previous series' device)
//!             measurement (length varint, bytes) | data type u8 | chunk count varint
//!             per chunk: time block length varint | value block length varint | stats
//!           crc32c u32 LE of the index
//! footer  : index offset u64 LE | index length u64 LE | crc32c u32 LE of those 16 bytes
//!           | FOOTER_MAGIC (8)                                                    28 bytes
//! ```
//!
//! Chunks are contiguous from the header to the index, so their offsets are implied by the
//! lengths: every byte of the file belongs to exactly one checksummed region, and a flipped
//! bit anywhere is caught by `open` (header, index, footer) or `read_chunk` (blocks).
//!
//! Stats: count varint | min time zigzag varint | max time − min time varint | first value
//! | last value | for numeric types: min, max, sum as f64 LE. A value: BOOLEAN u8 0/1,
//! INT32/INT64 zigzag varint, FLOAT/DOUBLE raw bits LE, TEXT length varint + bytes.

use bytes::Bytes;

use crate::codec::CodecError;
use crate::codec::bits::{ByteReader, put_signed_varint, put_varint};
use crate::config::Compression;
use crate::stats::Stats;
use crate::types::{DataType, SeriesKey, Value};

/// The first bytes of every sealed file.
pub const MAGIC: [u8; 8] = *b"IOTDBRS\x01";
/// The last bytes of every complete sealed file.
pub const FOOTER_MAGIC: [u8; 8] = *b"IOTDBRSE";
/// Bumped on every incompatible change; readers reject other versions.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 16;
pub const FOOTER_LEN: usize = 28;
/// Bytes of a block besides its payload at least: compression tag and checksum.
pub const BLOCK_OVERHEAD_MIN: usize = 5;
/// The largest decompressed block accepted. It bounds the allocation a (checksummed but
/// hostile) raw length can cause; encoded columns are far smaller (16 Mi values).
pub const BLOCK_RAW_BYTES_MAX: usize = 1 << 30;
/// zstd level for block compression: level 3 is zstd's own default trade-off.
const ZSTD_LEVEL: i32 = 3;

const COMPRESSION_NONE: u8 = 0;
const COMPRESSION_LZ4: u8 = 1;
const COMPRESSION_ZSTD: u8 = 2;

/// The file header.
pub fn header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// Checks a header; the error says what is wrong.
pub fn check_header(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err("bad header magic");
    }
    if bytes[8..12] != FORMAT_VERSION.to_le_bytes() {
        return Err("unsupported format version");
    }
    if bytes[12..16] != [0; 4] {
        return Err("non-zero reserved header bytes");
    }
    Ok(())
}

/// The footer for an index at `index_offset` of `index_len` bytes (crc excluded).
pub fn footer(index_offset: u64, index_len: u64) -> [u8; FOOTER_LEN] {
    let mut footer = [0u8; FOOTER_LEN];
    footer[..8].copy_from_slice(&index_offset.to_le_bytes());
    footer[8..16].copy_from_slice(&index_len.to_le_bytes());
    let crc = crc32c::crc32c(&footer[..16]);
    footer[16..20].copy_from_slice(&crc.to_le_bytes());
    footer[20..].copy_from_slice(&FOOTER_MAGIC);
    footer
}

/// (index offset, index length) from a footer.
pub fn parse_footer(bytes: &[u8; FOOTER_LEN]) -> Result<(u64, u64), &'static str> {
    if bytes[20..] != FOOTER_MAGIC {
        return Err("bad footer magic");
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc != crc32c::crc32c(&bytes[..16]) {
        return Err("footer checksum mismatch");
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[..8]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    Ok((u64::from_le_bytes(offset), u64::from_le_bytes(len)))
}

/// Appends `raw` as a block: compressed with `compression` when that makes it smaller.
pub fn encode_block(raw: &[u8], compression: Compression, out: &mut Vec<u8>) {
    let start = out.len();
    let compressed = match compression {
        Compression::None => None,
        Compression::Lz4 => Some((COMPRESSION_LZ4, lz4_flex::block::compress(raw))),
        // Compressing an in-memory slice fails only on allocation failure inside zstd;
        // storing the block uncompressed is then still correct.
        Compression::Zstd => zstd::bulk::compress(raw, ZSTD_LEVEL)
            .ok()
            .map(|c| (COMPRESSION_ZSTD, c)),
    };
    match compressed {
        Some((tag, payload))
            if payload.len() + crate::codec::bits::varint_len(raw.len() as u64) < raw.len() =>
        {
            out.push(tag);
            put_varint(out, raw.len() as u64);
            out.extend_from_slice(&payload);
        }
        _ => {
            out.push(COMPRESSION_NONE);
            out.extend_from_slice(raw);
        }
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The raw bytes of a block, after checking its checksum and decompressing.
pub fn decode_block(block: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if block.len() < BLOCK_OVERHEAD_MIN {
        return Err("block shorter than its overhead".into());
    }
    let (body, crc) = block.split_at(block.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if stored != crc32c::crc32c(body) {
        return Err("block checksum mismatch".into());
    }
    let mut reader = ByteReader::new(body);
    let tag = reader.u8("compression").map_err(|e| e.to_string())?;
    if tag == COMPRESSION_NONE {
        return Ok(std::borrow::Cow::Borrowed(&body[1..]));
    }
    let raw_len = reader
        .length(BLOCK_RAW_BYTES_MAX, "raw block length")
        .map_err(|e| e.to_string())?;
    let payload = &body[reader.position()..];
    let raw = match tag {
        COMPRESSION_LZ4 => {
            lz4_flex::block::decompress(payload, raw_len).map_err(|e| format!("lz4 block: {e}"))?
        }
        COMPRESSION_ZSTD => {
            zstd::bulk::decompress(payload, raw_len).map_err(|e| format!("zstd block: {e}"))?
        }
        other => return Err(format!("unknown compression tag {other}")),
    };
    if raw.len() != raw_len {
        return Err(format!(
            "block decompressed to {} bytes, expected {raw_len}",
            raw.len()
        ));
    }
    Ok(std::borrow::Cow::Owned(raw))
}

/// Appends one value of a stats record.
fn put_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::Int32(v) => put_signed_varint(out, i64::from(*v)),
        Value::Int64(v) => put_signed_varint(out, *v),
        Value::Float(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        Value::Double(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        Value::Text(v) => {
            put_varint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
}

fn read_value(reader: &mut ByteReader<'_>, data_type: DataType) -> Result<Value, CodecError> {
    Ok(match data_type {
        DataType::Boolean => match reader.u8("boolean statistic")? {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => {
                return Err(CodecError::Invalid {
                    what: "boolean statistic",
                });
            }
        },
        DataType::Int32 => Value::Int32(
            i32::try_from(reader.signed_varint("INT32 statistic")?).map_err(|_| {
                CodecError::Invalid {
                    what: "INT32 statistic",
                }
            })?,
        ),
        DataType::Int64 => Value::Int64(reader.signed_varint("INT64 statistic")?),
        DataType::Float => Value::Float(f32::from_bits(reader.u32_le("FLOAT statistic")?)),
        DataType::Double => Value::Double(f64::from_bits(reader.u64_le("DOUBLE statistic")?)),
        DataType::Text => {
            let len = reader.length(reader.remaining(), "TEXT statistic length")?;
            Value::Text(Bytes::copy_from_slice(reader.take(len, "TEXT statistic")?))
        }
    })
}

/// Appends a stats record.
pub fn put_stats(stats: &Stats, out: &mut Vec<u8>) {
    assert!(stats.count > 0 && stats.min_time <= stats.max_time);
    put_varint(out, stats.count);
    put_signed_varint(out, stats.min_time);
    put_varint(out, stats.max_time.wrapping_sub(stats.min_time) as u64);
    put_value(&stats.first, out);
    put_value(&stats.last, out);
    if stats.data_type().is_numeric() {
        for v in [
            stats.min.expect("numeric stats have a min"),
            stats.max.expect("numeric stats have a max"),
            stats.sum,
        ] {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// Reads a stats record of a `data_type` series, checking that it is self-consistent.
pub fn read_stats(reader: &mut ByteReader<'_>, data_type: DataType) -> Result<Stats, CodecError> {
    let count = reader.varint("chunk point count")?;
    if count == 0 || count > crate::codec::COLUMN_VALUES_MAX as u64 {
        return Err(CodecError::Invalid {
            what: "chunk point count",
        });
    }
    let min_time = reader.signed_varint("chunk min time")?;
    let span = reader.varint("chunk time span")?;
    let max_time = i64::try_from(span)
        .ok()
        .and_then(|s| min_time.checked_add(s))
        .ok_or(CodecError::Invalid {
            what: "chunk time span",
        })?;
    // Strictly increasing timestamps: n points span at least n - 1 milliseconds.
    if span < count - 1 {
        return Err(CodecError::Invalid {
            what: "chunk time span shorter than its points",
        });
    }
    let first = read_value(reader, data_type)?;
    let last = read_value(reader, data_type)?;
    let (min, max, sum) = if data_type.is_numeric() {
        let min = f64::from_bits(reader.u64_le("chunk min")?);
        let max = f64::from_bits(reader.u64_le("chunk max")?);
        let sum = f64::from_bits(reader.u64_le("chunk sum")?);
        (Some(min), Some(max), sum)
    } else {
        (None, None, 0.0)
    };
    Ok(Stats {
        count,
        min_time,
        max_time,
        first,
        last,
        min,
        max,
        sum,
    })
}

/// Appends a series' key, reusing the previous series' device when it is the same.
pub fn put_series_key(key: &SeriesKey, previous: Option<&SeriesKey>, out: &mut Vec<u8>) {
    if previous.is_some_and(|p| p.device == key.device) {
        put_varint(out, 0);
    } else {
        put_varint(out, key.device.len() as u64 + 1);
        out.extend_from_slice(key.device.as_bytes());
    }
    put_varint(out, key.measurement.len() as u64);
    out.extend_from_slice(key.measurement.as_bytes());
}

/// Reads a series key written by [`put_series_key`].
pub fn read_series_key(
    reader: &mut ByteReader<'_>,
    previous: Option<&SeriesKey>,
) -> Result<SeriesKey, CodecError> {
    let device_len = reader.length(reader.remaining() + 1, "device length")?;
    let device = if device_len == 0 {
        previous
            .ok_or(CodecError::Invalid {
                what: "device reused by the first series",
            })?
            .device
            .clone()
    } else {
        read_str(reader, device_len - 1, "device")?
    };
    let measurement_len = reader.length(reader.remaining(), "measurement length")?;
    let measurement = read_str(reader, measurement_len, "measurement")?;
    Ok(SeriesKey {
        device,
        measurement,
    })
}

fn read_str(
    reader: &mut ByteReader<'_>,
    len: usize,
    what: &'static str,
) -> Result<std::sync::Arc<str>, CodecError> {
    let bytes = reader.take(len, what)?;
    std::str::from_utf8(bytes)
        .map(std::sync::Arc::from)
        .map_err(|_| CodecError::Invalid { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_compress_only_when_it_pays() {
        let compressible = vec![7u8; 1000];
        let incompressible: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for compression in [Compression::None, Compression::Lz4, Compression::Zstd] {
            for raw in [&compressible, &incompressible] {
                let mut block = Vec::new();
                encode_block(raw, compression, &mut block);
                assert_eq!(decode_block(&block).unwrap().as_ref(), raw.as_slice());
                assert!(block.len() <= raw.len() + BLOCK_OVERHEAD_MIN);
            }
            let mut block = Vec::new();
            encode_block(&compressible, compression, &mut block);
            assert_eq!(block.len() < 100, compression != Compression::None);
        }
    }

    #[test]
    fn footer_roundtrips_and_detects_flips() {
        let footer_bytes = footer(12345, 678);
        assert_eq!(parse_footer(&footer_bytes), Ok((12345, 678)));
        for bit in 0..FOOTER_LEN * 8 {
            let mut flipped = footer_bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(parse_footer(&flipped).is_err(), "bit {bit}");
        }
        assert!(check_header(&header()).is_ok());
    }
}
