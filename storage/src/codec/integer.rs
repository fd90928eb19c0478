//! Integer sequences, TS_2DIFF-style: differencing of order 0, 1 or 2, then the residuals
//! either as one constant or in frame-of-reference blocks.
//!
//! ```text
//! [order u8] [order seeds: zigzag varints] [residual stream, count - order residuals]
//! residual stream: [RESIDUALS_CONSTANT][zigzag varint]
//!                | [RESIDUALS_BLOCKS] block*      (BLOCK_LEN residuals per block, last shorter)
//! block: [min: zigzag varint] [kind u8] [kind == KIND_RADIX: span varint] [payload, whole bytes]
//!   kind 0..=64: each residual - min in `kind` bits, LSB-first
//!   KIND_RADIX : groups of k residuals - min packed as one base-(span+1) number in the
//!                fewest bits that hold (span+1)^k - 1, LSB-first, the first residual the
//!                least significant digit; k is the group size (with (span+1)^k <= 2^31)
//!                that takes the fewest bits per value, the smallest on ties. It wins when
//!                span+1 is far from a power of two: a span of 200 (a ±1.00 random walk in
//!                hundredths) packs 3 values in 23 bits, 7.67 bits a value instead of 8
//! ```
//!
//! Arithmetic wraps, so every i64 sequence round-trips, overflowing differences included.
//! A perfectly regular timestamp column (order 2, all residuals zero) costs about 12 bytes.
//!
//! Decoding ([`decode_runs`]) rebuilds one block at a time in a stack buffer and hands each
//! run to the caller, so a caller converting the integers (ALP) needs no intermediate
//! column. Byte-aligned widths unpack as plain lanes, other widths with one unaligned load
//! per value; radix digits come from multiply-and-shift divisions (a hardware division per
//! value would cost more than everything else together); constant residuals of order 1, or
//! order 2 with residual 0, are filled in closed form.

use super::CodecError;
use super::bits::{BitReader, BitWriter, ByteReader, bit_width, put_signed_varint, put_varint};

/// Residuals per frame-of-reference block: large enough that the 3–5 header bytes cost
/// under 0.02 bytes per value, small enough that one outlier widens few values.
const BLOCK_LEN: usize = 256;

/// The highest differencing order (delta of delta).
pub const ORDER_MAX: u8 = 2;

const RESIDUALS_CONSTANT: u8 = 0;
const RESIDUALS_BLOCKS: u8 = 1;

/// Block kind: radix packing (kinds 0..=64 are plain bit widths).
const KIND_RADIX: u8 = 0x80;

/// A radix group's number stays below this, so it takes at most 31 bits: one unaligned
/// 8-byte load reads any group, and dividing it by the radix is a multiply and a shift.
const GROUP_LIMIT: u64 = 1 << 31;

/// The most payload bytes a radix block has: at least two values share each group of at
/// most 31 bits.
const RADIX_PAYLOAD_BYTES_MAX: usize = BLOCK_LEN / 2 * 4;

/// Appends the encoding of `values` with differencing order `order` (0..=ORDER_MAX).
///
/// One pass and no allocation: the residuals are computed block by block into a stack
/// buffer and packed at once. Whether they are all equal (the constant form) is known only
/// at the end, so the blocks are written tentatively and replaced by the constant form when
/// every block turned out to hold one and the same residual (then each block was a cheap
/// zero-width one).
pub fn encode(values: &[i64], order: u8, out: &mut Vec<u8>) {
    assert!(order <= ORDER_MAX, "differencing order {order} unsupported");
    let order = usize::from(order).min(values.len());
    out.push(order as u8);
    // The seeds: the first value, then (order 2) the first first difference.
    if order >= 1 {
        put_signed_varint(out, values[0]);
    }
    if order == 2 {
        put_signed_varint(out, values[1].wrapping_sub(values[0]));
    }
    if values.len() == order {
        return;
    }
    let mode_at = out.len();
    out.push(RESIDUALS_BLOCKS);
    let mut scratch = [0i64; BLOCK_LEN];
    // The residual every block so far was made of, while there is one.
    let mut constant = None;
    let mut start = order;
    while start < values.len() {
        let end = (start + BLOCK_LEN).min(values.len());
        let block = &mut scratch[..end - start];
        let (min, max) = fill_residuals(values, order, start, block);
        constant = if start == order {
            (min == max).then_some(min)
        } else {
            constant.filter(|&c| min == c && max == c)
        };
        encode_block(block, min, max, out);
        start = end;
    }
    if let Some(residual) = constant {
        out.truncate(mode_at);
        out.push(RESIDUALS_CONSTANT);
        put_signed_varint(out, residual);
    }
}

