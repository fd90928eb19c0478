//! The columnar tablet: one device, many rows, many columns, laid out so the
//! server can append each column with a copy (or none) instead of per-point
//! work.
//!
//! Layout of one tablet's contents (offsets relative to its first byte, which
//! the enclosing body keeps 8-aligned; all integers little-endian):
//!
//! ```text
//! string   device                  (u32 length + UTF-8)
//! u32      row_count
//! u32      column_count
//! column_count × { string measurement, u8 type code, u8 has_null_bitmap }
//! pad to 8
//! row_count × i64                  timestamps
//! column_count × {
//!   [ceil(row_count/8) bytes null bitmap, LSB-first, 1 = null; pad to 8]  if has_null_bitmap
//!   values:
//!     BOOLEAN  row_count × u8 (0 = false, anything else true)
//!     INT32    row_count × i32       FLOAT  row_count × f32 (IEEE 754)
//!     INT64    row_count × i64       DOUBLE row_count × f64
//!     TEXT     (row_count + 1) × u32 offsets (first 0, non-decreasing),
//!              then offsets[row_count] bytes; row i = bytes[offsets[i]..offsets[i+1]]
//!   pad to 8
//! }
//! ```
//!
//! [`WireTablet`] is the owned, builder-friendly form clients fill;
//! [`TabletView`] is the server's validated zero-copy view over the received
//! `Bytes`: fixed-width columns are cast in place when the host is
//! little-endian and the slice is aligned, and copied otherwise (zerocopy does
//! the checks, no `unsafe`).

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use zerocopy::byteorder::little_endian::{I64, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout};

use crate::codec::{WireReader, WireWrite, padding_for};
use crate::error::DecodeError;
use crate::types::{DataType, NullBitmap, TypedColumn, Value, bitmap_is_null};

/// Column sections and the tablet itself are padded to this many bytes so
/// fixed-width arrays can be cast in place.
pub const SECTION_ALIGNMENT: usize = 8;

/// One column of a [`WireTablet`].
#[derive(Debug, Clone, PartialEq)]
pub struct WireColumn {
    pub measurement: String,
    pub values: TypedColumn,
    pub nulls: Option<NullBitmap>,
}

impl WireColumn {
    pub fn new(measurement: impl Into<String>, values: TypedColumn) -> Self {
        Self {
            measurement: measurement.into(),
            values,
            nulls: None,
        }
    }

    pub fn with_nulls(mut self, nulls: NullBitmap) -> Self {
        self.nulls = Some(nulls);
        self
    }

    pub fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|nulls| nulls.is_null(row))
    }

    /// The value at `row`, `None` when null or out of range.
    pub fn value(&self, row: usize) -> Option<Value> {
        if self.is_null(row) {
            None
        } else {
            self.values.get(row)
        }
    }
}

/// An owned tablet, as a client builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct WireTablet {
    pub device: String,
    pub is_aligned: bool,
    pub timestamps: Vec<i64>,
    pub columns: Vec<WireColumn>,
}

impl WireTablet {
    /// An empty tablet with the given schema, to be filled with [`WireTablet::push_row`].
    pub fn new(device: impl Into<String>, schema: &[(&str, DataType)]) -> Self {
        Self {
            device: device.into(),
            is_aligned: false,
            timestamps: Vec::new(),
            columns: schema
                .iter()
                .map(|(measurement, data_type)| {
                    WireColumn::new(*measurement, TypedColumn::empty(*data_type))
                })
                .collect(),
        }
    }

    pub fn row_count(&self) -> usize {
        self.timestamps.len()
    }

