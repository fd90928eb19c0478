//! The memtable: recent writes of one region, per time partition, columnar per series.
//!
//! Each time partition has a *sequence* side and an *unsequence* side (IoTDB's split): a
//! point newer than everything already flushed for its device in that partition goes to
//! the sequence side; an older one goes to the unsequence side, so sealed sequence files of
//! a partition never overlap in time for a device. Within a series buffer an in-order
//! append is a `memcpy`; an out-of-order one just marks the buffer unsorted, and
//! [`Memtable::freeze`] sorts it (stable, so for a repeated timestamp the newest write wins).
//! Timestamps that step evenly (a sensor sampled at a fixed period) are kept as first, step
//! and count until one breaks the step, so such a series costs the memtable its values only;
//! DOUBLE values that are decimals (`23.45`, bit for bit `2345 / 10^2`) are kept as digits
//! and an exponent, 16-bit while they fit and 32-bit after, a quarter or half the memory of
//! the doubles (see `Column`).
//!
//! Owned by the region's shard; a frozen memtable is immutable and may be shared with the
//! background flush thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::codec::float::POWERS_OF_TEN;
use crate::device_types::MeasurementMap;
use crate::hash::FastMap;
use crate::types::{
    DataType, PointColumn, Points, SeriesKey, TabletRef, Timestamp, Values, ValuesRef, time_bounds,
};
use crate::with_values;

/// The smallest capacity a series buffer grows to: small enough for millions of sparse
/// series, large enough that dense ones skip the tiny sizes.
const SERIES_CAPACITY_MIN: usize = 16;

/// What a memtable holds per series besides its point buffers and its name's bytes: its
/// entry in its device's [`MeasurementMap`] (the buffer headers, where the name ends) with
/// the spare room the entries' doubling leaves. Counted in the memory budget, so a flood of
/// new series of one point each is held to the budget too, not only bulky ones.
const SERIES_ENTRY_BYTES: usize = (std::mem::size_of::<SeriesBuffer>() + 4) * 2;
/// The same per device and side of a partition: its entry in the device map, with the hash
/// table's control byte and spare slots (hashbrown keeps at most 7/8 of its slots full).
const DEVICE_ENTRY_BYTES: usize =
    std::mem::size_of::<(Arc<str>, MeasurementMap<SeriesBuffer>)>() * 8 / 7 + 1;

/// The shape of a run of timestamps appended to series buffers: found once per tablet run
/// and shared by every column of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One timestamp.
    Single,
    /// At least two timestamps, each `step` (> 0) after the one before.
    Regular(i64),
    /// Strictly increasing, unevenly spaced.
    Increasing,
    /// Anything else: a buffer it lands in needs a sort at freeze.
    Unordered,
}

impl Shape {
    pub(crate) fn of(timestamps: &[Timestamp]) -> Shape {
        let [first, second, ..] = timestamps else {
            return Shape::Single;
        };
        // One pass: a step must be positive, so a regular run is also increasing.
        let step = second.checked_sub(*first).filter(|step| *step > 0);
        let mut regular = step.is_some();
        for w in timestamps.windows(2) {
            if w[0] >= w[1] {
                return Shape::Unordered;
            }
            regular &= w[1].checked_sub(w[0]) == step;
        }
        match step {
            Some(step) if regular => Shape::Regular(step),
            _ => Shape::Increasing,
        }
    }

    /// The shape of a part of a run of this shape.
    fn of_part(self, part: &[Timestamp]) -> Shape {
        match (self, part.len()) {
            (_, 1) => Shape::Single,
            (Shape::Regular(_) | Shape::Increasing, _) => self,
            _ => Shape::of(part),
        }
    }
}

/// The timestamps of a series buffer. While they step evenly (a sensor sampled at a fixed
/// period, the common case) only the first, the step and the count are kept, which halves
/// the memory of a numeric series; the first timestamp off the step lists them all.
#[derive(Clone, Debug)]
enum Times {
    /// `first + step * i` for `i` in `0..len`; `step` is meaningful once `len` ≥ 2, and
    /// positive (the timestamps strictly increase).
    Regular {
        first: Timestamp,
        step: i64,
        len: usize,
    },
    Listed(Vec<Timestamp>),
}

impl Times {
    fn len(&self) -> usize {
        match self {
            Times::Regular { len, .. } => *len,
            Times::Listed(listed) => listed.len(),
        }
    }

    fn last(&self) -> Option<Timestamp> {
        match self {
            Times::Regular { len: 0, .. } => None,
            Times::Regular { first, step, len } => Some(first + step * (*len as i64 - 1)),
            Times::Listed(listed) => listed.last().copied(),
        }
    }

    /// Extends a regular list by a run of `count` timestamps from `start` shaped `shape`,
    /// if the run keeps the step; false (and nothing changed) if not.
    fn extend_regular(&mut self, start: Timestamp, count: usize, shape: Shape) -> bool {
        let Times::Regular { first, step, len } = self else {
            return false;
        };
        let run_step = match shape {
            Shape::Single => None,
            Shape::Regular(run_step) => Some(run_step),
            Shape::Increasing | Shape::Unordered => return false,
        };
        let (new_step, fits) = match *len {
            0 => (run_step.unwrap_or(0), true),
            1 => {
                let gap = start.checked_sub(*first).filter(|gap| *gap > 0);
                (
                    gap.unwrap_or(0),
                    gap.is_some() && run_step.is_none_or(|s| Some(s) == gap),
                )
            }
            n => {
                let next = i64::try_from(n)
                    .ok()
                    .and_then(|n| step.checked_mul(n))
                    .and_then(|offset| first.checked_add(offset));
                (
                    *step,
                    next == Some(start) && run_step.is_none_or(|s| s == *step),
                )
            }
        };
        // The run's own last timestamp must not overflow either.
        let last_fits = i64::try_from(count - 1)
            .ok()
            .and_then(|n| new_step.checked_mul(n))
            .and_then(|offset| start.checked_add(offset))
            .is_some();
        if !(fits && last_fits) {
            return false;
        }
        if *len == 0 {
            *first = start;
        }
        *step = new_step;
        *len += count;
        true
    }

    /// The timestamps as a list, with room for `capacity`.
    fn listed(&mut self, capacity: usize) -> &mut Vec<Timestamp> {
        if let Times::Regular { first, step, len } = *self {
            let mut listed = Vec::with_capacity(capacity.max(len));
            listed.extend((0..len as i64).map(|i| first + step * i));
            *self = Times::Listed(listed);
        }
        match self {
            Times::Listed(listed) => listed,
            Times::Regular { .. } => unreachable!("listed above"),
        }
    }

    /// The timestamps as a slice: the list itself, or `scratch` filled with them.
    fn as_slice<'a>(&'a self, scratch: &'a mut Vec<Timestamp>) -> &'a [Timestamp] {
        match self {
            Times::Regular { first, step, len } => {
                scratch.clear();
                scratch.extend((0..*len as i64).map(|i| first + step * i));
                scratch
            }
            Times::Listed(listed) => listed,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Times::Regular { .. } => 0,
            Times::Listed(listed) => listed.capacity() * 8,
        }
    }
}

/// The largest exponent a [`Column::Decimal`] uses: digits of a 32-bit integer hold at
/// most ten decimal digits.
pub(crate) const DECIMAL_EXPONENT_MAX: usize = 9;

/// The values of a series buffer.
///
/// Sensors mostly report decimals with a fixed number of places (`23.45`), which a DOUBLE
/// holds as the nearest binary fraction. Such a value is `digit / 10^exponent` exactly, bit
/// for bit, for an integer `digit` (IEEE division is correctly rounded, and so is parsing
/// `23.45`), so the memtable keeps those digits: 16-bit while every digit fits (`23.45` at
/// exponent 2: a quarter of the memory of the doubles), 32-bit once one does not (`1013.25`:
/// half), and so a quarter or half of the fresh pages a growing memtable touches (on the
/// development VM a fresh page costs about 2 µs: with doubles, first-touch was half of the
/// append's CPU). A value that does not fit raises the exponent if a larger one takes every
/// digit so far and the run; otherwise the column turns into plain doubles for good. Every
/// value is checked bit for bit before it is kept as a digit, so NaNs, infinities, `-0.0`
/// and values with more places go to plain doubles, never to an approximation.
#[derive(Clone, Debug)]
enum Column {
    Plain(Values),
    /// DOUBLE values, `digits[i] as f64 / 10^exponent` each. Empty digits have no exponent
    /// yet: the first run picks it.
    Decimal {
        exponent: usize,
        digits: Digits,
    },
}

/// The digits of a [`Column::Decimal`]: 16-bit until one does not fit, 32-bit from then on
/// (the width never changes which digits or exponent are kept, only their bytes).
#[derive(Clone, Debug)]
enum Digits {
    Narrow(Vec<i16>),
    Wide(Vec<i32>),
}