/// Sets `block` to the residuals of order `order` from index `start` (at least `order`) and
/// returns their (min, max): the values themselves, their first or their second
/// differences, in wrapping arithmetic (equal to differencing the column `order` times in
/// place). The order is matched once, outside the loops.
#[inline]
fn fill_residuals(values: &[i64], order: usize, start: usize, block: &mut [i64]) -> (i64, i64) {
    let end = start + block.len();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut keep = |slot: &mut i64, r: i64| {
        *slot = r;
        min = min.min(r);
        max = max.max(r);
    };
    match order {
        0 => {
            for (slot, &v) in block.iter_mut().zip(&values[start..end]) {
                keep(slot, v);
            }
        }
        1 => {
            for (slot, pair) in block.iter_mut().zip(values[start - 1..end].windows(2)) {
                keep(slot, pair[1].wrapping_sub(pair[0]));
            }
        }
        _ => {
            for (slot, triple) in block.iter_mut().zip(values[start - 2..end].windows(3)) {
                let r = triple[2]
                    .wrapping_sub(triple[1].wrapping_mul(2))
                    .wrapping_add(triple[0]);
                keep(slot, r);
            }
        }
    }
    (min, max)
}

/// Encodes with each order in `orders` and keeps the shortest.
pub fn encode_best(values: &[i64], orders: &[u8], out: &mut Vec<u8>) {
    let mut best: Option<Vec<u8>> = None;
    for &order in orders {
        let mut candidate = Vec::new();
        encode(values, order, &mut candidate);
        if best.as_ref().is_none_or(|b| candidate.len() < b.len()) {
            best = Some(candidate);
        }
    }
    out.extend_from_slice(&best.expect("at least one differencing order"));
}

/// How the values of a block with this span are packed: (kind, values per group, bits per
/// group). Plain bit packing is one value per group.
fn block_layout(span: u64) -> (u8, usize, u32) {
    let width = bit_width(span);
    match radix_group(span) {
        // Radix packing only when it is strictly smaller per value.
        Some((per_group, group_bits)) if group_bits < width * per_group as u32 => {
            (KIND_RADIX, per_group, group_bits)
        }
        _ => (width as u8, 1, width),
    }
}

/// For radix `span + 1`: the group size with the fewest bits per value among those whose
/// numbers stay below [`GROUP_LIMIT`], and the bits its packed number needs. `None` when
/// the radix is trivial or a power of two, or no group beats one value per group.
fn radix_group(span: u64) -> Option<(usize, u32)> {
    let radix = span.checked_add(1)?;
    if radix < 3 || radix.is_power_of_two() {
        return None;
    }
    let mut best: Option<(usize, u32)> = None;
    let mut product = radix;
    let mut per_group = 1usize;
    while product <= GROUP_LIMIT {
        let group_bits = bit_width(product - 1);
        // Fewer bits per value: group_bits / per_group < best_bits / best_per_group.
        if best.is_none_or(|(k, bits)| group_bits as usize * k < bits as usize * per_group) {
            best = Some((per_group, group_bits));
        }
        let Some(next) = product.checked_mul(radix) else {
            break;
        };
        product = next;
        per_group += 1;
    }
    best.filter(|&(per_group, _)| per_group >= 2)
}

/// Bits a partial radix group of `values` values needs.
fn partial_group_bits(radix: u64, values: usize) -> u32 {
    let product = (0..values).fold(1u128, |p, _| p * u128::from(radix));
    128 - (product - 1).leading_zeros()
}

