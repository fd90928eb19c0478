//! Byte- and bit-level primitives the codecs share: LEB128 varints, zigzag, a bounds-checked
//! byte cursor and LSB-first bit streams.
//!
//! Every read validates against the bytes that remain and returns a [`CodecError`]; nothing
//! here panics on input.

use super::CodecError;

/// The most bytes a LEB128 varint of a u64 takes.
const VARINT_BYTES_MAX: usize = 10;

/// Maps signed to unsigned so that small magnitudes of either sign get small codes.
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(code: u64) -> i64 {
    ((code >> 1) as i64) ^ -((code & 1) as i64)
}

/// Appends `value` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `value` zigzagged, as a LEB128 varint.
pub fn put_signed_varint(out: &mut Vec<u8>, value: i64) {
    put_varint(out, zigzag(value));
}

/// The bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// The bits needed to hold `value` (0 for 0).
pub fn bit_width(value: u64) -> u32 {
    64 - value.leading_zeros()
}

/// A bounds-checked reader over a byte slice.
#[derive(Clone, Debug)]
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> ByteReader<'a> {
        ByteReader { bytes, position: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.position
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or(CodecError::Truncated { what })?;
        self.position += 1;
        Ok(byte)
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if len > self.remaining() {
            return Err(CodecError::Truncated { what });
        }
        let slice = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let bytes = self.take(8, what)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    /// A LEB128 varint; rejects encodings longer than a u64 needs.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for index in 0..VARINT_BYTES_MAX {
            let byte = self.u8(what)?;
            let payload = u64::from(byte & 0x7f);
            if index == VARINT_BYTES_MAX - 1 && byte > 1 {
                return Err(CodecError::Invalid { what });
            }
            value |= payload << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::Invalid { what })
    }

    /// A zigzagged LEB128 varint.
    pub fn signed_varint(&mut self, what: &'static str) -> Result<i64, CodecError> {
        self.varint(what).map(unzigzag)
    }

    /// A varint that must fit in `usize` and be at most `max`.
    pub fn length(&mut self, max: usize, what: &'static str) -> Result<usize, CodecError> {
        let value = self.varint(what)?;
        usize::try_from(value)
            .ok()
            .filter(|&v| v <= max)
            .ok_or(CodecError::Invalid { what })
    }

    /// Fails unless every byte was read: trailing bytes mean the stream is not what the
    /// encoder wrote.
    pub fn finish(&self, what: &'static str) -> Result<(), CodecError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(CodecError::Invalid { what })
        }
    }
}

/// Writes values of 0..=64 bits LSB-first into bytes.
#[derive(Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    accumulator: u64,
    filled_bits: u32,
}

impl BitWriter {
    pub fn with_capacity(bytes: usize) -> BitWriter {
        BitWriter {
            bytes: Vec::with_capacity(bytes),
            accumulator: 0,
            filled_bits: 0,
        }
    }

    /// Appends the low `bits` bits of `value` (the rest must be zero).
    pub fn write(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 64);
        debug_assert!(
            bits == 64 || value >> bits == 0,
            "value wider than {bits} bits"
        );
        if bits == 0 {
            return;
        }
        self.accumulator |= value << self.filled_bits;
        let total = self.filled_bits + bits;
        if total >= 64 {
            self.bytes
                .extend_from_slice(&self.accumulator.to_le_bytes());
            // The bits of `value` that did not fit; a shift by 64 would overflow.
            let consumed = 64 - self.filled_bits;
            self.accumulator = if consumed == 64 { 0 } else { value >> consumed };
            self.filled_bits = total - 64;
        } else {
            self.filled_bits = total;
        }
    }

    pub fn write_bit(&mut self, bit: bool) {
        self.write(u64::from(bit), 1);
    }

    /// Appends the stream, padded with zero bits to a whole byte, to `out`.
    pub fn finish_into(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        let tail_bytes = self.filled_bits.div_ceil(8) as usize;
        out.extend_from_slice(&self.accumulator.to_le_bytes()[..tail_bytes]);
    }
}