/// Applies `$body` to the digits' vector whatever its width.
macro_rules! with_digits {
    ($digits:expr, $v:ident => $body:expr) => {
        match $digits {
            Digits::Narrow($v) => $body,
            Digits::Wide($v) => $body,
        }
    };
}

impl Digits {
    fn len(&self) -> usize {
        with_digits!(self, v => v.len())
    }

    fn capacity(&self) -> usize {
        with_digits!(self, v => v.capacity())
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Digits::Narrow(v) => v.capacity() * std::mem::size_of::<i16>(),
            Digits::Wide(v) => v.capacity() * std::mem::size_of::<i32>(),
        }
    }

    /// Appends `digit / power` for every digit.
    fn decode(&self, power: f64, out: &mut Vec<f64>) {
        with_digits!(self, v => decimal::decode(v, power, out))
    }
}

/// A run of DOUBLE values already turned into digits before its write was logged (the
/// compact WAL record keeps them: `wal_entry::TabletRecord`), so that the memtable need
/// not convert the doubles again: `digits[i] / 10^exponent` is the run's `i`-th value bit
/// for bit, `exponent` is the smallest that keeps every value of the run as a digit, and
/// the digits are 16-bit exactly when every one fits 16 bits ([`decimal::digits_of`]
/// finds them so). A follower's run is its leader's, decoded from the record; one that
/// does not hold to this (an entry damaged past its checks) is still kept as `digit /
/// 10^exponent`, the doubles it was decoded to, at perhaps another exponent or width.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecimalRun<'a> {
    pub exponent: usize,
    pub digits: DigitsRef<'a>,
}

/// The digits of a [`DecimalRun`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum DigitsRef<'a> {
    Narrow(&'a [i16]),
    Wide(&'a [i32]),
}

impl DigitsRef<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            DigitsRef::Narrow(v) => v.len(),
            DigitsRef::Wide(v) => v.len(),
        }
    }

    /// Appends the digits of `range` to `out` as 64-bit integers.
    pub(crate) fn widen_into(&self, range: std::ops::Range<usize>, out: &mut Vec<i64>) {
        match self {
            DigitsRef::Narrow(v) => out.extend(v[range].iter().map(|&d| i64::from(d))),
            DigitsRef::Wide(v) => out.extend(v[range].iter().map(|&d| i64::from(d))),
        }
    }
}

impl Column {
    fn new(data_type: DataType) -> Column {
        match data_type {
            DataType::Double => Column::Decimal {
                exponent: 0,
                digits: Digits::Narrow(Vec::new()),
            },
            other => Column::Plain(Values::new(other)),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Column::Plain(values) => with_values!(values, v => v.capacity()),
            Column::Decimal { digits, .. } => digits.capacity(),
        }
    }

    fn reserve_exact(&mut self, additional: usize) {
        match self {
            Column::Plain(values) => with_values!(values, v => v.reserve_exact(additional)),
            Column::Decimal { digits, .. } => {
                with_digits!(digits, v => v.reserve_exact(additional))
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Column::Plain(values) => values.heap_bytes(),
            Column::Decimal { digits, .. } => digits.heap_bytes(),
        }
    }

    /// The values as [`Values`]: these, or `scratch` filled with the decoded doubles.
    fn as_values<'a>(&'a self, scratch: &'a mut Values) -> &'a Values {
        match self {
            Column::Plain(values) => values,
            Column::Decimal { exponent, digits } => {
                if !matches!(scratch, Values::Double(_)) {
                    *scratch = Values::Double(Vec::new());
                }
                if let Values::Double(doubles) = &mut *scratch {
                    doubles.clear();
                    digits.decode(POWERS_OF_TEN[*exponent], doubles);
                }
                scratch
            }
        }
    }

    fn to_values(&self) -> Values {
        match self {
            Column::Plain(values) => values.clone(),
            Column::Decimal { digits, .. } => {
                let mut doubles = Values::Double(Vec::with_capacity(digits.len()));
                self.as_values(&mut doubles);
                doubles
            }
        }
    }

    /// Appends `values[rows]`; `converted`, when given, holds those values' digits
    /// ([`DecimalRun`]), which a decimal column appends without converting the doubles.
    fn extend(
        &mut self,
        values: ValuesRef<'_>,
        rows: std::ops::Range<usize>,
        converted: Option<DecimalRun<'_>>,
    ) {
        match (&mut *self, values) {
            (Column::Plain(plain), values) => plain.extend_from_ref(values, rows),
            (Column::Decimal { exponent, digits }, ValuesRef::Double(doubles)) => {
                let run = &doubles[rows];
                if let Some(converted) = converted {
                    debug_assert_eq!(converted.digits.len(), run.len());
                    if decimal::append(exponent, digits, converted) {
                        return;
                    }
                }
                if !decimal::extend(exponent, digits, run) {
                    let capacity = digits.capacity().max(digits.len() + run.len());
                    let mut plain = Vec::with_capacity(capacity);
                    digits.decode(POWERS_OF_TEN[*exponent], &mut plain);
                    plain.extend_from_slice(run);
                    *self = Column::Plain(Values::Double(plain));
                }
            }
            (Column::Decimal { .. }, other) => {
                panic!(
                    "extending a DOUBLE column with {} values",
                    other.data_type()
                )
            }
        }
    }
}

/// The conversions between doubles and [`Column::Decimal`]'s digits: the float codec's
/// ALP conversion and decoding, held to 32-bit digits (and to 16-bit ones while they fit).
pub(crate) mod decimal {
    use super::{DECIMAL_EXPONENT_MAX, DecimalRun, Digits, DigitsRef, POWERS_OF_TEN};
    use crate::codec::float::{Float, to_decimal_unchecked};

    /// Sets `out[i]` to `values[i] × power` rounded, and returns whether every one is a
    /// 32-bit integer whose division by `power` gives the value back bit for bit (`out` is
    /// meaningless where not). Branch-free, so it vectorises; compiled for AVX2 and SSE4.2
    /// too, as the codec's kernels are.
    #[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
    pub(super) fn encode(values: &[f64], power: f64, out: &mut [i32]) -> bool {
        // A count of misses rather than a flag: the loop vectorises so.
        let mut misses = 0usize;
        for (slot, &value) in out.iter_mut().zip(values) {
            let (n, kept) = to_digit(value, power);
            *slot = n as i32;
            misses += usize::from(!kept);
        }
        misses == 0
    }

    /// `value × power` rounded, and whether it is kept as a digit: exact (dividing it by
    /// `power` gives the value back bit for bit) and within 32 bits. Branch-free, for the
    /// kernels above and below.
    #[inline(always)]
    fn to_digit(value: f64, power: f64) -> (i64, bool) {
        let (n, exact) = to_decimal_unchecked(value, power);
        (n, exact & (n.unsigned_abs() <= i32::MAX as u64))
    }

    /// [`encode`] into 16-bit digits: whether every value is exact as a 32-bit digit, and
    /// whether every digit also fits 16 bits (`out` holds them when both).
    #[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
    fn encode_narrow(values: &[f64], power: f64, out: &mut [i16]) -> (bool, bool) {
        let mut misses = 0usize;
        let mut wide = 0usize;
        for (slot, &value) in out.iter_mut().zip(values) {
            let (n, kept) = to_digit(value, power);
            *slot = n as i16;
            misses += usize::from(!kept);
            wide += usize::from(i64::from(n as i16) != n);
        }
        (misses == 0, wide == 0)
    }

    /// Appends `digits[i] / power` for every digit (16- or 32-bit), as the codec decodes
    /// ALP's integers.
    #[multiversion::multiversion(targets("x86_64+avx2", "x86_64+sse4.2"))]
    pub(super) fn decode<D: Copy + Into<i64>>(digits: &[D], power: f64, out: &mut Vec<f64>) {
        out.extend(
            digits
                .iter()
                .map(|&digit| f64::from_scaled(digit.into(), power)),
        );
    }

    /// Appends `run` to `digits` at `*exponent`, or at the smallest larger exponent that
    /// takes the run and every digit so far (rescaling those, exactly: `d × 10^k / 10^(e+k)`
    /// and `d / 10^e` are the correctly rounded quotients of one rational), widening 16-bit
    /// digits to 32 bits when one no longer fits. False when no exponent up to the largest
    /// takes them: then `digits` holds the values it held before (perhaps wider).
    pub(super) fn extend(exponent: &mut usize, digits: &mut Digits, run: &[f64]) -> bool {
        let start = digits.len();
        let lowest = if start == 0 { 0 } else { *exponent };
        let powers = POWERS_OF_TEN.iter().enumerate();
        for (candidate, &power) in powers.take(DECIMAL_EXPONENT_MAX + 1).skip(lowest) {
            if !convert(digits, start, run, power) {
                continue;
            }
            if candidate == *exponent || start == 0 {
                *exponent = candidate;
                return true;
            }
            if rescale(digits, start, 10i32.pow((candidate - *exponent) as u32)) {
                *exponent = candidate;
                return true;
            }
        }
        with_digits!(digits, v => v.truncate(start));
        false
    }