/// Appends one block of residuals whose minimum and maximum are `min` and `max`.
fn encode_block(block: &[i64], min: i64, max: i64, out: &mut Vec<u8>) {
    debug_assert!(!block.is_empty());
    let span = max.wrapping_sub(min) as u64;
    put_signed_varint(out, min);
    let (kind, per_group, group_bits) = block_layout(span);
    out.push(kind);
    if kind == KIND_RADIX {
        put_varint(out, span);
    }
    if group_bits > SLACK_PACKER_BITS_MAX {
        // Plain widths of 57 to 64 bits: rare enough for the general bit writer.
        let mut writer = BitWriter::with_capacity(block.len() * group_bits as usize / 8 + 8);
        for &v in block {
            writer.write(v.wrapping_sub(min) as u64, group_bits);
        }
        writer.finish_into(out);
        return;
    }
    // The payload is packed straight into `out`, with slack for the packer's 8-byte stores.
    let payload_at = out.len();
    let payload_bits_max = block.len().div_ceil(per_group) * group_bits as usize;
    out.resize(payload_at + payload_bits_max.div_ceil(8) + 8, 0);
    let mut packer = SlackPacker::new(&mut out[payload_at..]);
    if kind == KIND_RADIX {
        let radix = span + 1;
        // The usual group sizes get a loop of their own, with the group's digits multiplied
        // by constant-length powers of the radix (independent products, unrolled) instead
        // of a Horner chain of runtime length per group.
        let tail = match per_group {
            2 => pack_radix_groups::<2>(block, min, radix, group_bits, &mut packer),
            3 => pack_radix_groups::<3>(block, min, radix, group_bits, &mut packer),
            4 => pack_radix_groups::<4>(block, min, radix, group_bits, &mut packer),
            _ => {
                let mut groups = block.chunks_exact(per_group);
                for group in groups.by_ref() {
                    packer.put(radix_number(group, min, radix), group_bits);
                }
                groups.remainder()
            }
        };
        if !tail.is_empty() {
            let bits = partial_group_bits(radix, tail.len());
            packer.put(radix_number(tail, min, radix), bits);
        }
    } else {
        for &v in block {
            packer.put(v.wrapping_sub(min) as u64, group_bits);
        }
    }
    let payload_len = packer.len();
    assert!(
        payload_len <= payload_bits_max.div_ceil(8),
        "block payload past its bound"
    );
    out.truncate(payload_at + payload_len);
}

/// The number whose base-`radix` digits, least significant first, are `group`'s values
/// minus `min` (Horner from the last value).
fn radix_number(group: &[i64], min: i64, radix: u64) -> u64 {
    group
        .iter()
        .rev()
        .fold(0u64, |acc, &v| acc * radix + v.wrapping_sub(min) as u64)
}

/// Packs the whole groups of `K` values of `block` as [`radix_number`] would, and returns
/// the partial group left over.
fn pack_radix_groups<'b, const K: usize>(
    block: &'b [i64],
    min: i64,
    radix: u64,
    group_bits: u32,
    packer: &mut SlackPacker<'_>,
) -> &'b [i64] {
    let mut powers = [1u64; K];
    for i in 1..K {
        powers[i] = powers[i - 1] * radix;
    }
    let mut groups = block.chunks_exact(K);
    for group in groups.by_ref() {
        // Every partial sum stays below radix^K <= 2^31: no overflow, and the same number
        // as Horner's.
        let number = group
            .iter()
            .zip(powers)
            .map(|(&v, power)| v.wrapping_sub(min) as u64 * power)
            .sum();
        packer.put(number, group_bits);
    }
    groups.remainder()
}

/// The widest value [`SlackPacker`] takes: with at most 7 bits pending, 56 more still fit
/// in its 64-bit accumulator.
const SLACK_PACKER_BITS_MAX: u32 = 56;

/// Packs values of at most [`SLACK_PACKER_BITS_MAX`] bits LSB-first (as [`BitWriter`]
/// does, padded with zero bits to a whole byte) into a byte slice that has 8 bytes of
/// slack past the packed bytes. Branch-free: every value stores the whole accumulator and
/// advances by the whole bytes it holds, so no unpredictable "is a word full" branch
/// (radix groups of 23 bits fill one every 2.8 values) stalls the packing loop.
struct SlackPacker<'a> {
    bytes: &'a mut [u8],
    /// Whole bytes written.
    position: usize,
    /// Pending bits, fewer than 8 between calls, already stored at `position`.
    accumulator: u64,
    filled_bits: u32,
}

impl<'a> SlackPacker<'a> {
    fn new(bytes: &'a mut [u8]) -> SlackPacker<'a> {
        SlackPacker {
            bytes,
            position: 0,
            accumulator: 0,
            filled_bits: 0,
        }
    }

    /// Appends the low `bits` bits of `value` (the rest must be zero).
    #[inline]
    fn put(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= SLACK_PACKER_BITS_MAX && value >> bits == 0);
        self.accumulator |= value << self.filled_bits;
        self.filled_bits += bits;
        self.bytes[self.position..self.position + 8]
            .copy_from_slice(&self.accumulator.to_le_bytes());
        let whole_bytes = self.filled_bits / 8;
        self.position += whole_bytes as usize;
        self.accumulator >>= whole_bytes * 8;
        self.filled_bits -= whole_bytes * 8;
    }

