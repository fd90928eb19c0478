//! Frames of the internal (node-to-node) protocol: the client protocol's 24-byte header
//! layout ([`FrameHeader`], [`Frame`]) with its own magic and opcode space.
//!
//! ```text
//! offset size field
//!  0      4   magic        b"ITDN"  (the client protocol's is b"ITDB")
//!  4      1   version      1
//!  5      1   opcode       see the `OP_*` constants; responses set the high bit (0x80)
//!  6      2   flags        0 (no flag is defined yet; any bit set is refused)
//!  8      8   request_id   chosen by the sender of a request, echoed by its response
//! 16      4   body_length  bytes after the header
//! 20      4   body_crc32c  crc32c (Castagnoli) of the body
//! ```
//!
//! A distinct magic makes a misdirected connection fail on its first frame: a client
//! frame on an internal port is [`InternalFrameError::ClientFrame`], and an internal frame
//! on the client port fails there as `DecodeError::BadMagic`. Both close the connection,
//! since a peer speaking the wrong protocol cannot be resynchronised. Bodies are opaque
//! bytes here; the node's `internal` module defines the hello and error bodies, and the
//! state machines define the rest.

use bytes::{Buf, Bytes, BytesMut};
use zerocopy::{FromBytes, IntoBytes};

use crate::frame::{Frame, FrameHeader, HEADER_BYTES, MAGIC, RESPONSE_BIT};

/// The internal protocol's magic.
pub const INTERNAL_MAGIC: [u8; 4] = *b"ITDN";
/// The internal protocol's version; a peer with another version is refused.
pub const INTERNAL_PROTOCOL_VERSION: u8 = 1;

/// First frame of a connection, from the connecting node: cluster name and node id.
pub const OP_HELLO: u8 = 0x01;
/// A request awaiting a response with the same request id.
pub const OP_REQUEST: u8 = 0x02;
/// A one-way message (request id 0), no response.
pub const OP_MESSAGE: u8 = 0x03;
/// The hello's answer when the peer is accepted.
pub const OP_HELLO_ACCEPTED: u8 = OP_HELLO | RESPONSE_BIT;
/// The response to an [`OP_REQUEST`].
pub const OP_RESPONSE: u8 = OP_REQUEST | RESPONSE_BIT;
/// A refusal or protocol error, body a UTF-8 message; the sender closes the connection
/// after it (or, with a request id, only that request failed).
pub const OP_ERROR: u8 = 0xFF;

/// An internal frame that cannot be read. Every variant but `Checksum` means framing is
/// lost and the connection must close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InternalFrameError {
    #[error(
        "a client-protocol frame (magic \"ITDB\") arrived on an internal port; clients connect to dn_rpc_port"
    )]
    ClientFrame,
    #[error("bad magic {found:02x?} on an internal port (expected \"ITDN\")")]
    BadMagic { found: [u8; 4] },
    #[error(
        "unsupported internal protocol version {found} (this node speaks {INTERNAL_PROTOCOL_VERSION})"
    )]
    BadVersion { found: u8 },
    #[error("internal frame body of {length} bytes exceeds the limit of {limit} bytes")]
    TooLarge { length: u32, limit: u32 },
    #[error("internal frame body checksum mismatch")]
    Checksum,
    #[error("reserved flag bits set on an internal frame: {0:#06x}")]
    ReservedFlags(u16),
}

/// Builds and encodes an internal frame (header and body, one buffer; the body is copied
/// once).
pub fn internal_frame(opcode: u8, request_id: u64, body: Bytes) -> Bytes {
    internal_frame_with(opcode, request_id, body.len(), |out| {
        out.extend_from_slice(&body)
    })
}

/// Builds an internal frame whose body, exactly `body_bytes` long, `write_body` appends in
/// place after the header: one allocation of the frame's final size, and the body is
/// written once, where it is sent from (a body encoded into a buffer of its own and then
/// framed is copied twice, its buffer grown on the way). The header (length, checksum) is
/// filled in once the body is there.
///
/// # Panics
/// If `write_body` appends other than `body_bytes` bytes (a caller's size is wrong), or
/// the body exceeds `u32::MAX` bytes.
pub fn internal_frame_with(
    opcode: u8,
    request_id: u64,
    body_bytes: usize,
    write_body: impl FnOnce(&mut Vec<u8>),
) -> Bytes {
    let body_length = u32::try_from(body_bytes).expect("frame body longer than u32::MAX");
    let mut out = Vec::with_capacity(HEADER_BYTES + body_bytes);
    out.resize(HEADER_BYTES, 0);
    write_body(&mut out);
    assert_eq!(
        out.len() - HEADER_BYTES,
        body_bytes,
        "an internal frame's body is as long as announced"
    );
    let header = FrameHeader {
        magic: INTERNAL_MAGIC,
        version: INTERNAL_PROTOCOL_VERSION,
        opcode,
        flags: 0.into(),
        request_id: request_id.into(),
        body_length: body_length.into(),
        body_crc32c: crc32c::crc32c(&out[HEADER_BYTES..]).into(),
    };
    out[..HEADER_BYTES].copy_from_slice(header.as_bytes());
    Bytes::from(out)
}