/// Reads values of 0..=64 bits LSB-first from bytes, bounds-checked.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    position_bits: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            position_bits: 0,
        }
    }

    /// The 8 bytes from `index`, zero-padded past the end.
    fn load_u64(&self, index: usize) -> u64 {
        match self.bytes.get(index..index + 8) {
            Some(slice) => {
                let mut array = [0u8; 8];
                array.copy_from_slice(slice);
                u64::from_le_bytes(array)
            }
            None => {
                let mut array = [0u8; 8];
                let tail = self.bytes.get(index..).unwrap_or(&[]);
                array[..tail.len()].copy_from_slice(tail);
                u64::from_le_bytes(array)
            }
        }
    }

    pub fn read(&mut self, bits: u32, what: &'static str) -> Result<u64, CodecError> {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return Ok(0);
        }
        let end = self.position_bits + bits as usize;
        if end > self.bytes.len() * 8 {
            return Err(CodecError::Truncated { what });
        }
        let byte = self.position_bits / 8;
        let shift = (self.position_bits % 8) as u32;
        let mut value = self.load_u64(byte) >> shift;
        if shift + bits > 64 {
            value |= u64::from(self.bytes[byte + 8]) << (64 - shift);
        }
        self.position_bits = end;
        Ok(if bits == 64 {
            value
        } else {
            value & ((1u64 << bits) - 1)
        })
    }

    pub fn read_bit(&mut self, what: &'static str) -> Result<bool, CodecError> {
        Ok(self.read(1, what)? == 1)
    }

    /// Whole bytes the bits read so far occupy.
    pub fn bytes_consumed(&self) -> usize {
        self.position_bits.div_ceil(8)
    }

    /// Fails unless the stream ended within its last byte and the padding bits are zero.
    pub fn finish(mut self, what: &'static str) -> Result<(), CodecError> {
        if self.bytes_consumed() != self.bytes.len() {
            return Err(CodecError::Invalid { what });
        }
        let padding = (self.bytes.len() * 8 - self.position_bits) as u32;
        if self.read(padding, what)? != 0 {
            return Err(CodecError::Invalid { what });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zigzag_roundtrips_extremes() {
        for v in [0, 1, -1, i64::MAX, i64::MIN, 63, -64] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let bytes = [0xffu8; 11];
        assert!(ByteReader::new(&bytes).varint("v").is_err());
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(max.len(), VARINT_BYTES_MAX);
        assert_eq!(ByteReader::new(&max).varint("v").unwrap(), u64::MAX);
    }

    proptest! {
        #[test]
        fn varints_roundtrip(values in proptest::collection::vec(any::<u64>(), 0..50)) {
            let mut out = Vec::new();
            for &v in &values {
                put_varint(&mut out, v);
                prop_assert_eq!(varint_len(v), {
                    let mut one = Vec::new();
                    put_varint(&mut one, v);
                    one.len()
                });
            }
            let mut reader = ByteReader::new(&out);
            for &v in &values {
                prop_assert_eq!(reader.varint("v").unwrap(), v);
            }
            prop_assert!(reader.finish("end").is_ok());
        }

        #[test]
        fn bits_roundtrip(items in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..100)) {
            let items: Vec<(u64, u32)> = items
                .into_iter()
                .map(|(v, b)| (if b == 64 { v } else { v & ((1u64 << b) - 1) }, b))
                .collect();
            let mut writer = BitWriter::default();
            for &(v, b) in &items {
                writer.write(v, b);
            }
            let mut out = Vec::new();
            writer.finish_into(&mut out);
            let mut reader = BitReader::new(&out);
            for &(v, b) in &items {
                prop_assert_eq!(reader.read(b, "v").unwrap(), v);
            }
            prop_assert!(reader.finish("end").is_ok());
        }
    }
}