    /// Bytes the packed values take, the last one padded.
    fn len(&self) -> usize {
        self.position + self.filled_bits.div_ceil(8) as usize
    }
}

/// Decodes `count` values from the front of `reader`.
pub fn decode(reader: &mut ByteReader<'_>, count: usize) -> Result<Vec<i64>, CodecError> {
    let mut values = Vec::with_capacity(count);
    decode_runs(reader, count, |run| values.extend_from_slice(run))?;
    Ok(values)
}

/// Decodes `count` values from the front of `reader`, handing them to `sink` in order, in
/// runs of at most [`BLOCK_LEN`] values. The values are rebuilt block by block in a stack
/// buffer, so a caller that converts them (ALP's integers to floats) allocates nothing
/// besides its own output. On error, `sink` may have seen a prefix of the values.
pub fn decode_runs(
    reader: &mut ByteReader<'_>,
    count: usize,
    mut sink: impl FnMut(&[i64]),
) -> Result<(), CodecError> {
    let order = usize::from(reader.u8("integer order")?);
    if order > usize::from(ORDER_MAX) || order > count {
        return Err(CodecError::Invalid {
            what: "integer order",
        });
    }
    let mut seeds = [0i64; ORDER_MAX as usize];
    for seed in seeds.iter_mut().take(order) {
        *seed = reader.signed_varint("integer seed")?;
    }
    // The values the seeds stand for, and the running state differencing undoes from: the
    // last value and (order 2) the last first difference.
    let mut integrator = Integrator {
        order,
        last: seeds[0],
        delta: seeds[1],
    };
    let mut head = [0i64; ORDER_MAX as usize];
    if order >= 1 {
        head[0] = seeds[0];
    }
    if order == 2 {
        head[1] = seeds[0].wrapping_add(seeds[1]);
        integrator.last = head[1];
    }
    if order > 0 {
        sink(&head[..order]);
    }
    let residual_count = count - order;
    if residual_count == 0 {
        return Ok(());
    }
    let mut scratch = [0i64; BLOCK_LEN];
    match reader.u8("residual mode")? {
        RESIDUALS_CONSTANT => {
            let residual = reader.signed_varint("constant residual")?;
            let mut left = residual_count;
            while left > 0 {
                let run = &mut scratch[..left.min(BLOCK_LEN)];
                integrator.constant(residual, run);
                sink(run);
                left -= run.len();
            }
            Ok(())
        }
        RESIDUALS_BLOCKS => {
            let mut left = residual_count;
            while left > 0 {
                let run = &mut scratch[..left.min(BLOCK_LEN)];
                decode_block(reader, run)?;
                integrator.integrate(run);
                sink(run);
                left -= run.len();
            }
            Ok(())
        }
        tag => Err(CodecError::UnknownTag {
            what: "residual mode",
            tag,
        }),
    }
}

/// Undoes differencing of order 0, 1 or 2, run by run.
struct Integrator {
    order: usize,
    /// The last value produced.
    last: i64,
    /// Order 2: the last first difference.
    delta: i64,
}

impl Integrator {
    /// Turns residuals into values, in place.
    #[inline]
    fn integrate(&mut self, run: &mut [i64]) {
        match self.order {
            0 => {}
            1 => {
                let mut last = self.last;
                for slot in run.iter_mut() {
                    last = last.wrapping_add(*slot);
                    *slot = last;
                }
                self.last = last;
            }
            _ => {
                let (mut last, mut delta) = (self.last, self.delta);
                for slot in run.iter_mut() {
                    delta = delta.wrapping_add(*slot);
                    last = last.wrapping_add(delta);
                    *slot = last;
                }
                (self.last, self.delta) = (last, delta);
            }
        }
    }

