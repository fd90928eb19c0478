//! A blocking client over `std::net::TcpStream`, for tools and tests.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use bytes::{Bytes, BytesMut};

use super::{
    ClientConfig, PendingRequests, into_batches, into_done, into_handshake, into_last,
    into_result_set, into_route_table,
};
use crate::error::{ClientError, NetError};
use crate::frame::{Frame, Opcode, decode_frame};
use crate::message::{
    AggregateQuery, CreateDatabase, HandshakeAccepted, RawQuery, Request, ResponsePayload,
    SeriesSelection, encode_insert_tablets,
};
use crate::partition::RouteTable;
use crate::result::{ColumnBatch, LastPoint, ResultSet};
use crate::tablet::WireTablet;

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One authenticated connection. Not thread-safe; one per thread.
#[derive(Debug)]
pub struct BlockingClient {
    stream: TcpStream,
    buffer: BytesMut,
    pending: PendingRequests,
    accepted: HandshakeAccepted,
    frame_body_bytes_max: u32,
}

impl BlockingClient {
    /// Connects to the first reachable address and handshakes.
    pub fn connect(
        address: impl ToSocketAddrs,
        config: &ClientConfig,
    ) -> Result<Self, ClientError> {
        let mut last_error = None;
        let addresses = address
            .to_socket_addrs()
            .map_err(|error| NetError::io("resolving the address", error))?;
        for address in addresses {
            match TcpStream::connect_timeout(&address, config.connect_timeout) {
                Ok(stream) => return Self::handshake(stream, config),
                Err(error) => last_error = Some(error),
            }
        }
        let error = last_error.unwrap_or_else(|| std::io::Error::other("no address"));
        Err(NetError::io("connecting", error).into())
    }

    fn handshake(stream: TcpStream, config: &ClientConfig) -> Result<Self, ClientError> {
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
        let request_id = client.send(&request)?;
        client.accepted = into_handshake(client.receive(request_id)?)?;
        Ok(client)
    }

    /// What the server said at handshake (session, node, shard).
    pub fn accepted(&self) -> &HandshakeAccepted {
        &self.accepted
    }

    /// Sends a request without waiting; returns its id for [`BlockingClient::receive`].
    pub fn send(&mut self, request: &Request) -> Result<u64, ClientError> {
        self.send_body(request.opcode(), request.encode_body())
    }

    /// Sends an insert of owned tablets without waiting.
    pub fn send_insert_tablets(&mut self, tablets: &[WireTablet]) -> Result<u64, ClientError> {
        for tablet in tablets {
            tablet.validate().map_err(ClientError::Protocol)?;
        }
        self.send_body(Opcode::InsertTablets, encode_insert_tablets(tablets))
    }

    /// Sends a pre-encoded body (benchmarks encode before timing).
    pub fn send_body(&mut self, opcode: Opcode, body: Bytes) -> Result<u64, ClientError> {
        let request_id = self.pending.register(opcode);
        let frame = Frame::new(opcode as u8, 0, request_id, body);
        let header = frame.header();
        let write = self
            .stream
            .write_all(zerocopy::IntoBytes::as_bytes(&header))
            .and_then(|()| self.stream.write_all(&frame.body));
        write.map_err(|error| NetError::io("writing a request", error))?;
        Ok(request_id)
    }

    /// Waits for every frame of request `request_id`.
    pub fn receive(&mut self, request_id: u64) -> Result<Vec<ResponsePayload>, ClientError> {
        if !self.pending.is_known(request_id) {
            return Err(ClientError::Protocol(format!(
                "request id {request_id} was not sent or already received"
            )));
        }
        loop {
            if let Some(result) = self.pending.take(request_id) {
                return result;
            }
            let frame = self.read_frame()?;
            self.pending.on_frame(frame)?;
        }
    }

    fn read_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buffer, self.frame_body_bytes_max)? {
                return Ok(frame);
            }
            let start = self.buffer.len();
            self.buffer.resize(start + READ_CHUNK_BYTES, 0);
            match self.stream.read(&mut self.buffer[start..]) {
                Ok(0) => {
                    self.buffer.truncate(start);
                    return Err(NetError::Closed.into());
                }
                Ok(read) => self.buffer.truncate(start + read),
                Err(error) => {
                    self.buffer.truncate(start);
                    return Err(NetError::io("reading a response", error).into());
                }
            }
        }
    }

    fn call(&mut self, request: &Request) -> Result<Vec<ResponsePayload>, ClientError> {
        let request_id = self.send(request)?;
        self.receive(request_id)
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        into_done(self.call(&Request::Ping)?)
    }

    pub fn create_database(&mut self, create: CreateDatabase) -> Result<(), ClientError> {
        into_done(self.call(&Request::CreateDatabase(create))?)
    }

    pub fn insert_tablets(&mut self, tablets: &[WireTablet]) -> Result<(), ClientError> {
        let request_id = self.send_insert_tablets(tablets)?;
        into_done(self.receive(request_id)?)
    }

    pub fn query_raw(&mut self, query: RawQuery) -> Result<Vec<ColumnBatch>, ClientError> {
        into_batches(self.call(&Request::QueryRaw(query))?)
    }

    pub fn query_aggregate(
        &mut self,
        query: AggregateQuery,
    ) -> Result<Vec<ColumnBatch>, ClientError> {
        into_batches(self.call(&Request::QueryAggregate(query))?)
    }

    pub fn query_last(
        &mut self,
        series: Vec<SeriesSelection>,
    ) -> Result<Vec<LastPoint>, ClientError> {
        into_last(self.call(&Request::QueryLast(series))?)
    }

    /// `None` when `known_version` is current.
    pub fn fetch_route_table(
        &mut self,
        known_version: u64,
    ) -> Result<Option<RouteTable>, ClientError> {
        into_route_table(self.call(&Request::FetchRouteTable { known_version })?)
    }

    pub fn flush(&mut self, databases: Vec<String>) -> Result<(), ClientError> {
        into_done(self.call(&Request::Flush { databases })?)
    }

    pub fn execute_sql(&mut self, statement: &str) -> Result<ResultSet, ClientError> {
        into_result_set(self.call(&Request::ExecuteSql {
            statement: statement.to_owned(),
        })?)
    }

    /// Executes `statement` and hands its result to `on_page` a page at a time, as the
    /// server streams it (a raw `SELECT` of any size; other results come as one page):
    /// each page carries the columns and some rows. When `on_page` fails, the rest of the
    /// result is read and dropped, and its error returned.
    pub fn execute_sql_pages(
        &mut self,
        statement: &str,
        mut on_page: impl FnMut(ResultSet) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let request_id = self.send(&Request::ExecuteSql {
            statement: statement.to_owned(),
        })?;
        let mut failed: Option<ClientError> = None;
        loop {
            let (payloads, last) = match self.pending.take(request_id) {
                Some(result) => (result?, true),
                None => (self.pending.take_partial(request_id), false),
            };
            for payload in payloads {
                if failed.is_none() {
                    failed = into_result_set(vec![payload]).and_then(&mut on_page).err();
                }
            }
            if last {
                return failed.map_or(Ok(()), Err);
            }
            let frame = self.read_frame()?;
            self.pending.on_frame(frame)?;
        }
    }
}