    /// Appends one row; `None` cells are null. Fails (appending nothing) on a
    /// wrong cell count or a type mismatch.
    pub fn push_row(&mut self, timestamp: i64, cells: &[Option<Value>]) -> Result<(), String> {
        if cells.len() != self.columns.len() {
            return Err(format!(
                "row has {} cells, tablet has {} columns",
                cells.len(),
                self.columns.len()
            ));
        }
        for (column, cell) in self.columns.iter().zip(cells) {
            if let Some(value) = cell
                && value.data_type() != column.values.data_type()
            {
                return Err(format!(
                    "column {} is {}, value is {}",
                    column.measurement,
                    column.values.data_type().name(),
                    value.data_type().name()
                ));
            }
        }
        let row = self.timestamps.len();
        self.timestamps.push(timestamp);
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            let pushed = column.values.push(cell.as_ref());
            assert!(pushed, "types were checked above");
            if cell.is_none() || column.nulls.is_some() {
                column
                    .nulls
                    .get_or_insert_with(|| NullBitmap::new(row))
                    .push(cell.is_none());
            }
        }
        Ok(())
    }

    /// Checks that every column and bitmap has one entry per timestamp.
    pub fn validate(&self) -> Result<(), String> {
        let rows = self.timestamps.len();
        if u32::try_from(rows).is_err() || u32::try_from(self.columns.len()).is_err() {
            return Err("tablet too large".to_owned());
        }
        for column in &self.columns {
            if column.values.len() != rows {
                return Err(format!(
                    "column {} has {} values for {rows} rows",
                    column.measurement,
                    column.values.len()
                ));
            }
            if let Some(nulls) = &column.nulls
                && nulls.len() != rows
            {
                return Err(format!(
                    "column {} null bitmap has {} rows, not {rows}",
                    column.measurement,
                    nulls.len()
                ));
            }
            if let TypedColumn::Text(values) = &column.values {
                let total: usize = values.iter().map(Bytes::len).sum();
                if u32::try_from(total).is_err() {
                    return Err(format!(
                        "column {} holds over 4 GiB of text",
                        column.measurement
                    ));
                }
            }
        }
        Ok(())
    }

    /// Appends the tablet contents (see the module docs) to `out`. The caller
    /// keeps `out.len()` at a multiple of 8 from the body start.
    ///
    /// Panics if [`WireTablet::validate`] fails: callers validate user input first.
    pub fn encode_contents(&self, out: &mut BytesMut) {
        if let Err(reason) = self.validate() {
            panic!("encoding an invalid tablet: {reason}");
        }
        let start = out.len();
        let rows = self.timestamps.len();
        out.put_string(&self.device);
        out.put_u32_le(rows as u32);
        out.put_u32_le(self.columns.len() as u32);
        for column in &self.columns {
            out.put_string(&column.measurement);
            out.put_u8(column.values.data_type() as u8);
            out.put_bool_byte(column.nulls.is_some());
        }
        out.pad_to(start, SECTION_ALIGNMENT);
        for timestamp in &self.timestamps {
            out.put_i64_le(*timestamp);
        }
        for column in &self.columns {
            if let Some(nulls) = &column.nulls {
                out.put_slice(nulls.as_bytes());
                out.pad_to(start, SECTION_ALIGNMENT);
            }
            match &column.values {
                TypedColumn::Boolean(values) => {
                    values.iter().for_each(|value| out.put_u8(u8::from(*value)))
                }
                TypedColumn::Int32(values) => {
                    values.iter().for_each(|value| out.put_i32_le(*value))
                }
                TypedColumn::Int64(values) => {
                    values.iter().for_each(|value| out.put_i64_le(*value))
                }
                TypedColumn::Float(values) => {
                    values.iter().for_each(|value| out.put_f32_le(*value))
                }
                TypedColumn::Double(values) => {
                    values.iter().for_each(|value| out.put_f64_le(*value))
                }
                TypedColumn::Text(values) => {
                    let mut offset = 0u32;
                    out.put_u32_le(0);
                    for value in values {
                        offset += value.len() as u32;
                        out.put_u32_le(offset);
                    }
                    values.iter().for_each(|value| out.put_slice(value));
                }
            }
            out.pad_to(start, SECTION_ALIGNMENT);
        }
        debug_assert_eq!((out.len() - start) % SECTION_ALIGNMENT, 0);
    }
}

/// Where one column's sections lie inside a [`TabletView`]'s bytes.
#[derive(Debug, Clone)]
struct ColumnLayout {
    /// Where the name lies in the tablet's bytes (UTF-8, checked when decoded).
    measurement: Range<usize>,
    data_type: DataType,
    nulls: Option<Range<usize>>,
    values: Range<usize>,
    /// TEXT only: the data bytes after the offsets.
    text_data: Range<usize>,
}

/// A validated, zero-copy view of one received tablet.
#[derive(Debug, Clone)]
pub struct TabletView {
    bytes: Bytes,
    /// Where the device path lies in `bytes` (UTF-8, checked when decoded).
    device: Range<usize>,
    is_aligned: bool,
    row_count: usize,
    timestamps: Range<usize>,
    columns: Vec<ColumnLayout>,
}

