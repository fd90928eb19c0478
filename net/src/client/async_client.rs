//! An async client for monoio: the blocking client's API with `.await` (the calls are
//! [`AsyncCalls`]'s). Pipelining: `send_*` many requests, then `receive` each id.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::async_calls::AsyncCalls;
use super::{ClientConfig, PendingRequests, into_done, into_handshake};
use crate::error::{ClientError, NetError};
use crate::frame::{ChecksummedBody, Frame, Opcode};
use crate::message::{HandshakeAccepted, Request, ResponsePayload, encode_insert_tablets};
use crate::server::read_frame_plain;
use crate::tablet::WireTablet;

/// One authenticated connection, used from one task on one shard thread.
#[derive(Debug)]
pub struct AsyncClient {
    stream: TcpStream,
    buffer: BytesMut,
    pending: PendingRequests,
    accepted: HandshakeAccepted,
    frame_body_bytes_max: u32,
}

impl AsyncClient {
    /// Connects (bounded by `connect_timeout`) and handshakes.
    pub async fn connect(address: SocketAddr, config: &ClientConfig) -> Result<Self, ClientError> {
        let stream =
            match monoio::time::timeout(config.connect_timeout, TcpStream::connect_addr(address))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Err(NetError::io("connecting", error).into()),
                Err(_) => return Err(NetError::Timeout("connecting").into()),
            };
        stream
            .set_nodelay(true)
            .map_err(|error| NetError::io("setting TCP_NODELAY", error))?;
        let mut client = Self {
            stream,
            buffer: BytesMut::new(),
            pending: PendingRequests::default(),
            accepted: super::not_yet_accepted(),
            frame_body_bytes_max: config.frame_body_bytes_max,
        };
        let request = super::handshake_request(config);
        let request_id = client.send(&request).await?;
        client.accepted = into_handshake(client.receive(request_id).await?)?;
        Ok(client)
    }

    pub fn accepted(&self) -> &HandshakeAccepted {
        &self.accepted
    }

    /// Requests sent whose responses were not collected yet.
    pub fn outstanding(&self) -> usize {
        self.pending.outstanding()
    }

    pub async fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        self.send_body(request.opcode(), request.encode_body())
            .await
    }

    pub async fn send_insert_tablets(
        &mut self,
        tablets: &[WireTablet],
    ) -> Result<u64, ClientError> {
        for tablet in tablets {
            tablet.validate().map_err(ClientError::Protocol)?;
        }
        self.send_body(Opcode::InsertTablets, encode_insert_tablets(tablets))
            .await
    }

    pub async fn send_body(&mut self, opcode: Opcode, body: Bytes) -> Result<u64, ClientError> {
        self.send_checksummed(opcode, ChecksummedBody::new(body))
            .await
    }

    /// [`AsyncClient::send_body`] of a body whose checksum was taken before: a prepared
    /// request is not read again on its way out.
    pub async fn send_checksummed(
        &mut self,
        opcode: Opcode,
        body: ChecksummedBody,
    ) -> Result<u64, ClientError> {
        let request_id = self.pending.register(opcode);
        let bytes = Frame::with_checksummed(opcode as u8, 0, request_id, body).encode();
        let (result, _) = self.stream.write_all(bytes).await;
        result.map_err(|error| NetError::io("writing a request", error))?;
        Ok(request_id)
    }

    pub async fn receive(&mut self, request_id: u64) -> Result<Vec<ResponsePayload>, ClientError> {
        if !self.pending.is_known(request_id) {
            return Err(ClientError::Protocol(format!(
                "request id {request_id} was not sent or already received"
            )));
        }
        loop {
            if let Some(result) = self.pending.take(request_id) {
                return result;
            }
            let frame = read_frame_plain(
                &mut self.stream,
                &mut self.buffer,
                self.frame_body_bytes_max,
            )
            .await?;
            self.pending.on_frame(frame)?;
        }
    }
}

impl AsyncCalls for AsyncClient {
    async fn exchange(
        &mut self,
        opcode: Opcode,
        body: Bytes,
    ) -> Result<Vec<ResponsePayload>, ClientError> {
        let request_id = self.send_body(opcode, body).await?;
        self.receive(request_id).await
    }
}

/// Checks a response for the insert path (used by the shard-aware client).
pub(crate) fn insert_outcome(
    result: Result<Vec<ResponsePayload>, ClientError>,
) -> Result<(), ClientError> {
    into_done(result?)
}
