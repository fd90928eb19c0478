//! The WAL payload of a write: a tablet, encoded little-endian and column by column so
//! encoding is a few copies per column, not work per point.
//!
//! ```text
//! u16 device_len, device, u32 rows, u16 columns, rows × i64 timestamps,
//! per column: u16 name_len, name, u8 type, u8 has_nulls, [ceil(rows/8) null bitmap], values
//! values: BOOLEAN 1 byte each; INT32/FLOAT 4; INT64/DOUBLE 8; TEXT per row u32 len + bytes
//! ```
//! The WAL record around it is checksummed; decoding still checks every length, so a bug
//! or a bad disk becomes a typed error, never a panic.

use std::sync::Arc;

use bytes::Bytes;

use crate::types::{DataType, NullBitmap, Tablet, TabletColumn, TabletRef, Values, ValuesRef};

/// The WAL record kind of a tablet write.
pub const KIND_TABLET: u8 = 1;

/// How many bytes [`encode`] appends for `tablet`, so a buffer is sized once (or a WAL
/// record's length announced before its payload is encoded in place).
pub fn encoded_len(tablet: &TabletRef<'_>) -> usize {
    let rows = tablet.rows();
    let header = 2 + tablet.device.len() + 4 + 2 + 8 * rows;
    let columns: usize = tablet
        .columns
        .iter()
        .map(|column| {
            let bitmap = if column.has_nulls() {
                rows.div_ceil(8)
            } else {
                0
            };
            let values = match column.values {
                ValuesRef::Boolean(v) => v.len(),
                ValuesRef::Int32(v) => 4 * v.len(),
                ValuesRef::Float(v) => 4 * v.len(),
                ValuesRef::Int64(v) => 8 * v.len(),
                ValuesRef::Double(v) => 8 * v.len(),
                ValuesRef::Text(v) => v.iter().map(|s| 4 + s.len()).sum(),
            };
            2 + column.measurement.len() + 1 + 1 + bitmap + values
        })
        .sum();
    header + columns
}

/// Appends the encoding of `tablet` ([`encoded_len`] bytes) to `out` (sized by the caller).
pub fn encode(tablet: &TabletRef<'_>, out: &mut Vec<u8>) {
    let rows = tablet.rows();
    put_str16(out, tablet.device);
    out.extend_from_slice(&(rows as u32).to_le_bytes());
    out.extend_from_slice(&(tablet.columns.len() as u16).to_le_bytes());
    put_fixed(out, tablet.timestamps);
    for column in &tablet.columns {
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
        match column.values {
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
to_le!(i32, i64, f32, f64);

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
}

/// Decodes a payload written by [`encode`].
pub fn decode(payload: &[u8]) -> Result<Tablet, DecodeError> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    let device = r.str16()?;
    let rows = u32::from_le_bytes(r.array()?) as usize;
    let columns = u16::from_le_bytes(r.array()?) as usize;
    // Every row costs at least 8 bytes of timestamp: a bigger count is corrupt, and checking
    // first keeps a bad count from allocating.
    if rows > payload.len() / 8 {
        return Err(DecodeError(format!(
            "{rows} rows cannot fit in {} bytes",
            payload.len()
        )));
    }
    let timestamps = r.fixed(rows, i64::from_le_bytes)?;
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
        let values = match data_type {
            DataType::Boolean => Values::Boolean(r.fixed(rows, |[b]: [u8; 1]| b != 0)?),
            DataType::Int32 => Values::Int32(r.fixed(rows, i32::from_le_bytes)?),
            DataType::Int64 => Values::Int64(r.fixed(rows, i64::from_le_bytes)?),
            DataType::Float => Values::Float(r.fixed(rows, f32::from_le_bytes)?),
            DataType::Double => Values::Double(r.fixed(rows, f64::from_le_bytes)?),
            DataType::Text => {
                let mut v = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let len = u32::from_le_bytes(r.array()?) as usize;
                    v.push(Bytes::copy_from_slice(r.take(len)?));
                }
                Values::Text(v)
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