    /// Fills `run` with the values that a run of residuals all equal to `residual` gives.
    #[inline]
    fn constant(&mut self, residual: i64, run: &mut [i64]) {
        match self.order {
            0 => run.fill(residual),
            // An arithmetic sequence (regular timestamps are order 2 with residual 0): each
            // value computed from its index, so the loop has no carried dependency.
            1 => {
                let start = self.last;
                for (i, slot) in run.iter_mut().enumerate() {
                    *slot = start.wrapping_add(residual.wrapping_mul(i as i64 + 1));
                }
                self.last = run[run.len() - 1];
            }
            _ if residual == 0 => {
                let (start, delta) = (self.last, self.delta);
                for (i, slot) in run.iter_mut().enumerate() {
                    *slot = start.wrapping_add(delta.wrapping_mul(i as i64 + 1));
                }
                self.last = run[run.len() - 1];
            }
            _ => {
                run.fill(residual);
                self.integrate(run);
            }
        }
    }
}

fn decode_block(reader: &mut ByteReader<'_>, block: &mut [i64]) -> Result<(), CodecError> {
    let min = reader.signed_varint("block minimum")?;
    let kind = reader.u8("block kind")?;
    if kind == KIND_RADIX {
        let span = reader.varint("block span")?;
        let (per_group, group_bits) = radix_group(span).ok_or(CodecError::Invalid {
            what: "radix block span",
        })?;
        let radix = span + 1;
        let full_groups = block.len() / per_group;
        let tail = block.len() % per_group;
        let tail_bits = if tail == 0 {
            0
        } else {
            partial_group_bits(radix, tail)
        };
        let payload_bits = full_groups as u64 * u64::from(group_bits) + u64::from(tail_bits);
        let payload = reader.take(payload_bits.div_ceil(8) as usize, "radix block payload")?;
        let digits = RadixDigits::new(radix);
        // Groups are read with unaligned 8-byte loads from a zero-padded copy, so no read
        // needs a bounds branch; a group of at most 31 bits lies within one load.
        let mut padded = [0u8; RADIX_PAYLOAD_BYTES_MAX + 8];
        padded[..payload.len()].copy_from_slice(payload);
        let group_at = |bit: usize, width: u32| -> u64 {
            let byte = bit / 8;
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&padded[byte..byte + 8]);
            (u64::from_le_bytes(bytes) >> (bit % 8)) & ((1u64 << width) - 1)
        };
        // A group's number must be below radix^len: anything above has a top digit that
        // does not fit, which the encoder never writes.
        let mut overflow = 0u64;
        let group_bits_usize = group_bits as usize;
        let mut groups = block.chunks_exact_mut(per_group);
        for (index, group) in groups.by_ref().enumerate() {
            let packed = group_at(index * group_bits_usize, group_bits);
            overflow |= digits.unpack(packed, min, group);
        }
        let tail_group = groups.into_remainder();
        if !tail_group.is_empty() {
            let packed = group_at(full_groups * group_bits_usize, tail_bits);
            overflow |= digits.unpack(packed, min, tail_group);
        }
        if overflow != 0 {
            return Err(CodecError::Invalid {
                what: "radix group out of range",
            });
        }
        check_padding(payload, payload_bits as usize)
    } else if kind <= 64 {
        let width = usize::from(kind);
        let payload_len = (block.len() * width).div_ceil(8);
        let payload = reader.take(payload_len, "bit-packed block")?;
        unpack(payload, width, min, block)
    } else {
        Err(CodecError::UnknownTag {
            what: "block kind",
            tag: kind,
        })
    }
}

