//! The WAL payload of a write: a tablet, encoded little-endian and column by column so
//! encoding is a few copies per column, not work per point.
//!
//! Two record kinds. [`KIND_TABLET_COMPACT`], what this build writes (data format 3 on):
//! ```text
//! u16 device_len, device, u32 rows, u16 columns,
//! u8 times: 0 listed: rows × i64 | 1 evenly stepped: i64 first, i64 step (> 0; rows ≥ 2,
//!   columns ≥ 1, row i at first + i × step)
//! per column: u16 name_len, name, u8 type, u8 has_nulls, [ceil(rows/8) null bitmap],
//!   u8 form: 0 values as below | 1 16-bit digits | 2 32-bit digits (DOUBLE only: then
//!   u8 exponent ≤ 9, rows × i16 or i32, row i's value digit_i / 10^exponent bit for bit)
//! values: BOOLEAN 1 byte each; INT32/FLOAT 4; INT64/DOUBLE 8; TEXT per row u32 len + bytes
//! ```
//! [`KIND_TABLET`], what builds of data formats 1 and 2 wrote, read still:
//! ```text
//! u16 device_len, device, u32 rows, u16 columns, rows × i64 timestamps,
//! per column: u16 name_len, name, u8 type, u8 has_nulls, [ceil(rows/8) null bitmap], values
//! ```
//! A sensor's decimals (`23.45`) and fixed sampling period make the compact record about a
//! quarter of the other: the standard workload's 1,000-point request takes 2.2 KB of WAL
//! instead of 8.8 KB. Its digits are found once, before the record is logged, and the
//! memtable appends them as they are (`memtable::DecimalRun`), so the conversion the
//! memtable made anyway is not paid twice.
//!
//! The WAL record around it is checksummed; decoding still checks every length, so a bug
//! or a bad disk becomes a typed error, never a panic.

use std::sync::Arc;

use bytes::Bytes;

use crate::codec::float::{Float, POWERS_OF_TEN};
use crate::memtable::DECIMAL_EXPONENT_MAX;
use crate::memtable::decimal::digits_of;
use crate::memtable::{DecimalRun, DigitsRef};
use crate::types::{
    ColumnRef, DataType, NullBitmap, Tablet, TabletColumn, TabletRef, Values, ValuesRef,
};

/// The WAL record kind of a tablet write of data formats 1 and 2 (read, no longer
/// written but by tests).
pub const KIND_TABLET: u8 = 1;

/// The WAL record kind of a tablet write in the compact form (data format 3 on).
pub const KIND_TABLET_COMPACT: u8 = 3;

/// Whether `kind` is one of a tablet write's record kinds.
pub fn is_tablet(kind: u8) -> bool {
    kind == KIND_TABLET || kind == KIND_TABLET_COMPACT
}

/// Decodes the payload of a tablet record of either kind ([`is_tablet`]).
pub fn decode_kind(kind: u8, payload: &[u8]) -> Result<Tablet, DecodeError> {
    match kind {
        KIND_TABLET => decode(payload),
        KIND_TABLET_COMPACT => decode_compact(payload),
        other => Err(DecodeError(format!("record kind {other} is not a tablet"))),
    }
}

/// A tablet prepared for its compact record: whether its timestamps step evenly, and the
/// digits of each DOUBLE column that has them, in buffers reused from write to write.
#[derive(Debug, Default)]
pub struct TabletRecord {
    /// The step of evenly stepped timestamps (two rows or more, one column or more).
    step: Option<i64>,
    /// One per column.
    forms: Vec<Form>,
    narrow: Vec<i16>,
    wide: Vec<i32>,
}

/// How a column's values are kept in a compact record.
#[derive(Clone, Copy, Debug)]
enum Form {
    Values,
    /// Digits from `start` in `narrow` (16-bit) or `wide`, one per row.
    Digits {
        exponent: usize,
        wide: bool,
        start: usize,
    },
}

const FORM_VALUES: u8 = 0;
const FORM_NARROW: u8 = 1;
const FORM_WIDE: u8 = 2;
const TIMES_LISTED: u8 = 0;
const TIMES_STEPPED: u8 = 1;

/// The bytes of digits a [`TabletRecord`] keeps between writes (a few standard requests'
/// worth); a larger tablet's buffers are freed after it ([`TabletRecord::done`]).
const KEPT_BYTES_MAX: usize = 64 << 10;

impl TabletRecord {
    /// Readies the buffers for the next tablet: kept while small, freed after a large one,
    /// so one large write does not hold its region's memory afterwards.
    pub fn done(&mut self) {
        let bytes = 2 * self.narrow.capacity() + 4 * self.wide.capacity();
        if bytes > KEPT_BYTES_MAX {
            *self = TabletRecord::default();
        }
    }

