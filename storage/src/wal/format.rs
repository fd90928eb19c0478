//! The WAL's on-disk format: a segment header, then records back to back.
//!
//! ```text
//! segment header (16 bytes):
//!   magic "IOTDBWAL" (8) | version u16 LE | flags u16 LE | crc32c of the first 12 bytes (4)
//!   flags: bit 0 (SEGMENT_FLAG_ZEROS_AHEAD) the file may hold zeros past its last record
//!   up to its end (written ahead so appends land inside the file); other bits are 0
//! record (RECORD_HEADER_BYTES + payload):
//!   crc32c u32 LE | payload length u32 LE | index u64 LE | kind u8 | reserved [0; 3] | payload
//!   the crc covers everything after itself: length, index, kind, reserved and payload.
//! ```
//!
//! Decoding validates every field against the bytes that remain and reports a typed reason;
//! it never panics on what it reads.

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"IOTDBWAL";

/// The format version this code writes and reads.
pub const SEGMENT_VERSION: u16 = 1;

/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 16;

/// Segment flag: zeros may follow the last record up to the end of the file, however many
/// blocks (the real storage writes them ahead of the log's end, so that an fdatasync after
/// an append finds no file size to update; see `storage`). Without it, only the padding of
/// the last block ([`is_block_padding`]) may. Every segment this code creates carries it.
pub const SEGMENT_FLAG_ZEROS_AHEAD: u16 = 1;

/// The flag bits this code knows.
const SEGMENT_FLAGS_KNOWN: u16 = SEGMENT_FLAG_ZEROS_AHEAD;

/// The unit the real storage writes segments in (direct I/O: whole, aligned blocks). A
/// segment may end in fewer than `BLOCK_BYTES` zero bytes after its last record — the
/// padding of its last block — which recovery reads as the segment's clean end; the next
/// write after it rewrites that block with the same record bytes and more.
pub const BLOCK_BYTES: usize = 4096;

/// Where, in a buffer at `address`, to put the byte at position `in_block` of a block so
/// that the block itself starts at a block-aligned address: the least offset at or past
/// `in_block` that is `in_block` bytes past an aligned address.
pub fn aligned_position(address: usize, in_block: usize) -> usize {
    let skew = address % BLOCK_BYTES;
    let position = (in_block + BLOCK_BYTES - skew) % BLOCK_BYTES;
    if position < in_block {
        position + BLOCK_BYTES
    } else {
        position
    }
}

/// Whether `tail`, what follows a segment's last record up to the end of a file of
/// `file_len` bytes, is the zero padding of its last block rather than damage: zeros, less
/// than a block, and ending where a block does.
pub fn is_block_padding(tail: &[u8], file_len: usize) -> bool {
    tail.len() < BLOCK_BYTES && is_zeros_to_a_block_end(tail, file_len)
}

/// Whether `tail`, what follows a segment's last record up to the end of a file of
/// `file_len` bytes, is zeros written ahead ([`SEGMENT_FLAG_ZEROS_AHEAD`]) or padding:
/// zeros only, however many, ending where a block does. Zeros with a record after them are
/// not: that is damage.
pub fn is_zeros_to_a_block_end(tail: &[u8], file_len: usize) -> bool {
    file_len.is_multiple_of(BLOCK_BYTES) && tail.iter().all(|&byte| byte == 0)
}

/// Bytes of a record's header (checksum, length, index, kind, reserved).
pub const RECORD_HEADER_BYTES: usize = 20;

/// The largest payload of one record (`config::WAL_RECORD_PAYLOAD_BYTES_MAX`, with its why).
/// A record larger than a group-commit batch (`config::WAL_BATCH_BYTES_MAX`) is a batch of
/// its own.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = crate::config::WAL_RECORD_PAYLOAD_BYTES_MAX;

/// Appends a segment header with `flags` to `buffer`.
pub fn encode_segment_header(buffer: &mut Vec<u8>, flags: u16) {
    let start = buffer.len();
    buffer.extend_from_slice(&SEGMENT_MAGIC);
    buffer.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    buffer.extend_from_slice(&flags.to_le_bytes());
    let crc = crc32c::crc32c(&buffer[start..]);
    buffer.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(buffer.len() - start, SEGMENT_HEADER_BYTES);
}