impl TabletView {
    /// Validates `bytes` (one tablet's contents) and records where each section lies.
    pub fn decode(bytes: Bytes, is_aligned: bool) -> Result<Self, DecodeError> {
        let mut reader = WireReader::new(bytes.clone());
        let device = reader.string_range("device")?;
        let row_count = reader.u32("row count")? as usize;
        let column_count = reader.count("column count", 6)?;
        let mut schema = Vec::with_capacity(column_count);
        for _ in 0..column_count {
            let measurement = reader.string_range("measurement")?;
            let data_type = crate::types::data_type_of_code(reader.u8("data type")?)?;
            let has_nulls = reader.bool("null bitmap flag")?;
            schema.push((measurement, data_type, has_nulls));
        }
        reader.align(SECTION_ALIGNMENT)?;
        let timestamps = section(&mut reader, row_count, 8, "timestamps")?;
        let mut columns = Vec::with_capacity(column_count);
        for (measurement, data_type, has_nulls) in schema {
            let nulls = if has_nulls {
                let range = section(
                    &mut reader,
                    NullBitmap::bytes_for(row_count),
                    1,
                    "null bitmap",
                )?;
                reader.align(SECTION_ALIGNMENT)?;
                Some(range)
            } else {
                None
            };
            let (values, text_data) = match data_type.fixed_width_bytes() {
                Some(width) => (section(&mut reader, row_count, width, "values")?, 0..0),
                None => {
                    let offsets_count = row_count.checked_add(1).ok_or_else(|| {
                        DecodeError::invalid("text offsets", "row count overflow")
                    })?;
                    let offsets = section(&mut reader, offsets_count, 4, "text offsets")?;
                    let data_length = validate_text_offsets(&bytes[offsets.clone()])?;
                    (offsets, section(&mut reader, data_length, 1, "text data")?)
                }
            };
            reader.align(SECTION_ALIGNMENT)?;
            columns.push(ColumnLayout {
                measurement,
                data_type,
                nulls,
                values,
                text_data,
            });
        }
        reader.finish()?;
        Ok(Self {
            bytes,
            device,
            is_aligned,
            row_count,
            timestamps,
            columns,
        })
    }

    /// The tablet's contents as received, for forwarding without re-encoding.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn device(&self) -> &str {
        self.text(&self.device)
    }

    /// A name of the tablet, where it lies in its bytes.
    fn text(&self, range: &Range<usize>) -> &str {
        std::str::from_utf8(&self.bytes[range.clone()]).expect("checked as UTF-8 when decoded")
    }

    pub fn is_aligned(&self) -> bool {
        self.is_aligned
    }

    pub fn row_count(&self) -> usize {
        self.row_count
    }

    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Timestamps as little-endian wire integers: always zero-copy.
    pub fn timestamps_le(&self) -> &[I64] {
        cast_le(&self.bytes[self.timestamps.clone()])
    }

    /// Timestamps as native integers: borrowed when the host is little-endian
    /// and the bytes are 8-aligned in memory, else copied.
    pub fn timestamps(&self) -> Cow<'_, [i64]> {
        cast_or_copy(&self.bytes[self.timestamps.clone()], i64::from_le_bytes)
    }

    /// Column `index`; panics when `index >= column_count()` (a caller bug).
    pub fn column(&self, index: usize) -> ColumnView<'_> {
        ColumnView {
            tablet: self,
            layout: &self.columns[index],
        }
    }

    pub fn columns(&self) -> impl ExactSizeIterator<Item = ColumnView<'_>> {
        self.columns.iter().map(|layout| ColumnView {
            tablet: self,
            layout,
        })
    }

    /// Copies the view into an owned tablet (tests, forwarding to other formats).
    pub fn to_wire_tablet(&self) -> WireTablet {
        WireTablet {
            device: self.device().to_owned(),
            is_aligned: self.is_aligned,
            timestamps: self.timestamps().into_owned(),
            columns: self
                .columns()
                .map(|column| column.to_wire_column())
                .collect(),
        }
    }
}

/// One column of a [`TabletView`].
#[derive(Debug, Clone, Copy)]
pub struct ColumnView<'a> {
    tablet: &'a TabletView,
    layout: &'a ColumnLayout,
}

