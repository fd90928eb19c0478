//! TEXT columns (dictionary or plain) and BOOLEAN columns (bit-packed).
//!
//! ```text
//! [TEXT_PLAIN] (length varint, bytes)*
//! [TEXT_DICTIONARY] [entries varint] (length varint, bytes)* [indices: integer::encode, order 0]
//! [BOOLEAN_BITS] [count bits, LSB-first, zero-padded]
//! ```
//!
//! Decoded strings are slices of one shared buffer, so a column costs one allocation.

use std::collections::HashMap;

use bytes::Bytes;

use super::CodecError;
use super::bits::{BitReader, BitWriter, ByteReader, bit_width, put_varint, varint_len};
use super::integer;

pub const TEXT_PLAIN: u8 = 0;
pub const TEXT_DICTIONARY: u8 = 1;
pub const BOOLEAN_BITS: u8 = 0;

/// Appends the TEXT encoding of `values`: a dictionary when it is estimated smaller.
pub fn encode_text(values: &[Bytes], out: &mut Vec<u8>) {
    let mut plain_bytes = 0usize;
    let mut dictionary: HashMap<&[u8], u32> = HashMap::new();
    let mut entries: Vec<&[u8]> = Vec::new();
    let mut indices = Vec::with_capacity(values.len());
    for value in values {
        plain_bytes += varint_len(value.len() as u64) + value.len();
        let next = entries.len() as u32;
        let index = *dictionary.entry(value.as_ref()).or_insert(next);
        if index == next {
            entries.push(value.as_ref());
        }
        indices.push(i64::from(index));
    }
    let entry_bytes: usize = entries
        .iter()
        .map(|e| varint_len(e.len() as u64) + e.len())
        .sum();
    let index_bytes = (values.len() * bit_width(entries.len() as u64) as usize).div_ceil(8);
    if entry_bytes + index_bytes < plain_bytes {
        out.push(TEXT_DICTIONARY);
        put_varint(out, entries.len() as u64);
        for entry in &entries {
            put_varint(out, entry.len() as u64);
            out.extend_from_slice(entry);
        }
        integer::encode(&indices, 0, out);
    } else {
        out.push(TEXT_PLAIN);
        for value in values {
            put_varint(out, value.len() as u64);
            out.extend_from_slice(value);
        }
    }
}

/// Decodes `count` strings; `bytes` must be exactly one encoded column.
pub fn decode_text(bytes: &[u8], count: usize) -> Result<Vec<Bytes>, CodecError> {
    let mut reader = ByteReader::new(bytes);
    let tag = reader.u8("text encoding")?;
    // One copy of the column; every string is a slice of it.
    let shared = Bytes::copy_from_slice(bytes);
    let values = match tag {
        TEXT_PLAIN => {
            let mut values = Vec::with_capacity(count.min(bytes.len()));
            for _ in 0..count {
                values.push(read_string(&mut reader, &shared)?);
            }
            values
        }
        TEXT_DICTIONARY => {
            let entry_count = reader.length(reader.remaining(), "dictionary entries")?;
            let mut entries = Vec::with_capacity(entry_count);
            for _ in 0..entry_count {
                entries.push(read_string(&mut reader, &shared)?);
            }
            let indices = integer::decode(&mut reader, count)?;
            indices
                .into_iter()
                .map(|i| {
                    usize::try_from(i)
                        .ok()
                        .and_then(|i| entries.get(i).cloned())
                        .ok_or(CodecError::Invalid {
                            what: "dictionary index",
                        })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        tag => {
            return Err(CodecError::UnknownTag {
                what: "text encoding",
                tag,
            });
        }
    };
    reader.finish("text column trailing bytes")?;
    Ok(values)
}

fn read_string(reader: &mut ByteReader<'_>, shared: &Bytes) -> Result<Bytes, CodecError> {
    let len = reader.length(reader.remaining(), "string length")?;
    let start = reader.position();
    reader.take(len, "string bytes")?;
    Ok(shared.slice(start..start + len))
}

/// Appends the BOOLEAN encoding of `values`.
pub fn encode_boolean(values: &[bool], out: &mut Vec<u8>) {
    out.push(BOOLEAN_BITS);
    let mut writer = BitWriter::with_capacity(values.len() / 8 + 8);
    for &value in values {
        writer.write_bit(value);
    }
    writer.finish_into(out);
}

/// Decodes `count` booleans; `bytes` must be exactly one encoded column.
pub fn decode_boolean(bytes: &[u8], count: usize) -> Result<Vec<bool>, CodecError> {
    let mut reader = ByteReader::new(bytes);
    let tag = reader.u8("boolean encoding")?;
    if tag != BOOLEAN_BITS {
        return Err(CodecError::UnknownTag {
            what: "boolean encoding",
            tag,
        });
    }
    let payload = reader.take(reader.remaining(), "boolean bits")?;
    if payload.len() != count.div_ceil(8) {
        return Err(CodecError::Truncated {
            what: "boolean bits",
        });
    }
    let mut bits = BitReader::new(payload);
    let values = (0..count)
        .map(|_| bits.read_bit("boolean bit"))
        .collect::<Result<Vec<_>, _>>()?;
    bits.finish("boolean padding")?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip_text(values: &[Bytes]) -> u8 {
        let mut out = Vec::new();
        encode_text(values, &mut out);
        assert_eq!(decode_text(&out, values.len()).unwrap(), values);
        assert!(decode_text(&out[..out.len() - 1], values.len()).is_err());
        out[0]
    }

    #[test]
    fn repeated_strings_use_a_dictionary() {
        let values: Vec<Bytes> = (0..300)
            .map(|i| Bytes::from(format!("state-{}", i % 3)))
            .collect();
        assert_eq!(roundtrip_text(&values), TEXT_DICTIONARY);
        let unique: Vec<Bytes> = (0..300).map(|i| Bytes::from(format!("u{i}"))).collect();
        assert_eq!(roundtrip_text(&unique), TEXT_PLAIN);
        assert_eq!(roundtrip_text(&[]), TEXT_PLAIN);
    }

    proptest! {
        #[test]
        fn text_roundtrips(values in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::collection::vec(0u8..2, 0..3),
            ].prop_map(Bytes::from), 0..200)) {
            roundtrip_text(&values);
        }

        #[test]
        fn booleans_roundtrip(values in proptest::collection::vec(any::<bool>(), 0..300)) {
            let mut out = Vec::new();
            encode_boolean(&values, &mut out);
            prop_assert_eq!(decode_boolean(&out, values.len()).unwrap(), values.clone());
            prop_assert!(decode_boolean(&out[..out.len() - 1], values.len()).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                    count in 0usize..500) {
            let _ = decode_text(&bytes, count);
            let _ = decode_boolean(&bytes, count);
        }
    }
}
