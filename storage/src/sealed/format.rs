//! The sealed file's on-disk layout: header, checksummed blocks, the tail index and the
//! footer. Serialisation both ways; the reader and writer add the I/O.
//!
//! ```text
//! header  : MAGIC (8) | FORMAT_VERSION u32 LE | reserved u32 = 0                 16 bytes
//! chunks  : per series in key order, per chunk in time order:
//!           time block (absent when the timestamps are regular) | value block
//!   block : compression u8 | raw length varint (compressed only) | payload | crc32c u32 LE
//!           (the checksum covers every byte of the block before it)
//! index   : (version 3) one block, zstd-compressed when that pays, holding the raw index;
//!           (version 2) the raw index, then its crc32c u32 LE. Either way the footer's
//!           length leaves out the final 4 checksum bytes.
//! raw index: series count varint, then per series:
//!             device (length + 1 varint, bytes; 0 = the previous series' device)
//!             measurement (length varint, bytes) | data type u8 | chunk count varint
//!             | FLOAT/DOUBLE only: statistics exponent u8 (0..=18)
//!             per chunk: an entry, coded against the previous entry (IndexContext)
//! footer  : index offset u64 LE | index length u64 LE | crc32c u32 LE of those 16 bytes
//!           | FOOTER_MAGIC (8)                                                    28 bytes
//! ```
//!
//! Chunks are contiguous from the header to the index, so their offsets are implied by the
//! lengths: every byte of the file belongs to exactly one checksummed region, and a flipped
//! bit anywhere is caught by `open` (header, index, footer) or `read_chunk` (blocks).
//!
//! A chunk entry (version 2; "Δ" is a zigzag varint of the difference from what the
//! previous entry predicts, wrapping):
//!
//! ```text
//! time block length varint   0 = no time block: the timestamps are regular, min time +
//!                            i · (span / (count − 1)), implied by the statistics
//! value block length         Δ previous entry's
//! count                      Δ previous entry's
//! min time                   Δ (previous chunk's max time + its step), or for a series'
//!                            first chunk Δ the previous series' first min time
//! span (max − min time)      Δ (count − 1) · previous entry's step
//! first, last                BOOLEAN u8 0/1; TEXT length varint + bytes;
//!                            INT32/INT64: first Δ previous entry's last, last Δ first;
//!                            FLOAT/DOUBLE: decimals (put_decimal) near the previous
//!                            entry's last and near first
//! min, max, sum (numeric)    decimals near min(first, last), max(first, last) and
//!                            count · (first + last) / 2, at the series' exponent
//!                            (INT32/INT64: exponent 0)
//! ```
//!
//! A decimal statistic is `n / 10^exponent`, plus a correction of its bits where needed
//! (sums), or raw bits: every statistic round-trips bit for bit, NaN payloads included.

use bytes::Bytes;

use super::ChunkMeta;
use crate::codec::CodecError;
use crate::codec::bits::{ByteReader, put_signed_varint, put_varint, unzigzag, varint_len, zigzag};
use crate::codec::float::{EXPONENT_MAX, POWERS_OF_TEN, SCALED_ABS_LIMIT};
use crate::config::Compression;
use crate::stats::Stats;
use crate::types::{DataType, SeriesKey, Timestamp, Value};

/// The first bytes of every sealed file.
pub const MAGIC: [u8; 8] = *b"IOTDBRS\x01";
/// The last bytes of every complete sealed file.
pub const FOOTER_MAGIC: [u8; 8] = *b"IOTDBRSE";
/// The version this build writes; bumped on every incompatible change.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this build still reads. Version 3: the index one compressed block,
/// and integer columns may repeat a block's frame (`codec::integer`'s `RESIDUALS_FRAMED`);
/// version 2: the index uncompressed, every integer block with its own frame.
pub const FORMAT_VERSION_MIN: u32 = 2;
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

