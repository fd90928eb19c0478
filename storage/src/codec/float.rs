//! FLOAT and DOUBLE columns: ALP-style decimal coding, Gorilla XOR coding, or plain.
//!
//! ```text
//! [FLOAT_ALP]     [exponent u8] [exception count varint] (index gap varint, raw bits LE)*
//!                 [integers: integer::encode, order 1]
//! [FLOAT_GORILLA] [bit stream: first value raw, then Gorilla XOR records]
//! [FLOAT_PLAIN]   [raw bits LE]*
//! ```
//!
//! ALP: most sensor values are decimals with a few fractional digits. For the smallest
//! exponent `e` under which `round(v · 10^e) / 10^e` gives back `v` bit for bit, the column
//! becomes integers, which the delta + frame-of-reference integer codec packs near their
//! entropy (a ±1.00 random walk in hundredths: 7.75 bits a point). Values that do not
//! round-trip (NaN, infinities, -0.0, non-decimals) are stored raw as exceptions; when too
//! many do, the column falls back to Gorilla, and to plain when even that does not pay.
//! Decoding is one exact division per value, so every value, NaN payloads included, comes
//! back with its exact bits.

use super::CodecError;
use super::bits::{BitReader, BitWriter, ByteReader, put_varint};
use super::integer;

pub const FLOAT_PLAIN: u8 = 0;
pub const FLOAT_ALP: u8 = 1;
pub const FLOAT_GORILLA: u8 = 2;

/// The largest decimal exponent tried: 10^18 is exact in an f64, and values with more
/// fractional digits than that are not decimals a sensor produces.
pub const EXPONENT_MAX: usize = 18;