    fn clear(&mut self) {
        self.step = None;
        self.forms.clear();
        self.narrow.clear();
        self.wide.clear();
    }

    /// Prepares `tablet`'s record: finds its timestamps' step and its DOUBLE columns'
    /// digits (a column with a null row keeps its doubles).
    pub fn prepare(&mut self, tablet: &TabletRef<'_>) {
        self.clear();
        self.step = match crate::memtable::Shape::of(tablet.timestamps) {
            crate::memtable::Shape::Regular(step) if !tablet.columns.is_empty() => Some(step),
            _ => None,
        };
        for column in &tablet.columns {
            let form = match column.values {
                ValuesRef::Double(values) if !column.has_nulls() => {
                    let start = (self.narrow.len(), self.wide.len());
                    match digits_of(values, &mut self.narrow, &mut self.wide) {
                        Some((exponent, wide)) => Form::Digits {
                            exponent,
                            wide,
                            start: if wide { start.1 } else { start.0 },
                        },
                        None => Form::Values,
                    }
                }
                _ => Form::Values,
            };
            self.forms.push(form);
        }
    }

    /// Column `index`'s digits, for the memtable (`None`: it keeps its values).
    pub(crate) fn converted(&self, index: usize, rows: usize) -> Option<DecimalRun<'_>> {
        match *self.forms.get(index)? {
            Form::Values => None,
            Form::Digits {
                exponent,
                wide,
                start,
            } => Some(DecimalRun {
                exponent,
                digits: if wide {
                    DigitsRef::Wide(&self.wide[start..start + rows])
                } else {
                    DigitsRef::Narrow(&self.narrow[start..start + rows])
                },
            }),
        }
    }

    /// How many bytes [`TabletRecord::encode`] appends for the prepared `tablet`.
    pub fn encoded_len(&self, tablet: &TabletRef<'_>) -> usize {
        let rows = tablet.rows();
        let times = if self.step.is_some() { 16 } else { 8 * rows };
        let header = 2 + tablet.device.len() + 4 + 2 + 1 + times;
        let columns: usize = tablet
            .columns
            .iter()
            .zip(&self.forms)
            .map(|(column, form)| {
                let values = match form {
                    Form::Values => values_len(column.values),
                    Form::Digits { wide: false, .. } => 1 + 2 * rows,
                    Form::Digits { wide: true, .. } => 1 + 4 * rows,
                };
                column_header_len(column, rows) + 1 + values
            })
            .sum();
        header + columns
    }

    /// Appends the compact record of the prepared `tablet` ([`TabletRecord::encoded_len`]
    /// bytes) to `out`.
    pub fn encode(&self, tablet: &TabletRef<'_>, out: &mut Vec<u8>) {
        let rows = tablet.rows();
        put_str16(out, tablet.device);
        out.extend_from_slice(&(rows as u32).to_le_bytes());
        out.extend_from_slice(&(tablet.columns.len() as u16).to_le_bytes());
        match self.step {
            Some(step) => {
                out.push(TIMES_STEPPED);
                out.extend_from_slice(&tablet.timestamps[0].to_le_bytes());
                out.extend_from_slice(&step.to_le_bytes());
            }
            None => {
                out.push(TIMES_LISTED);
                put_fixed(out, tablet.timestamps);
            }
        }
        for (column, form) in tablet.columns.iter().zip(&self.forms) {
            put_column_header(out, column, rows);
            match *form {
                Form::Values => {
                    out.push(FORM_VALUES);
                    put_values(out, column.values);
                }
                Form::Digits {
                    exponent,
                    wide,
                    start,
                } => {
                    out.push(if wide { FORM_WIDE } else { FORM_NARROW });
                    out.push(exponent as u8);
                    let digits = start..start + rows;
                    if wide {
                        put_fixed(out, &self.wide[digits]);
                    } else {
                        put_fixed(out, &self.narrow[digits]);
                    }
                }
            }
        }
    }
}

/// Bytes of a column's name, type, null flag and bitmap.
fn column_header_len(column: &ColumnRef<'_>, rows: usize) -> usize {
    let bitmap = if column.has_nulls() {
        rows.div_ceil(8)
    } else {
        0
    };
    2 + column.measurement.len() + 1 + 1 + bitmap
}