/// A column's values as decoded slices. Fixed-width columns borrow the frame
/// when possible (see [`TabletView::timestamps`]).
#[derive(Debug, Clone)]
pub enum ColumnValues<'a> {
    /// One byte per row; non-zero is true.
    Boolean(&'a [u8]),
    Int32(Cow<'a, [i32]>),
    Int64(Cow<'a, [i64]>),
    Float(Cow<'a, [f32]>),
    Double(Cow<'a, [f64]>),
    Text(TextColumn<'a>),
}

/// A TEXT column: `row_count + 1` offsets into `data`, validated on decode.
#[derive(Debug, Clone, Copy)]
pub struct TextColumn<'a> {
    offsets: &'a [U32],
    data: &'a [u8],
}

impl<'a> TextColumn<'a> {
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `row`'s bytes; `None` past the end.
    pub fn get(&self, row: usize) -> Option<&'a [u8]> {
        let start = self.offsets.get(row)?.get() as usize;
        let end = self.offsets.get(row + 1)?.get() as usize;
        self.data.get(start..end)
    }

    pub fn offsets(&self) -> &'a [U32] {
        self.offsets
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

impl<'a> ColumnView<'a> {
    pub fn measurement(&self) -> &'a str {
        self.tablet.text(&self.layout.measurement)
    }

    pub fn data_type(&self) -> DataType {
        self.layout.data_type
    }

    /// The raw LSB-first bitmap (1 = null), if the column has one.
    pub fn null_bitmap(&self) -> Option<&'a [u8]> {
        self.layout
            .nulls
            .clone()
            .map(|range| &self.tablet.bytes[range])
    }

    pub fn is_null(&self, row: usize) -> bool {
        self.null_bitmap()
            .is_some_and(|bits| bitmap_is_null(bits, row))
    }

    /// The value bytes exactly as on the wire (little-endian fixed width, or TEXT offsets).
    pub fn raw_values(&self) -> &'a [u8] {
        &self.tablet.bytes[self.layout.values.clone()]
    }

    pub fn values(&self) -> ColumnValues<'a> {
        let raw = self.raw_values();
        match self.layout.data_type {
            DataType::Boolean => ColumnValues::Boolean(raw),
            DataType::Int32 => ColumnValues::Int32(cast_or_copy(raw, i32::from_le_bytes)),
            DataType::Int64 => ColumnValues::Int64(cast_or_copy(raw, i64::from_le_bytes)),
            DataType::Float => ColumnValues::Float(cast_or_copy(raw, f32::from_le_bytes)),
            DataType::Double => ColumnValues::Double(cast_or_copy(raw, f64::from_le_bytes)),
            DataType::Text => ColumnValues::Text(TextColumn {
                offsets: cast_le(raw),
                data: &self.tablet.bytes[self.layout.text_data.clone()],
            }),
        }
    }

    pub fn to_wire_column(&self) -> WireColumn {
        let values = match self.values() {
            ColumnValues::Boolean(bytes) => {
                TypedColumn::Boolean(bytes.iter().map(|byte| *byte != 0).collect())
            }
            ColumnValues::Int32(values) => TypedColumn::Int32(values.into_owned()),
            ColumnValues::Int64(values) => TypedColumn::Int64(values.into_owned()),
            ColumnValues::Float(values) => TypedColumn::Float(values.into_owned()),
            ColumnValues::Double(values) => TypedColumn::Double(values.into_owned()),
            ColumnValues::Text(text) => TypedColumn::Text(
                (0..text.len())
                    .map(|row| {
                        let start = text.offsets[row].get() as usize;
                        let end = text.offsets[row + 1].get() as usize;
                        let base = self.layout.text_data.start;
                        self.tablet.bytes.slice(base + start..base + end)
                    })
                    .collect(),
            ),
        };
        WireColumn {
            measurement: self.measurement().to_owned(),
            values,
            nulls: self
                .null_bitmap()
                .map(|bits| NullBitmap::from_bytes(bits, self.tablet.row_count)),
        }
    }
}

/// Takes `count × width` bytes and returns their range in the tablet.
fn section(
    reader: &mut WireReader,
    count: usize,
    width: usize,
    what: &'static str,
) -> Result<Range<usize>, DecodeError> {
    let length = count.checked_mul(width).ok_or(DecodeError::CountTooLarge {
        what,
        count: count as u64,
        remaining: reader.remaining(),
    })?;
    reader.skip(length, what)
}

/// Offsets must start at 0 and never decrease; returns the data length.
fn validate_text_offsets(bytes: &[u8]) -> Result<usize, DecodeError> {
    let offsets: &[U32] = cast_le(bytes);
    if offsets.first().map(|offset| offset.get()) != Some(0) {
        return Err(DecodeError::invalid(
            "text offsets",
            "first offset is not 0",
        ));
    }
    if offsets.windows(2).any(|pair| pair[1].get() < pair[0].get()) {
        return Err(DecodeError::invalid("text offsets", "offsets decrease"));
    }
    Ok(offsets.last().map_or(0, |offset| offset.get() as usize))
}

