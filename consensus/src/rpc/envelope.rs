//! The envelope every `rpc` message travels in.
//!
//! ```text
//!   kind u8 (1 request, 2 response, 3 one-way) | request id u64 LE (0 for one-way) | payload
//! ```
//!
//! No checksum or length: the transport's frame carries those. Decoding validates the
//! kind and the length and never panics on what the network delivers.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Bytes before the payload.
pub const ENVELOPE_HEADER_BYTES: usize = 9;

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const KIND_ONE_WAY: u8 = 3;

/// Identifies one request of one `Rpc` among all its others, incarnations included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// What an envelope holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    Request(RequestId),
    Response(RequestId),
    OneWay,
}

/// A message that is not a valid envelope.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope of {bytes} bytes is shorter than its {ENVELOPE_HEADER_BYTES}-byte header")]
    Short { bytes: usize },
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    #[error("one-way envelope carries request id {0}")]
    OneWayWithId(u64),
}

/// Builds an envelope around `payload`.
pub fn encode(kind: EnvelopeKind, payload: &[u8]) -> Bytes {
    let (code, id) = match kind {
        EnvelopeKind::Request(id) => (KIND_REQUEST, id.0),
        EnvelopeKind::Response(id) => (KIND_RESPONSE, id.0),
        EnvelopeKind::OneWay => (KIND_ONE_WAY, 0),
    };
    let mut buffer = BytesMut::with_capacity(ENVELOPE_HEADER_BYTES + payload.len());
    buffer.put_u8(code);
    buffer.put_u64_le(id);
    buffer.put_slice(payload);
    buffer.freeze()
}

/// Splits an envelope into its kind and payload (a slice of `frame`, no copy).
pub fn decode(frame: &Bytes) -> Result<(EnvelopeKind, Bytes), EnvelopeError> {
    if frame.len() < ENVELOPE_HEADER_BYTES {
        return Err(EnvelopeError::Short { bytes: frame.len() });
    }
    let mut id_bytes = [0; 8];
    id_bytes.copy_from_slice(&frame[1..ENVELOPE_HEADER_BYTES]);
    let id = u64::from_le_bytes(id_bytes);
    let kind = match frame[0] {
        KIND_REQUEST => EnvelopeKind::Request(RequestId(id)),
        KIND_RESPONSE => EnvelopeKind::Response(RequestId(id)),
        KIND_ONE_WAY if id == 0 => EnvelopeKind::OneWay,
        KIND_ONE_WAY => return Err(EnvelopeError::OneWayWithId(id)),
        other => return Err(EnvelopeError::UnknownKind(other)),
    };
    Ok((kind, frame.slice(ENVELOPE_HEADER_BYTES..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        for kind in [
            EnvelopeKind::Request(RequestId(7)),
            EnvelopeKind::Response(RequestId(u64::MAX)),
            EnvelopeKind::OneWay,
        ] {
            let frame = encode(kind, b"payload");
            assert_eq!(decode(&frame), Ok((kind, Bytes::from_static(b"payload"))));
        }
        assert_eq!(
            decode(&Bytes::from_static(b"\x01abc")),
            Err(EnvelopeError::Short { bytes: 4 })
        );
        let mut bad = encode(EnvelopeKind::OneWay, b"").to_vec();
        bad[0] = 9;
        assert_eq!(
            decode(&Bytes::from(bad.clone())),
            Err(EnvelopeError::UnknownKind(9))
        );
        bad[0] = KIND_ONE_WAY;
        bad[1] = 1;
        assert_eq!(
            decode(&Bytes::from(bad)),
            Err(EnvelopeError::OneWayWithId(1))
        );
        // Every prefix of a valid envelope decodes or fails, never panics.
        let frame = encode(EnvelopeKind::Request(RequestId(3)), b"xyz");
        for cut in 0..=frame.len() {
            let _ = decode(&frame.slice(..cut));
        }
    }
}