/// Checks a header and returns its format version; the error says what is wrong.
pub fn check_header(bytes: &[u8]) -> Result<u32, &'static str> {
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return Err("bad header magic");
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
        return Err("unsupported format version");
    }
    if bytes[12..16] != [0; 4] {
        return Err("non-zero reserved header bytes");
    }
    Ok(version)
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
/// Returns whether it was compressed.
pub fn encode_block(raw: &[u8], compression: Compression, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let compressed = match compression {
        Compression::None => false,
        Compression::Lz4 => put_lz4(raw, out),
        // Compressing an in-memory slice fails only on allocation failure inside zstd;
        // storing the block uncompressed is then still correct.
        Compression::Zstd => match zstd::bulk::compress(raw, ZSTD_LEVEL) {
            Ok(payload) if pays(raw, payload.len()) => {
                out.push(COMPRESSION_ZSTD);
                put_varint(out, raw.len() as u64);
                out.extend_from_slice(&payload);
                true
            }
            _ => false,
        },
    };
    if !compressed {
        out.push(COMPRESSION_NONE);
        out.extend_from_slice(raw);
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    compressed
}

/// Whether a compressed payload of `payload_len` bytes, with the varint of the raw length
/// it needs, is smaller than `raw` stored as it is.
fn pays(raw: &[u8], payload_len: usize) -> bool {
    payload_len + crate::codec::bits::varint_len(raw.len() as u64) < raw.len()
}

/// Appends `raw` as an LZ4 block body (tag, raw length, payload) and returns true, or
/// appends nothing and returns false when compression does not pay. The payload is
/// compressed straight into `out`: no buffer per block.
fn put_lz4(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.push(COMPRESSION_LZ4);
    put_varint(out, raw.len() as u64);
    let payload_at = out.len();
    out.resize(
        payload_at + lz4_flex::block::get_maximum_output_size(raw.len()),
        0,
    );
    match lz4_flex::block::compress_into(raw, &mut out[payload_at..]) {
        Ok(payload_len) if pays(raw, payload_len) => {
            out.truncate(payload_at + payload_len);
            true
        }
        // The output holds the largest payload LZ4 can make, so this is a failure only
        // in name; storing the block uncompressed is correct either way.
        _ => {
            out.truncate(start);
            false
        }
    }
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

/// The running context index entries are coded against: each chunk entry stores its
/// figures as differences from what the previous entry predicts, so the chunks of a regular
/// series cost a few bytes each (raw, a chunk's statistics take ~65 bytes, which at 512
/// points a chunk is 0.13 bytes a point).
#[derive(Clone, Debug)]
pub struct IndexContext {
    /// The previous entry's point count.
    count: u64,
    /// The previous entry's value block length.
    value_block_len: u64,
    /// The previous entry's time step: its span over its point gaps, rounded down.
    step: u64,
    /// The previous entry's last value as a decimal integer (its anchor): where the next
    /// first value is coded from.
    last_anchor: i64,
    /// The min time of the previous series' first chunk.
    series_min_time: i64,
    /// The max time of the previous chunk of the current series; `None` before its first.
    series_max_time: Option<i64>,
    /// 10^exponent of the current series' decimal statistics.
    power: f64,
}

impl Default for IndexContext {
    fn default() -> Self {
        IndexContext {
            count: 0,
            value_block_len: 0,
            step: 0,
            last_anchor: 0,
            series_min_time: 0,
            series_max_time: None,
            power: 1.0,
        }
    }
}

impl IndexContext {
    /// Starts a series whose first chunk has `first` statistics: FLOAT and DOUBLE series
    /// get their decimal exponent byte.
    pub fn put_series_start(&mut self, data_type: DataType, first: &Stats, out: &mut Vec<u8>) {
        self.series_max_time = None;
        self.power = 1.0;
        if is_float(data_type) {
            let exponent = decimal_exponent(first);
            out.push(exponent as u8);
            self.power = POWERS_OF_TEN[exponent];
        }
    }

    /// Reads what [`IndexContext::put_series_start`] wrote.
    pub fn read_series_start(
        &mut self,
        reader: &mut ByteReader<'_>,
        data_type: DataType,
    ) -> Result<(), CodecError> {
        self.series_max_time = None;
        self.power = 1.0;
        if is_float(data_type) {
            let exponent = usize::from(reader.u8("statistics exponent")?);
            if exponent > EXPONENT_MAX {
                return Err(CodecError::Invalid {
                    what: "statistics exponent",
                });
            }
            self.power = POWERS_OF_TEN[exponent];
        }
        Ok(())
    }

    /// Appends the index entry of `chunk` (its offset is implied by the file's layout).
    pub fn put_chunk(&mut self, chunk: &ChunkMeta, out: &mut Vec<u8>) {
        let stats = &chunk.stats;
        assert!(stats.count > 0 && stats.min_time <= stats.max_time);
        put_varint(out, chunk.time_block_len);
        put_signed_varint(
            out,
            chunk.value_block_len.wrapping_sub(self.value_block_len) as i64,
        );
        self.value_block_len = chunk.value_block_len;
        put_signed_varint(out, stats.count.wrapping_sub(self.count) as i64);
        self.count = stats.count;

        let predicted_min = self.predicted_min_time();
        put_signed_varint(out, stats.min_time.wrapping_sub(predicted_min));
        let span = stats.max_time.wrapping_sub(stats.min_time) as u64;
        let predicted_span = (stats.count - 1).wrapping_mul(self.step);
        put_signed_varint(out, span.wrapping_sub(predicted_span) as i64);
        self.times_seen(stats.count, stats.min_time, stats.max_time, span);

        let (first, last) = match (&stats.first, &stats.last) {
            (Value::Boolean(first), Value::Boolean(last)) => {
                out.push(u8::from(*first));
                out.push(u8::from(*last));
                return;
            }
            (Value::Text(first), Value::Text(last)) => {
                for text in [first, last] {
                    put_varint(out, text.len() as u64);
                    out.extend_from_slice(text);
                }
                return;
            }
            (Value::Int32(first), Value::Int32(last)) => {
                self.put_integers(i64::from(*first), i64::from(*last), out)
            }
            (Value::Int64(first), Value::Int64(last)) => self.put_integers(*first, *last, out),
            (Value::Float(first), Value::Float(last)) => {
                let raw = |v: f32| RawFloat::F32(v.to_bits());
                let first = put_decimal(out, raw(*first), self.last_anchor, self.power);
                let last = put_decimal(out, raw(*last), first, self.power);
                (first, last)
            }
            (Value::Double(first), Value::Double(last)) => {
                let raw = |v: f64| RawFloat::F64(v.to_bits());
                let first = put_decimal(out, raw(*first), self.last_anchor, self.power);
                let last = put_decimal(out, raw(*last), first, self.power);
                (first, last)
            }
            (first, last) => panic!("statistics mix types: {first:?}, {last:?}"),
        };
        self.last_anchor = last;
        let [min_reference, max_reference, sum_reference] = references(stats.count, first, last);
        let numbers = [
            (stats.min.expect("numeric stats have a min"), min_reference),
            (stats.max.expect("numeric stats have a max"), max_reference),
            (stats.sum, sum_reference),
        ];
        for (value, reference) in numbers {
            put_decimal(out, RawFloat::F64(value.to_bits()), reference, self.power);
        }
    }

    fn put_integers(&self, first: i64, last: i64, out: &mut Vec<u8>) -> (i64, i64) {
        put_signed_varint(out, first.wrapping_sub(self.last_anchor));
        put_signed_varint(out, last.wrapping_sub(first));
        (first, last)
    }

    /// Reads the entry [`IndexContext::put_chunk`] wrote for a `data_type` series:
    /// (time block length, value block length, statistics), the statistics checked to be
    /// self-consistent.
    pub fn read_chunk(
        &mut self,
        reader: &mut ByteReader<'_>,
        data_type: DataType,
    ) -> Result<(u64, u64, Stats), CodecError> {
        let time_block_len = reader.varint("time block length")?;
        let value_block_len = self
            .value_block_len
            .wrapping_add(reader.signed_varint("value block length")? as u64);
        self.value_block_len = value_block_len;
        let count = self
            .count
            .wrapping_add(reader.signed_varint("chunk point count")? as u64);
        if count == 0 || count > crate::codec::COLUMN_VALUES_MAX as u64 {
            return Err(CodecError::Invalid {
                what: "chunk point count",
            });
        }
        self.count = count;

        let min_time = self
            .predicted_min_time()
            .wrapping_add(reader.signed_varint("chunk min time")?);
        if self.series_max_time.is_some_and(|max| min_time <= max) {
            return Err(CodecError::Invalid {
                what: "chunks out of time order",
            });
        }
        let span = (count - 1)
            .wrapping_mul(self.step)
            .wrapping_add(reader.signed_varint("chunk time span")? as u64);
        let max_time = i64::try_from(span)
            .ok()
            .and_then(|s| min_time.checked_add(s))
            .ok_or(CodecError::Invalid {
                what: "chunk time span",
            })?;
        // Strictly increasing timestamps: n points span at least n - 1 milliseconds, and
        // one point spans none.
        if span < count - 1 || (count == 1 && span != 0) {
            return Err(CodecError::Invalid {
                what: "chunk time span disagrees with its points",
            });
        }
        self.times_seen(count, min_time, max_time, span);

        let (first, last, anchors) = match data_type {
            DataType::Boolean => (read_boolean(reader)?, read_boolean(reader)?, None),
            DataType::Text => (read_text(reader)?, read_text(reader)?, None),
            DataType::Int32 | DataType::Int64 => {
                let first = self
                    .last_anchor
                    .wrapping_add(reader.signed_varint("first statistic")?);
                let last = first.wrapping_add(reader.signed_varint("last statistic")?);
                let value = |v: i64| -> Result<Value, CodecError> {
                    Ok(if data_type == DataType::Int32 {
                        Value::Int32(i32::try_from(v).map_err(|_| CodecError::Invalid {
                            what: "INT32 statistic",
                        })?)
                    } else {
                        Value::Int64(v)
                    })
                };
                (value(first)?, value(last)?, Some((first, last)))
            }
            DataType::Float | DataType::Double => {
                let width = if data_type == DataType::Float { 4 } else { 8 };
                let (first, first_anchor) =
                    read_decimal(reader, width, self.last_anchor, self.power)?;
                let (last, last_anchor) = read_decimal(reader, width, first_anchor, self.power)?;
                let value = |raw: RawFloat| match raw {
                    RawFloat::F32(bits) => Value::Float(f32::from_bits(bits)),
                    RawFloat::F64(bits) => Value::Double(f64::from_bits(bits)),
                };
                (value(first), value(last), Some((first_anchor, last_anchor)))
            }
        };
        let (min, max, sum) = match anchors {
            None => (None, None, 0.0),
            Some((first, last)) => {
                self.last_anchor = last;
                let [min_reference, max_reference, sum_reference] = references(count, first, last);
                let mut number = |reference| -> Result<f64, CodecError> {
                    Ok(read_decimal(reader, 8, reference, self.power)?.0.to_f64())
                };
                let min = number(min_reference)?;
                let max = number(max_reference)?;
                let sum = number(sum_reference)?;
                (Some(min), Some(max), sum)
            }
        };
        let stats = Stats {
            count,
            min_time,
            max_time,
            first,
            last,
            min,
            max,
            sum,
        };
        Ok((time_block_len, value_block_len, stats))
    }

    /// Where the next chunk's min time is coded from: one step after the previous chunk of
    /// the series, or the previous series' first chunk for a series' first chunk.
    fn predicted_min_time(&self) -> i64 {
        match self.series_max_time {
            Some(max) => max.wrapping_add(self.step as i64),
            None => self.series_min_time,
        }
    }

    fn times_seen(&mut self, count: u64, min_time: i64, max_time: i64, span: u64) {
        if self.series_max_time.is_none() {
            self.series_min_time = min_time;
        }
        self.series_max_time = Some(max_time);
        if count > 1 {
            self.step = span / (count - 1);
        }
    }
}

/// The step of a chunk's timestamps when they are regular, so the index's statistics imply
/// them and the chunk needs no time block: 0 for one point, else the span divided evenly
/// into `count - 1` steps. The writer omits the block only when every step is equal; the
/// reader checks that the statistics allow it.
fn regular_step(stats: &Stats) -> Option<i64> {
    let span = stats.max_time.checked_sub(stats.min_time)?;
    let gaps = i64::try_from(stats.count.checked_sub(1)?).ok()?;
    if gaps == 0 {
        return (span == 0).then_some(0);
    }
    (span % gaps == 0).then_some(span / gaps)
}

/// Whether `stats` can stand for a chunk's timestamps (see [`regular_timestamps`]).
pub fn regular_timestamps_ok(stats: &Stats) -> bool {
    regular_step(stats).is_some()
}

/// The timestamps a chunk without a time block has, or `None` when its statistics do not
/// describe regular timestamps.
pub fn regular_timestamps(stats: &Stats) -> Option<Vec<Timestamp>> {
    let step = regular_step(stats)?;
    let count = usize::try_from(stats.count).ok()?;
    // No overflow: min_time + (count - 1) · step is max_time.
    Some(
        (0..count as i64)
            .map(|i| stats.min_time + i * step)
            .collect(),
    )
}

fn is_float(data_type: DataType) -> bool {
    matches!(data_type, DataType::Float | DataType::Double)
}

/// The references min, max and sum are coded from: the lesser and greater of first and
/// last, and the sum a straight line from first to last would have.
fn references(count: u64, first: i64, last: i64) -> [i64; 3] {
    let line_sum = i128::from(count) * (i128::from(first) + i128::from(last)) / 2;
    // Truncation wraps identically on both sides; a reference need only be deterministic.
    [first.min(last), first.max(last), line_sum as i64]
}

/// The smallest decimal exponent at which the first chunk's first, last, min and max are
/// all exact decimals (0 when there is none: then statistics are stored raw or corrected).
fn decimal_exponent(stats: &Stats) -> usize {
    let mut values = vec![stats.min.unwrap_or(0.0), stats.max.unwrap_or(0.0)];
    for value in [&stats.first, &stats.last] {
        match value {
            Value::Float(v) => values.push(f64::from(*v)),
            Value::Double(v) => values.push(*v),
            _ => {}
        }
    }
    (0..=EXPONENT_MAX)
        .find(|&exponent| {
            values.iter().all(|&v| {
                decimal_candidate(v, POWERS_OF_TEN[exponent])
                    .is_some_and(|(_, candidate)| candidate.to_bits() == v.to_bits())
            })
        })
        .unwrap_or(0)
}

/// A float statistic's raw bits: FLOAT first and last values stay f32 (4 raw bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
enum RawFloat {
    F32(u32),
    F64(u64),
}

impl RawFloat {
    fn to_f64(self) -> f64 {
        match self {
            RawFloat::F32(bits) => f64::from(f32::from_bits(bits)),
            RawFloat::F64(bits) => f64::from_bits(bits),
        }
    }
}

/// The nearest integer to `value · power` and the float that integer decodes to, when
/// `value` is finite and small enough that both are exact operations.
fn decimal_candidate(value: f64, power: f64) -> Option<(i64, f64)> {
    let scaled = value * power;
    if !value.is_finite() || scaled.abs() >= SCALED_ABS_LIMIT {
        return None;
    }
    let n = scaled.round() as i64;
    Some((n, n as f64 / power))
}

/// Appends a float statistic coded near `reference` and returns its anchor (the integer
/// it was coded as, or `reference` when stored raw).
///
/// ```text
/// code varint: 0                        → raw bits follow (4 bytes FLOAT, else 8), LE
///              1 + (zigzag(n − reference) << 1 | corrected)
///                                       → value = n / 10^exponent, and when corrected,
///                                         its bits plus a zigzag varint
/// ```
/// The correction makes every finite value lossless: a sum of decimals is rarely a
/// decimal itself, but it lies a few units in the last place from one.
fn put_decimal(out: &mut Vec<u8>, raw: RawFloat, reference: i64, power: f64) -> i64 {
    let raw_width = match raw {
        RawFloat::F32(_) => 4,
        RawFloat::F64(_) => 8,
    };
    let value = raw.to_f64();
    if let Some((n, candidate)) = decimal_candidate(value, power) {
        let delta = zigzag(n.wrapping_sub(reference));
        let correction = zigzag(value.to_bits().wrapping_sub(candidate.to_bits()) as i64);
        // Codes past 2^62 would overflow the shift; they are never the cheaper choice.
        if delta < 1 << 62 {
            let code = 1 + ((delta << 1) | u64::from(correction != 0));
            let correction_len = if correction == 0 {
                0
            } else {
                varint_len(correction)
            };
            if varint_len(code) + correction_len <= raw_width {
                put_varint(out, code);
                if correction != 0 {
                    put_varint(out, correction);
                }
                return n;
            }
        }
    }
    put_varint(out, 0);
    match raw {
        RawFloat::F32(bits) => out.extend_from_slice(&bits.to_le_bytes()),
        RawFloat::F64(bits) => out.extend_from_slice(&bits.to_le_bytes()),
    }
    reference
}

/// Reads what [`put_decimal`] wrote: the raw bits (of `width` bytes) and the anchor.
fn read_decimal(
    reader: &mut ByteReader<'_>,
    width: usize,
    reference: i64,
    power: f64,
) -> Result<(RawFloat, i64), CodecError> {
    let code = reader.varint("decimal statistic")?;
    let raw_of = |bits: u64| -> Result<RawFloat, CodecError> {
        Ok(if width == 4 {
            let narrow = f64::from_bits(bits) as f32;
            // A FLOAT statistic coded as a decimal must be an f32 exactly.
            if f64::from(narrow).to_bits() != bits {
                return Err(CodecError::Invalid {
                    what: "FLOAT statistic",
                });
            }
            RawFloat::F32(narrow.to_bits())
        } else {
            RawFloat::F64(bits)
        })
    };
    if code == 0 {
        return Ok(if width == 4 {
            (RawFloat::F32(reader.u32_le("raw statistic")?), reference)
        } else {
            (RawFloat::F64(reader.u64_le("raw statistic")?), reference)
        });
    }
    let code = code - 1;
    let n = reference.wrapping_add(unzigzag(code >> 1));
    let mut bits = (n as f64 / power).to_bits();
    if code & 1 == 1 {
        let correction = reader.varint("statistic correction")?;
        if correction == 0 {
            return Err(CodecError::Invalid {
                what: "statistic correction",
            });
        }
        bits = bits.wrapping_add(unzigzag(correction) as u64);
    }
    Ok((raw_of(bits)?, n))
}

fn read_boolean(reader: &mut ByteReader<'_>) -> Result<Value, CodecError> {
    match reader.u8("boolean statistic")? {
        0 => Ok(Value::Boolean(false)),
        1 => Ok(Value::Boolean(true)),
        _ => Err(CodecError::Invalid {
            what: "boolean statistic",
        }),
    }
}

fn read_text(reader: &mut ByteReader<'_>) -> Result<Value, CodecError> {
    let len = reader.length(reader.remaining(), "TEXT statistic length")?;
    Ok(Value::Text(Bytes::copy_from_slice(
        reader.take(len, "TEXT statistic")?,
    )))
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
    use proptest::prelude::*;

    /// A stats record's fields with values compared by their bits.
    fn bits(stats: &Stats) -> String {
        let value = |v: &Value| match v {
            Value::Float(x) => format!("f32:{:#x}", x.to_bits()),
            Value::Double(x) => format!("f64:{:#x}", x.to_bits()),
            other => format!("{other:?}"),
        };
        format!(
            "{} {} {} {} {} {:?} {:?} {:#x}",
            stats.count,
            stats.min_time,
            stats.max_time,
            value(&stats.first),
            value(&stats.last),
            stats.min.map(f64::to_bits),
            stats.max.map(f64::to_bits),
            stats.sum.to_bits()
        )
    }

    /// Writes series of chunks as the writer does, reads them back and checks every field
    /// bit for bit; returns the index bytes.
    fn roundtrip(series: &[(DataType, Vec<ChunkMeta>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut context = IndexContext::default();
        for (data_type, chunks) in series {
            context.put_series_start(*data_type, &chunks[0].stats, &mut out);
            for chunk in chunks {
                context.put_chunk(chunk, &mut out);
            }
        }
        let mut reader = ByteReader::new(&out);
        let mut context = IndexContext::default();
        for (data_type, chunks) in series {
            context.read_series_start(&mut reader, *data_type).unwrap();
            for chunk in chunks {
                let (time_len, value_len, stats) =
                    context.read_chunk(&mut reader, *data_type).unwrap();
                assert_eq!(
                    (time_len, value_len),
                    (chunk.time_block_len, chunk.value_block_len)
                );
                assert_eq!(bits(&stats), bits(&chunk.stats));
            }
        }
        assert_eq!(reader.remaining(), 0);
        // Every truncation fails rather than reading something else.
        for cut in 0..out.len() {
            let mut reader = ByteReader::new(&out[..cut]);
            let mut context = IndexContext::default();
            let complete = series.iter().all(|(data_type, chunks)| {
                context.read_series_start(&mut reader, *data_type).is_ok()
                    && chunks
                        .iter()
                        .all(|_| context.read_chunk(&mut reader, *data_type).is_ok())
            });
            assert!(!complete, "truncation to {cut} of {} bytes read", out.len());
        }
        out
    }

    fn chunk(stats: Stats, time_block_len: u64, value_block_len: u64) -> ChunkMeta {
        ChunkMeta {
            stats,
            offset: 0,
            time_block_len,
            value_block_len,
        }
    }

    fn float_values() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-1_000_000i64..1_000_000, 0usize..4).prop_map(|(n, e)| n as f64 / POWERS_OF_TEN[e]),
            (-1_000i64..1_000).prop_map(|n| n as f64 / 100.0 * 3.0),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::MAX),
            Just(5e-324),
        ]
    }

    fn value_of(data_type: DataType) -> BoxedStrategy<Value> {
        match data_type {
            DataType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
            DataType::Int32 => any::<i32>().prop_map(Value::Int32).boxed(),
            DataType::Int64 => {
                prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -1000i64..1000]
                    .prop_map(Value::Int64)
                    .boxed()
            }
            DataType::Float => prop_oneof![
                any::<u32>().prop_map(f32::from_bits),
                (-100_000i32..100_000).prop_map(|n| n as f32 / 100.0),
                // A signalling NaN: f32 → f64 → f32 would quiet it.
                Just(f32::from_bits(0x7f80_0001)),
            ]
            .prop_map(Value::Float)
            .boxed(),
            DataType::Double => float_values().prop_map(Value::Double).boxed(),
            DataType::Text => proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|b| Value::Text(Bytes::from(b)))
                .boxed(),
        }
    }

    /// Chunks of one series with arbitrary (not necessarily consistent) statistics, in
    /// time order.
    fn series_of(data_type: DataType) -> impl Strategy<Value = (DataType, Vec<ChunkMeta>)> {
        let entry = (
            1u64..5000,
            0u64..1 << 40,
            1u64..1 << 20,
            value_of(data_type),
            value_of(data_type),
            float_values(),
            float_values(),
            float_values(),
            (0u64..3, 5u64..1 << 20),
        );
        (
            -(1i64 << 60)..1 << 60,
            proptest::collection::vec(entry, 1..6),
        )
            .prop_map(move |(start, chunks)| {
                let mut min_time = start;
                let chunks = chunks
                    .into_iter()
                    .map(
                        |(count, gap, step, first, last, min, max, sum, (time_kind, len))| {
                            let span = (count - 1) * step + (time_kind % 2) * (count - 1).min(1);
                            let stats = Stats {
                                count,
                                min_time,
                                max_time: min_time + span as i64,
                                first,
                                last,
                                min: data_type.is_numeric().then_some(min),
                                max: data_type.is_numeric().then_some(max),
                                sum: if data_type.is_numeric() { sum } else { 0.0 },
                            };
                            min_time = stats.max_time + 1 + gap as i64;
                            let time_len = if time_kind == 0 { 0 } else { len / 7 + 5 };
                            chunk(stats, time_len, len)
                        },
                    )
                    .collect();
                (data_type, chunks)
            })
    }

    fn any_series() -> impl Strategy<Value = (DataType, Vec<ChunkMeta>)> {
        prop_oneof![
            series_of(DataType::Boolean),
            series_of(DataType::Int32),
            series_of(DataType::Int64),
            series_of(DataType::Float),
            series_of(DataType::Double),
            series_of(DataType::Text),
        ]
    }

    proptest! {
        #[test]
        fn index_entries_roundtrip_bit_exactly(series in proptest::collection::vec(any_series(), 1..5)) {
            roundtrip(&series);
        }

        #[test]
        fn random_index_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                          type_code in 0u8..6) {
            let data_type = DataType::from_code(type_code).unwrap();
            let mut reader = ByteReader::new(&bytes);
            let mut context = IndexContext::default();
            if context.read_series_start(&mut reader, data_type).is_ok() {
                while context.read_chunk(&mut reader, data_type).is_ok() {}
            }
        }
    }

    #[test]
    fn regular_decimal_chunks_cost_a_few_bytes() {
        let points = crate::sealed::workload::series(3, 4, 1000);
        let chunks: Vec<ChunkMeta> = (0..2)
            .map(|i| {
                let range = i * 500..(i + 1) * 500;
                chunk(
                    Stats::of(points.as_points(), range).unwrap(),
                    0,
                    480 + i as u64,
                )
            })
            .collect();
        let bytes = roundtrip(&[(DataType::Double, chunks)]);
        // 1 exponent byte; per chunk ~5-8 bytes of lengths and times (the first chunk has
        // no previous entry to be coded against), ~13-15 of values; raw, ~65 each.
        assert!(bytes.len() <= 48, "{} bytes", bytes.len());
    }

    #[test]
    fn implied_timestamps_need_even_steps() {
        let mut stats = Stats {
            count: 4,
            min_time: 10,
            max_time: 40,
            first: Value::Int32(1),
            last: Value::Int32(2),
            min: Some(1.0),
            max: Some(2.0),
            sum: 6.0,
        };
        assert_eq!(regular_timestamps(&stats), Some(vec![10, 20, 30, 40]));
        stats.max_time = 41;
        assert!(!regular_timestamps_ok(&stats));
        stats.count = 1;
        assert!(!regular_timestamps_ok(&stats));
        stats.max_time = 10;
        assert_eq!(regular_timestamps(&stats), Some(vec![10]));
    }

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
