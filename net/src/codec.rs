//! Primitive body codecs shared by every message: little-endian integers,
//! length-prefixed strings and byte strings, options and counted lists.
//!
//! [`WireReader`] reads from a `Bytes` and checks every length against what
//! remains, so hostile input yields a [`DecodeError`], never a panic or a huge
//! allocation. Byte strings are returned as `Bytes` slices of the input (no copy).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Longest string accepted in a body (device paths, names, messages, SQL).
/// Bounds what one length prefix can make the decoder hold on to.
pub const STRING_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A bounds-checked cursor over a frame body.
#[derive(Debug, Clone)]
pub struct WireReader {
    bytes: Bytes,
    position: usize,
}

impl WireReader {
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes, position: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn position(&self) -> usize {
        self.position
    }

    /// Fails unless every byte was consumed: trailing garbage is a malformed body.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes(trailing)),
        }
    }

    /// The next `length` bytes as a zero-copy slice.
    pub fn take(&mut self, length: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let range = self.skip(length, what)?;
        Ok(self.bytes.slice(range))
    }

    /// Passes the next `length` bytes and says where they lie: [`WireReader::take`]
    /// without a handle on them (a handle is a reference count raised and dropped).
    pub fn skip(
        &mut self,
        length: usize,
        what: &'static str,
    ) -> Result<std::ops::Range<usize>, DecodeError> {
        if length > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: length - self.remaining(),
            });
        }
        let start = self.position;
        self.position += length;
        Ok(start..self.position)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        if N > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: N - self.remaining(),
            });
        }
        let mut array = [0u8; N];
        array.copy_from_slice(&self.bytes[self.position..self.position + N]);
        self.position += N;
        Ok(array)
    }

    /// Skips zero padding up to the next multiple of `alignment` from the start.
    pub fn align(&mut self, alignment: usize) -> Result<(), DecodeError> {
        let padding = padding_for(self.position, alignment);
        let pad = self.skip(padding, "padding")?;
        if self.bytes[pad].iter().any(|&byte| byte != 0) {
            return Err(DecodeError::invalid("padding", "non-zero padding byte"));
        }
        Ok(())
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::invalid(what, format!("boolean byte {other}"))),
        }
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub fn f32(&mut self, what: &'static str) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// A `u32` length then that many bytes.
    pub fn byte_string(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let range = self.byte_string_range(what)?;
        Ok(self.bytes.slice(range))
    }

    /// [`WireReader::byte_string`] without a handle on it: where its bytes lie.
    fn byte_string_range(
        &mut self,
        what: &'static str,
    ) -> Result<std::ops::Range<usize>, DecodeError> {
        let length = self.u32(what)? as usize;
        if length > STRING_BYTES_MAX {
            return Err(DecodeError::invalid(
                what,
                format!("length {length} over the limit"),
            ));
        }
        self.skip(length, what)
    }

    /// [`WireReader::string`] left where it lies: where its bytes are in the reader's
    /// buffer, checked to be UTF-8.
    pub fn string_range(
        &mut self,
        what: &'static str,
    ) -> Result<std::ops::Range<usize>, DecodeError> {
        let range = self.byte_string_range(what)?;
        if let Err(error) = std::str::from_utf8(&self.bytes[range.clone()]) {
            return Err(DecodeError::invalid(what, error.to_string()));
        }
        Ok(range)
    }

    /// A `u32` length then that many bytes of UTF-8.
    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.byte_string(what)?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(error) => Err(DecodeError::invalid(what, error.to_string())),
        }
    }

    /// A presence byte (0 or 1) then, if present, the value.
    pub fn option<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool(what)? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A `u32` element count, checked against the remaining bytes given the
    /// smallest possible encoded element, so a lying count cannot make us
    /// allocate more than the frame could describe.
    pub fn count(
        &mut self,
        what: &'static str,
        element_bytes_min: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32(what)? as usize;
        let needed = count.saturating_mul(element_bytes_min.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::CountTooLarge {
                what,
                count: count as u64,
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }

    /// A counted list.
    pub fn list<T>(
        &mut self,
        what: &'static str,
        element_bytes_min: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.count(what, element_bytes_min)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }
}

/// Bytes of zero padding that bring `position` to a multiple of `alignment`.
pub fn padding_for(position: usize, alignment: usize) -> usize {
    debug_assert!(alignment.is_power_of_two());
    (alignment - position % alignment) % alignment
}

/// Writing side: thin helpers over `BytesMut` matching [`WireReader`].
pub trait WireWrite {
    fn put_bool_byte(&mut self, value: bool);
    fn put_byte_string(&mut self, bytes: &[u8]);
    fn put_string(&mut self, text: &str);
    fn put_count(&mut self, count: usize);
    fn put_option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T));
    /// Zero padding up to a multiple of `alignment`, measured from `start`.
    fn pad_to(&mut self, start: usize, alignment: usize);
}

impl WireWrite for BytesMut {
    fn put_bool_byte(&mut self, value: bool) {
        self.put_u8(u8::from(value));
    }

    fn put_byte_string(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len() <= STRING_BYTES_MAX,
            "byte string of {} bytes over the wire limit",
            bytes.len()
        );
        self.put_u32_le(bytes.len() as u32);
        self.put_slice(bytes);
    }

    fn put_string(&mut self, text: &str) {
        self.put_byte_string(text.as_bytes());
    }

    fn put_count(&mut self, count: usize) {
        let count = u32::try_from(count).expect("list longer than u32::MAX elements");
        self.put_u32_le(count);
    }

    fn put_option<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            Some(value) => {
                self.put_u8(1);
                write(self, value);
            }
            None => self.put_u8(0),
        }
    }

    fn pad_to(&mut self, start: usize, alignment: usize) {
        let padding = padding_for(self.len() - start, alignment);
        self.put_bytes(0, padding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lying_count_is_rejected_before_allocation() {
        let mut body = BytesMut::new();
        body.put_u32_le(u32::MAX);
        let mut reader = WireReader::new(body.freeze());
        assert!(matches!(
            reader.count("items", 1),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }

    #[test]
    fn string_roundtrip_and_truncation() {
        let mut body = BytesMut::new();
        body.put_string("root.sg.d1");
        let bytes = body.freeze();
        assert_eq!(
            WireReader::new(bytes.clone()).string("s").unwrap(),
            "root.sg.d1"
        );
        let truncated = bytes.slice(..bytes.len() - 1);
        assert!(matches!(
            WireReader::new(truncated).string("s"),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