    /// Sets the digits past `start` to `run`'s at `power`, widening the digits if one
    /// needs 32 bits; false (the tail meaningless) when a value is not exact there.
    fn convert(digits: &mut Digits, start: usize, run: &[f64], power: f64) -> bool {
        if let Digits::Narrow(narrow) = digits {
            narrow.resize(start + run.len(), 0);
            let (exact, fits) = encode_narrow(run, power, &mut narrow[start..]);
            if !exact {
                return false;
            }
            if fits {
                return true;
            }
            widen(digits);
        }
        let Digits::Wide(wide) = digits else {
            unreachable!("widened above");
        };
        wide.resize(start + run.len(), 0);
        encode(run, power, &mut wide[start..])
    }

    /// How many exponents past the one its first and last values need [`digits_of`]
    /// tries for a run before giving up (the memtable then converts the doubles itself):
    /// a bound on the passes spent on values that are not decimals at all.
    const EXTRA_EXPONENTS_TRIED: usize = 2;

    /// Appends `values`' digits to `narrow` (when every digit fits 16 bits) or `wide`, at
    /// the smallest exponent that keeps every value as a digit ([`to_digit`]), and returns
    /// that exponent and whether the digits are wide: the digits and width [`extend`] keeps
    /// for the same run in an empty column. `None`, and nothing appended, when no exponent
    /// up to [`DECIMAL_EXPONENT_MAX`] keeps them all, or none within
    /// [`EXTRA_EXPONENTS_TRIED`] of the exponent the run's first and last values need.
    pub(crate) fn digits_of(
        values: &[f64],
        narrow: &mut Vec<i16>,
        wide: &mut Vec<i32>,
    ) -> Option<(usize, bool)> {
        let (&first, &last) = (values.first()?, values.last()?);
        let lowest = lowest_exponent(first)?.max(lowest_exponent(last)?);
        let highest = (lowest + EXTRA_EXPONENTS_TRIED).min(DECIMAL_EXPONENT_MAX);
        let start = narrow.len();
        narrow.resize(start + values.len(), 0);
        let powers = POWERS_OF_TEN.iter().enumerate();
        for (exponent, &power) in powers.take(highest + 1).skip(lowest) {
            let (exact, fits) = encode_narrow(values, power, &mut narrow[start..]);
            if !exact {
                continue;
            }
            if fits {
                return Some((exponent, false));
            }
            narrow.truncate(start);
            let wide_start = wide.len();
            wide.resize(wide_start + values.len(), 0);
            let exact = encode(values, power, &mut wide[wide_start..]);
            debug_assert!(exact, "the same conversion as the 16-bit one");
            return Some((exponent, true));
        }
        narrow.truncate(start);
        None
    }

    /// The smallest exponent that keeps `value` as a digit.
    fn lowest_exponent(value: f64) -> Option<usize> {
        (0..=DECIMAL_EXPONENT_MAX).find(|&exponent| to_digit(value, POWERS_OF_TEN[exponent]).1)
    }

    /// Appends a run converted before it was logged ([`DecimalRun`]) to `digits` at
    /// `*exponent`: the digits, exponent and width [`extend`] reaches from the run's
    /// doubles, without converting them. The common exponent is the larger of the two
    /// (the held digits rescaled as [`extend`] rescales them, the run's multiplied: `d ×
    /// 10^k / 10^(e+k)` is `d / 10^e`); false, and nothing changed but perhaps the width
    /// (as [`rescale`] leaves it), when a digit would then leave 32 bits, where [`extend`]
    /// decides (a larger exponent does not help; it turns the column into plain doubles).
    pub(super) fn append(exponent: &mut usize, digits: &mut Digits, run: DecimalRun<'_>) -> bool {
        let held = digits.len();
        let target = if held == 0 {
            run.exponent
        } else {
            (*exponent).max(run.exponent)
        };
        let run_factor = power_of_ten(target - run.exponent);
        let run_narrow = match run.digits {
            // As found: every digit kept, and 16-bit exactly when all fit.
            DigitsRef::Narrow(_) if run_factor == 1 => Some(true),
            DigitsRef::Wide(_) if run_factor == 1 => Some(false),
            DigitsRef::Narrow(v) => scaled_range(v, run_factor),
            // Wide stays wide, even digits that would fit 16 bits (only a damaged
            // replicated entry has those).
            DigitsRef::Wide(v) => scaled_range(v, run_factor).map(|_| false),
        };
        let Some(run_narrow) = run_narrow else {
            return false;
        };
        if held > 0 && target > *exponent {
            let factor = 10i32.pow((target - *exponent) as u32);
            if !rescale(digits, held, factor) {
                return false;
            }
        }
        if !run_narrow {
            widen(digits);
        }
        // Every product fits the width: checked above.
        match (digits, run.digits) {
            (Digits::Narrow(v), DigitsRef::Narrow(run)) => {
                extend_scaled(v, run, run_factor as i16);
            }
            (Digits::Narrow(_), DigitsRef::Wide(_)) => {
                unreachable!("a wide run makes the column wide: run_narrow above")
            }
            (Digits::Wide(v), DigitsRef::Narrow(run)) => {
                let factor = run_factor as i32;
                v.extend(run.iter().map(|&d| i32::from(d) * factor));
            }
            (Digits::Wide(v), DigitsRef::Wide(run)) => extend_scaled(v, run, run_factor as i32),
        }
        *exponent = target;
        true
    }

    /// Appends `run`'s digits times `factor` (a copy when it is 1), every product known to
    /// fit.
    fn extend_scaled<D>(digits: &mut Vec<D>, run: &[D], factor: D)
    where
        D: Copy + PartialEq + std::ops::Mul<Output = D> + From<i8>,
    {
        if factor == D::from(1) {
            digits.extend_from_slice(run);
        } else {
            digits.extend(run.iter().map(|&d| d * factor));
        }
    }

    /// `10^k` for `k` ≤ [`DECIMAL_EXPONENT_MAX`].
    fn power_of_ten(k: usize) -> i64 {
        10i64.pow(k as u32)
    }

    /// Whether every digit times `factor` is a digit [`to_digit`] keeps (within ±`i32::MAX`),
    /// and if so whether every product also fits 16 bits; `None` when one does not fit.
    fn scaled_range<D: Copy + Into<i64>>(digits: &[D], factor: i64) -> Option<bool> {
        let low = digits.iter().map(|&d| d.into()).min().unwrap_or(0);
        let high = digits.iter().map(|&d| d.into()).max().unwrap_or(0);
        // |digit| ≤ 2^31 and factor ≤ 10^9: no product overflows 64 bits.
        let (low, high) = (low * factor, high * factor);
        let keeps = -i64::from(i32::MAX) <= low && high <= i64::from(i32::MAX);
        let narrow = i64::from(i16::MIN) <= low && high <= i64::from(i16::MAX);
        keeps.then_some(narrow)
    }

    /// Turns 16-bit digits into 32-bit ones, the same values.
    fn widen(digits: &mut Digits) {
        if let Digits::Narrow(narrow) = digits {
            let mut wide = Vec::with_capacity(narrow.capacity());
            wide.extend(narrow.iter().map(|&digit| i32::from(digit)));
            *digits = Digits::Wide(wide);
        }
    }

    /// Multiplies the digits before `start` by `factor`, widening them all if a product
    /// needs 32 bits; false, and nothing changed but perhaps the width, if one overflows.
    fn rescale(digits: &mut Digits, start: usize, factor: i32) -> bool {
        if let Digits::Narrow(narrow) = digits {
            let fits = i16::try_from(factor)
                .is_ok_and(|factor| multiply(&mut narrow[..start], factor, i16::checked_mul));
            if fits {
                return true;
            }
            widen(digits);
        }
        let Digits::Wide(wide) = digits else {
            unreachable!("widened above");
        };
        multiply(&mut wide[..start], factor, i32::checked_mul)
    }

    /// Multiplies every digit by `factor` when every product fits; false, and nothing
    /// changed, when one does not.
    fn multiply<D: Copy>(digits: &mut [D], factor: D, checked_mul: fn(D, D) -> Option<D>) -> bool {
        if digits.iter().any(|&d| checked_mul(d, factor).is_none()) {
            return false;
        }
        for digit in digits {
            *digit = checked_mul(*digit, factor).expect("every product fits: checked above");
        }
        true
    }
}

/// Where a series buffer's points are spelled out when it keeps them otherwise: the
/// timestamps of evenly stepped ones, the doubles of decimal ones. One per reader, reused
/// from series to series.
#[derive(Debug)]
pub struct ReadScratch {
    timestamps: Vec<Timestamp>,
    values: Values,
}

impl Default for ReadScratch {
    fn default() -> Self {
        ReadScratch {
            timestamps: Vec::new(),
            values: Values::Double(Vec::new()),
        }
    }
}

/// The points of one series in a memtable.
#[derive(Clone, Debug)]
pub struct SeriesBuffer {
    times: Times,
    values: Column,
    /// Whether timestamps are strictly increasing (no sort or dedup needed).
    sorted: bool,
}

impl SeriesBuffer {
    fn new(data_type: DataType) -> SeriesBuffer {
        SeriesBuffer {
            times: Times::Regular {
                first: 0,
                step: 0,
                len: 0,
            },
            values: Column::new(data_type),
            sorted: true,
        }
    }

