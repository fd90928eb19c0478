//! Frames: a fixed 24-byte little-endian header followed by the body.
//!
//! ```text
//! offset size field
//!  0      4   magic        b"ITDB"
//!  4      1   version      1
//!  5      1   opcode       request opcode; responses set the high bit (0x80)
//!  6      2   flags        bit 0 MORE (a streamed response continues)
//!  8      8   request_id   chosen by the client, echoed by every response frame
//! 16      4   body_length  bytes after the header
//! 20      4   body_crc32c  crc32c (Castagnoli) of the body
//! ```
//!
//! The header is a `repr(C)` struct of `zerocopy` little-endian fields, read
//! without `unsafe`; the body is carried as a `Bytes` split off the read
//! buffer, so it reaches its consumer without a copy.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::DecodeError;

pub const MAGIC: [u8; 4] = *b"ITDB";
pub const PROTOCOL_VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 24;
/// Response frame opcodes are the request opcode with this bit set.
pub const RESPONSE_BIT: u8 = 0x80;

/// Flag: more response frames follow for the same request id.
pub const FLAG_MORE: u16 = 0x0001;
/// Flag bits a receiver understands; any other bit is rejected.
pub const FLAGS_KNOWN: u16 = FLAG_MORE;

/// The fixed frame header, byte for byte as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct FrameHeader {
    pub magic: [u8; 4],
    pub version: u8,
    pub opcode: u8,
    pub flags: U16,
    pub request_id: U64,
    pub body_length: U32,
    pub body_crc32c: U32,
}

const _: () = assert!(std::mem::size_of::<FrameHeader>() == HEADER_BYTES);

/// Operation codes. Requests are `0x01..`, their responses `0x81..`;
/// [`Opcode::Error`] (0xFF) answers a frame whose opcode we could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    Handshake = 0x01,
    Ping = 0x02,
    CreateDatabase = 0x03,
    InsertTablets = 0x04,
    QueryRaw = 0x05,
    QueryAggregate = 0x06,
    QueryLast = 0x07,
    FetchRouteTable = 0x08,
    Flush = 0x09,
    ExecuteSql = 0x0A,
    Error = 0x7F,
}

impl Opcode {
    pub const ALL: [Opcode; 11] = [
        Opcode::Handshake,
        Opcode::Ping,
        Opcode::CreateDatabase,
        Opcode::InsertTablets,
        Opcode::QueryRaw,
        Opcode::QueryAggregate,
        Opcode::QueryLast,
        Opcode::FetchRouteTable,
        Opcode::Flush,
        Opcode::ExecuteSql,
        Opcode::Error,
    ];

    pub fn from_u8(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|opcode| *opcode as u8 == code)
    }

    /// The opcode byte of this operation's response frames.
    pub fn response_code(self) -> u8 {
        self as u8 | RESPONSE_BIT
    }
}

/// One frame: header fields plus the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Raw opcode byte (may be unknown; the message layer decides).
    pub opcode: u8,
    pub flags: u16,
    pub request_id: u64,
    pub body: Bytes,
    /// The checksum the header claimed; see [`Frame::verify_checksum`].
    pub body_crc32c: u32,
}

/// A request body with its checksum taken once, ahead of sending. A body sent more than
/// once — retried, or prepared before it is needed (a benchmark's requests, a gateway's
/// batches) — is then not read again for its checksum on the way out: the frame carries
/// the checksum taken here, and the receiver verifies it as any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksummedBody {
    body: Bytes,
    crc32c: u32,
}

