//! The record log's file format: a header, then records back to back.
//!
//! ```text
//! file header (16 bytes):
//!   magic "IOTDBRLG" (8) | version u16 LE | flags u16 LE (0) | crc32c of the first 12 bytes (4)
//! record (RECORD_HEADER_BYTES + payload):
//!   crc32c u32 LE | payload length u32 LE | index u64 LE | payload
//!   the crc covers everything after itself: length, index and payload.
//! ```
//!
//! Indexes are dense: the first record is 1 and each next one is one more. Decoding checks
//! every field against the bytes that remain and returns a typed reason, never panics.

use thiserror::Error;

use crate::limits::LOG_RECORD_PAYLOAD_BYTES_MAX;

pub const FILE_MAGIC: [u8; 8] = *b"IOTDBRLG";
pub const FILE_VERSION: u16 = 1;
pub const FILE_HEADER_BYTES: usize = 16;
pub const RECORD_HEADER_BYTES: usize = 16;

/// What is wrong with the bytes at some offset.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("header incomplete: {have} of {need} bytes")]
    Incomplete { have: usize, need: usize },
    #[error("payload length {0} exceeds the limit")]
    TooLong(u32),
    #[error("checksum mismatch")]
    Checksum,
    #[error("bad magic")]
    Magic,
    #[error("unsupported version {0}")]
    Version(u16),
}

/// Appends the file header to `buffer`.
pub fn encode_file_header(buffer: &mut Vec<u8>) {
    let start = buffer.len();
    buffer.extend_from_slice(&FILE_MAGIC);
    buffer.extend_from_slice(&FILE_VERSION.to_le_bytes());
    buffer.extend_from_slice(&0u16.to_le_bytes());
    let crc = crc32c::crc32c(&buffer[start..]);
    buffer.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(buffer.len() - start, FILE_HEADER_BYTES);
}

/// Checks the file header at the start of `data`.
pub fn decode_file_header(data: &[u8]) -> Result<(), DecodeError> {
    let header = data
        .get(..FILE_HEADER_BYTES)
        .ok_or(DecodeError::Incomplete {
            have: data.len(),
            need: FILE_HEADER_BYTES,
        })?;
    if crc32c::crc32c(&header[..12]) != read_u32(header, 12) {
        return Err(DecodeError::Checksum);
    }
    if header[..8] != FILE_MAGIC {
        return Err(DecodeError::Magic);
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FILE_VERSION {
        return Err(DecodeError::Version(version));
    }
    Ok(())
}

/// Appends one record to `buffer`.
pub fn encode_record(buffer: &mut Vec<u8>, index: u64, payload: &[u8]) {
    assert!(
        payload.len() <= LOG_RECORD_PAYLOAD_BYTES_MAX,
        "the caller checks the payload size"
    );
    let start = buffer.len();
    buffer.extend_from_slice(&[0; 4]);
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&index.to_le_bytes());
    buffer.extend_from_slice(payload);
    let crc = crc32c::crc32c(&buffer[start + 4..]);
    buffer[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Bytes a record with `payload_bytes` of payload takes.
pub fn record_bytes(payload_bytes: usize) -> usize {
    RECORD_HEADER_BYTES + payload_bytes
}

/// A record decoded in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub index: u64,
    pub payload_start: usize,
    pub end: usize,
}

/// Decodes the record at `offset` of `data`.
pub fn decode_record(data: &[u8], offset: usize) -> Result<DecodedRecord, DecodeError> {
    let remaining = data.len().saturating_sub(offset);
    if remaining < RECORD_HEADER_BYTES {
        return Err(DecodeError::Incomplete {
            have: remaining,
            need: RECORD_HEADER_BYTES,
        });
    }
    let header = &data[offset..offset + RECORD_HEADER_BYTES];
    let length = read_u32(header, 4);
    if length as usize > LOG_RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::TooLong(length));
    }
    let need = RECORD_HEADER_BYTES + length as usize;
    if remaining < need {
        return Err(DecodeError::Incomplete {
            have: remaining,
            need,
        });
    }
    let end = offset + need;
    if crc32c::crc32c(&data[offset + 4..end]) != read_u32(header, 0) {
        return Err(DecodeError::Checksum);
    }
    let mut index = [0; 8];
    index.copy_from_slice(&header[8..16]);
    Ok(DecodedRecord {
        index: u64::from_le_bytes(index),
        payload_start: offset + RECORD_HEADER_BYTES,
        end,
    })
}

/// `bytes` holds at least `offset + 4` bytes (checked by every caller).
fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimRng;

    #[test]
    fn header_roundtrip_and_every_bit_flip_detected() {
        let mut header = Vec::new();
        encode_file_header(&mut header);
        assert_eq!(decode_file_header(&header), Ok(()));
        for bit in 0..header.len() * 8 {
            let mut damaged = header.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_file_header(&damaged).is_err(), "bit {bit}");
        }
        for cut in 0..FILE_HEADER_BYTES {
            assert!(decode_file_header(&header[..cut]).is_err());
        }
    }

    #[test]
    fn record_roundtrip_truncation_and_bit_flips() {
        let mut rng = SimRng::new(1);
        for round in 0..200 {
            let payload: Vec<u8> = (0..rng.below(100)).map(|_| rng.next_u64() as u8).collect();
            let prefix = rng.below(20) as usize;
            let mut buffer = vec![0xAB; prefix];
            encode_record(&mut buffer, round + 1, &payload);
            assert_eq!(buffer.len(), prefix + record_bytes(payload.len()));
            let record = decode_record(&buffer, prefix).expect("valid");
            assert_eq!(record.index, round + 1);
            assert_eq!(&buffer[record.payload_start..record.end], &payload[..]);
            assert_eq!(record.end, buffer.len());
            for cut in prefix..buffer.len() {
                assert!(decode_record(&buffer[..cut], prefix).is_err());
            }
            let bit = rng.below(((buffer.len() - prefix) * 8) as u64) as usize;
            buffer[prefix + bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&buffer, prefix).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = SimRng::new(2);
        for _ in 0..2_000 {
            let data: Vec<u8> = (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect();
            let _ = decode_record(&data, rng.below(80) as usize);
            let _ = decode_file_header(&data);
        }
        let zeros = vec![0u8; 64];
        assert!(
            decode_record(&zeros, 0).is_err(),
            "zeros are never a record"
        );
    }
}