    /// The number of points (before dedup while unsorted).
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last timestamp appended (the newest once sorted).
    pub fn last_time(&self) -> Option<Timestamp> {
        self.times.last()
    }

    /// Whether the timestamps are kept as first, step and count only.
    #[cfg(test)]
    fn is_regular(&self) -> bool {
        matches!(self.times, Times::Regular { .. })
    }

    /// The points borrowed; `scratch` holds the timestamps when the buffer keeps only
    /// their step (a flush writes such a series from [`SeriesBuffer::evenly_spaced`]) and
    /// the doubles when it keeps their decimal digits.
    pub fn points<'a>(&'a self, scratch: &'a mut ReadScratch) -> Points<'a> {
        Points {
            timestamps: self.times.as_slice(&mut scratch.timestamps),
            values: self.values.as_values(&mut scratch.values),
        }
    }

    /// `(first, step)` when the timestamps are kept as first, step and count only (the
    /// `i`th is `first + step * i`; the step is positive once there are two), with the
    /// values they go with (in `scratch` if kept as decimal digits): what a flush writes
    /// without spelling the timestamps out.
    pub fn evenly_spaced<'a>(
        &'a self,
        scratch: &'a mut ReadScratch,
    ) -> Option<(Timestamp, i64, &'a Values)> {
        match self.times {
            Times::Regular { first, step, len } if len > 0 => {
                Some((first, step, self.values.as_values(&mut scratch.values)))
            }
            Times::Regular { .. } | Times::Listed(_) => None,
        }
    }

    /// The values as the decimal digits they are kept as (DOUBLE values without a
    /// non-decimal among them), index for index with [`Self::points`]' values: what a
    /// flush encodes them from (`SealedFileWriter::write_points_with`).
    pub(crate) fn decimal_run(&self) -> Option<DecimalRun<'_>> {
        match &self.values {
            Column::Decimal { exponent, digits } => Some(DecimalRun {
                exponent: *exponent,
                digits: match digits {
                    Digits::Narrow(v) => DigitsRef::Narrow(v),
                    Digits::Wide(v) => DigitsRef::Wide(v),
                },
            }),
            Column::Plain(_) => None,
        }
    }

    /// The points, copied.
    pub fn to_points(&self) -> PointColumn {
        let timestamps = match &self.times {
            Times::Listed(listed) => listed.clone(),
            Times::Regular { .. } => {
                let mut timestamps = Vec::new();
                self.times.as_slice(&mut timestamps);
                timestamps
            }
        };
        PointColumn {
            timestamps,
            values: self.values.to_values(),
        }
    }

    /// Appends `timestamps[rows]` and `values[rows]`, whose timestamps are shaped `shape`
    /// (the caller finds it once for every column).
    fn append_run(
        &mut self,
        timestamps: &[Timestamp],
        values: ValuesRef<'_>,
        rows: std::ops::Range<usize>,
        shape: Shape,
        converted: Option<DecimalRun<'_>>,
    ) {
        if rows.is_empty() {
            return;
        }
        let start = timestamps[rows.start];
        self.reserve(rows.len());
        if !self.times.extend_regular(start, rows.len(), shape) {
            if shape == Shape::Unordered || self.last_time().is_some_and(|last| last >= start) {
                self.sorted = false;
            }
            let capacity = self.values_capacity();
            self.times
                .listed(capacity)
                .extend_from_slice(&timestamps[rows.clone()]);
        }
        self.values.extend(values, rows, converted);
    }

    fn values_capacity(&self) -> usize {
        self.values.capacity()
    }

    /// Makes room for `additional` points, growing to powers of two: a series written in
    /// runs of 100 holds 1000 points in 1024 slots (Vec's own doubling from 100 would end
    /// at 1600, and touch twice the fresh memory on the way).
    fn reserve(&mut self, additional: usize) {
        let len = self.len();
        let needed = len + additional;
        if needed <= self.values_capacity() {
            return;
        }
        let target = needed.next_power_of_two().max(SERIES_CAPACITY_MIN);
        if let Times::Listed(listed) = &mut self.times {
            listed.reserve_exact(target - len);
        }
        self.values.reserve_exact(target - len);
    }

    /// Sorts by time, keeping for each repeated timestamp the last-appended (newest) value.
    pub fn sort_dedup(&mut self) {
        if self.sorted {
            return;
        }
        let Times::Listed(timestamps) = &self.times else {
            unreachable!("regular timestamps are sorted");
        };
        let mut scratch = Values::Double(Vec::new());
        let sorted = sorted_newest_wins(Points {
            timestamps,
            values: self.values.as_values(&mut scratch),
        });
        self.times = Times::Listed(sorted.timestamps);
        self.values = Column::Plain(sorted.values);
        self.sorted = true;
    }

    fn heap_bytes(&self) -> usize {
        self.times.heap_bytes() + self.values.heap_bytes()
    }
}

/// `points` sorted by time; for a repeated timestamp the value appended last wins.
pub fn sorted_newest_wins(points: Points<'_>) -> PointColumn {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Stable: equal timestamps keep arrival order, so the last of a run is the newest.
    order.sort_by_key(|&i| points.timestamps[i]);
    let mut out = PointColumn {
        timestamps: Vec::with_capacity(order.len()),
        values: Values::with_capacity(points.data_type(), order.len()),
    };
    for (n, &i) in order.iter().enumerate() {
        let t = points.timestamps[i];
        if order
            .get(n + 1)
            .is_some_and(|&next| points.timestamps[next] == t)
        {
            continue;
        }
        out.timestamps.push(t);
        out.values.push_from(points.values, i);
    }
    out
}

/// One side (sequence or unsequence) of one time partition.
#[derive(Clone, Debug, Default)]
pub struct SideTable {
    /// device → measurement → buffer.
    pub devices: FastMap<Arc<str>, MeasurementMap<SeriesBuffer>>,
}

impl SideTable {
    pub fn get(&self, key: &SeriesKey) -> Option<&SeriesBuffer> {
        self.devices.get(&key.device)?.get(&key.measurement)
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Every series, sorted by key (the order sealed files want): the devices sorted, then
    /// each device's measurements (a key orders by device first), so a flush of N devices
    /// of M series compares N log N device paths and N × M log M names, not N × M log(N ×
    /// M) keys.
    pub fn sorted_series(&self) -> Vec<(SeriesKey, &SeriesBuffer)> {
        let mut devices: Vec<_> = self.devices.iter().collect();
        devices.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut all = Vec::with_capacity(devices.iter().map(|(_, series)| series.len()).sum());
        let mut measurements = Vec::new();
        for (device, series) in devices {
            measurements.clear();
            measurements.extend(series.iter());
            measurements.sort_unstable_by(|a, b| a.0.cmp(b.0));
            all.extend(measurements.iter().map(|&(measurement, buffer)| {
                (
                    SeriesKey {
                        device: device.clone(),
                        measurement: Arc::from(measurement),
                    },
                    buffer,
                )
            }));
        }
        all
    }
}

/// Both sides of one time partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionTable {
    pub sequence: SideTable,
    pub unsequence: SideTable,
}

/// Where the rows of one tablet column land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Sequence,
    Unsequence,
}

/// The mutable memtable of a region.
#[derive(Clone, Debug, Default)]
pub struct Memtable {
    /// time slot → partition.
    pub partitions: BTreeMap<i64, PartitionTable>,
    heap_bytes: usize,
    points: u64,
}

impl Memtable {
    /// Approximate heap bytes held, for the flush threshold and back-pressure.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    /// Points written (before dedup).
    pub fn points(&self) -> u64 {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Appends the non-null cells of `tablet`. `partition_of` maps a timestamp to its time
    /// slot; `side_of(slot, t)` says whether a point at `t` is sequence or unsequence for
    /// the tablet's device. Both are monotone in `t` (later times: the same or a later
    /// slot; within a slot, unsequence up to a time and sequence after it), so a tablet
    /// whose earliest and latest rows agree on both is one run, found without a look at
    /// each row. Types were checked by the caller.
    pub fn apply(
        &mut self,
        tablet: &TabletRef<'_>,
        partition_of: impl Fn(Timestamp) -> i64,
        side_of: impl Fn(i64, Timestamp) -> Side,
    ) {
        self.apply_converted(tablet, |_| None, partition_of, side_of);
    }

    /// [`Memtable::apply`] with some DOUBLE columns already converted to digits:
    /// `converted(i)` is column `i`'s, for all the tablet's rows, when it has no null. A
    /// tablet that is one run appends those digits instead of converting the doubles (the
    /// same digits, exponent and width either way); one split into runs converts.
    pub(crate) fn apply_converted<'c>(
        &mut self,
        tablet: &TabletRef<'_>,
        converted: impl Fn(usize) -> Option<DecimalRun<'c>>,
        partition_of: impl Fn(Timestamp) -> i64,
        side_of: impl Fn(i64, Timestamp) -> Side,
    ) {
        let rows = tablet.rows();
        let Some((min, max)) = time_bounds(tablet.timestamps) else {
            return;
        };
        let first = key_of(min, &partition_of, &side_of);
        if first == key_of(max, &partition_of, &side_of) {
            self.append_rows(tablet, first, 0..rows, converted);
            return;
        }
        let converted = |_| None;
        // Split the rows into runs of one (partition, side).
        let mut start = 0;
        let mut current = key_of(tablet.timestamps[0], &partition_of, &side_of);
        for row in 1..rows {
            let key = key_of(tablet.timestamps[row], &partition_of, &side_of);
            if key != current {
                self.append_rows(tablet, current, start..row, converted);
                start = row;
                current = key;
            }
        }
        self.append_rows(tablet, current, start..rows, converted);
    }