/// Bytes of a column's values.
fn values_len(values: ValuesRef<'_>) -> usize {
    match values {
        ValuesRef::Boolean(v) => v.len(),
        ValuesRef::Int32(v) => 4 * v.len(),
        ValuesRef::Float(v) => 4 * v.len(),
        ValuesRef::Int64(v) => 8 * v.len(),
        ValuesRef::Double(v) => 8 * v.len(),
        ValuesRef::Text(v) => v.iter().map(|s| 4 + s.len()).sum(),
    }
}

/// How many bytes [`encode`] appends for `tablet`, so a buffer is sized once (or a WAL
/// record's length announced before its payload is encoded in place).
pub fn encoded_len(tablet: &TabletRef<'_>) -> usize {
    let rows = tablet.rows();
    let header = 2 + tablet.device.len() + 4 + 2 + 8 * rows;
    let columns: usize = tablet
        .columns
        .iter()
        .map(|column| column_header_len(column, rows) + values_len(column.values))
        .sum();
    header + columns
}

/// Appends the [`KIND_TABLET`] encoding of `tablet` ([`encoded_len`] bytes) to `out`
/// (sized by the caller).
pub fn encode(tablet: &TabletRef<'_>, out: &mut Vec<u8>) {
    let rows = tablet.rows();
    put_str16(out, tablet.device);
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    out.extend_from_slice(&(tablet.columns.len() as u16).to_le_bytes());
    put_fixed(out, tablet.timestamps);
    for column in &tablet.columns {
        put_column_header(out, column, rows);
        put_values(out, column.values);
    }
}

/// Appends a column's name, type, null flag and bitmap.
fn put_column_header(out: &mut Vec<u8>, column: &ColumnRef<'_>, rows: usize) {
    put_str16(out, column.measurement);
    out.push(column.values.data_type().code());
    match column.nulls {
        Some(bitmap) if column.has_nulls() => {
            out.push(1);
            // Exactly ceil(rows / 8) bytes: a shorter bitmap's missing rows are not null.
            let bytes = rows.div_ceil(8);
            let kept = bitmap.len().min(bytes);
            out.extend_from_slice(&bitmap[..kept]);
            out.resize(out.len() + bytes - kept, 0);
        }
        _ => out.push(0),
    }
}

