//! Writes forwarded to the DataNode that holds a region group: a client may write through
//! any DataNode, and the one it reached sends each group's tablets on, one hop, and
//! acknowledges once the holder made them durable.
//!
//! ```text
//!  body: 0x57 'W' | group u32 LE | count u32 LE | { aligned u8 | length u32 LE | tablet }*
//!        (tablet: the client protocol's tablet contents, as received — no re-encoding
//!         unless the tablet was split or trimmed on the way)
//!  answer: FromNode::Written, or FromNode::Refused(status)
//! ```
//!
//! A batch is at most [`FORWARD_BATCH_BYTES_MAX`]; a group's tablets are sent in as many
//! batches as they need. A single tablet larger than a batch is cut by rows into parts of
//! at most half a batch; only rows too large for that are refused.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use iotdb_net::{Status, StatusCode, TabletView};

use super::protocol::{self, FromNode};
use crate::confignode::NodeId;
use crate::datanode::Shard;
use crate::datanode::write::Payload;

/// The first byte of a forwarded write (JSON bodies start with `{`).
pub const WRITE_TAG: u8 = b'W';

/// Bytes of tablets in one forwarded batch at most. Why 15 MiB: one internal frame
/// (16 MiB) with room for the framing.
pub const FORWARD_BATCH_BYTES_MAX: usize =
    iotdb_consensus::limits::TRANSPORT_PAYLOAD_BYTES_MAX - 1024 * 1024;