/// Exact powers of ten, 10^0 ..= 10^EXPONENT_MAX.
pub const POWERS_OF_TEN: [f64; EXPONENT_MAX + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// Scaled values at or beyond this magnitude are exceptions: below it, the add-and-subtract
/// rounding trick is exact and the integer converts to f64 without loss.
pub const SCALED_ABS_LIMIT: f64 = (1u64 << 51) as f64;

/// Adding then subtracting 2^52 + 2^51 rounds an f64 of magnitude below 2^51 to an integer
/// (ties to even) without a libm call. Which way ties go does not matter: the encoder
/// verifies every value.
const ROUNDING_MAGIC: f64 = 6_755_399_441_055_744.0;

/// At most one value in this many may be an ALP exception; each costs ~10 bytes, so past
/// this Gorilla usually wins.
const EXCEPTION_RATIO_DIVISOR: usize = 8;

/// Values sampled to choose the exponent, so the choice costs O(1) per column.
const EXPONENT_SAMPLE_VALUES: usize = 32;

/// f32 and f64 seen through their raw bits.
pub trait Float: Copy {
    /// Bits of the raw representation.
    const BITS: u32;
    fn to_raw(self) -> u64;
    fn from_raw(raw: u64) -> Self;
    fn to_f64(self) -> f64;
    /// `n / power`, rounded to this type: the value ALP decodes integer `n` to at the
    /// exponent whose power of ten is `power` (looked up once per column).
    #[inline]
    fn from_scaled(n: i64, power: f64) -> Self {
        Self::from_f64(n as f64 / power)
    }
    /// `value` rounded to this type.
    fn from_f64(value: f64) -> Self;
}

impl Float for f64 {
    const BITS: u32 = 64;
    fn to_raw(self) -> u64 {
        self.to_bits()
    }
    fn from_raw(raw: u64) -> Self {
        f64::from_bits(raw)
    }
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_f64(value: f64) -> Self {
        value
    }
}

impl Float for f32 {
    const BITS: u32 = 32;
    fn to_raw(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn from_raw(raw: u64) -> Self {
        f32::from_bits(raw as u32)
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_f64(value: f64) -> Self {
        value as f32
    }
}

/// Appends the best encoding of `values`.
pub fn encode<F: Float>(values: &[F], out: &mut Vec<u8>) {
    if encode_alp(values, out) {
        return;
    }
    let start = out.len();
    encode_gorilla(values, out);
    let plain_len = 1 + values.len() * (F::BITS as usize / 8);
    if out.len() - start > plain_len {
        out.truncate(start);
        encode_plain(values, out);
    }
}

/// `value` times `power` rounded to an integer, and whether dividing that integer by
/// `power` gives back `value` bit for bit (the integer is meaningless when it does not).
/// Branch-free, so a loop over a column vectorises.
#[inline]
pub(crate) fn to_decimal_unchecked<F: Float>(value: F, power: f64) -> (i64, bool) {
    let scaled = value.to_f64() * power;
    // NaN and infinities are exceptions: NaN compares false here.
    let in_range = scaled.abs() < SCALED_ABS_LIMIT;
    // Below 2^51 in magnitude, `scaled + ROUNDING_MAGIC` lies in [2^52, 2^53), where the
    // spacing of f64s is 1: it is the rounded integer plus the magic, exactly, and its bits
    // minus the magic's bits are that integer (no float-to-integer conversion per value).
    let shifted = scaled + ROUNDING_MAGIC;
    let rounded = shifted - ROUNDING_MAGIC;
    let n = (shifted.to_bits() as i64).wrapping_sub(ROUNDING_MAGIC.to_bits() as i64);
    // `rounded` is `n as f64`, so this is `F::from_scaled(n, power)`, what decoding gives.
    let exact = F::from_f64(rounded / power).to_raw() == value.to_raw();
    (n, in_range & exact)
}

/// Sets `integers[i]` to `values[i]` times `power` rounded (meaningless where that does not
/// round-trip) and returns how many values do not round-trip. A plain loop over two slices
/// with a count: it vectorises (two values a step on x86-64's baseline SSE2, four with
/// AVX2: compiled for both, chosen at run time, see [`super`]'s "Wider vectors").
#[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
fn to_decimals<F: Float>(values: &[F], power: f64, integers: &mut [i64]) -> usize {
    let mut misses = 0usize;
    for (slot, &value) in integers.iter_mut().zip(values) {
        let (n, exact) = to_decimal_unchecked(value, power);
        *slot = n;
        misses += usize::from(!exact);
    }
    misses
}

/// The smallest exponent with the fewest exceptions on a sample of `values`.
fn choose_exponent<F: Float>(values: &[F]) -> usize {
    let step = (values.len() / EXPONENT_SAMPLE_VALUES).max(1);
    let mut best = (usize::MAX, 0);
    for (exponent, &power) in POWERS_OF_TEN.iter().enumerate() {
        let misses = values
            .iter()
            .step_by(step)
            .filter(|&&v| !to_decimal_unchecked(v, power).1)
            .count();
        if misses < best.0 {
            best = (misses, exponent);
            if misses == 0 {
                break;
            }
        }
    }
    best.1
}

/// Appends the ALP encoding and returns true, or appends nothing and returns false when too
/// many values are exceptions.
///
/// The hot loop converts every value unconditionally and only counts the misses; the rare
/// columns with exceptions take a second pass that gives each exception's slot the
/// previous integer (so it costs a zero delta) and writes the exceptions.
fn encode_alp<F: Float>(values: &[F], out: &mut Vec<u8>) -> bool {
    let exponent = choose_exponent(values);
    let power = POWERS_OF_TEN[exponent];
    let mut integers = vec![0i64; values.len()];
    let misses = to_decimals(values, power, &mut integers);
    if misses > values.len() / EXCEPTION_RATIO_DIVISOR {
        return false;
    }
    out.push(FLOAT_ALP);
    out.push(exponent as u8);
    put_varint(out, misses as u64);
    if misses > 0 {
        let mut previous = 0i64;
        let mut previous_index = 0;
        for (index, &value) in values.iter().enumerate() {
            if to_decimal_unchecked(value, power).1 {
                previous = integers[index];
                continue;
            }
            integers[index] = previous;
            put_varint(out, (index - previous_index) as u64);
            previous_index = index;
            let raw = value.to_raw().to_le_bytes();
            out.extend_from_slice(&raw[..F::BITS as usize / 8]);
        }
    }
    integer::encode(&integers, 1, out);
    true
}

/// Appends the ALP encoding of values that are `integers[i] / 10^exponent` bit for bit
/// (the memtable keeps DOUBLE columns as such digits: `memtable::Column::Decimal`), without
/// choosing an exponent and converting every value again as [`encode`] does. The exponent
/// is first lowered while every integer is a multiple of ten (`d / 10^e` and
/// `(d / 10) / 10^(e - 1)` are the correctly rounded quotient of one rational, the same
/// double), so the column is written at the smallest exponent that keeps all of it, with no
/// exceptions: the encoding [`encode`] writes whenever its sample finds that exponent, and
/// otherwise one at least as exact (its sample may pick a smaller exponent and store the
/// values it misses raw). `integers` is scratch: divided in place.
pub(crate) fn encode_decimals(mut exponent: usize, integers: &mut [i64], out: &mut Vec<u8>) {
    assert!(exponent <= EXPONENT_MAX, "exponent {exponent} out of range");
    while exponent > 0 && integers.iter().all(|&n| n % 10 == 0) {
        integers.iter_mut().for_each(|n| *n /= 10);
        exponent -= 1;
    }
    out.push(FLOAT_ALP);
    out.push(exponent as u8);
    put_varint(out, 0);
    integer::encode(integers, 1, out);
}

fn encode_plain<F: Float>(values: &[F], out: &mut Vec<u8>) {
    out.push(FLOAT_PLAIN);
    for &value in values {
        out.extend_from_slice(&value.to_raw().to_le_bytes()[..F::BITS as usize / 8]);
    }
}

/// Gorilla (Pelkonen et al., VLDB 2015) XOR coding: a repeated value costs one bit; a value
/// whose XOR with its predecessor fits the previous window of meaningful bits costs two bits
/// plus that window.
fn encode_gorilla<F: Float>(values: &[F], out: &mut Vec<u8>) {
    out.push(FLOAT_GORILLA);
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    let mut writer = BitWriter::with_capacity(values.len() * F::BITS as usize / 8);
    let mut previous = first.to_raw();
    writer.write(previous, F::BITS);
    // (leading, trailing) zeros of the last window written.
    let mut window: Option<(u32, u32)> = None;
    for value in rest {
        let raw = value.to_raw();
        let xor = raw ^ previous;
        previous = raw;
        if xor == 0 {
            writer.write_bit(false);
            continue;
        }
        writer.write_bit(true);
        let leading = (xor.leading_zeros() - (64 - F::BITS)).min(31);
        let trailing = xor.trailing_zeros();
        match window {
            Some((w_leading, w_trailing)) if leading >= w_leading && trailing >= w_trailing => {
                writer.write_bit(false);
                writer.write(xor >> w_trailing, F::BITS - w_leading - w_trailing);
            }
            _ => {
                writer.write_bit(true);
                let meaningful = F::BITS - leading - trailing;
                writer.write(u64::from(leading), 5);
                // 64 meaningful bits are written as 0: six bits hold 0..=63.
                writer.write(u64::from(meaningful & 63), 6);
                writer.write(xor >> trailing, meaningful);
                window = Some((leading, trailing));
            }
        }
    }
    writer.finish_into(out);
}

/// Decodes `count` values; `bytes` must be exactly one encoded column.
pub fn decode<F: Float>(bytes: &[u8], count: usize) -> Result<Vec<F>, CodecError> {
    let mut reader = ByteReader::new(bytes);
    let values = match reader.u8("float encoding")? {
        FLOAT_PLAIN => decode_plain(&mut reader, count)?,
        FLOAT_ALP => decode_alp(&mut reader, count)?,
        FLOAT_GORILLA => {
            let rest = reader.take(reader.remaining(), "gorilla stream")?;
            decode_gorilla(rest, count)?
        }
        tag => {
            return Err(CodecError::UnknownTag {
                what: "float encoding",
                tag,
            });
        }
    };
    reader.finish("float column trailing bytes")?;
    Ok(values)
}

fn read_raw<F: Float>(reader: &mut ByteReader<'_>, what: &'static str) -> Result<F, CodecError> {
    Ok(if F::BITS == 64 {
        F::from_raw(reader.u64_le(what)?)
    } else {
        F::from_raw(u64::from(reader.u32_le(what)?))
    })
}

fn decode_plain<F: Float>(reader: &mut ByteReader<'_>, count: usize) -> Result<Vec<F>, CodecError> {
    let width = F::BITS as usize / 8;
    if reader.remaining() != count.saturating_mul(width) {
        return Err(CodecError::Truncated {
            what: "plain floats",
        });
    }
    (0..count)
        .map(|_| read_raw(reader, "plain float"))
        .collect()
}

fn decode_alp<F: Float>(reader: &mut ByteReader<'_>, count: usize) -> Result<Vec<F>, CodecError> {
    let exponent = usize::from(reader.u8("alp exponent")?);
    if exponent > EXPONENT_MAX {
        return Err(CodecError::Invalid {
            what: "alp exponent",
        });
    }
    let exception_count = reader.length(count, "alp exception count")?;
    let mut exceptions = Vec::with_capacity(exception_count);
    let mut index = 0usize;
    for i in 0..exception_count {
        let gap = reader.length(count, "alp exception index")?;
        if i > 0 && gap == 0 {
            return Err(CodecError::Invalid {
                what: "alp exception index",
            });
        }
        index += gap;
        if index >= count {
            return Err(CodecError::Invalid {
                what: "alp exception index",
            });
        }
        exceptions.push((index, read_raw::<F>(reader, "alp exception")?));
    }
    // The integers are converted as each block of them is rebuilt: no intermediate column.
    let power = POWERS_OF_TEN[exponent];
    let mut values: Vec<F> = Vec::with_capacity(count);
    integer::decode_runs(reader, count, |run| {
        values.extend(run.iter().map(|&n| F::from_scaled(n, power)));
    })?;
    for (index, value) in exceptions {
        values[index] = value;
    }
    Ok(values)
}

fn decode_gorilla<F: Float>(bytes: &[u8], count: usize) -> Result<Vec<F>, CodecError> {
    let mut reader = BitReader::new(bytes);
    let mut values = Vec::with_capacity(count.min(bytes.len() * 8));
    if count == 0 {
        reader.finish("gorilla padding")?;
        return Ok(values);
    }
    let mut previous = reader.read(F::BITS, "gorilla first value")?;
    values.push(F::from_raw(previous));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..count {
        if reader.read_bit("gorilla control")? {
            let (leading, meaningful) = if reader.read_bit("gorilla control")? {
                let leading = reader.read(5, "gorilla leading zeros")? as u32;
                let meaningful = match reader.read(6, "gorilla width")? as u32 {
                    0 => 64,
                    m => m,
                };
                if leading + meaningful > F::BITS {
                    return Err(CodecError::Invalid {
                        what: "gorilla window",
                    });
                }
                window = Some((leading, F::BITS - leading - meaningful));
                (leading, meaningful)
            } else {
                let (leading, trailing) = window.ok_or(CodecError::Invalid {
                    what: "gorilla window reused before set",
                })?;
                (leading, F::BITS - leading - trailing)
            };
            let trailing = F::BITS - leading - meaningful;
            let bits = reader.read(meaningful, "gorilla value")?;
            // A 64-bit window has no trailing zeros; shifting by 64 would overflow.
            previous ^= if trailing == 64 { 0 } else { bits << trailing };
        }
        values.push(F::from_raw(previous));
    }
    reader.finish("gorilla padding")?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ALP as first written, the model [`encode_alp`] must match byte for byte: per value
    /// a checked conversion (`as i64`, then [`Float::from_scaled`] to verify) and a branch.
    fn encode_alp_model<F: Float>(values: &[F], out: &mut Vec<u8>) -> bool {
        fn to_decimal<F: Float>(value: F, exponent: usize) -> Option<i64> {
            let scaled = value.to_f64() * POWERS_OF_TEN[exponent];
            // NaN and infinities are exceptions: NaN compares false here.
            let in_range = scaled.abs() < SCALED_ABS_LIMIT;
            if !in_range {
                return None;
            }
            let n = ((scaled + ROUNDING_MAGIC) - ROUNDING_MAGIC) as i64;
            (F::from_scaled(n, POWERS_OF_TEN[exponent]).to_raw() == value.to_raw()).then_some(n)
        }
        let step = (values.len() / EXPONENT_SAMPLE_VALUES).max(1);
        let sample: Vec<F> = values.iter().step_by(step).copied().collect();
        let mut best = (usize::MAX, 0);
        for exponent in 0..=EXPONENT_MAX {
            let misses = sample
                .iter()
                .filter(|&&v| to_decimal(v, exponent).is_none())
                .count();
            if misses < best.0 {
                best = (misses, exponent);
                if misses == 0 {
                    break;
                }
            }
        }
        let exponent = best.1;
        let mut integers = Vec::new();
        let mut exceptions = Vec::new();
        let exceptions_max = values.len() / EXCEPTION_RATIO_DIVISOR;
        let mut previous = 0i64;
        for (index, &value) in values.iter().enumerate() {
            match to_decimal(value, exponent) {
                Some(n) => {
                    integers.push(n);
                    previous = n;
                }
                None => {
                    if exceptions.len() == exceptions_max {
                        return false;
                    }
                    integers.push(previous);
                    exceptions.push(index);
                }
            }
        }
        out.push(FLOAT_ALP);
        out.push(exponent as u8);
        put_varint(out, exceptions.len() as u64);
        let mut previous_index = 0;
        for &index in &exceptions {
            put_varint(out, (index - previous_index) as u64);
            previous_index = index;
            out.extend_from_slice(&values[index].to_raw().to_le_bytes()[..F::BITS as usize / 8]);
        }
        integer::encode(&integers, 1, out);
        true
    }

    fn assert_alp_matches_model<F: Float>(values: &[F]) {
        let (mut fast, mut model) = (Vec::new(), Vec::new());
        let fast_ok = encode_alp(values, &mut fast);
        let model_ok = encode_alp_model(values, &mut model);
        assert_eq!(
            (fast_ok, fast),
            (model_ok, model),
            "{} values",
            values.len()
        );
    }

    #[test]
    fn alp_matches_the_model_on_exception_counts_at_the_limit() {
        // 80 values allow 10 exceptions: 10 encode as ALP, 11 do not.
        for exceptions in [0usize, 1, 10, 11] {
            let mut values: Vec<f64> = (0..80).map(|i| f64::from(i) / 100.0 - 0.3).collect();
            for slot in values.iter_mut().step_by(7).take(exceptions) {
                *slot = f64::NAN;
            }
            assert_alp_matches_model(&values);
            let narrow: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            assert_alp_matches_model(&narrow);
        }
    }

    fn roundtrip_f64(values: &[f64]) -> (u8, usize) {
        let mut out = Vec::new();
        encode(values, &mut out);
        let decoded: Vec<f64> = decode(&out, values.len()).unwrap();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let got: Vec<u64> = decoded.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        for cut in [0, out.len() / 2, out.len().saturating_sub(1)] {
            if cut < out.len() {
                assert!(decode::<f64>(&out[..cut], values.len()).is_err());
            }
        }
        (out[0], out.len())
    }

    fn roundtrip_f32(values: &[f32]) -> u8 {
        let mut out = Vec::new();
        encode(values, &mut out);
        let decoded: Vec<f32> = decode(&out, values.len()).unwrap();
        let want: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let got: Vec<u32> = decoded.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        if !out.is_empty() {
            assert!(decode::<f32>(&out[..out.len() - 1], values.len()).is_err());
        }
        out[0]
    }

    #[test]
    fn decimal_random_walk_costs_about_a_byte() {
        let mut v: i64 = 2500;
        let mut x: u64 = 12345;
        let values: Vec<f64> = (0..1000)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                v += ((x >> 33) % 201) as i64 - 100;
                v as f64 / 100.0
            })
            .collect();
        let (tag, bytes) = roundtrip_f64(&values);
        assert_eq!(tag, FLOAT_ALP);
        assert!(bytes < 1000, "{bytes} bytes for 1000 points");
    }

    #[test]
    fn specials_roundtrip() {
        let specials = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            5e-324,
            1.5,
        ];
        roundtrip_f64(&specials);
        let mut mostly_decimal: Vec<f64> = (0..100).map(|i| f64::from(i) / 10.0).collect();
        mostly_decimal[7] = -0.0;
        mostly_decimal[50] = f64::NAN;
        assert_eq!(roundtrip_f64(&mostly_decimal).0, FLOAT_ALP);
        let f32_specials = [0.0f32, -0.0, f32::NAN, f32::INFINITY, f32::MAX, 1e-45, 3.25];
        roundtrip_f32(&f32_specials);
        let decimals: Vec<f32> = (0..100).map(|i| i as f32 / 4.0 + 20.5).collect();
        assert_eq!(roundtrip_f32(&decimals), FLOAT_ALP);
    }

    #[test]
    fn decimals_from_digits_take_the_smallest_exponent() {
        // Whole numbers held at exponent 3 (as 1000-multiples) are written at exponent 0,
        // as `encode` writes them; zeros alone at exponent 0 too.
        let mut digits: Vec<i64> = (0..100).map(|i| (i * 7 - 300) * 1000).collect();
        let values: Vec<f64> = digits.iter().map(|&n| n as f64 / 1000.0).collect();
        let mut written = Vec::new();
        encode_decimals(3, &mut digits, &mut written);
        let mut chosen = Vec::new();
        encode(&values, &mut chosen);
        assert_eq!((written[0], written[1]), (FLOAT_ALP, 0));
        assert_eq!(written, chosen);
        let mut zeros = vec![0i64; 10];
        let mut written = Vec::new();
        encode_decimals(5, &mut zeros, &mut written);
        assert_eq!(written[1], 0);
        assert_eq!(decode::<f64>(&written, 10).unwrap(), vec![0.0; 10]);
    }

    #[test]
    fn non_decimals_fall_back() {
        let values: Vec<f64> = (1..200).map(|i| (f64::from(i)).sqrt()).collect();
        assert_ne!(roundtrip_f64(&values).0, FLOAT_ALP);
        let constant = vec![std::f64::consts::PI; 500];
        let (tag, bytes) = roundtrip_f64(&constant);
        assert_eq!(tag, FLOAT_GORILLA);
        assert!(bytes < 80);
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            (-100_000i64..100_000, 0usize..6).prop_map(|(n, e)| n as f64 / POWERS_OF_TEN[e]),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::INFINITY),
        ]
    }

    fn any_f32() -> impl Strategy<Value = f32> {
        prop_oneof![
            any::<u32>().prop_map(f32::from_bits),
            (-100_000i32..100_000).prop_map(|n| n as f32 / 100.0),
            Just(f32::NAN),
            Just(-0.0f32),
        ]
    }

    proptest! {
        #[test]
        fn f64_roundtrips(values in proptest::collection::vec(any_f64(), 0..400)) {
            roundtrip_f64(&values);
        }

        #[test]
        fn f64_decimals_roundtrip(values in proptest::collection::vec(
            (-1_000_000_000i64..1_000_000_000, 0usize..=EXPONENT_MAX)
                .prop_map(|(n, e)| n as f64 / POWERS_OF_TEN[e]), 0..400)) {
            roundtrip_f64(&values);
        }

        #[test]
        fn f32_roundtrips(values in proptest::collection::vec(any_f32(), 0..400)) {
            roundtrip_f32(&values);
        }

        #[test]
        fn alp_matches_the_model(values in proptest::collection::vec(any_f64(), 0..400),
                                 narrow in proptest::collection::vec(any_f32(), 0..400)) {
            assert_alp_matches_model(&values);
            assert_alp_matches_model(&narrow);
        }

        #[test]
        fn alp_of_decimals_matches_the_model(values in proptest::collection::vec(
            (-1_000_000_000i64..1_000_000_000, 0usize..=EXPONENT_MAX)
                .prop_map(|(n, e)| n as f64 / POWERS_OF_TEN[e]), 0..400)) {
            assert_alp_matches_model(&values);
        }

        #[test]
        fn decimals_from_digits_decode_to_their_values(
            exponent in 0usize..=9,
            digits in proptest::collection::vec(prop_oneof![
                any::<i32>().prop_map(i64::from),
                (-1000i64..1000).prop_map(|n| n * 1000),
                Just(0i64),
            ], 0..400),
        ) {
            let values: Vec<f64> = digits
                .iter()
                .map(|&n| f64::from_scaled(n, POWERS_OF_TEN[exponent]))
                .collect();
            let mut written = Vec::new();
            encode_decimals(exponent, &mut digits.clone(), &mut written);
            let read = decode::<f64>(&written, values.len()).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&read), bits(&values));
            // Where `encode` finds the same exponent it writes the same bytes (it finds no
            // exception at the smallest exponent that keeps every value).
            let mut chosen = Vec::new();
            encode(&values, &mut chosen);
            if chosen[0] == FLOAT_ALP && chosen[1] == written[1] {
                prop_assert_eq!(chosen, written);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                    count in 0usize..500) {
            let _ = decode::<f64>(&bytes, count);
            let _ = decode::<f32>(&bytes, count);
        }
    }
}