/// Splits one complete internal frame off the front of `buffer`, or `None` when more
/// bytes are needed. The magic, version and length are checked on the header alone, so a
/// wrong protocol or a huge length is refused before any body is buffered; the checksum
/// and flags are checked once the body is here.
pub fn decode_internal_frame(
    buffer: &mut BytesMut,
    body_bytes_max: u32,
) -> Result<Option<Frame>, InternalFrameError> {
    if buffer.len() >= 4 && buffer[..4] != INTERNAL_MAGIC {
        let mut found = [0; 4];
        found.copy_from_slice(&buffer[..4]);
        return Err(if found == MAGIC {
            InternalFrameError::ClientFrame
        } else {
            InternalFrameError::BadMagic { found }
        });
    }
    let Ok((header, _)) = FrameHeader::read_from_prefix(&buffer[..]) else {
        return Ok(None);
    };
    if header.version != INTERNAL_PROTOCOL_VERSION {
        return Err(InternalFrameError::BadVersion {
            found: header.version,
        });
    }
    let length = header.body_length.get();
    if length > body_bytes_max {
        return Err(InternalFrameError::TooLarge {
            length,
            limit: body_bytes_max,
        });
    }
    let flags = header.flags.get();
    if flags != 0 {
        return Err(InternalFrameError::ReservedFlags(flags));
    }
    let total = HEADER_BYTES + length as usize;
    if buffer.len() < total {
        buffer.reserve(total - buffer.len());
        return Ok(None);
    }
    buffer.advance(HEADER_BYTES);
    let body = buffer.split_to(length as usize).freeze();
    if crc32c::crc32c(&body) != header.body_crc32c.get() {
        return Err(InternalFrameError::Checksum);
    }
    Ok(Some(Frame {
        opcode: header.opcode,
        flags,
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
    fn roundtrip_and_protocol_mixups() {
        let wire = internal_frame(OP_REQUEST, 42, Bytes::from_static(b"body"));
        assert_eq!(&wire[..4], b"ITDN");
        let mut buffer = BytesMut::from(&wire[..]);
        let frame = decode_internal_frame(&mut buffer, 1024).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.request_id), (OP_REQUEST, 42));
        assert_eq!(&frame.body[..], b"body");
        assert!(buffer.is_empty());

        let client = Frame::new(0x02, 0, 1, Bytes::new()).encode();
        let mut buffer = BytesMut::from(&client[..]);
        assert_eq!(
            decode_internal_frame(&mut buffer, 1024),
            Err(InternalFrameError::ClientFrame)
        );
        let mut buffer = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            decode_internal_frame(&mut buffer, 1024),
            Err(InternalFrameError::BadMagic { .. })
        ));
        // An internal frame on the client port fails the client decoder.
        let mut buffer = BytesMut::from(&wire[..]);
        assert!(crate::frame::decode_frame(&mut buffer, 1024).is_err());
        // Too large is refused from the header alone.
        let big = internal_frame(OP_MESSAGE, 0, Bytes::from(vec![0; 100]));
        let mut buffer = BytesMut::from(&big[..HEADER_BYTES]);
        assert_eq!(
            decode_internal_frame(&mut buffer, 10),
            Err(InternalFrameError::TooLarge {
                length: 100,
                limit: 10
            })
        );
        let mut corrupt = BytesMut::from(&wire[..]);
        corrupt[HEADER_BYTES] ^= 1;
        assert_eq!(
            decode_internal_frame(&mut corrupt, 1024),
            Err(InternalFrameError::Checksum)
        );
    }

    #[test]
    fn a_body_written_in_place_frames_as_a_copied_one() {
        let body = b"group and message";
        let in_place = internal_frame_with(OP_MESSAGE, 7, body.len(), |out| {
            out.extend_from_slice(&body[..5]);
            out.extend_from_slice(&body[5..]);
        });
        assert_eq!(
            in_place,
            encode_frame_copied(OP_MESSAGE, 7, Bytes::from_static(body))
        );
        let mut buffer = BytesMut::from(&in_place[..]);
        let frame = decode_internal_frame(&mut buffer, 1024).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.request_id), (OP_MESSAGE, 7));
        assert_eq!(&frame.body[..], body);
    }

    #[test]
    #[should_panic(expected = "as long as announced")]
    fn a_body_of_another_length_than_announced_is_a_bug() {
        internal_frame_with(OP_MESSAGE, 0, 3, |out| out.extend_from_slice(b"four"));
    }

    /// The frame as the client protocol's `Frame` encodes it, with the internal magic and
    /// version: what `internal_frame_with` must produce.
    fn encode_frame_copied(opcode: u8, request_id: u64, body: Bytes) -> Bytes {
        let frame = Frame::new(opcode, 0, request_id, body);
        let mut header = frame.header();
        header.magic = INTERNAL_MAGIC;
        header.version = INTERNAL_PROTOCOL_VERSION;
        let mut out = BytesMut::new();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&frame.body);
        out.freeze()
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let mut buffer = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode_internal_frame(&mut buffer, 1 << 16) {}
        }

        #[test]
        fn frames_roundtrip_split_anywhere(
            frames in prop::collection::vec((any::<u64>(), prop::collection::vec(any::<u8>(), 0..100)), 1..6),
            split in 0usize..1000,
        ) {
            let mut wire = Vec::new();
            for (id, body) in &frames {
                wire.extend_from_slice(&internal_frame(OP_REQUEST, *id, Bytes::from(body.clone())));
            }
            let split = split.min(wire.len());
            let mut buffer = BytesMut::from(&wire[..split]);
            let mut decoded = Vec::new();
            while let Some(frame) = decode_internal_frame(&mut buffer, 1 << 16).unwrap() { decoded.push(frame); }
            buffer.extend_from_slice(&wire[split..]);
            while let Some(frame) = decode_internal_frame(&mut buffer, 1 << 16).unwrap() { decoded.push(frame); }
            let got: Vec<(u64, Vec<u8>)> = decoded.into_iter().map(|f| (f.request_id, f.body.to_vec())).collect();
            prop_assert_eq!(got, frames);
        }
    }
}