/// Sends `payloads` of `group` to DataNode `node` and waits until they are durable there.
pub async fn write(
    shard: &Rc<Shard>,
    node: NodeId,
    address: SocketAddr,
    group: u32,
    payloads: &[Payload],
) -> Result<(), Status> {
    let mut batch: Vec<(Bytes, bool)> = Vec::new();
    let mut bytes = 0;
    for payload in payloads {
        for (contents, aligned) in forwardable_parts(payload, node, group)? {
            if bytes + contents.len() > FORWARD_BATCH_BYTES_MAX {
                send(shard, node, address, group, std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
            bytes += contents.len();
            batch.push((contents, aligned));
        }
    }
    if !batch.is_empty() {
        send(shard, node, address, group, batch).await?;
    }
    Ok(())
}

/// A payload's wire contents, cut by rows into tablets of at most half a batch when it is
/// larger than one (a client frame may carry 64 MiB, an internal one 16 MiB). Sent in row
/// order, each part durable before the reply; a client that sees an error sends the whole
/// tablet again (the same points: idempotent). Refused only when a single row is too large.
fn forwardable_parts(
    payload: &Payload,
    node: NodeId,
    group: u32,
) -> Result<Vec<(Bytes, bool)>, Status> {
    let whole = payload.wire_contents();
    if whole.0.len() <= FORWARD_BATCH_BYTES_MAX {
        return Ok(vec![whole]);
    }
    let pieces = whole.0.len().div_ceil(FORWARD_BATCH_BYTES_MAX / 2);
    let parts: Vec<(Bytes, bool)> = payload
        .split_rows(pieces)
        .iter()
        .map(Payload::wire_contents)
        .collect();
    if let Some((largest, _)) = parts
        .iter()
        .find(|(c, _)| c.len() > FORWARD_BATCH_BYTES_MAX)
    {
        return Err(Status::new(
            StatusCode::EXECUTE_STATEMENT_ERROR,
            format!(
                "a part of {} bytes of a tablet is too large to forward to DataNode {node}, \
                 which holds region group {group} (rows too large); send it to that \
                 DataNode directly, or in smaller tablets",
                largest.len()
            ),
        ));
    }
    Ok(parts)
}

async fn send(
    shard: &Rc<Shard>,
    node: NodeId,
    address: SocketAddr,
    group: u32,
    tablets: Vec<(Bytes, bool)>,
) -> Result<(), Status> {
    let answer = shard
        .ask_node(node, address, encode(group, &tablets))
        .await?;
    match protocol::decode::<FromNode>("write answer", &answer)? {
        FromNode::Written => Ok(()),
        FromNode::Refused(status) => Err(status.into()),
        other => Err(Status::internal(format!(
            "unexpected answer to a forwarded write from DataNode {node}: {other:?}"
        ))),
    }
}

/// Encodes a forwarded write of `tablets` (wire contents, aligned) to `group`.
pub fn encode(group: u32, tablets: &[(Bytes, bool)]) -> Bytes {
    let mut body =
        BytesMut::with_capacity(9 + tablets.iter().map(|(t, _)| t.len() + 5).sum::<usize>());
    body.put_u8(WRITE_TAG);
    body.put_u32_le(group);
    body.put_u32_le(tablets.len() as u32);
    for (contents, aligned) in tablets {
        body.put_u8(u8::from(*aligned));
        body.put_u32_le(contents.len() as u32);
        body.put_slice(contents);
    }
    body.freeze()
}

/// Decodes a forwarded write: the group and its tablets. Every length is checked against
/// what remains; a damaged body is a typed error.
pub fn decode(mut body: Bytes) -> Result<(u32, Vec<Payload>), Status> {
    let malformed = |what: &str| {
        Status::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("a malformed forwarded write: {what}"),
        )
    };
    if body.remaining() < 9 || body.get_u8() != WRITE_TAG {
        return Err(malformed("no header"));
    }
    let group = body.get_u32_le();
    let count = body.get_u32_le() as usize;
    if count > body.remaining() / 5 {
        return Err(malformed("more tablets than bytes"));
    }
    let mut payloads = Vec::with_capacity(count);
    for _ in 0..count {
        if body.remaining() < 5 {
            return Err(malformed("a truncated tablet header"));
        }
        let aligned = body.get_u8() != 0;
        let length = body.get_u32_le() as usize;
        if length > body.remaining() {
            return Err(malformed("a tablet longer than the body"));
        }
        let contents = body.split_to(length);
        let view = TabletView::decode(contents, aligned)
            .map_err(|e| malformed(&format!("a tablet that does not decode: {e}")))?;
        let device: std::sync::Arc<str> = std::sync::Arc::from(view.device());
        payloads.push(Payload::View(device, view));
    }
    if body.has_remaining() {
        return Err(malformed("bytes after the last tablet"));
    }
    Ok((group, payloads))
}

/// Serves a forwarded write on this DataNode (never forwarded again).
pub async fn serve(shard: &Rc<Shard>, body: Bytes) -> FromNode {
    let (group, payloads) = match decode(body) {
        Ok(decoded) => decoded,
        Err(status) => return FromNode::Refused(status.into()),
    };
    match shard.write_group_here(group, payloads).await {
        Ok(()) => FromNode::Written,
        Err(status) => FromNode::Refused(status.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotdb_net::{DataType, Value, WireTablet};

    /// A forwarded write decodes to the tablets sent (a trimmed engine tablet included),
    /// and every kind of damage is a typed error, never a panic.
    #[test]
    fn forwarded_writes_decode_and_damage_is_refused() {
        let mut wire = WireTablet::new("root.sg.d1", &[("s1", DataType::Int64)]);
        wire.push_row(1, &[Some(Value::Int64(7))]).unwrap();
        wire.push_row(2, &[None]).unwrap();
        let mut contents = BytesMut::new();
        wire.encode_contents(&mut contents);
        let view = TabletView::decode(contents.freeze(), false).unwrap();
        let engine = crate::datanode::convert::to_storage_tablet(&view, &"root.sg.d1".into());
        let payloads = [
            Payload::View("root.sg.d1".into(), view),
            Payload::Tablet {
                tablet: engine,
                aligned: false,
            },
        ];
        let tablets: Vec<(Bytes, bool)> = payloads.iter().map(Payload::wire_contents).collect();
        let body = encode(9, &tablets);
        let (group, decoded) = decode(body.clone()).unwrap();
        assert_eq!((group, decoded.len()), (9, 2));
        for payload in &decoded {
            let Payload::View(device, view) = payload else {
                panic!("a view");
            };
            assert_eq!(&**device, "root.sg.d1");
            assert_eq!(view.to_wire_tablet(), wire);
        }
        for cut in [0, 1, 8, 12, body.len() - 1] {
            assert!(decode(body.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut trailing = BytesMut::from(&body[..]);
        trailing.put_u8(0);
        assert!(decode(trailing.freeze()).is_err());
        let mut huge_count = BytesMut::from(&body[..]);
        huge_count[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(huge_count.freeze()).is_err());
    }
}