/// Checks a segment header at the start of `data` and returns its flags.
pub fn decode_segment_header(data: &[u8]) -> Result<u16, String> {
    let Some(header) = data.get(..SEGMENT_HEADER_BYTES) else {
        return Err(format!(
            "segment header incomplete: {} of {SEGMENT_HEADER_BYTES} bytes",
            data.len()
        ));
    };
    let stored_crc = read_u32(header, 12);
    if crc32c::crc32c(&header[..12]) != stored_crc {
        return Err("segment header checksum mismatch".to_string());
    }
    if header[..8] != SEGMENT_MAGIC {
        return Err("segment header magic mismatch".to_string());
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != SEGMENT_VERSION {
        return Err(format!("unsupported segment version {version}"));
    }
    let flags = u16::from_le_bytes([header[10], header[11]]);
    if flags & !SEGMENT_FLAGS_KNOWN != 0 {
        return Err(format!("unsupported segment flags {flags:#06x}"));
    }
    Ok(flags)
}

/// Appends one record whose payload is the concatenation of `parts` to `buffer`, computing
/// the checksum over the bytes in place so the payload is copied exactly once.
pub fn encode_record(buffer: &mut Vec<u8>, index: u64, kind: u8, parts: &[&[u8]]) {
    let payload_bytes: usize = parts.iter().map(|part| part.len()).sum();
    encode_record_with(buffer, index, kind, payload_bytes, |buffer| {
        for part in parts {
            buffer.extend_from_slice(part);
        }
    });
}

/// Appends a record whose payload of `payload_bytes` bytes `write` appends to the buffer
/// it is given (the payload is encoded where the record lies, with no copy of its own).
/// Panics if `write` appends another number of bytes: the record would be corrupt.
pub fn encode_record_with(
    buffer: &mut Vec<u8>,
    index: u64,
    kind: u8,
    payload_bytes: usize,
    write: impl FnOnce(&mut Vec<u8>),
) {
    assert!(
        payload_bytes <= RECORD_PAYLOAD_BYTES_MAX,
        "caller checks the payload size"
    );
    let start = buffer.len();
    buffer.reserve(RECORD_HEADER_BYTES + payload_bytes);
    buffer.extend_from_slice(&[0; 4]);
    buffer.extend_from_slice(&(payload_bytes as u32).to_le_bytes());
    buffer.extend_from_slice(&index.to_le_bytes());
    buffer.push(kind);
    buffer.extend_from_slice(&[0; 3]);
    write(buffer);
    assert_eq!(
        buffer.len() - start,
        RECORD_HEADER_BYTES + payload_bytes,
        "a record's payload is the length it announced"
    );
    let crc = crc32c::crc32c(&buffer[start + 4..]);
    buffer[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The bytes a record with `payload_bytes` of payload takes on disk.
pub fn record_bytes(payload_bytes: usize) -> usize {
    RECORD_HEADER_BYTES + payload_bytes
}

/// A record decoded in place: where its payload lies in the buffer it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub index: u64,
    pub kind: u8,
    /// Offset of the payload's first byte in the decoded buffer.
    pub payload_start: usize,
    pub payload_bytes: usize,
}

impl DecodedRecord {
    /// Offset just past the record.
    pub fn end(&self) -> usize {
        self.payload_start + self.payload_bytes
    }
}

/// Decodes the record at `offset` of `data`, validating length bounds, reserved bytes
/// and the checksum.
pub fn decode_record(data: &[u8], offset: usize) -> Result<DecodedRecord, String> {
    let remaining = data.len().saturating_sub(offset);
    if remaining < RECORD_HEADER_BYTES {
        return Err(format!(
            "record header incomplete: {remaining} of {RECORD_HEADER_BYTES} bytes"
        ));
    }
    let header = &data[offset..offset + RECORD_HEADER_BYTES];
    let payload_bytes = read_u32(header, 4) as usize;
    if payload_bytes > RECORD_PAYLOAD_BYTES_MAX {
        return Err(format!(
            "record payload length {payload_bytes} exceeds {RECORD_PAYLOAD_BYTES_MAX}"
        ));
    }
    if remaining - RECORD_HEADER_BYTES < payload_bytes {
        return Err(format!(
            "record incomplete: payload of {payload_bytes} bytes, {} remain",
            remaining - RECORD_HEADER_BYTES
        ));
    }
    let end = offset + RECORD_HEADER_BYTES + payload_bytes;
    let stored_crc = read_u32(header, 0);
    if crc32c::crc32c(&data[offset + 4..end]) != stored_crc {
        return Err("record checksum mismatch".to_string());
    }
    if header[17..20] != [0; 3] {
        return Err("record reserved bytes are not zero".to_string());
    }
    Ok(DecodedRecord {
        index: u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
        kind: header[16],
        payload_start: offset + RECORD_HEADER_BYTES,
        payload_bytes,
    })
}

/// The bytes are known to hold at least `offset + 4`.
fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn header_roundtrip_and_damage() {
        for flags in [0, SEGMENT_FLAG_ZEROS_AHEAD] {
            let mut buffer = Vec::new();
            encode_segment_header(&mut buffer, flags);
            assert_eq!(decode_segment_header(&buffer), Ok(flags));
        }
        let mut buffer = Vec::new();
        encode_segment_header(&mut buffer, SEGMENT_FLAG_ZEROS_AHEAD);
        assert!(decode_segment_header(&buffer[..10]).is_err());
        for bit in 0..buffer.len() * 8 {
            let mut damaged = buffer.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_segment_header(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn parts_encode_like_one_payload() {
        let mut whole = Vec::new();
        encode_record(&mut whole, 7, 3, &[b"hello world"]);
        let mut parts = Vec::new();
        encode_record(&mut parts, 7, 3, &[b"hello", b" ", b"world"]);
        assert_eq!(whole, parts);
    }

    proptest! {
        #[test]
        fn record_roundtrip(
            index: u64,
            kind: u8,
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            prefix in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let mut buffer = prefix.clone();
            encode_record(&mut buffer, index, kind, &[&payload]);
            prop_assert_eq!(buffer.len(), prefix.len() + record_bytes(payload.len()));
            let record = decode_record(&buffer, prefix.len()).unwrap();
            prop_assert_eq!(record.index, index);
            prop_assert_eq!(record.kind, kind);
            prop_assert_eq!(&buffer[record.payload_start..record.end()], &payload[..]);
            prop_assert_eq!(record.end(), buffer.len());
            // Every truncation is detected as incomplete rather than misread.
            for cut in prefix.len()..buffer.len() {
                prop_assert!(decode_record(&buffer[..cut], prefix.len()).is_err());
            }
        }

        #[test]
        fn any_flipped_bit_is_detected(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            bit_seed: usize,
        ) {
            let mut buffer = Vec::new();
            encode_record(&mut buffer, 42, 1, &[&payload]);
            let bit = bit_seed % (buffer.len() * 8);
            buffer[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_record(&buffer, 0).is_err());
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..100), offset in 0usize..120) {
            let _ = decode_record(&data, offset);
            let _ = decode_segment_header(&data);
        }
    }
}