/// Reinterprets bytes as alignment-1 little-endian integers (always succeeds
/// for a length that is a multiple of the element size, which callers ensure).
fn cast_le<T: FromBytes + Immutable + KnownLayout>(bytes: &[u8]) -> &[T] {
    match <[T]>::ref_from_bytes(bytes) {
        Ok(slice) => slice,
        Err(_) => {
            unreachable!("section lengths are multiples of the element size and alignment is 1")
        }
    }
}

/// Borrows `bytes` as `[T]` when the host is little-endian and the slice is
/// aligned for `T`; otherwise decodes a copy.
fn cast_or_copy<const N: usize, T>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Cow<'_, [T]>
where
    T: FromBytes + Immutable + KnownLayout + Clone,
{
    if cfg!(target_endian = "little")
        && let Ok(slice) = <[T]>::ref_from_bytes(bytes)
    {
        return Cow::Borrowed(slice);
    }
    Cow::Owned(
        bytes
            .chunks_exact(N)
            .map(|chunk| {
                let mut array = [0u8; N];
                array.copy_from_slice(chunk);
                from_le(array)
            })
            .collect(),
    )
}

/// Encoded size of a tablet's contents, for pre-sizing buffers.
pub fn encoded_contents_bytes_estimate(tablet: &WireTablet) -> usize {
    let rows = tablet.row_count();
    let mut bytes = 4 + tablet.device.len() + 8 + 8 * rows + 8;
    for column in &tablet.columns {
        bytes += 4 + column.measurement.len() + 2 + 16 + NullBitmap::bytes_for(rows);
        bytes += match &column.values {
            TypedColumn::Text(values) => {
                4 * (rows + 1) + values.iter().map(Bytes::len).sum::<usize>()
            }
            other => rows * other.data_type().fixed_width_bytes().unwrap_or(0),
        };
    }
    bytes + padding_for(bytes, SECTION_ALIGNMENT)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn arb_column(rows: usize) -> impl Strategy<Value = WireColumn> {
        let values = prop_oneof![
            prop::collection::vec(any::<bool>(), rows).prop_map(TypedColumn::Boolean),
            prop::collection::vec(any::<i32>(), rows).prop_map(TypedColumn::Int32),
            prop::collection::vec(any::<i64>(), rows).prop_map(TypedColumn::Int64),
            prop::collection::vec(any::<u32>().prop_map(f32::from_bits), rows)
                .prop_map(TypedColumn::Float),
            prop::collection::vec(any::<u64>().prop_map(f64::from_bits), rows)
                .prop_map(TypedColumn::Double),
            prop::collection::vec(
                prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from),
                rows
            )
            .prop_map(TypedColumn::Text),
        ];
        let nulls = prop::option::of(
            prop::collection::vec(any::<bool>(), rows).prop_map(|n| NullBitmap::from_nulls(&n)),
        );
        ("[a-z][a-z0-9_]{0,8}", values, nulls).prop_map(|(measurement, values, nulls)| WireColumn {
            measurement,
            values,
            nulls,
        })
    }

    pub fn arb_tablet() -> impl Strategy<Value = WireTablet> {
        (0usize..40).prop_flat_map(|rows| {
            (
                "root\\.[a-z]{1,4}\\.d[0-9]{1,3}",
                any::<bool>(),
                prop::collection::vec(any::<i64>(), rows),
                prop::collection::vec(arb_column(rows), 0..5),
            )
                .prop_map(|(device, is_aligned, timestamps, columns)| WireTablet {
                    device,
                    is_aligned,
                    timestamps,
                    columns,
                })
        })
    }

    fn encode(tablet: &WireTablet) -> Bytes {
        let mut out = BytesMut::new();
        tablet.encode_contents(&mut out);
        out.freeze()
    }

    #[test]
    fn push_row_builds_null_bitmaps_lazily() {
        let mut tablet = WireTablet::new(
            "root.sg.d1",
            &[("s1", DataType::Double), ("s2", DataType::Text)],
        );
        tablet
            .push_row(1, &[Some(Value::Double(1.5)), None])
            .unwrap();
        tablet
            .push_row(
                2,
                &[
                    Some(Value::Double(2.5)),
                    Some(Value::Text(Bytes::from_static(b"x"))),
                ],
            )
            .unwrap();
        assert!(tablet.push_row(3, &[Some(Value::Int32(1)), None]).is_err());
        assert!(tablet.columns[0].nulls.is_none());
        assert!(tablet.columns[1].is_null(0));
        assert!(!tablet.columns[1].is_null(1));
        let view = TabletView::decode(encode(&tablet), false).unwrap();
        assert_eq!(view.timestamps().as_ref(), &[1, 2]);
        match view.column(0).values() {
            ColumnValues::Double(values) => assert_eq!(values.as_ref(), &[1.5, 2.5]),
            other => panic!("unexpected {other:?}"),
        }
        match view.column(1).values() {
            ColumnValues::Text(text) => assert_eq!(text.get(1), Some(&b"x"[..])),
            other => panic!("unexpected {other:?}"),
        }
        assert!(view.column(1).is_null(0));
    }

    #[test]
    fn unaligned_bytes_are_copied_not_misread() {
        let mut tablet = WireTablet::new("root.sg.d1", &[("s1", DataType::Int64)]);
        for row in 0..5 {
            tablet
                .push_row(row * 1000, &[Some(Value::Int64(row * 7))])
                .unwrap();
        }
        let encoded = encode(&tablet);
        let mut shifted = BytesMut::from(&[0u8][..]);
        shifted.extend_from_slice(&encoded);
        let view = TabletView::decode(shifted.freeze().slice(1..), false).unwrap();
        assert_eq!(view.to_wire_tablet(), tablet);
    }

    #[test]
    fn decreasing_text_offsets_are_rejected() {
        let mut tablet = WireTablet::new("d", &[("s", DataType::Text)]);
        tablet
            .push_row(1, &[Some(Value::Text(Bytes::from_static(b"ab")))])
            .unwrap();
        tablet
            .push_row(2, &[Some(Value::Text(Bytes::from_static(b"c")))])
            .unwrap();
        let mut bytes = BytesMut::from(&encode(&tablet)[..]);
        // Offsets follow the 16 timestamp bytes, which follow the 8-aligned schema.
        let schema_end = 4 + 1 + 4 + 4 + 4 + 1 + 2;
        let offsets_at = schema_end + padding_for(schema_end, 8) + 16;
        bytes[offsets_at + 4..offsets_at + 8].copy_from_slice(&5u32.to_le_bytes());
        assert!(TabletView::decode(bytes.freeze(), false).is_err());
    }

    /// Names are borrowed from the frame, so their UTF-8 is checked when the tablet is
    /// decoded: a bad name is a decode error naming the field, never a panic later.
    #[test]
    fn names_that_are_not_utf8_are_rejected_at_decode() {
        let tablet = WireTablet::new("root.sg.d1", &[("s1", DataType::Int64)]);
        let encoded = encode(&tablet);
        // The device's bytes follow its u32 length; the measurement's are found by value.
        let device_at = 4;
        let mut bad_device = BytesMut::from(&encoded[..]);
        bad_device[device_at] = 0xff;
        let error = TabletView::decode(bad_device.freeze(), false).unwrap_err();
        assert!(error.to_string().contains("device"), "{error}");
        let measurement_at = encoded
            .windows(2)
            .position(|window| window == b"s1")
            .expect("the name is in the bytes");
        let mut bad_measurement = BytesMut::from(&encoded[..]);
        bad_measurement[measurement_at] = 0xff;
        let error = TabletView::decode(bad_measurement.freeze(), false).unwrap_err();
        assert!(error.to_string().contains("measurement"), "{error}");
        let view = TabletView::decode(encoded, false).unwrap();
        assert_eq!(view.device(), "root.sg.d1");
        assert_eq!(view.column(0).measurement(), "s1");
    }

    proptest! {
        #[test]
        fn tablet_roundtrip(tablet in arb_tablet()) {
            let bytes = encode(&tablet);
            prop_assert_eq!(bytes.len() % SECTION_ALIGNMENT, 0);
            let view = TabletView::decode(bytes, tablet.is_aligned).unwrap();
            prop_assert_eq!(view.to_wire_tablet(), tablet);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = TabletView::decode(Bytes::from(bytes), false);
        }

        #[test]
        fn mutated_tablets_never_panic(tablet in arb_tablet(), position in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = BytesMut::from(&encode(&tablet)[..]);
            if !bytes.is_empty() {
                let position = position % bytes.len();
                bytes[position] = byte;
            }
            if let Ok(view) = TabletView::decode(bytes.freeze(), false) {
                let _ = view.to_wire_tablet();
            }
        }
    }
}
