//! The client SDK: a blocking client over `std::net::TcpStream`, an async
//! client for monoio, and a shard-aware async client that sends each tablet
//! straight to the shard leading its region.
//!
//! The failover clients (`FailoverClient`, blocking; `AsyncFailoverClient`, monoio) take
//! several DataNodes of a cluster and move to the next when one fails, sending the request
//! again; both follow one `failover::Failover` for what to do between attempts.
//!
//! Both plain clients pipeline: `send_*` writes a request and returns its id
//! at once; `receive` collects the response frames for one id (buffering
//! frames of other ids that arrive first). The convenience methods do both.

pub mod async_calls;
pub mod async_client;
pub mod blocking;
pub mod failover;
mod pending;
pub mod shard_aware;

use std::time::Duration;

use crate::error::ClientError;
use crate::message::{HandshakeAccepted, ResponsePayload};
use crate::partition::RouteTable;
use crate::result::{ColumnBatch, LastPoint, ResultSet};

pub use pending::PendingRequests;

/// Connection settings shared by every client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub user: String,
    pub password: String,
    pub client_name: String,
    /// Shard to name in the handshake (shard-aware clients set it per connection).
    pub target_shard: Option<u32>,
    pub connect_timeout: Duration,
    /// Largest response frame body accepted.
    pub frame_body_bytes_max: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            user: "root".to_owned(),
            password: "root".to_owned(),
            client_name: "iotdb-net".to_owned(),
            target_shard: None,
            connect_timeout: Duration::from_secs(5),
            frame_body_bytes_max: 256 * 1024 * 1024,
        }
    }
}

/// The handshake every connection opens with.
fn handshake_request(config: &ClientConfig) -> crate::message::Request {
    crate::message::Request::Handshake(crate::message::Handshake {
        user: config.user.clone(),
        password: config.password.clone(),
        client_name: config.client_name.clone(),
        target_shard: config.target_shard,
    })
}

/// What a client holds until the server has accepted its handshake.
fn not_yet_accepted() -> HandshakeAccepted {
    HandshakeAccepted {
        session_id: 0,
        data_node_id: 0,
        shard_id: 0,
        shard_count: 0,
        route_table_version: 0,
    }
}

fn unexpected(payload: &ResponsePayload) -> ClientError {
    ClientError::Protocol(format!("unexpected payload {payload:?}"))
}

fn into_handshake(payloads: Vec<ResponsePayload>) -> Result<HandshakeAccepted, ClientError> {
    match payloads.as_slice() {
        [ResponsePayload::Handshake(accepted)] => Ok(*accepted),
        [other, ..] => Err(unexpected(other)),
        [] => Err(ClientError::Protocol("empty response".to_owned())),
    }
}

fn into_done(payloads: Vec<ResponsePayload>) -> Result<(), ClientError> {
    match payloads.as_slice() {
        [ResponsePayload::Done] | [ResponsePayload::Pong] => Ok(()),
        [other, ..] => Err(unexpected(other)),
        [] => Err(ClientError::Protocol("empty response".to_owned())),
    }
}

fn into_batches(payloads: Vec<ResponsePayload>) -> Result<Vec<ColumnBatch>, ClientError> {
    payloads
        .into_iter()
        .map(|payload| match payload {
            ResponsePayload::Batch(batch) => Ok(batch),
            other => Err(unexpected(&other)),
        })
        .collect()
}

fn into_last(payloads: Vec<ResponsePayload>) -> Result<Vec<LastPoint>, ClientError> {
    let mut points = Vec::new();
    for payload in payloads {
        match payload {
            ResponsePayload::Last(chunk) => points.extend(chunk),
            other => return Err(unexpected(&other)),
        }
    }
    Ok(points)
}

fn into_route_table(payloads: Vec<ResponsePayload>) -> Result<Option<RouteTable>, ClientError> {
    match payloads.into_iter().next() {
        Some(ResponsePayload::RouteTable(table)) => Ok(table),
        Some(other) => Err(unexpected(&other)),
        None => Err(ClientError::Protocol("empty response".to_owned())),
    }
}

fn into_result_set(payloads: Vec<ResponsePayload>) -> Result<ResultSet, ClientError> {
    let mut merged: Option<ResultSet> = None;
    for payload in payloads {
        let ResponsePayload::ResultSet(chunk) = payload else {
            return Err(unexpected(&payload));
        };
        match &mut merged {
            None => merged = Some(chunk),
            Some(result_set) => result_set.extend(chunk).map_err(ClientError::Protocol)?,
        }
    }
    merged.ok_or_else(|| ClientError::Protocol("empty response".to_owned()))
}
