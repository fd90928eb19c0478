//! Reading and writing internal frames on a monoio stream.

use bytes::{Bytes, BytesMut};
use iotdb_net::Frame;
use iotdb_net::internal_frame::decode_internal_frame;
use monoio::buf::SliceMut;
use monoio::io::{AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};

use super::error::InternalError;
use super::limits::READ_CHUNK_BYTES;
use super::outbox::Signal;

/// How a read of one frame ended other than with a frame.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    /// The peer closed the connection (or reset it).
    Closed,
    /// Bytes that are not a valid internal frame; framing is lost.
    Bad(InternalError),
}

/// Reads one internal frame whose body is at most `body_bytes_max`. When `stop` fires the
/// read is cancelled and awaited (a dropped io_uring read would keep the socket open) and
/// the connection counts as closed.
pub(crate) async fn read_frame<R: CancelableAsyncReadRent>(
    reader: &mut R,
    buffer: &mut BytesMut,
    body_bytes_max: u32,
    stop: &Signal,
) -> Result<Frame, ReadEnd> {
    loop {
        match decode_internal_frame(buffer, body_bytes_max) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(error) => return Err(ReadEnd::Bad(error.into())),
        }
        if stop.is_fired() {
            return Err(ReadEnd::Closed);
        }
        if buffer.capacity() - buffer.len() < READ_CHUNK_BYTES / 4 {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        let taken = std::mem::take(buffer);
        let (length, capacity) = (taken.len(), taken.capacity());
        let canceller = Canceller::new();
        let mut read = std::pin::pin!(
            reader.cancelable_read(SliceMut::new(taken, length, capacity), canceller.handle())
        );
        let (result, returned) = monoio::select! {
            outcome = &mut read => outcome,
            _ = stop.wait() => {
                canceller.cancel();
                let (_, returned) = (&mut read).await;
                *buffer = returned.into_inner();
                return Err(ReadEnd::Closed);
            }
        };
        *buffer = returned.into_inner();
        match result {
            Ok(0) | Err(_) => return Err(ReadEnd::Closed),
            Ok(_) => {}
        }
    }
}

/// Writes `bytes` whole.
pub(crate) async fn write_bytes<W: AsyncWriteRent>(
    writer: &mut W,
    bytes: Bytes,
) -> Result<(), InternalError> {
    let (result, _) = writer.write_all(bytes).await;
    result
        .map(|_| ())
        .map_err(|error| InternalError::io("writing to a peer", error))
}