/// Appends a column's values.
fn put_values(out: &mut Vec<u8>, values: ValuesRef<'_>) {
    match values {
        ValuesRef::Boolean(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        ValuesRef::Int32(v) => put_fixed(out, v),
        ValuesRef::Int64(v) => put_fixed(out, v),
        ValuesRef::Float(v) => put_fixed(out, v),
        ValuesRef::Double(v) => put_fixed(out, v),
        ValuesRef::Text(v) => {
            for s in v {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
        }
    }
}

/// Appends fixed-width numbers little-endian: one copy of the slice's bytes on
/// little-endian hosts, a conversion per value elsewhere.
fn put_fixed<T: zerocopy::IntoBytes + zerocopy::Immutable + ToLe>(out: &mut Vec<u8>, values: &[T]) {
    if cfg!(target_endian = "little") {
        out.extend_from_slice(zerocopy::IntoBytes::as_bytes(values));
    } else {
        for v in values {
            v.put_le(out);
        }
    }
}

/// A number's little-endian bytes.
trait ToLe {
    fn put_le(&self, out: &mut Vec<u8>);
}

macro_rules! to_le {
    ($($t:ty),*) => {$(
        impl ToLe for $t {
            fn put_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
to_le!(i16, i32, i64, f32, f64);

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Why a payload failed to decode.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                DecodeError(format!(
                    "{n} bytes wanted at offset {}, {} in all",
                    self.at,
                    self.bytes.len()
                ))
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn str16(&mut self) -> Result<Arc<str>, DecodeError> {
        let len = u16::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Arc::from)
            .map_err(|_| DecodeError("name is not UTF-8".into()))
    }

    fn fixed<T, const N: usize>(
        &mut self,
        rows: usize,
        f: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, DecodeError> {
        let bytes = self.take(
            rows.checked_mul(N)
                .ok_or_else(|| DecodeError("length overflow".into()))?,
        )?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
            .collect())
    }

    /// `rows` values of `data_type` as [`put_values`] writes them.
    fn values(&mut self, data_type: DataType, rows: usize) -> Result<Values, DecodeError> {
        Ok(match data_type {
            DataType::Boolean => Values::Boolean(self.fixed(rows, |[b]: [u8; 1]| b != 0)?),
            DataType::Int32 => Values::Int32(self.fixed(rows, i32::from_le_bytes)?),
            DataType::Int64 => Values::Int64(self.fixed(rows, i64::from_le_bytes)?),
            DataType::Float => Values::Float(self.fixed(rows, f32::from_le_bytes)?),
            DataType::Double => Values::Double(self.fixed(rows, f64::from_le_bytes)?),
            DataType::Text => {
                let mut v = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let len = u32::from_le_bytes(self.array()?) as usize;
                    v.push(Bytes::copy_from_slice(self.take(len)?));
                }
                Values::Text(v)
            }
        })
    }
}

/// Decodes a [`KIND_TABLET`] payload (written by [`encode`]).
pub fn decode(payload: &[u8]) -> Result<Tablet, DecodeError> {
    decode_either(payload, false, None)
}

/// Decodes a [`KIND_TABLET_COMPACT`] payload (written by [`TabletRecord::encode`]).
pub fn decode_compact(payload: &[u8]) -> Result<Tablet, DecodeError> {
    decode_either(payload, true, None)
}

/// Decodes a tablet record of either kind ([`decode_kind`]), keeping a compact record's
/// digits in `record` for the memtable ([`TabletRecord::converted`]), as the leader's
/// write did: a follower then appends them instead of converting the doubles again.
/// Digits that did not come from [`TabletRecord::prepare`] (an entry damaged past its
/// checks) still read back as the doubles decoded here: the memtable keeps `digit /
/// 10^exponent` at whatever exponent and width it holds them, or converts the doubles when
/// they do not fit.
pub fn decode_kind_into(
    kind: u8,
    payload: &[u8],
    record: &mut TabletRecord,
) -> Result<Tablet, DecodeError> {
    record.clear();
    match kind {
        KIND_TABLET_COMPACT => decode_either(payload, true, Some(record)),
        kind => decode_kind(kind, payload),
    }
}

/// Decodes either kind; `record`, for a compact one, receives each column's form and
/// digits.
fn decode_either(
    payload: &[u8],
    compact: bool,
    mut record: Option<&mut TabletRecord>,
) -> Result<Tablet, DecodeError> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let device = r.str16()?;
    let rows = u32::from_le_bytes(r.array()?) as usize;
    let columns = u16::from_le_bytes(r.array()?) as usize;
    let times = if compact {
        r.array::<1>()?[0]
    } else {
        TIMES_LISTED
    };
    // A listed row costs 8 bytes of timestamp, and an evenly stepped one at least a byte
    // in each column: a bigger count is corrupt, and checking first keeps a bad count
    // from allocating.
    let (row_bytes, what) = match times {
        TIMES_LISTED => (8, "listed"),
        TIMES_STEPPED => (1, "evenly stepped"),
        other => return Err(DecodeError(format!("unknown timestamp form {other}"))),
    };
    if rows > payload.len() / row_bytes {
        return Err(DecodeError(format!(
            "{rows} {what} rows cannot fit in {} bytes",
            payload.len()
        )));
    }
    let timestamps = if times == TIMES_STEPPED {
        let first = i64::from_le_bytes(r.array()?);
        let step = i64::from_le_bytes(r.array()?);
        stepped(first, step, rows, columns)?
    } else {
        r.fixed(rows, i64::from_le_bytes)?
    };
    let mut out = Vec::with_capacity(columns.min(payload.len()));
    for _ in 0..columns {
        let measurement = r.str16()?;
        let code = r.array::<1>()?[0];
        let data_type = DataType::from_code(code)
            .ok_or_else(|| DecodeError(format!("unknown type code {code}")))?;
        let nulls = match r.array::<1>()?[0] {
            0 => None,
            1 => Some(NullBitmap::from_bytes(r.take(rows.div_ceil(8))?.to_vec())),
            other => return Err(DecodeError(format!("bad null flag {other}"))),
        };
        let form = if compact {
            r.array::<1>()?[0]
        } else {
            FORM_VALUES
        };
        let (values, kept) = match (form, data_type) {
            (FORM_VALUES, _) => (r.values(data_type, rows)?, Form::Values),
            (FORM_NARROW | FORM_WIDE, DataType::Double) => {
                let exponent = r.array::<1>()?[0] as usize;
                let power = *POWERS_OF_TEN
                    .get(exponent)
                    .filter(|_| exponent <= DECIMAL_EXPONENT_MAX)
                    .ok_or_else(|| DecodeError(format!("digit exponent {exponent}")))?;
                let wide = form == FORM_WIDE;
                let digits = r.take(rows * if wide { 4 } else { 2 })?;
                let (doubles, start) = match record.as_deref_mut() {
                    Some(record) if wide => {
                        keep(&mut record.wide, digits, i32::from_le_bytes, power)
                    }
                    Some(record) => keep(&mut record.narrow, digits, i16::from_le_bytes, power),
                    None if wide => (scaled(digits, i32::from_le_bytes, power, |_| ()), 0),
                    None => (scaled(digits, i16::from_le_bytes, power, |_| ()), 0),
                };
                let kept = Form::Digits {
                    exponent,
                    wide,
                    start,
                };
                (Values::Double(doubles), kept)
            }
            (form, data_type) => {
                return Err(DecodeError(format!(
                    "value form {form} for a {data_type} column"
                )));
            }
        };
        if let Some(record) = record.as_deref_mut() {
            record.forms.push(kept);
        }
        out.push(TabletColumn {
            measurement,
            values,
            nulls,
        });
    }
    if r.at != payload.len() {
        return Err(DecodeError(format!(
            "{} trailing bytes",
            payload.len() - r.at
        )));
    }
    Ok(Tablet {
        device,
        timestamps,
        columns: out,
    })
}

/// The doubles of little-endian digits (`N` bytes each, read by `digit`) at `power`,
/// handing each digit to `keep`.
fn scaled<D: Into<i64> + Copy, const N: usize>(
    bytes: &[u8],
    digit: fn([u8; N]) -> D,
    power: f64,
    mut keep: impl FnMut(D),
) -> Vec<f64> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let d = digit(chunk.try_into().expect("chunks_exact yields N bytes"));
            keep(d);
            f64::from_scaled(d.into(), power)
        })
        .collect()
}