impl ChecksummedBody {
    pub fn new(body: Bytes) -> Self {
        let crc32c = crc32c::crc32c(&body);
        Self { body, crc32c }
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl Frame {
    pub fn new(opcode: u8, flags: u16, request_id: u64, body: Bytes) -> Self {
        Self::with_checksummed(opcode, flags, request_id, ChecksummedBody::new(body))
    }

    /// A frame of a body whose checksum was taken before ([`ChecksummedBody`]).
    pub fn with_checksummed(
        opcode: u8,
        flags: u16,
        request_id: u64,
        body: ChecksummedBody,
    ) -> Self {
        Self {
            opcode,
            flags,
            request_id,
            body: body.body,
            body_crc32c: body.crc32c,
        }
    }

    pub fn is_response(&self) -> bool {
        self.opcode & RESPONSE_BIT != 0
    }

    pub fn has_more(&self) -> bool {
        self.flags & FLAG_MORE != 0
    }

    /// A checksum mismatch on a well-framed frame only spoils this frame:
    /// the length was intact, so the stream stays in sync.
    pub fn verify_checksum(&self) -> Result<(), DecodeError> {
        let actual = crc32c::crc32c(&self.body);
        if actual != self.body_crc32c {
            return Err(DecodeError::ChecksumMismatch {
                expected: self.body_crc32c,
                actual,
            });
        }
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(DecodeError::ReservedFlags(self.flags));
        }
        Ok(())
    }

    pub fn header(&self) -> FrameHeader {
        let body_length = u32::try_from(self.body.len()).expect("frame body longer than u32::MAX");
        FrameHeader {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            opcode: self.opcode,
            flags: U16::new(self.flags),
            request_id: U64::new(self.request_id),
            body_length: U32::new(body_length),
            body_crc32c: U32::new(self.body_crc32c),
        }
    }

    /// Appends header and body to `out` (one copy of the body; writers that
    /// want zero copy send [`Frame::header`] and `body` as two buffers).
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(HEADER_BYTES + self.body.len());
        out.put_slice(self.header().as_bytes());
        out.put_slice(&self.body);
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_BYTES + self.body.len());
        self.encode_into(&mut out);
        out.freeze()
    }
}

/// Validates a header. Errors here mean framing is lost (the stream cannot be
/// resynchronised), so the connection must close.
pub fn parse_header(bytes: &[u8], body_bytes_max: u32) -> Result<FrameHeader, DecodeError> {
    let Ok((header, _)) = FrameHeader::read_from_prefix(bytes) else {
        return Err(DecodeError::Truncated {
            what: "frame header",
            needed: HEADER_BYTES - bytes.len(),
        });
    };
    if header.magic != MAGIC {
        return Err(DecodeError::BadMagic {
            found: header.magic,
        });
    }
    if header.version != PROTOCOL_VERSION {
        return Err(DecodeError::BadVersion {
            found: header.version,
        });
    }
    let length = header.body_length.get();
    if length > body_bytes_max {
        return Err(DecodeError::FrameTooLarge {
            length: u64::from(length),
            limit: u64::from(body_bytes_max),
        });
    }
    Ok(header)
}

