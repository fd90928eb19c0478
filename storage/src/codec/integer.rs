//! Integer sequences, TS_2DIFF-style: differencing of order 0, 1 or 2, then the residuals
//! either as one constant or in frame-of-reference blocks.
//!
//! ```text
//! [order u8] [order seeds: zigzag varints] [residual stream, count - order residuals]
//! residual stream: [RESIDUALS_CONSTANT][zigzag varint]
//!                | [RESIDUALS_FRAMED] block*      (BLOCK_LEN residuals per block, last shorter)
//!                | [RESIDUALS_BLOCKS] old block*  (read only: written before sealed format 3)
//! block    : [kind u8] [kind != KIND_REPEAT: frame] [payload, whole bytes]
//! old block: [min: zigzag varint] [kind u8] [kind == KIND_RADIX: span varint] [payload]
//! frame    : [min: zigzag varint] [kind == KIND_RADIX: span varint]
//!   KIND_REPEAT: the previous block's kind, min and span (never the first block). Each
//!                block takes the cheapest of that, the column's frame (the bounds of all
//!                its residuals) and its own: a random walk's blocks all share the
//!                column's, and their headers shrink from 4-5 bytes to 1
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
use super::bits::{
    BitReader, BitWriter, ByteReader, bit_width, put_signed_varint, put_varint, varint_len, zigzag,
};

/// Residuals per frame-of-reference block: large enough that the 3–5 header bytes cost
/// under 0.02 bytes per value, small enough that one outlier widens few values.
const BLOCK_LEN: usize = 256;

/// The highest differencing order (delta of delta).
pub const ORDER_MAX: u8 = 2;

const RESIDUALS_CONSTANT: u8 = 0;
/// Blocks with a frame each (read only).
const RESIDUALS_BLOCKS: u8 = 1;
/// Blocks that may repeat the previous block's frame.
const RESIDUALS_FRAMED: u8 = 2;

/// Block kind: radix packing (kinds 0..=64 are plain bit widths).
const KIND_RADIX: u8 = 0x80;
/// Block kind: the previous block's frame (kind, minimum and span) again.
const KIND_REPEAT: u8 = 0x81;

/// A radix group's number stays below this, so it takes at most 31 bits: one unaligned
/// 8-byte load reads any group, and dividing it by the radix is a multiply and a shift.
const GROUP_LIMIT: u64 = 1 << 31;

/// The most payload bytes a radix block has: at least two values share each group of at
/// most 31 bits.
const RADIX_PAYLOAD_BYTES_MAX: usize = BLOCK_LEN / 2 * 4;

/// Appends the encoding of `values` with differencing order `order` (0..=ORDER_MAX).
///
/// The residuals are computed block by block into one buffer, with each block's bounds
/// (a constant is written then and there), and packed from it. Each block takes the
/// cheapest frame of three: the previous block's (repeated in one byte), the whole
/// column's, or its own.
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
    RESIDUALS.with_borrow_mut(|(residuals, bounds)| {
        encode_residuals(values, order, residuals, bounds, out);
        if residuals.capacity() > RESIDUALS_KEPT_MAX {
            *residuals = Vec::new();
            *bounds = Vec::new();
        }
    });
}

/// The most residuals [`RESIDUALS`] keeps between calls (512 KiB): a column longer than
/// this is rare (sealed chunks hold far fewer points) and gets a buffer of its own.
const RESIDUALS_KEPT_MAX: usize = 1 << 16;

/// A column's residuals and each block's (min, max) of them.
type Residuals = (Vec<i64>, Vec<(i64, i64)>);