/// Sets `block[i]` to `min` plus the i-th `width`-bit value of `payload`, which holds
/// exactly `block.len()` values, padded with zero bits to a whole byte.
fn unpack(payload: &[u8], width: usize, min: i64, block: &mut [i64]) -> Result<(), CodecError> {
    debug_assert_eq!(payload.len(), (block.len() * width).div_ceil(8));
    // Byte-aligned widths are plain little-endian lanes: loops the compiler vectorises.
    match width {
        0 => block.fill(min),
        8 => {
            for (slot, &byte) in block.iter_mut().zip(payload) {
                *slot = min.wrapping_add(i64::from(byte));
            }
        }
        16 => {
            for (slot, lane) in block.iter_mut().zip(payload.chunks_exact(2)) {
                *slot = min.wrapping_add(i64::from(u16::from_le_bytes([lane[0], lane[1]])));
            }
        }
        32 => {
            for (slot, lane) in block.iter_mut().zip(payload.chunks_exact(4)) {
                let value = u32::from_le_bytes([lane[0], lane[1], lane[2], lane[3]]);
                *slot = min.wrapping_add(i64::from(value));
            }
        }
        64 => {
            for (slot, lane) in block.iter_mut().zip(payload.chunks_exact(8)) {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(lane);
                *slot = min.wrapping_add(u64::from_le_bytes(bytes) as i64);
            }
        }
        // Any width up to 56 bits lies within one unaligned 8-byte load. The payload is
        // copied into a zero-padded buffer so every load is in bounds without a branch.
        1..=56 => {
            let mut padded = [0u8; BLOCK_LEN * 56 / 8 + 8];
            padded[..payload.len()].copy_from_slice(payload);
            let mask = (1u64 << width) - 1;
            for (i, slot) in block.iter_mut().enumerate() {
                let bit = i * width;
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&padded[bit / 8..bit / 8 + 8]);
                let value = (u64::from_le_bytes(bytes) >> (bit % 8)) & mask;
                *slot = min.wrapping_add(value as i64);
            }
        }
        _ => {
            let mut bits = BitReader::new(payload);
            for slot in block.iter_mut() {
                *slot = min.wrapping_add(bits.read(width as u32, "bit-packed value")? as i64);
            }
        }
    }
    check_padding(payload, block.len() * width)
}

/// Fails unless the bits of `payload` past its first `used_bits` (at most 7, up to the
/// byte boundary) are zero: the encoder pads with zeros, so anything else is corruption.
fn check_padding(payload: &[u8], used_bits: usize) -> Result<(), CodecError> {
    debug_assert_eq!(payload.len(), used_bits.div_ceil(8));
    let tail_bits = used_bits % 8;
    if tail_bits != 0 && payload[payload.len() - 1] >> tail_bits != 0 {
        return Err(CodecError::Invalid {
            what: "block padding",
        });
    }
    Ok(())
}

/// Splits radix-packed groups into their digits, least significant first.
///
/// A group's number is below 2^31 ([`GROUP_LIMIT`]), where division by the radix is one
/// 64-bit multiply and shift (the round-up method of Granlund and Montgomery: with
/// `shift = 31 + ceil(log2 radix)` and `magic = ceil(2^shift / radix)`, the error
/// `magic · radix − 2^shift < radix <= 2^(shift − 31)` keeps the quotient exact for every
/// numerator below 2^31, and the product stays below 2^64). A hardware division per value
/// would cost more than all the rest of decoding.
#[derive(Clone, Copy, Debug)]
struct RadixDigits {
    radix: u64,
    /// ceil(2^shift / radix).
    magic: u64,
    /// 31 + ceil(log2 radix).
    shift: u32,
}

impl RadixDigits {
    fn new(radix: u64) -> RadixDigits {
        assert!(
            (3..GROUP_LIMIT).contains(&radix),
            "radix {radix} outside 3..2^31"
        );
        let shift = 31 + bit_width(radix - 1);
        RadixDigits {
            radix,
            magic: (1u64 << shift).div_ceil(radix),
            shift,
        }
    }