    /// Appends the non-null cells of `tablet`'s `rows` to partition `slot`'s `side`.
    /// `converted` is as [`Memtable::apply_converted`]'s, used only when `rows` are all the
    /// tablet's.
    fn append_rows<'c>(
        &mut self,
        tablet: &TabletRef<'_>,
        (slot, side): (i64, Side),
        rows: std::ops::Range<usize>,
        converted: impl Fn(usize) -> Option<DecimalRun<'c>>,
    ) {
        let whole = rows.start == 0 && rows.end == tablet.rows();
        let (first, end) = (rows.start, rows.end);
        let partition = self.partitions.entry(slot).or_default();
        let table = match side {
            Side::Sequence => &mut partition.sequence,
            Side::Unsequence => &mut partition.unsequence,
        };
        let device = match table.devices.get_mut(tablet.device) {
            Some(d) => d,
            None => {
                self.heap_bytes += DEVICE_ENTRY_BYTES;
                table.devices.entry(tablet.device.clone()).or_default()
            }
        };
        let shape = Shape::of(&tablet.timestamps[rows.clone()]);
        for (index, column) in tablet.columns.iter().enumerate() {
            let position = match device.column_position(index, column.measurement) {
                Some(position) => position,
                None => {
                    self.heap_bytes += SERIES_ENTRY_BYTES + column.measurement.len();
                    let buffer = SeriesBuffer::new(column.values.data_type());
                    device.push(column.measurement, buffer)
                }
            };
            let buffer = device.at_mut(position);
            let before = buffer.heap_bytes();
            match column.nulls {
                Some(_) if column.has_nulls() => {
                    // Append maximal runs of non-null rows.
                    let mut row = first;
                    while row < end {
                        if column.is_null(row) {
                            row += 1;
                            continue;
                        }
                        let run_start = row;
                        while row < end && !column.is_null(row) {
                            row += 1;
                        }
                        let run = run_start..row;
                        let shape = shape.of_part(&tablet.timestamps[run.clone()]);
                        buffer.append_run(tablet.timestamps, column.values, run, shape, None);
                        self.points += (row - run_start) as u64;
                    }
                }
                _ => {
                    let converted = if whole { converted(index) } else { None };
                    let rows = first..end;
                    buffer.append_run(tablet.timestamps, column.values, rows, shape, converted);
                    self.points += (end - first) as u64;
                }
            }
            self.heap_bytes = self.heap_bytes + buffer.heap_bytes() - before;
        }
    }

    /// Sorts and dedups every buffer and returns the memtable as an immutable value.
    pub fn freeze(mut self) -> FrozenMemtable {
        for partition in self.partitions.values_mut() {
            for side in [&mut partition.sequence, &mut partition.unsequence] {
                for series in side.devices.values_mut() {
                    for buffer in series.values_mut() {
                        buffer.sort_dedup();
                    }
                }
            }
        }
        FrozenMemtable {
            heap_bytes: self.heap_bytes,
            partitions: self.partitions,
        }
    }

    /// The points of `key` in partition `slot`, sorted and deduplicated, sequence and
    /// unsequence sides merged (they never hold the same timestamp: see the module doc).
    pub fn read(&self, slot: i64, key: &SeriesKey) -> Option<PointColumn> {
        read_partition(self.partitions.get(&slot)?, key)
    }
}

fn key_of(
    t: Timestamp,
    partition_of: &impl Fn(Timestamp) -> i64,
    side_of: &impl Fn(i64, Timestamp) -> Side,
) -> (i64, Side) {
    let slot = partition_of(t);
    (slot, side_of(slot, t))
}

fn read_partition(partition: &PartitionTable, key: &SeriesKey) -> Option<PointColumn> {
    let sides: Vec<PointColumn> = [&partition.sequence, &partition.unsequence]
        .into_iter()
        .filter_map(|side| side.get(key))
        .map(|buffer| {
            if buffer.sorted {
                buffer.to_points()
            } else {
                let mut scratch = ReadScratch::default();
                sorted_newest_wins(buffer.points(&mut scratch))
            }
        })
        .collect();
    match sides.len() {
        0 => None,
        1 => sides.into_iter().next(),
        _ => {
            let mut all = sides[0].clone();
            all.timestamps.extend_from_slice(&sides[1].timestamps);
            all.values.extend_from(&sides[1].values, 0..sides[1].len());
            Some(sorted_newest_wins(all.as_points()))
        }
    }
}

/// A memtable that no longer takes writes: sorted, deduplicated, shared with the flush
/// thread and read by queries until its files are installed.
#[derive(Debug)]
pub struct FrozenMemtable {
    pub partitions: BTreeMap<i64, PartitionTable>,
    pub heap_bytes: usize,
}

impl FrozenMemtable {
    /// The points of `key` in partition `slot`.
    pub fn read(&self, slot: i64, key: &SeriesKey) -> Option<PointColumn> {
        read_partition(self.partitions.get(&slot)?, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NullBitmap, Tablet, TabletColumn, Value};
    use proptest::strategy::{Just, Strategy};

    /// The measurement of [`tablet`]'s one column.
    const MEASUREMENT: &str = "s1";

    /// What a memtable's budget counts for one series of [`tablet`] besides its buffers:
    /// its device's entry, its own, and its name's bytes.
    const ENTRIES: usize = DEVICE_ENTRY_BYTES + SERIES_ENTRY_BYTES + MEASUREMENT.len();

    fn tablet(device: &str, ts: &[i64], values: &[f64], nulls: Option<NullBitmap>) -> Tablet {
        Tablet {
            device: Arc::from(device),
            timestamps: ts.to_vec(),
            columns: vec![TabletColumn {
                measurement: Arc::from(MEASUREMENT),
                values: Values::Double(values.to_vec()),
                nulls,
            }],
        }
    }

    /// Series come out in key order, devices and their measurements sorted apart as the
    /// whole keys sort (names of several lengths, so a prefix sorts first).
    #[test]
    fn sorted_series_are_in_key_order() {
        let mut m = Memtable::default();
        let mut expected = Vec::new();
        for d in [7, 70, 1, 10, 0, 700, 3] {
            let device = format!("root.db.d{d}");
            let measurements = ["s10", "s1", "s2", "t", "s"];
            let tablet = Tablet {
                device: Arc::from(device.as_str()),
                timestamps: vec![1],
                columns: measurements
                    .iter()
                    .map(|name| TabletColumn {
                        measurement: Arc::from(*name),
                        values: Values::Double(vec![1.0]),
                        nulls: None,
                    })
                    .collect(),
            };
            m.apply(&tablet.as_ref(), |_| 0, |_, _| Side::Sequence);
            expected.extend(
                measurements
                    .iter()
                    .map(|name| SeriesKey::new(&device, name)),
            );
        }
        expected.sort();
        let side = &m.partitions[&0].sequence;
        let keys: Vec<SeriesKey> = side.sorted_series().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, expected);
    }

    /// A device's tablets need not keep their columns in one order: a column is matched
    /// by its position first and by its name when that misses, so every point lands in
    /// its own series whether the columns come in the order first seen, reversed, with
    /// some left out or with new ones among them.
    #[test]
    fn columns_in_any_order_reach_their_own_series() {
        let mut m = Memtable::default();
        let orders: [&[&str]; 5] = [
            &["a", "b", "c"],
            &["c", "b", "a"],
            &["b"],
            &["d", "a", "e", "c"],
            &["a", "b", "c", "d", "e"],
        ];
        let mut expected: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
        for (row, order) in orders.iter().enumerate() {
            let t = row as i64 * 10;
            let value = |name: &str| (name.as_bytes()[0] - b'a') as f64 * 100.0 + row as f64;
            let tablet = Tablet {
                device: Arc::from("root.db.d1"),
                timestamps: vec![t],
                columns: order
                    .iter()
                    .map(|name| TabletColumn {
                        measurement: Arc::from(*name),
                        values: Values::Double(vec![value(name)]),
                        nulls: None,
                    })
                    .collect(),
            };
            m.apply(&tablet.as_ref(), |_| 0, |_, _| Side::Sequence);
            for name in order.iter() {
                expected.entry(name).or_default().push((t, value(name)));
            }
        }
        let frozen = m.freeze();
        for (name, points) in expected {
            let read = frozen.read(0, &SeriesKey::new("root.db.d1", name)).unwrap();
            let Values::Double(values) = &read.values else {
                panic!("{name}: doubles expected");
            };
            let got: Vec<(i64, f64)> = read
                .timestamps
                .iter()
                .copied()
                .zip(values.iter().copied())
                .collect();
            assert_eq!(got, points, "{name}");
        }
        assert!(frozen.read(0, &SeriesKey::new("root.db.d1", "f")).is_none());
    }