/// [`scaled`], keeping the digits at the end of `kept`: the doubles, and where the digits
/// start in `kept`.
fn keep<D: Into<i64> + Copy, const N: usize>(
    kept: &mut Vec<D>,
    bytes: &[u8],
    digit: fn([u8; N]) -> D,
    power: f64,
) -> (Vec<f64>, usize) {
    let start = kept.len();
    (scaled(bytes, digit, power, |d| kept.push(d)), start)
}

/// The timestamps `first + i × step` of an evenly stepped record, checked as
/// [`TabletRecord::prepare`] writes them: two rows or more, a column or more, a positive
/// step, and no timestamp past `i64`'s range.
fn stepped(first: i64, step: i64, rows: usize, columns: usize) -> Result<Vec<i64>, DecodeError> {
    let last = i64::try_from(rows.saturating_sub(1))
        .ok()
        .and_then(|n| step.checked_mul(n))
        .and_then(|offset| first.checked_add(offset));
    if rows < 2 || columns == 0 || step <= 0 || last.is_none() {
        return Err(DecodeError(format!(
            "evenly stepped timestamps from {first} by {step}, {rows} rows, {columns} columns"
        )));
    }
    Ok((0..rows as i64).map(|i| first + i * step).collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `tablet`'s compact record.
    fn compact(tablet: &Tablet) -> Vec<u8> {
        let mut record = TabletRecord::default();
        record.prepare(&tablet.as_ref());
        let mut payload = Vec::new();
        record.encode(&tablet.as_ref(), &mut payload);
        assert_eq!(payload.len(), record.encoded_len(&tablet.as_ref()));
        payload
    }

    /// A tablet's [`KIND_TABLET`] bytes: equal exactly when the tablets are, bit for bit
    /// (NaNs, `-0.0` and null rows' placeholders included).
    fn bits(tablet: &Tablet) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(&tablet.as_ref(), &mut bytes);
        bytes
    }

    /// The standard workload's request: one device, 10 DOUBLE series of a random walk
    /// with two places, 100 rows a second apart.
    fn standard_request() -> Tablet {
        let mut value = 2_000i64;
        Tablet {
            device: Arc::from("root.perf.g0.d0"),
            timestamps: (0..100).map(|i| 1_700_000_000_000 + i * 1_000).collect(),
            columns: (0..10)
                .map(|series| TabletColumn {
                    measurement: Arc::from(format!("s{series}").as_str()),
                    values: Values::Double(
                        (0..100)
                            .map(|i| {
                                value += (i * 7 + series) % 13 - 6;
                                value as f64 / 100.0
                            })
                            .collect(),
                    ),
                    nulls: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_standard_request_takes_a_quarter_of_the_bytes_and_decodes_bit_for_bit() {
        let tablet = standard_request();
        let payload = compact(&tablet);
        // 15 + 4 + 2 header, 1 + 16 stepped timestamps, per column 2 + 2 name, type, null
        // flag, form, exponent and 100 16-bit digits.
        assert_eq!(
            payload.len(),
            2 + 15 + 4 + 2 + 1 + 16 + 10 * (2 + 2 + 4 + 200)
        );
        assert_eq!(
            encoded_len(&tablet.as_ref()),
            2 + 15 + 4 + 2 + 800 + 10 * (4 + 2 + 800)
        );
        let back = decode_compact(&payload).unwrap();
        assert_eq!(bits(&back), bits(&tablet));
        assert_eq!(decode_kind(KIND_TABLET_COMPACT, &payload).unwrap(), back);
        // Every truncation is an error, never a panic.
        for cut in 0..payload.len() {
            assert!(decode_compact(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_decoded_record_keeps_the_digits_its_writer_found() {
        let mut tablet = standard_request();
        // A wide column and one of plain doubles beside the narrow ones.
        tablet.columns[1].values = Values::Double(vec![123_456.75; 100]);
        tablet.columns[2].values = Values::Double(vec![0.1 + 0.2; 100]);
        let mut written = TabletRecord::default();
        written.prepare(&tablet.as_ref());
        let mut payload = Vec::new();
        written.encode(&tablet.as_ref(), &mut payload);
        let mut read = TabletRecord::default();
        // What the buffers held before is dropped.
        read.narrow.extend([1, 2, 3]);
        let back = decode_kind_into(KIND_TABLET_COMPACT, &payload, &mut read).unwrap();
        assert_eq!(bits(&back), bits(&tablet));
        let digits = |record: &TabletRecord, column| format!("{:?}", record.converted(column, 100));
        for column in 0..10 {
            assert_eq!(
                digits(&read, column),
                digits(&written, column),
                "column {column}"
            );
        }
        assert!(digits(&read, 1).contains("Wide") && digits(&read, 0).contains("Narrow"));
        assert!(read.converted(2, 100).is_none());
        // A record of the earlier kind leaves none.
        let mut earlier = Vec::new();
        encode(&tablet.as_ref(), &mut earlier);
        let back = decode_kind_into(KIND_TABLET, &earlier, &mut read).unwrap();
        assert_eq!(bits(&back), bits(&tablet));
        assert!((0..10).all(|column| read.converted(column, 100).is_none()));
    }

    #[test]
    fn buffers_are_kept_for_small_tablets_and_freed_after_a_large_one() {
        let mut record = TabletRecord::default();
        record.prepare(&standard_request().as_ref());
        record.done();
        assert!(record.narrow.capacity() >= 1000, "kept for the next write");
        let rows = 100_000;
        let large = Tablet {
            device: Arc::from("root.sg.d1"),
            timestamps: (0..rows).collect(),
            columns: vec![TabletColumn {
                measurement: Arc::from("s"),
                values: Values::Double((0..rows).map(|i| i as f64 / 4.0).collect()),
                nulls: None,
            }],
        };
        record.prepare(&large.as_ref());
        assert!(record.converted(0, rows as usize).is_some());
        record.done();
        assert_eq!((record.narrow.capacity(), record.wide.capacity()), (0, 0));
    }

    #[test]
    fn hostile_compact_payloads_are_typed_errors() {
        let tablet = standard_request();
        let good = compact(&tablet);
        // Offsets in the record: the timestamp form, the first and step, the first
        // column's type, form and exponent.
        let times = 2 + 15 + 4 + 2;
        let column = times + 1 + 16 + 2 + 2;
        let patched = |at: usize, bytes: &[u8]| {
            let mut payload = good.clone();
            payload[at..at + bytes.len()].copy_from_slice(bytes);
            decode_compact(&payload).unwrap_err().0
        };
        assert!(patched(times, &[2]).contains("timestamp form"));
        for step in [0i64, -1000] {
            assert!(patched(times + 9, &step.to_le_bytes()).contains("evenly stepped"));
        }
        // The last timestamp past i64's range.
        let near_max = (i64::MAX - 10).to_le_bytes();
        assert!(patched(times + 1, &near_max).contains("evenly stepped"));
        // A row count no column could hold, and one row (stepped needs two).
        assert!(patched(2 + 15, &u32::MAX.to_le_bytes()).contains("cannot fit"));
        assert!(patched(2 + 15, &1u32.to_le_bytes()).contains("evenly stepped"));
        // Digits in an INT64 column, an unknown form, an exponent past 9.
        assert!(patched(column, &[DataType::Int64.code()]).contains("value form 1"));
        assert!(patched(column + 2, &[3]).contains("value form 3"));
        assert!(patched(column + 3, &[10]).contains("digit exponent 10"));
        // No column: an evenly stepped record needs one.
        let mut empty = Vec::new();
        put_str16(&mut empty, "root.d");
        empty.extend_from_slice(&2u32.to_le_bytes());
        empty.extend_from_slice(&0u16.to_le_bytes());
        empty.push(TIMES_STEPPED);
        empty.extend_from_slice(&1i64.to_le_bytes());
        empty.extend_from_slice(&1i64.to_le_bytes());
        assert!(decode_compact(&empty).unwrap_err().0.contains("0 columns"));
        assert!(
            decode_kind(77, &good)
                .unwrap_err()
                .0
                .contains("not a tablet")
        );
        let mut record = TabletRecord::default();
        assert!(decode_kind_into(77, &good, &mut record).is_err());
        let damaged = &good[..good.len() - 1];
        assert!(decode_kind_into(KIND_TABLET_COMPACT, damaged, &mut record).is_err());
    }

    /// A column of `data_type` with `rows` values drawn from `seed`: DOUBLEs of several
    /// places, and ones no exponent keeps.
    fn column(
        data_type: DataType,
        rows: usize,
        seed: u64,
        places: u32,
        nulls: Option<u8>,
    ) -> TabletColumn {
        let draw = |i: usize| {
            seed.wrapping_mul(6364136223846793005)
                .wrapping_add((i as u64).wrapping_mul(1442695040888963407))
                >> 20
        };
        let values = match data_type {
            DataType::Boolean => Values::Boolean((0..rows).map(|i| draw(i) % 2 == 0).collect()),
            DataType::Int32 => Values::Int32((0..rows).map(|i| draw(i) as i32).collect()),
            DataType::Int64 => Values::Int64((0..rows).map(|i| draw(i) as i64).collect()),
            DataType::Float => Values::Float((0..rows).map(|i| draw(i) as f32 / 7.0).collect()),
            DataType::Double => Values::Double(
                (0..rows)
                    .map(|i| match places {
                        0..=6 => (draw(i) % 5_000_000) as f64 / 10f64.powi(places as i32) - 40.0,
                        7 => f64::from_bits(draw(i) ^ seed),
                        _ => [f64::NAN, -0.0, f64::INFINITY, 0.1 + 0.2][i % 4],
                    })
                    .collect(),
            ),
            DataType::Text => Values::Text(
                (0..rows)
                    .map(|i| Bytes::from(format!("t{}", draw(i) % 1000)))
                    .collect(),
            ),
        };
        let nulls = nulls.map(|mask| {
            let mut bitmap = NullBitmap::new(rows);
            for row in (0..rows).filter(|row| (mask >> (row % 8)) & 1 == 1) {
                bitmap.set_null(row);
            }
            bitmap
        });
        TabletColumn {
            measurement: Arc::from(format!("s{seed}").as_str()),
            values,
            nulls,
        }
    }

    proptest! {
        /// Any tablet: evenly stepped timestamps or not, columns of every type, with and
        /// without nulls, decimals of up to 6 places and values no exponent keeps.
        #[test]
        fn compact_records_decode_bit_for_bit(
            rows in 0usize..40,
            first in -1_000_000i64..1_000_000,
            step in prop_oneof![Just(0i64), Just(1), 1i64..100_000],
            jitter in proptest::option::of(0usize..40),
            columns in proptest::collection::vec(
                (0usize..6, any::<u64>(), 0u32..9, proptest::option::of(any::<u8>())),
                0..6,
            ),
        ) {
            let mut timestamps: Vec<i64> = (0..rows as i64).map(|i| first + i * step).collect();
            if let Some(row) = jitter.filter(|&row| row < rows) {
                timestamps[row] += 1;
            }
            let tablet = Tablet {
                device: Arc::from("root.sg.d1"),
                timestamps,
                columns: columns
                    .iter()
                    .map(|&(kind, seed, places, nulls)| {
                        column(DataType::ALL[kind], rows, seed, places, nulls)
                    })
                    .collect(),
            };
            let payload = compact(&tablet);
            let back = decode_compact(&payload).unwrap();
            prop_assert_eq!(bits(&back), bits(&tablet));
            for cut in 0..payload.len() {
                prop_assert!(decode_compact(&payload[..cut]).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_compact(&bytes);
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn roundtrip_every_type_with_nulls() {
        let mut nulls = NullBitmap::new(3);
        nulls.set_null(2);
        let tablet = Tablet {
            device: Arc::from("root.db.d1"),
            timestamps: vec![3, 1, 2],
            columns: vec![
                TabletColumn {
                    measurement: Arc::from("b"),
                    values: Values::Boolean(vec![true, false, true]),
                    nulls: None,
                },
                TabletColumn {
                    measurement: Arc::from("i"),
                    values: Values::Int32(vec![1, -2, 0]),
                    nulls: Some(nulls),
                },
                TabletColumn {
                    measurement: Arc::from("l"),
                    values: Values::Int64(vec![i64::MIN, 0, i64::MAX]),
                    nulls: None,
                },
                TabletColumn {
                    measurement: Arc::from("f"),
                    values: Values::Float(vec![1.5, -0.0, f32::NAN]),
                    nulls: None,
                },
                TabletColumn {
                    measurement: Arc::from("d"),
                    values: Values::Double(vec![1.25, 2.5, -3.0]),
                    nulls: None,
                },
                TabletColumn {
                    measurement: Arc::from("t"),
                    values: Values::Text(vec![Bytes::from("a"), Bytes::new(), Bytes::from("ccc")]),
                    nulls: None,
                },
            ],
        };
        let mut buf = Vec::new();
        encode(&tablet.as_ref(), &mut buf);
        assert_eq!(buf.len(), encoded_len(&tablet.as_ref()));
        let back = decode(&buf).unwrap();
        assert_eq!(back.timestamps, tablet.timestamps);
        assert_eq!(back.columns[1], tablet.columns[1]);
        assert_eq!(back.columns[5], tablet.columns[5]);
        let Values::Float(f) = &back.columns[3].values else {
            panic!()
        };
        assert!(f[2].is_nan() && f[1].to_bits() == (-0.0f32).to_bits());
        // Every truncation is an error, never a panic.
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_borrowed_tablet_encodes_whole_bitmaps_and_decodes_to_its_points() {
        // A bitmap shorter than the rows (the rows past it are not null), one longer, and
        // one with no bit set: the record holds ceil(rows / 8) bytes or none.
        let device: Arc<str> = Arc::from("root.db.d1");
        let timestamps: Vec<i64> = (0..20).collect();
        let values: Vec<f64> = (0..20).map(f64::from).collect();
        let short = [0b0000_0010u8];
        let long = [0, 0, 0b0000_1000, 0xff];
        let none = [0u8, 0, 0];
        let column = |measurement, nulls| crate::types::ColumnRef {
            measurement,
            values: ValuesRef::Double(&values),
            nulls,
        };
        let tablet = TabletRef {
            device: &device,
            timestamps: &timestamps,
            columns: vec![
                column("short", Some(&short[..])),
                column("long", Some(&long[..])),
                column("none", Some(&none[..])),
                column("absent", None),
            ],
        };
        let mut buf = Vec::new();
        encode(&tablet, &mut buf);
        assert_eq!(buf.len(), encoded_len(&tablet));
        let back = decode(&buf).unwrap();
        assert_eq!(back.device, device);
        assert_eq!(back.timestamps, timestamps);
        let nulls = |i: usize| -> Vec<usize> {
            (0..20)
                .filter(|&row| back.columns[i].is_null(row))
                .collect()
        };
        assert_eq!(nulls(0), [1]);
        assert_eq!(nulls(1), [19]);
        assert_eq!(back.columns[1].nulls.as_ref().unwrap().as_bytes().len(), 3);
        assert!(back.columns[2].nulls.is_none());
        assert!(back.columns[3].nulls.is_none());
        for column in &back.columns {
            assert_eq!(column.values, Values::Double(values.clone()));
        }
        // The owned copy of the borrowed tablet encodes the same bytes.
        let mut again = Vec::new();
        encode(&tablet.to_tablet().as_ref(), &mut again);
        assert_eq!(again, buf);
    }

    #[test]
    fn names_longer_than_the_record_can_hold_are_refused_before_logging() {
        let long: Arc<str> = Arc::from("d".repeat(crate::types::NAME_BYTES_MAX + 1));
        let fits: Arc<str> = Arc::from("d".repeat(crate::types::NAME_BYTES_MAX));
        let values = [1.0f64];
        let tablet = |device, measurement| TabletRef {
            device,
            timestamps: &[7],
            columns: vec![crate::types::ColumnRef {
                measurement,
                values: ValuesRef::Double(&values),
                nulls: None,
            }],
        };
        assert!(tablet(&long, "s").validate().is_err());
        assert!(tablet(&fits, &long).validate().is_err());
        // The longest names that fit round-trip.
        let fitting = tablet(&fits, &fits);
        fitting.validate().unwrap();
        let mut buf = Vec::new();
        encode(&fitting, &mut buf);
        let back = decode(&buf).unwrap();
        assert_eq!((&back.device, &back.columns[0].measurement), (&fits, &fits));
    }
}