    /// Writes `min` plus each digit of `packed` (below 2^31) into `group` (non-empty) and
    /// returns non-zero when the number was out of range (its top digit too large).
    #[inline]
    fn unpack(&self, mut packed: u64, min: i64, group: &mut [i64]) -> u64 {
        debug_assert!(packed < GROUP_LIMIT && !group.is_empty());
        let Some((top, low)) = group.split_last_mut() else {
            return packed;
        };
        for slot in low.iter_mut() {
            let quotient = (packed * self.magic) >> self.shift;
            *slot = min.wrapping_add((packed - quotient * self.radix) as i64);
            packed = quotient;
        }
        // What is left is the top digit, when the number is in range.
        *top = min.wrapping_add(packed as i64);
        u64::from(packed >= self.radix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The encoder as first written, the model [`encode`] must match byte for byte: the
    /// column copied and differenced in place, then one scan for a constant and one for
    /// each block's minimum and maximum.
    fn encode_model(values: &[i64], order: u8, out: &mut Vec<u8>) {
        let order = usize::from(order).min(values.len());
        let mut residuals = values.to_vec();
        out.push(order as u8);
        for level in 0..order {
            put_signed_varint(out, residuals[level]);
            for i in (level + 1..residuals.len()).rev() {
                residuals[i] = residuals[i].wrapping_sub(residuals[i - 1]);
            }
        }
        let residuals = &residuals[order..];
        if residuals.is_empty() {
            return;
        }
        if residuals.iter().all(|&r| r == residuals[0]) {
            out.push(RESIDUALS_CONSTANT);
            put_signed_varint(out, residuals[0]);
            return;
        }
        out.push(RESIDUALS_BLOCKS);
        for block in residuals.chunks(BLOCK_LEN) {
            encode_block_model(block, out);
        }
    }

    /// One block as first written: a bit writer of its own, and every radix group packed
    /// by Horner's rule.
    fn encode_block_model(block: &[i64], out: &mut Vec<u8>) {
        let min = *block.iter().min().unwrap();
        let max = *block.iter().max().unwrap();
        let span = max.wrapping_sub(min) as u64;
        put_signed_varint(out, min);
        let (kind, per_group, group_bits) = block_layout(span);
        out.push(kind);
        let mut writer = BitWriter::default();
        if kind == KIND_RADIX {
            put_varint(out, span);
            let radix = span + 1;
            for group in block.chunks(per_group) {
                let bits = if group.len() == per_group {
                    group_bits
                } else {
                    partial_group_bits(radix, group.len())
                };
                let packed = group
                    .iter()
                    .rev()
                    .fold(0u64, |acc, &v| acc * radix + v.wrapping_sub(min) as u64);
                writer.write(packed, bits);
            }
        } else {
            for &v in block {
                writer.write(v.wrapping_sub(min) as u64, u32::from(kind));
            }
        }
        writer.finish_into(out);
    }

    fn assert_matches_model(values: &[i64], order: u8) {
        let (mut fast, mut model) = (Vec::new(), Vec::new());
        encode(values, order, &mut fast);
        encode_model(values, order, &mut model);
        assert_eq!(fast, model, "order {order}, {} values", values.len());
    }

    #[test]
    fn encoding_matches_the_model() {
        // Constant residuals of every order, over several blocks and at block edges.
        for len in [0usize, 1, 2, 3, 255, 256, 257, 258, 1000] {
            for order in 0..=ORDER_MAX {
                let arithmetic: Vec<i64> = (0..len as i64).map(|i| 5 + 3 * i).collect();
                let squares: Vec<i64> = (0..len as i64).map(|i| i * i).collect();
                assert_matches_model(&vec![7; len], order);
                assert_matches_model(&arithmetic, order);
                assert_matches_model(&squares, order);
            }
        }
        // Radix blocks of every group size (spans 2..=40: groups of 19 down to 5; then
        // 4, 3 and 2 values), each with a partial group, and plain blocks of every width.
        for span in (2i64..=40).chain([200, 1200, 3_000_000]) {
            let values: Vec<i64> = (0..301i64)
                .map(|i| -17 + (i * 7919 + i * i) % (span + 1))
                .collect();
            assert_matches_model(&values, 0);
        }
        for width in 0..=64u32 {
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            let values: Vec<i64> = (0..301u64)
                .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & mask) as i64)
                .collect();
            assert_matches_model(&values, 0);
        }
        // Residuals constant in every block but one value.
        let mut almost: Vec<i64> = (0..600).map(|i| i * 1000).collect();
        almost[599] += 1;
        for order in 0..=ORDER_MAX {
            assert_matches_model(&almost, order);
            assert_matches_model(&[i64::MIN, i64::MAX, 0, -1, i64::MAX, i64::MIN], order);
        }
    }

    fn roundtrip(values: &[i64], order: u8) -> usize {
        let mut out = Vec::new();
        encode(values, order, &mut out);
        let mut reader = ByteReader::new(&out);
        let decoded = decode(&mut reader, values.len()).unwrap();
        reader.finish("end").unwrap();
        assert_eq!(decoded, values);
        out.len()
    }

    #[test]
    fn regular_timestamps_cost_a_few_bytes() {
        let values: Vec<i64> = (0..100_000).map(|r| 1_700_000_000_000 + r * 1000).collect();
        let bytes = roundtrip(&values, 2);
        assert!(bytes <= 16, "{bytes} bytes");
    }

    #[test]
    fn radix_packing_beats_bit_packing_for_a_span_of_200() {
        let (per_group, group_bits) = radix_group(200).unwrap();
        assert_eq!((per_group, group_bits), (3, 23));
        assert_eq!(block_layout(200).0, KIND_RADIX);
        assert_eq!(block_layout(255).0, 8);
    }