    #[test]
    fn the_budget_counts_every_new_series_and_device() {
        let mut m = Memtable::default();
        let devices = 1000;
        for d in 0..devices {
            m.apply(
                &tablet(&format!("root.db.d{d}"), &[1], &[1.0], None).as_ref(),
                |_| 0,
                |_, _| Side::Sequence,
            );
        }
        // Doubles that are whole numbers, kept as 16-bit digits; one timestamp is kept as
        // the first of a regular run, with no list.
        let buffers = SERIES_CAPACITY_MIN * 2;
        assert_eq!(m.heap_bytes(), devices * (ENTRIES + buffers));
        assert!(SERIES_ENTRY_BYTES > std::mem::size_of::<SeriesBuffer>());
        // Writing again to known series adds no entry overhead.
        let before = m.heap_bytes();
        m.apply(
            &tablet("root.db.d0", &[2], &[2.0], None).as_ref(),
            |_| 0,
            |_, _| Side::Sequence,
        );
        assert_eq!(m.heap_bytes(), before);
    }

    /// Appends each run of values to one series of `m` at times `0, 1, 2, ...`, then
    /// checks that every read gives back exactly the doubles written, bit for bit: the
    /// memtable's read, a frozen memtable's, and a flush's (`evenly_spaced`, `points`) with
    /// a scratch left over from another series.
    fn check_values_round_trip(
        runs: &[Vec<f64>],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut m = Memtable::default();
        let mut written: Vec<f64> = Vec::new();
        for run in runs {
            let start = written.len() as i64;
            let ts: Vec<i64> = (start..start + run.len() as i64).collect();
            m.apply(
                &tablet("root.db.d1", &ts, run, None).as_ref(),
                |_| 0,
                |_, _| Side::Sequence,
            );
            written.extend_from_slice(run);
        }
        let bits = |values: &Values| match values {
            Values::Double(v) => v.iter().map(|x| x.to_bits()).collect::<Vec<u64>>(),
            other => panic!("DOUBLE written, {} read", other.data_type()),
        };
        let expected: Vec<u64> = written.iter().map(|x| x.to_bits()).collect();
        let key = SeriesKey::new("root.db.d1", "s1");
        proptest::prop_assert_eq!(bits(&m.read(0, &key).unwrap().values), expected.clone());
        let frozen = m.freeze();
        proptest::prop_assert_eq!(
            bits(&frozen.read(0, &key).unwrap().values),
            expected.clone()
        );
        let buffer = frozen.partitions[&0].sequence.get(&key).unwrap();
        let mut scratch = ReadScratch {
            timestamps: vec![7; 3],
            values: Values::Double(vec![0.5; 5]),
        };
        let (first, step, values) = buffer.evenly_spaced(&mut scratch).unwrap();
        proptest::prop_assert_eq!(first, 0);
        if written.len() > 1 {
            proptest::prop_assert_eq!(step, 1);
        }
        proptest::prop_assert_eq!(bits(values), expected.clone());
        proptest::prop_assert_eq!(bits(buffer.points(&mut scratch).values), expected);
        Ok(())
    }