/// Splits one complete frame off the front of `buffer`, or returns `None`
/// when more bytes are needed. The body is frozen out of the buffer without a
/// copy. Nothing is reserved for an announced body: the caller grows the
/// buffer as bytes arrive, so a header announcing 64 MiB costs nothing until
/// the bytes come. Header errors are fatal for the connection (see [`parse_header`]);
/// the checksum is left to [`Frame::verify_checksum`].
pub fn decode_frame(
    buffer: &mut BytesMut,
    body_bytes_max: u32,
) -> Result<Option<Frame>, DecodeError> {
    if buffer.len() < HEADER_BYTES {
        return Ok(None);
    }
    let header = parse_header(&buffer[..HEADER_BYTES], body_bytes_max)?;
    let body_length = header.body_length.get() as usize;
    if buffer.len() < HEADER_BYTES + body_length {
        return Ok(None);
    }
    buffer.advance(HEADER_BYTES);
    let body = buffer.split_to(body_length).freeze();
    Ok(Some(Frame {
        opcode: header.opcode,
        flags: header.flags.get(),
        request_id: header.request_id.get(),
        body,
        body_crc32c: header.body_crc32c.get(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_is_byte_exact() {
        let frame = Frame::new(
            0x04,
            FLAG_MORE,
            0x0102_0304_0506_0708,
            Bytes::from_static(b"abc"),
        );
        let bytes = frame.encode();
        assert_eq!(&bytes[0..4], b"ITDB");
        assert_eq!(bytes[4], 1);
        assert_eq!(bytes[5], 0x04);
        assert_eq!(&bytes[6..8], &[1, 0]);
        assert_eq!(&bytes[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&bytes[16..20], &[3, 0, 0, 0]);
        assert_eq!(&bytes[20..24], &crc32c::crc32c(b"abc").to_le_bytes());
        assert_eq!(&bytes[24..], b"abc");
    }

    #[test]
    fn a_body_checksummed_ahead_makes_the_same_frame_each_time_it_is_sent() {
        let body = Bytes::from_static(b"a tablet's bytes");
        let prepared = ChecksummedBody::new(body.clone());
        assert_eq!(prepared.body(), &body);
        for request_id in [1, 2] {
            let sent = Frame::with_checksummed(0x04, 0, request_id, prepared.clone());
            assert_eq!(sent, Frame::new(0x04, 0, request_id, body.clone()));
            let mut wire = BytesMut::from(&sent.encode()[..]);
            let received = decode_frame(&mut wire, 1 << 20).unwrap().unwrap();
            received.verify_checksum().unwrap();
            assert_eq!(received.request_id, request_id);
        }
    }

    #[test]
    fn body_length_two_to_the_31_is_rejected() {
        let mut frame = Frame::new(0x02, 0, 1, Bytes::new()).header();
        frame.body_length = U32::new(1 << 31);
        let mut buffer = BytesMut::from(frame.as_bytes());
        let error = decode_frame(&mut buffer, 64 * 1024 * 1024).unwrap_err();
        assert!(matches!(
            error,
            DecodeError::FrameTooLarge {
                length: 2_147_483_648,
                ..
            }
        ));
    }

    #[test]
    fn bad_magic_and_version_are_rejected() {
        let mut bytes = BytesMut::from(&Frame::new(0x02, 0, 1, Bytes::new()).encode()[..]);
        bytes[0] = b'X';
        assert!(matches!(
            decode_frame(&mut bytes.clone(), 1024),
            Err(DecodeError::BadMagic { .. })
        ));
        bytes[0] = b'I';
        bytes[4] = 9;
        assert!(matches!(
            decode_frame(&mut bytes, 1024),
            Err(DecodeError::BadVersion { found: 9 })
        ));
    }

    #[test]
    fn an_announced_body_is_not_reserved_up_front() {
        let mut header = Frame::new(0x04, 0, 1, Bytes::new()).header();
        header.body_length = U32::new(64 * 1024 * 1024);
        let mut buffer = BytesMut::from(header.as_bytes());
        buffer.extend_from_slice(&[0; 10]);
        assert_eq!(decode_frame(&mut buffer, 64 * 1024 * 1024).unwrap(), None);
        assert!(
            buffer.capacity() < 64 * 1024,
            "a 64 MiB announcement reserved {} bytes",
            buffer.capacity()
        );
    }

    #[test]
    fn checksum_mismatch_is_detected_but_framing_kept() {
        let mut bytes =
            BytesMut::from(&Frame::new(0x02, 0, 7, Bytes::from_static(b"xyz")).encode()[..]);
        bytes[HEADER_BYTES] ^= 0xFF;
        let frame = decode_frame(&mut bytes, 1024).unwrap().unwrap();
        assert!(matches!(
            frame.verify_checksum(),
            Err(DecodeError::ChecksumMismatch { .. })
        ));
        assert!(bytes.is_empty());
    }

    proptest! {
        #[test]
        fn frames_roundtrip_through_partial_buffers(
            frames in prop::collection::vec((any::<u8>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..200)), 1..8),
            split in 0usize..2000,
        ) {
            let mut wire = BytesMut::new();
            let frames: Vec<Frame> = frames.into_iter()
                .map(|(opcode, id, body)| Frame::new(opcode, FLAG_MORE, id, Bytes::from(body)))
                .collect();
            for frame in &frames { frame.encode_into(&mut wire); }
            let wire = wire.freeze();
            let split = split.min(wire.len());
            let mut buffer = BytesMut::from(&wire[..split]);
            let mut decoded = Vec::new();
            while let Some(frame) = decode_frame(&mut buffer, 1 << 20).unwrap() { decoded.push(frame); }
            buffer.extend_from_slice(&wire[split..]);
            while let Some(frame) = decode_frame(&mut buffer, 1 << 20).unwrap() { decoded.push(frame); }
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut buffer = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = decode_frame(&mut buffer, 1 << 16) {
                let _ = frame.verify_checksum();
            }
        }
    }
}