thread_local! {
    /// The residuals and block bounds of [`encode`], kept by each thread between calls:
    /// a flush thread encodes thousands of chunks in a row, and a fresh zeroed buffer for
    /// each one's residuals was about 4 % of its samples.
    static RESIDUALS: std::cell::RefCell<Residuals> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`encode`] past the seeds: the residuals of `values[order..]` (computed into
/// `residuals`, whose earlier contents are overwritten, never read) and their blocks.
fn encode_residuals(
    values: &[i64],
    order: usize,
    residuals: &mut Vec<i64>,
    bounds: &mut Vec<(i64, i64)>,
    out: &mut Vec<u8>,
) {
    // The residuals and their bounds in one pass: a constant is written at once, and the
    // column's own frame is a candidate for every block. Every slot of `residuals[..count]`
    // is written before it is read, so only growth needs zeros.
    let count = values.len() - order;
    if residuals.len() < count {
        residuals.resize(count, 0);
    }
    let residuals = &mut residuals[..count];
    bounds.clear();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for (index, block) in residuals.chunks_mut(BLOCK_LEN).enumerate() {
        let (block_min, block_max) =
            fill_residuals(values, order, order + index * BLOCK_LEN, block);
        bounds.push((block_min, block_max));
        (min, max) = (min.min(block_min), max.max(block_max));
    }
    if min == max {
        out.push(RESIDUALS_CONSTANT);
        put_signed_varint(out, min);
        return;
    }
    out.push(RESIDUALS_FRAMED);
    let column = Frame::new(min, max.wrapping_sub(min) as u64);
    let mut previous: Option<Frame> = None;
    for (block, &(min, max)) in residuals.chunks(BLOCK_LEN).zip(bounds.iter()) {
        // The cheapest of: the previous frame again, the column's frame, the block's own;
        // on a tie the earlier, so that later blocks can repeat a frame wide enough.
        let own = Frame::new(min, max.wrapping_sub(min) as u64);
        let stated = |frame: &Frame| frame.header_bytes() + frame.payload_bytes(block.len());
        let repeat = previous
            .filter(|frame| frame.holds(min, max))
            .map(|frame| (1 + frame.payload_bytes(block.len()), frame));
        let explicit = if stated(&column) <= stated(&own) {
            column
        } else {
            own
        };
        let frame = match repeat {
            Some((bytes, frame)) if bytes <= stated(&explicit) => {
                out.push(KIND_REPEAT);
                frame
            }
            _ => {
                explicit.put_header(out);
                explicit
            }
        };
        encode_payload(block, &frame, out);
        previous = Some(frame);
    }
}

/// Sets `block` to the residuals of order `order` from index `start` (at least `order`) and
/// returns their (min, max): the values themselves, their first or their second
/// differences, in wrapping arithmetic (equal to differencing the column `order` times in
/// place). The order is matched once, outside the loops. Compiled for AVX2 and SSE4.2
/// too, chosen at run time (see the [module above](super)'s "Wider vectors").
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
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

/// How a block's residuals are packed: their frame of reference (minimum and span) and
/// the layout that span takes.
#[derive(Clone, Copy, Debug)]
struct Frame {
    min: i64,
    span: u64,
    kind: u8,
    per_group: usize,
    group_bits: u32,
}

impl Frame {
    fn new(min: i64, span: u64) -> Frame {
        let (kind, per_group, group_bits) = block_layout(span);
        Frame {
            min,
            span,
            kind,
            per_group,
            group_bits,
        }
    }

    /// Whether residuals from `min` to `max` fit the frame.
    fn holds(&self, min: i64, max: i64) -> bool {
        min >= self.min && max.wrapping_sub(self.min) as u64 <= self.span
    }

    /// Bytes of the block header that states this frame: kind, minimum, (radix) span.
    fn header_bytes(&self) -> usize {
        let span = if self.kind == KIND_RADIX {
            varint_len(self.span)
        } else {
            0
        };
        1 + varint_len(zigzag(self.min)) + span
    }

    fn put_header(&self, out: &mut Vec<u8>) {
        out.push(self.kind);
        put_signed_varint(out, self.min);
        if self.kind == KIND_RADIX {
            put_varint(out, self.span);
        }
    }

    /// Bytes of the payload of `len` residuals packed in this frame.
    fn payload_bytes(&self, len: usize) -> usize {
        let tail = len % self.per_group;
        let tail_bits = if tail == 0 {
            0
        } else {
            partial_group_bits(self.span + 1, tail) as usize
        };
        ((len / self.per_group) * self.group_bits as usize + tail_bits).div_ceil(8)
    }
}

/// Appends the payload of one block of residuals packed in `frame` (which holds them).
fn encode_payload(block: &[i64], frame: &Frame, out: &mut Vec<u8>) {
    debug_assert!(!block.is_empty());
    let Frame {
        min,
        span,
        kind,
        per_group,
        group_bits,
    } = *frame;
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
        mode @ (RESIDUALS_FRAMED | RESIDUALS_BLOCKS) => {
            let mut left = residual_count;
            let mut previous: Option<(i64, u8, u64)> = None;
            while left > 0 {
                let run = &mut scratch[..left.min(BLOCK_LEN)];
                let (min, kind, span) = if mode == RESIDUALS_FRAMED {
                    match reader.u8("block kind")? {
                        KIND_REPEAT => previous.ok_or(CodecError::Invalid {
                            what: "a repeated block frame with none before",
                        })?,
                        kind => read_frame(reader, kind)?,
                    }
                } else {
                    let min = reader.signed_varint("block minimum")?;
                    let kind = reader.u8("block kind")?;
                    let (_, kind, span) = read_frame_span(reader, min, kind)?;
                    (min, kind, span)
                };
                previous = Some((min, kind, span));
                decode_payload(reader, run, min, kind, span)?;
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

/// The rest of a frame whose kind byte was `kind`: (minimum, kind, span).
fn read_frame(reader: &mut ByteReader<'_>, kind: u8) -> Result<(i64, u8, u64), CodecError> {
    let min = reader.signed_varint("block minimum")?;
    read_frame_span(reader, min, kind)
}

/// A radix frame's span (0 for the other kinds).
fn read_frame_span(
    reader: &mut ByteReader<'_>,
    min: i64,
    kind: u8,
) -> Result<(i64, u8, u64), CodecError> {
    let span = if kind == KIND_RADIX {
        reader.varint("block span")?
    } else {
        0
    };
    Ok((min, kind, span))
}

/// Decodes one block's payload, packed in the frame (`min`, `kind`, `span`).
fn decode_payload(
    reader: &mut ByteReader<'_>,
    block: &mut [i64],
    min: i64,
    kind: u8,
    span: u64,
) -> Result<(), CodecError> {
    if kind == KIND_RADIX {
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

    /// The residuals' buffer a thread keeps between calls still holds an earlier, longer
    /// column's residuals past a new column's end: they are never read, so a column
    /// encodes the same whatever the thread encoded before; one longer than the kept bound
    /// leaves no buffer that large behind.
    #[test]
    fn encoding_does_not_depend_on_the_columns_encoded_before() {
        let long: Vec<i64> = (0..5_000).map(|i| i * i % 977).collect();
        let short: Vec<i64> = (0..300).map(|i| (i * 7_919) % 61 - 30).collect();
        let huge: Vec<i64> = (0..RESIDUALS_KEPT_MAX as i64 + 10).map(|i| i / 3).collect();
        let on_a_fresh_thread = |values: &[i64], order: u8| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let mut out = Vec::new();
                        encode(values, order, &mut out);
                        out
                    })
                    .join()
                    .expect("encoding thread")
            })
        };
        for order in 0..=ORDER_MAX {
            let mut out = Vec::new();
            encode(&long, order, &mut out);
            out.clear();
            encode(&short, order, &mut out);
            assert_eq!(out, on_a_fresh_thread(&short, order), "order {order}");
            out.clear();
            encode(&huge, order, &mut out);
            assert_eq!(out, on_a_fresh_thread(&huge, order), "order {order}");
            RESIDUALS.with_borrow(|(residuals, _)| {
                assert!(residuals.capacity() <= RESIDUALS_KEPT_MAX);
            });
        }
    }

    /// The encoder as first written, the model [`encode`] must match byte for byte: the
    /// column copied and differenced in place, then one scan for a constant and one for
    /// each block's minimum and maximum; each block encoded with the previous frame (when
    /// its residuals fit), the column's and its own, the shortest kept (the earlier of
    /// those on a tie). `legacy`: the blocks of [`RESIDUALS_BLOCKS`], every block with
    /// a frame of its own, as builds before sealed format 3 wrote them.
    fn encode_model(values: &[i64], order: u8, legacy: bool, out: &mut Vec<u8>) {
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
        out.push(if legacy {
            RESIDUALS_BLOCKS
        } else {
            RESIDUALS_FRAMED
        });
        let mut previous: Option<(i64, u64)> = None;
        let column_min = *residuals.iter().min().unwrap();
        let column_span = residuals.iter().max().unwrap().wrapping_sub(column_min) as u64;
        for block in residuals.chunks(BLOCK_LEN) {
            let min = *block.iter().min().unwrap();
            let max = *block.iter().max().unwrap();
            let stated = |min: i64, span: u64| {
                let mut bytes = Vec::new();
                if legacy {
                    put_signed_varint(&mut bytes, min);
                    bytes.push(block_layout(span).0);
                } else {
                    bytes.push(block_layout(span).0);
                    put_signed_varint(&mut bytes, min);
                }
                if block_layout(span).0 == KIND_RADIX {
                    put_varint(&mut bytes, span);
                }
                encode_payload_model(block, min, span, &mut bytes);
                bytes
            };
            let mut frame = (min, max.wrapping_sub(min) as u64);
            let mut own = stated(frame.0, frame.1);
            if !legacy {
                let column = stated(column_min, column_span);
                if column.len() <= own.len() {
                    (own, frame) = (column, (column_min, column_span));
                }
            }
            let repeated = previous
                .filter(|&(frame_min, frame_span)| {
                    !legacy
                        && block.iter().all(|&v| {
                            v >= frame_min && v.wrapping_sub(frame_min) as u64 <= frame_span
                        })
                })
                .map(|(frame_min, frame_span)| {
                    let mut repeated = vec![KIND_REPEAT];
                    encode_payload_model(block, frame_min, frame_span, &mut repeated);
                    repeated
                });
            match repeated {
                Some(repeated) if repeated.len() <= own.len() => out.extend_from_slice(&repeated),
                _ => {
                    out.extend_from_slice(&own);
                    previous = Some(frame);
                }
            }
        }
    }

    /// One block's payload as first written, in the frame `min`, `span`: a bit writer of
    /// its own, and every radix group packed by Horner's rule.
    fn encode_payload_model(block: &[i64], min: i64, span: u64, out: &mut Vec<u8>) {
        let (kind, per_group, group_bits) = block_layout(span);
        let mut writer = BitWriter::default();
        if kind == KIND_RADIX {
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
        encode_model(values, order, false, &mut model);
        assert_eq!(fast, model, "order {order}, {} values", values.len());
        // Both what is written now and the older blocks, every one with its own frame,
        // decode to the values.
        let mut legacy = Vec::new();
        encode_model(values, order, true, &mut legacy);
        for bytes in [&fast, &legacy] {
            let mut reader = ByteReader::new(bytes);
            assert_eq!(decode(&mut reader, values.len()).unwrap(), values);
            assert!(reader.finish("trailing bytes").is_ok());
        }
    }

    /// The standard workload's random walk (steps of -100..=100): the first block states
    /// the column's frame (min -100, span 200) and the three after it repeat it, one byte
    /// each instead of five.
    #[test]
    fn a_random_walks_blocks_share_a_frame() {
        let values = crate::sealed::workload::hundredths(0, 0, 1000);
        let residuals: Vec<i64> = values.windows(2).map(|w| w[1] - w[0]).collect();
        let first = &residuals[..BLOCK_LEN];
        assert!(
            !(first.contains(&-100) && first.contains(&100)),
            "the first block alone spans the range: a weaker test"
        );
        let (mut now, mut legacy) = (Vec::new(), Vec::new());
        encode(&values, 1, &mut now);
        encode_model(&values, 1, true, &mut legacy);
        assert!(
            now.len() + 3 * 4 <= legacy.len(),
            "{} bytes now, {} before",
            now.len(),
            legacy.len()
        );
        let mut reader = ByteReader::new(&now);
        assert_eq!(decode(&mut reader, values.len()).unwrap(), values);
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