    /// Applies each run to one series at times `10 i + 0, 1, ...` and observes the memtable
    /// after each.
    fn after_each_run<T>(
        runs: &[Vec<f64>],
        observe: impl Fn(&Memtable) -> T,
    ) -> (Memtable, Vec<T>) {
        let mut m = Memtable::default();
        let mut seen = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let ts: Vec<i64> = (0..run.len() as i64).map(|t| 10 * i as i64 + t).collect();
            m.apply(
                &tablet("root.db.d1", &ts, run, None).as_ref(),
                |_| 0,
                |_, _| Side::Sequence,
            );
            seen.push(observe(&m));
        }
        (m, seen)
    }

    /// A memtable holding `values` in one series, at times 0, 1, 2, ...
    fn one_run(values: &[f64]) -> Memtable {
        let mut m = Memtable::default();
        let ts: Vec<i64> = (0..values.len() as i64).collect();
        m.apply(
            &tablet("root.db.d1", &ts, values, None).as_ref(),
            |_| 0,
            |_, _| Side::Sequence,
        );
        m
    }

    #[test]
    fn decimals_are_kept_as_digits_and_read_back_bit_for_bit() {
        let values: Vec<f64> = (0..1000).map(|i| f64::from(2000 + i) / 100.0).collect();
        let m = one_run(&values);
        assert!(matches!(
            buffer(&m).values,
            Column::Decimal { exponent: 2, .. }
        ));
        // 1024 digits of 2 bytes: a quarter of what 1024 doubles take.
        assert_eq!(m.heap_bytes(), ENTRIES + 1024 * 2);
        check_values_round_trip(&[values]).unwrap();
    }

    /// The width of a series' digits (None: plain doubles) and its heap bytes.
    fn digits_width(m: &Memtable) -> Option<usize> {
        match &buffer(m).values {
            Column::Decimal {
                digits: Digits::Narrow(_),
                ..
            } => Some(2),
            Column::Decimal {
                digits: Digits::Wide(_),
                ..
            } => Some(4),
            Column::Plain(_) => None,
        }
    }

    #[test]
    fn digits_stay_16_bit_until_one_does_not_fit_then_widen_and_read_back_the_same() {
        // 1013.25 hPa is 101325 at exponent 2: past 16 bits, so the digits widen.
        let runs = [vec![23.45, -327.68, 327.67], vec![1013.25], vec![0.5, 20.0]];
        let (_, widths) = after_each_run(&runs, digits_width);
        assert_eq!(widths, [Some(2), Some(4), Some(4)]);
        check_values_round_trip(&runs).unwrap();
        // Rescaling to a larger exponent widens too: 30000 is 16-bit, 300000.0 at one
        // place (3000000) is not.
        let mut m = Memtable::default();
        for (i, run) in [vec![30000.0], vec![0.5]].iter().enumerate() {
            m.apply(
                &tablet("root.db.d1", &[i as i64], run, None).as_ref(),
                |_| 0,
                |_, _| Side::Sequence,
            );
        }
        assert_eq!(digits_width(&m), Some(4));
        check_values_round_trip(&[vec![30000.0], vec![0.5]]).unwrap();
    }

    #[test]
    fn a_long_run_with_one_value_of_more_places_takes_one_exponent_or_turns_plain_whole() {
        // The last value of a 600-value run needs a larger exponent than the rest: the whole
        // run is converted at that one.
        let mut run: Vec<f64> = (0..600).map(|i| f64::from(i) / 10.0).collect();
        run[599] = 0.125;
        let m = one_run(&run);
        assert!(matches!(
            buffer(&m).values,
            Column::Decimal { exponent: 3, .. }
        ));
        check_values_round_trip(std::slice::from_ref(&run)).unwrap();
        // A value no exponent takes turns the whole column plain, after a run of digits,
        // every value of the run counted once.
        run[590] = 1.0 / 3.0;
        check_values_round_trip(&[vec![1.5; 10], run]).unwrap();
    }

    #[test]
    fn a_value_with_more_places_raises_the_exponent_and_one_that_fits_none_turns_plain() {
        let runs = [vec![1.0, 2.0], vec![2.5], vec![-2.25, 0.0], vec![1e-12]];
        let (m, exponents) = after_each_run(&runs, |m| match &buffer(m).values {
            Column::Decimal { exponent, .. } => Some(*exponent),
            Column::Plain(_) => None,
        });
        assert_eq!(exponents, [Some(0), Some(1), Some(2), None]);
        let points = m.read(0, &SeriesKey::new("root.db.d1", "s1")).unwrap();
        assert_eq!(
            points.values,
            Values::Double(vec![1.0, 2.0, 2.5, -2.25, 0.0, 1e-12])
        );
        // Digits that would overflow 32 bits at a larger exponent turn the column plain.
        check_values_round_trip(&[vec![2_000_000.0], vec![0.001]]).unwrap();
        // What no exponent holds: NaN, infinities, -0.0, huge, tiny, thirds.
        for odd in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e300,
            5e-324,
            1.0 / 3.0,
        ] {
            check_values_round_trip(&[vec![1.5, 2.5], vec![odd, 3.5], vec![4.5]]).unwrap();
        }
    }

    proptest::proptest! {
        #[test]
        fn any_doubles_read_back_bit_for_bit(runs in proptest::collection::vec(
            proptest::collection::vec(
                proptest::prop_oneof![
                    // Decimals with up to 12 places, small and large.
                    (-100_000_000i64..100_000_000, 0u32..12)
                        .prop_map(|(d, e)| d as f64 / 10f64.powi(e as i32)),
                    (-3000i64..3000).prop_map(|d| d as f64 / 100.0),
                    proptest::num::f64::ANY,
                    proptest::strategy::Just(-0.0),
                    proptest::strategy::Just(f64::NAN),
                ],
                1..40),
            1..8)) {
            check_values_round_trip(&runs)?;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Runs of hundreds of values, with a value of more places or none at any
        /// position: digits rescaled, widened, or the whole column turned plain.
        #[test]
        fn long_runs_read_back_bit_for_bit(
            runs in proptest::collection::vec(
                (200usize..700, 0usize..700, 0u32..4, proptest::num::f64::ANY, -40_000i64..40_000)
                    .prop_map(|(len, odd_at, places, odd, start)| {
                        let mut run: Vec<f64> =
                            (0..len as i64).map(|i| (start + i) as f64 / 100.0).collect();
                        if odd_at < len {
                            run[odd_at] = if places == 3 {
                                odd
                            } else {
                                (start * 7) as f64 / 10f64.powi(places as i32 + 2)
                            };
                        }
                        run
                    }),
                1..4)) {
            check_values_round_trip(&runs)?;
        }
    }

    /// Appends each run to a decimal column twice, converting its doubles and from the
    /// digits [`decimal::digits_of`] finds (when it finds them), and checks both columns
    /// hold the same digits, exponent and width (or the same plain doubles) after each.
    fn check_converted_runs_keep_what_converting_keeps(
        runs: &[Vec<f64>],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut converting = Column::new(DataType::Double);
        let mut given = Column::new(DataType::Double);
        for run in runs {
            let (mut narrow, mut wide) = (vec![7i16], vec![7i32]);
            let found = decimal::digits_of(run, &mut narrow, &mut wide);
            let converted = found.map(|(exponent, is_wide)| DecimalRun {
                exponent,
                digits: if is_wide {
                    DigitsRef::Wide(&wide[1..])
                } else {
                    DigitsRef::Narrow(&narrow[1..])
                },
            });
            // Nothing appended to the buffers but the digits found, at their width.
            let appended = (narrow.len() - 1, wide.len() - 1);
            let expected = match found {
                None => (0, 0),
                Some((_, false)) => (run.len(), 0),
                Some((_, true)) => (0, run.len()),
            };
            proptest::prop_assert_eq!(appended, expected);
            let values = ValuesRef::Double(run);
            converting.extend(values, 0..run.len(), None);
            given.extend(values, 0..run.len(), converted);
            proptest::prop_assert_eq!(format!("{converting:?}"), format!("{given:?}"));
        }
        Ok(())
    }

    proptest::proptest! {
        /// Decimals of up to 6 places around the 16-bit and 32-bit limits, zeros, and
        /// values no exponent keeps: every path of `decimal::append` (a larger exponent on
        /// either side, widening, a product past 32 bits) against `decimal::extend`.
        #[test]
        fn converted_runs_keep_what_converting_keeps(runs in proptest::collection::vec(
            (
                proptest::prop_oneof![
                    proptest::strategy::Just(0i64),
                    proptest::strategy::Just(1),
                    proptest::strategy::Just(300),
                    proptest::strategy::Just(33_000),
                    proptest::strategy::Just(2_200_000_000),
                ],
                0u32..7,
                0u32..3,
            )
                .prop_flat_map(|(range, places, odd_kind)| {
                    proptest::collection::vec(
                        proptest::prop_oneof![
                            8 => (-range..=range)
                                .prop_map(move |d| d as f64 / 10f64.powi(places as i32)),
                            1 => proptest::strategy::Just(0.0),
                            1 => proptest::strategy::Just(match odd_kind {
                                0 => -327.68,
                                1 => 0.1 + 0.2,
                                _ => 21_474_836.47,
                            }),
                        ],
                        1..30,
                    )
                }),
            1..8)) {
            check_converted_runs_keep_what_converting_keeps(&runs)?;
        }
    }

    #[test]
    fn converted_runs_rescale_as_converting_does() {
        // Held digits rescaled by a factor past 16 bits: widened even when they are zeros.
        // A run of fewer places than the held digits', of more, and one past 32 bits.
        for runs in [
            vec![vec![0.0, 0.0], vec![0.00001]],
            vec![vec![1.5, 2.5], vec![3.25]],
            vec![vec![3.25], vec![1.5]],
            vec![vec![21_474_836.47], vec![0.001]],
            vec![vec![0.001], vec![21_474_836.47]],
        ] {
            check_converted_runs_keep_what_converting_keeps(&runs).unwrap();
        }
    }

    #[test]
    fn runs_that_break_the_rules_read_back_what_they_hold() {
        // What a damaged replicated entry could hand over: 32-bit digits that fit 16 bits,
        // an exponent larger than the values need, one digit past `to_digit`'s range.
        // Nothing panics, and each reads back as digit / 10^exponent.
        let mut column = Column::new(DataType::Double);
        column.extend(ValuesRef::Double(&[1.5]), 0..1, None);
        let small = [3i32, -4];
        let small_run = DecimalRun {
            exponent: 0,
            digits: DigitsRef::Wide(&small),
        };
        column.extend(ValuesRef::Double(&[3.0, -4.0]), 0..2, Some(small_run));
        let extreme = [i32::MIN];
        let extreme_run = DecimalRun {
            exponent: 9,
            digits: DigitsRef::Wide(&extreme),
        };
        let value = f64::from(i32::MIN) / 1e9;
        column.extend(ValuesRef::Double(&[value]), 0..1, Some(extreme_run));
        let mut scratch = Values::Double(Vec::new());
        let Values::Double(read) = column.as_values(&mut scratch) else {
            panic!("a DOUBLE column")
        };
        let bits: Vec<u64> = read.iter().map(|v| v.to_bits()).collect();
        let expected: Vec<u64> = [1.5, 3.0, -4.0, value]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(bits, expected);
    }

    #[test]
    fn digits_are_found_at_the_smallest_exponent_and_width() {
        let found = |values: &[f64]| {
            let (mut narrow, mut wide) = (Vec::new(), Vec::new());
            let found = decimal::digits_of(values, &mut narrow, &mut wide);
            (found, narrow, wide)
        };
        // The first and last values need one place, a middle one two.
        assert_eq!(
            found(&[1.5, 2.25, 3.5]),
            (Some((2, false)), vec![150, 225, 350], vec![])
        );
        assert_eq!(
            found(&[-327.68, 327.67]),
            (Some((2, false)), vec![-32768, 32767], vec![])
        );
        assert_eq!(found(&[327.68]), (Some((2, true)), vec![], vec![32768]));
        // More places than the first and last values' and two more: not searched.
        assert_eq!(found(&[1.0, 0.001, 2.0]), (None, vec![], vec![]));
        assert_eq!(
            found(&[1.0, 0.01, 2.0]),
            (Some((2, false)), vec![100, 1, 200], vec![])
        );
        assert_eq!(found(&[f64::NAN]), (None, vec![], vec![]));
        assert_eq!(found(&[]), (None, vec![], vec![]));
    }

    #[test]
    fn out_of_order_and_duplicates_newest_wins() {
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[5, 1, 5], &[1.0, 2.0, 3.0], None).as_ref(),
            |_| 0,
            |_, _| Side::Sequence,
        );
        m.apply(
            &tablet("root.db.d1", &[1], &[9.0], None).as_ref(),
            |_| 0,
            |_, _| Side::Sequence,
        );
        let key = SeriesKey::new("root.db.d1", "s1");
        let points = m.read(0, &key).unwrap();
        assert_eq!(points.timestamps, vec![1, 5]);
        assert_eq!(points.values, Values::Double(vec![9.0, 3.0]));
        let frozen = m.freeze();
        assert_eq!(frozen.read(0, &key).unwrap(), points);
    }

    #[test]
    fn nulls_are_not_points() {
        let mut nulls = NullBitmap::new(3);
        nulls.set_null(1);
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[1, 2, 3], &[1.0, 2.0, 3.0], Some(nulls)).as_ref(),
            |_| 0,
            |_, _| Side::Sequence,
        );
        let points = m.read(0, &SeriesKey::new("root.db.d1", "s1")).unwrap();
        assert_eq!(points.timestamps, vec![1, 3]);
        assert_eq!(points.values.get(1), Value::Double(3.0));
        assert_eq!(m.points(), 2);
    }

    #[test]
    fn rows_split_by_partition_and_side() {
        let mut m = Memtable::default();
        // Partition 0 flushed up to time 1: earlier rows there are unsequence.
        let side = |slot: i64, t: i64| {
            if slot == 0 && t <= 1 {
                Side::Unsequence
            } else {
                Side::Sequence
            }
        };
        m.apply(
            &tablet("root.db.d1", &[1, 2, 11, 12], &[1.0, 2.0, 3.0, 4.0], None).as_ref(),
            |t| t / 10,
            side,
        );
        assert_eq!(m.partitions.len(), 2);
        let p0 = &m.partitions[&0];
        let key = SeriesKey::new("root.db.d1", "s1");
        assert_eq!(
            p0.unsequence.get(&key).unwrap().to_points().timestamps,
            vec![1]
        );
        assert_eq!(
            p0.sequence.get(&key).unwrap().to_points().timestamps,
            vec![2]
        );
        assert_eq!(m.read(0, &key).unwrap().timestamps, vec![1, 2]);
        assert_eq!(m.read(1, &key).unwrap().timestamps, vec![11, 12]);

        // One partition, rows out of order across the flushed time: split by side even
        // though the first and last rows are both sequence.
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[3, 0, 1, 4], &[1.0, 2.0, 3.0, 4.0], None).as_ref(),
            |_| 0,
            side,
        );
        let p0 = &m.partitions[&0];
        assert_eq!(
            p0.unsequence.get(&key).unwrap().to_points().timestamps,
            vec![0, 1]
        );
        let sequence = p0.sequence.get(&key).unwrap();
        assert_eq!(sequence.to_points().timestamps, vec![3, 4]);
        assert_eq!(sequence.to_points().values, Values::Double(vec![1.0, 4.0]));
        assert_eq!(m.points(), 4);

        // Every row on one side of one partition: one run, order kept, sorted at freeze.
        let mut m = Memtable::default();
        m.apply(
            &tablet("root.db.d1", &[7, 5, 6], &[1.0, 2.0, 3.0], None).as_ref(),
            |_| 0,
            side,
        );
        let p0 = &m.partitions[&0];
        assert!(p0.unsequence.is_empty());
        assert_eq!(
            p0.sequence.get(&key).unwrap().to_points().timestamps,
            vec![7, 5, 6]
        );
        let frozen = m.freeze();
        assert_eq!(frozen.read(0, &key).unwrap().timestamps, vec![5, 6, 7]);
    }

    fn append(m: &mut Memtable, ts: &[i64]) {
        let values: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        m.apply(
            &tablet("root.db.d1", ts, &values, None).as_ref(),
            |_| 0,
            |_, _| Side::Sequence,
        );
    }

    fn buffer(m: &Memtable) -> &SeriesBuffer {
        m.partitions[&0]
            .sequence
            .get(&SeriesKey::new("root.db.d1", "s1"))
            .unwrap()
    }

    #[test]
    fn evenly_stepped_timestamps_keep_no_list() {
        let mut m = Memtable::default();
        append(&mut m, &[100]);
        append(&mut m, &[110, 120, 130]);
        append(&mut m, &[140]);
        append(&mut m, &[150, 160]);
        assert!(buffer(&m).is_regular());
        // Only the values take memory: 16-bit digits (the smallest capacity) of whole doubles.
        assert_eq!(m.heap_bytes(), ENTRIES + SERIES_CAPACITY_MIN * 2);
        let expected: Vec<i64> = (0..7).map(|i| 100 + 10 * i).collect();
        assert_eq!(buffer(&m).to_points().timestamps, expected);
        let mut scratch = ReadScratch::default();
        assert_eq!(buffer(&m).points(&mut scratch).timestamps, &expected[..]);
        assert_eq!(buffer(&m).last_time(), Some(160));

        // A point off the step lists them all, and later ones are appended to the list.
        append(&mut m, &[171, 180]);
        assert!(!buffer(&m).is_regular());
        assert_eq!(
            m.heap_bytes(),
            ENTRIES + SERIES_CAPACITY_MIN * (8 + 2),
            "the list takes the values' capacity"
        );
        let mut expected = expected;
        expected.extend([171, 180]);
        assert_eq!(buffer(&m).to_points().timestamps, expected);
        let frozen = m.freeze();
        let key = SeriesKey::new("root.db.d1", "s1");
        assert_eq!(frozen.read(0, &key).unwrap().timestamps, expected);
    }

    #[test]
    fn a_second_point_sets_the_step_and_a_wrong_one_breaks_it() {
        for (runs, regular) in [
            (vec![vec![5], vec![7], vec![9, 11]], true),
            (vec![vec![5], vec![7, 9]], true),
            (vec![vec![5], vec![7, 10]], false),
            (vec![vec![5], vec![5]], false),
            (vec![vec![5], vec![4]], false),
            (vec![vec![5, 6], vec![8]], false),
            (vec![vec![5, 6], vec![7, 9]], false),
            (vec![vec![5, 6], vec![7, 8]], true),
            // Overflow: the step past i64::MAX ends the regular form, it does not wrap.
            (vec![vec![i64::MAX - 1], vec![i64::MAX]], true),
            (vec![vec![i64::MIN, 0], vec![i64::MAX]], false),
            (vec![vec![i64::MIN], vec![0, i64::MAX]], false),
            // A difference past i64::MAX is no step, however it wraps.
            (vec![vec![i64::MIN, i64::MAX]], false),
            (vec![vec![i64::MIN + 1, 1]], false),
        ] {
            let mut m = Memtable::default();
            for run in &runs {
                append(&mut m, run);
            }
            assert_eq!(buffer(&m).is_regular(), regular, "{runs:?}");
            let all: Vec<i64> = runs.concat();
            assert_eq!(buffer(&m).to_points().timestamps, all, "{runs:?}");
        }
    }

    /// A reference memtable of one series: every point appended, sorted stably by time,
    /// the last of equal timestamps kept.
    fn model(points: &[(i64, f64)]) -> PointColumn {
        let mut sorted = points.to_vec();
        sorted.sort_by_key(|p| p.0);
        let mut out = PointColumn::new(DataType::Double);
        for (n, &(t, v)) in sorted.iter().enumerate() {
            if sorted.get(n + 1).is_some_and(|next| next.0 == t) {
                continue;
            }
            out.timestamps.push(t);
            out.values.push(Value::Double(v));
        }
        out
    }

    proptest::proptest! {
        /// Runs regular, jittered, repeated, out of order and with nulls, near the ends of
        /// i64 too: whatever form the buffer keeps, reads before and after freeze and the
        /// flush's borrowed points equal the reference.
        #[test]
        fn every_form_reads_what_was_written(
            runs in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        Just(0i64),
                        Just(i64::MAX - 40),
                        Just(i64::MIN),
                        -1000i64..1000,
                    ],
                    proptest::prop_oneof![Just(1i64), Just(10), -3i64..4],
                    1usize..6,
                    proptest::option::of(0usize..6),
                    proptest::prop_oneof![Just(0i64), Just(0), -2i64..3],
                ),
                1..12,
            )
        ) {
            let mut m = Memtable::default();
            let mut written = Vec::new();
            let mut next = 0.0;
            let mut last = None;
            for (start, step, len, null, jitter) in runs {
                // A run continues the previous one half the time (the common case).
                let start = match last {
                    Some(t) if start % 2 == 0 => t,
                    _ => start,
                };
                let ts: Vec<i64> = (0..len as i64)
                    .map(|i| start.saturating_add(step.saturating_mul(i + 1)).saturating_add(
                        if i == 1 { jitter } else { 0 },
                    ))
                    .collect();
                let values: Vec<f64> = ts.iter().map(|_| { next += 1.0; next }).collect();
                let nulls = null.filter(|&row| row < len).map(|row| {
                    let mut bits = NullBitmap::new(len);
                    bits.set_null(row);
                    bits
                });
                for (row, (&t, &v)) in ts.iter().zip(&values).enumerate() {
                    if nulls.as_ref().is_none_or(|bits| !bits.is_null(row)) {
                        written.push((t, v));
                    }
                }
                last = ts.last().copied();
                m.apply(&tablet("root.db.d1", &ts, &values, nulls).as_ref(), |_| 0, |_, _| {
                    Side::Sequence
                });
            }
            let expected = model(&written);
            let key = SeriesKey::new("root.db.d1", "s1");
            if expected.is_empty() {
                proptest::prop_assert!(m.read(0, &key).is_none_or(|p| p.is_empty()));
                return Ok(());
            }
            proptest::prop_assert_eq!(m.read(0, &key).unwrap(), expected.clone());
            let frozen = m.freeze();
            proptest::prop_assert_eq!(frozen.read(0, &key).unwrap(), expected.clone());
            let buffer = frozen.partitions[&0].sequence.get(&key).unwrap();
            // Left over from an earlier series: replaced, not appended to.
            let mut scratch = ReadScratch {
                timestamps: vec![7; 3],
                values: Values::Double(vec![0.5; 2]),
            };
            let points = buffer.points(&mut scratch);
            proptest::prop_assert_eq!(points.timestamps, &expected.timestamps[..]);
            proptest::prop_assert_eq!(points.values, &expected.values);
        }
    }
}
