//! `iotdb-net`: the binary wire protocol (frames and body codecs), the
//! partitioning helpers clients and servers share, server-side connection
//! handling and the client SDK.
//!
//! Architecture invariant: this crate knows nothing of storage. The node
//! crate converts the wire types here ([`TabletView`], [`Request`]) into
//! storage's types. The protocol is specified in `docs/protocol.md`.

#![forbid(unsafe_code)]

pub mod codec;
pub mod error;
pub mod frame;
pub mod internal_frame;
pub mod message;
pub mod partition;
pub mod result;
pub mod status;
pub mod tablet;
pub mod types;

pub use error::{ClientError, DecodeError, NetError};
pub use frame::{
    ChecksummedBody, FLAG_MORE, Frame, FrameHeader, HEADER_BYTES, MAGIC, Opcode, PROTOCOL_VERSION,
};
pub use message::{
    AggregateQuery, Aggregation, CreateDatabase, GroupByWindow, Handshake, HandshakeAccepted,
    InsertTablets, RawQuery, Request, ResponsePayload, ResponseResult, SeriesSelection,
    decode_response, encode_insert_tablets, encode_response,
};
pub use partition::{
    DataPartitionEntry, DatabaseRoute, RegionGroupRoute, ReplicaRoute, RouteTable, RouteTarget,
    partition_key, series_slot, sort_partitions, time_slot,
};
pub use result::{ColumnBatch, LastPoint, ResultSet};
pub use status::{Status, StatusCode};
pub use tablet::{ColumnValues, ColumnView, TabletView, TextColumn, WireColumn, WireTablet};
pub use types::{DataType, NullBitmap, TypedColumn, Value};
pub mod server;
pub use server::{
    ConnectionEnd, ConnectionLimits, HANDSHAKE_ATTEMPTS_MAX, Handler, PendingConnection,
    ResponseStream, Session, accept_handshake, serve_connection, serve_pending,
};

pub mod client;
pub use client::ClientConfig;
pub use client::async_calls::AsyncCalls;
pub use client::async_client::AsyncClient;
pub use client::blocking::BlockingClient;
pub use client::failover::{AsyncFailoverClient, FailoverClient, FailoverPolicy};
pub use client::shard_aware::{Destination, ShardAwareClient, ShardEndpoint};