    #[test]
    fn radix_digits_match_division() {
        for radix in [3u64, 5, 10, 201, 1000, 46_339, 65_537, (1 << 31) - 1] {
            let digits = RadixDigits::new(radix);
            // Every numerator below 2^31 near multiples of the radix, and the extremes.
            let mut numerators = vec![0u64, 1, (1 << 31) - 1, (1 << 31) - 2];
            for q in [1u64, 2, 1000, ((1 << 31) - 1) / radix] {
                for n in [q * radix - 1, q * radix, q * radix + 1] {
                    if n < 1 << 31 {
                        numerators.push(n);
                    }
                }
            }
            for packed in numerators {
                let mut group = [0i64; 2];
                let overflow = digits.unpack(packed, 5, &mut group);
                assert_eq!(group[0] - 5, (packed % radix) as i64, "{packed} by {radix}");
                let in_range = packed / radix < radix;
                assert_eq!(overflow == 0, in_range, "{packed} by {radix}");
                if in_range {
                    assert_eq!(group[1] - 5, (packed / radix) as i64, "{packed} by {radix}");
                }
            }
        }
    }

    #[test]
    fn radix_blocks_of_every_shape_roundtrip() {
        // Spans whose radix packs several values a group (or, the last, none), with full
        // and partial last groups.
        for span in [2i64, 4, 200, 1200, 3_000_000] {
            for len in [1usize, 2, 7, 8, 9, 255, 256, 257, 600] {
                let values: Vec<i64> = (0..len as i64)
                    .map(|i| -17 + (i * 7919 + i * i) % (span + 1))
                    .collect();
                let mut out = Vec::new();
                encode(&values, 0, &mut out);
                let mut reader = ByteReader::new(&out);
                assert_eq!(
                    decode(&mut reader, len).unwrap(),
                    values,
                    "span {span}, {len}"
                );
                reader.finish("end").unwrap();
            }
            assert_eq!(
                block_layout(span as u64).0 == KIND_RADIX,
                span != 3_000_000,
                "span {span}"
            );
        }
    }

    #[test]
    fn every_width_roundtrips() {
        for width in 0..=64u32 {
            let max = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            for len in [1usize, 7, 8, 255, 256] {
                let values: Vec<i64> = (0..len as u64)
                    .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & max) as i64)
                    .collect();
                let mut out = Vec::new();
                encode(&values, 0, &mut out);
                let mut reader = ByteReader::new(&out);
                assert_eq!(decode(&mut reader, len).unwrap(), values, "width {width}");
            }
        }
    }

    #[test]
    fn nonzero_padding_is_rejected() {
        // Four 3-bit values leave 4 bits of padding in the second byte.
        let mut out = Vec::new();
        encode(&[0, 7, 0, 5], 0, &mut out);
        let last = out.len() - 1;
        out[last] |= 0x80;
        assert!(decode(&mut ByteReader::new(&out), 4).is_err());
    }

    #[test]
    fn extremes_roundtrip() {
        let values = [i64::MIN, i64::MAX, 0, -1, i64::MIN, i64::MAX, 1];
        for order in 0..=ORDER_MAX {
            roundtrip(&values, order);
            roundtrip(&values[..1], order);
            roundtrip(&[], order);
        }
    }

    proptest! {
        #[test]
        fn any_sequence_roundtrips(values in proptest::collection::vec(any::<i64>(), 0..700),
                                   order in 0..=ORDER_MAX) {
            roundtrip(&values, order);
        }

        #[test]
        fn small_spans_roundtrip(values in proptest::collection::vec(-300i64..300, 0..1200),
                                 order in 0..=ORDER_MAX) {
            roundtrip(&values, order);
        }

        #[test]
        fn any_sequence_matches_the_model(
            values in proptest::collection::vec(any::<i64>(), 0..700),
            order in 0..=ORDER_MAX,
        ) {
            assert_matches_model(&values, order);
        }

        #[test]
        fn small_steps_match_the_model(
            start in any::<i64>(),
            steps in proptest::collection::vec(-300i64..300, 0..1200),
            order in 0..=ORDER_MAX,
        ) {
            let values: Vec<i64> = steps
                .iter()
                .scan(start, |v, &s| {
                    *v = v.wrapping_add(s);
                    Some(*v)
                })
                .collect();
            assert_matches_model(&values, order);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                    count in 0usize..600) {
            let mut reader = ByteReader::new(&bytes);
            let _ = decode(&mut reader, count);
        }
    }
}
