//! Client connections on a shard: accept, move a shard-aware client's socket to the shard
//! its handshake names, authenticate, and dispatch requests.

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::BytesMut;
use iotdb_net::{
    ConnectionLimits, Handler, Handshake, HandshakeAccepted, PendingConnection, Request,
    ResponsePayload, ResponseResult, ResponseStream, ResultSet, Session, Status, StatusCode,
};
use iotdb_runtime::ShardId;

use super::control::ControlRequest;
use super::select::RowPages;
use super::sql_exec::SqlAnswer;
use super::{Message, NodeShared, Shard};
use crate::config::DEFAULT_USER;
use crate::metrics::RequestKind;
use crate::rpc::thrift::{self, Sniffed};

/// A connection travelling to the shard its handshake named.
pub struct AdoptedConnection {
    stream: std::net::TcpStream,
    buffered: BytesMut,
    handshake: Handshake,
    request_id: u64,
    deadline: Instant,
    failed_attempts: u32,
    slot: ConnectionSlot,
}

/// One of the node's `dn_rpc_max_concurrent_client_num` connection slots, released when
/// the connection ends on whichever shard serves it.
pub struct ConnectionSlot(Arc<NodeShared>);

impl ConnectionSlot {
    /// Takes a slot, or `None` when the node is at its connection cap.
    pub fn take(shared: &Arc<NodeShared>) -> Option<ConnectionSlot> {
        let max = shared.config.dn_rpc_max_concurrent_client_num;
        let taken = shared.connections.fetch_add(1, Ordering::AcqRel);
        if taken >= max {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectionSlot(shared.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The request handler of one shard.
pub struct ShardHandler {
    shard: Rc<Shard>,
}

impl Handler for ShardHandler {
    async fn authenticate(&self, handshake: &Handshake) -> Result<HandshakeAccepted, Status> {
        let config = &self.shard.shared.config;
        if handshake.user != DEFAULT_USER || handshake.password != config.root_password {
            tracing::warn!(user = %handshake.user, client = %handshake.client_name, "authentication failed");
            return Err(Status::new(
                StatusCode::WRONG_LOGIN_PASSWORD,
                "wrong user name or password",
            ));
        }
        Ok(HandshakeAccepted {
            session_id: self.shard.next_session(),
            data_node_id: self.shard.shared.data_node_id,
            shard_id: u32::from(self.shard.id.0),
            shard_count: self.shard.shared.shard_count as u32,
            route_table_version: self.shard.route().version(),
        })
    }

    async fn handle(
        &self,
        _session: &Session,
        request: Request,
        stream: &ResponseStream,
    ) -> ResponseResult {
        let shard = &self.shard;
        let metrics = shard.metrics();
        metrics.request(request_kind(&request));
        let result = self.dispatch(request, stream).await;
        if let Err(status) = &result {
            metrics.error(status.code);
        }
        result
    }
}

/// What a native request is, for the request counters.
fn request_kind(request: &Request) -> RequestKind {
    match request {
        Request::InsertTablets(_) => RequestKind::Write,
        Request::QueryRaw(_) | Request::QueryAggregate(_) | Request::QueryLast(_) => {
            RequestKind::Query
        }
        Request::ExecuteSql { statement } => RequestKind::of_sql(statement),
        _ => RequestKind::Other,
    }
}

impl ShardHandler {
    /// The query, SQL and flush paths are boxed (a control request boxes itself in
    /// `Shard::control`): a request's task is spawned with its future, copied whole, and
    /// the future is as large as its largest path (a query's or an SQL statement's,
    /// ~17 KiB); boxed, a write's task moves ~2.4 KiB.
    async fn dispatch(&self, request: Request, stream: &ResponseStream) -> ResponseResult {
        let shard = &self.shard;
        match request {
            Request::Handshake(_) | Request::Ping => Ok(ResponsePayload::Pong),
            Request::CreateDatabase(create) => shard
                .control(ControlRequest::CreateDatabase {
                    name: create.name,
                    ttl_ms: create.ttl_ms,
                    data_region_group_num: create.data_region_group_num,
                })
                .await
                .map(|_| ResponsePayload::Done),
            Request::InsertTablets(insert) => shard
                .insert(insert.tablets)
                .await
                .map(|()| ResponsePayload::Done),
            Request::QueryRaw(query) => Box::pin(shard.query_raw(query, stream)).await,
            Request::QueryAggregate(query) => Box::pin(shard.query_aggregate(query)).await,
            Request::QueryLast(series) => Box::pin(shard.query_last(series)).await,
            Request::FetchRouteTable { known_version } => {
                let route = shard.route();
                Ok(ResponsePayload::RouteTable(
                    (route.version() != known_version).then(|| route.wire_table().clone()),
                ))
            }
            Request::Flush { databases: _ } => Box::pin(shard.flush_all())
                .await
                .map(|()| ResponsePayload::Done),
            Request::ExecuteSql { statement } => {
                Box::pin(async move {
                    match shard.open_sql(&statement).await? {
                        SqlAnswer::Whole(result) => stream_whole(result, stream).await,
                        SqlAnswer::Pages(pages) => stream_pages(pages, stream).await,
                    }
                })
                .await
            }
        }
    }
}

/// Cells (rows × columns) of one streamed SQL result frame: about 4 MiB of numbers, far
/// below the frame limit unless TEXT values are long.
pub const SQL_PAGE_CELLS: usize = 1 << 19;

/// Sends a paged SQL result as frames of at most [`SQL_PAGE_CELLS`] cells, each a result
/// set with the columns, the last one returned (empty when no row is left for it).
async fn stream_pages(mut pages: RowPages, stream: &ResponseStream) -> ResponseResult {
    let rows_max = frame_rows_max(pages.header());
    loop {
        let (rows, more) = pages.next_page(rows_max).await?;
        let mut page = pages.header().clone();
        page.rows = rows;
        if !more {
            return Ok(ResponsePayload::ResultSet(page));
        }
        send_page(page, stream).await?;
    }
}

/// Sends a whole SQL result (`SELECT LAST`, `SHOW`: a row per series) in frames of at most
/// [`SQL_PAGE_CELLS`] cells, as [`stream_pages`] does.
async fn stream_whole(result: ResultSet, stream: &ResponseStream) -> ResponseResult {
    let rows_max = frame_rows_max(&result);
    let mut frames = frames_of(result, rows_max);
    let last = frames.pop().expect("frames_of answers at least one frame");
    for frame in frames {
        send_page(frame, stream).await?;
    }
    Ok(ResponsePayload::ResultSet(last))
}

/// `result` cut into frames of at most `rows_max` rows, each with the columns (one frame,
/// perhaps empty, at least).
fn frames_of(result: ResultSet, rows_max: usize) -> Vec<ResultSet> {
    let header = ResultSet {
        column_names: result.column_names,
        column_types: result.column_types,
        rows: Vec::new(),
    };
    let mut frames = Vec::new();
    let mut rows = result.rows.into_iter().peekable();
    loop {
        let mut frame = header.clone();
        frame.rows = rows.by_ref().take(rows_max.max(1)).collect();
        frames.push(frame);
        if rows.peek().is_none() {
            return frames;
        }
    }
}

/// Rows of a frame of `header`'s columns.
fn frame_rows_max(header: &ResultSet) -> usize {
    (SQL_PAGE_CELLS / header.column_names.len().max(1)).max(1)
}

async fn send_page(page: ResultSet, stream: &ResponseStream) -> Result<(), Status> {
    stream
        .send_more(ResponsePayload::ResultSet(page))
        .await
        .map_err(|e| Status::internal(format!("streaming a result: {e}")))
}

/// Limits of client connections (`docs/protocol.md`). One value per process, so every
/// connection of every shard shares its in-flight request bytes budget.
pub fn connection_limits() -> ConnectionLimits {
    static LIMITS: std::sync::OnceLock<ConnectionLimits> = std::sync::OnceLock::new();
    LIMITS.get_or_init(ConnectionLimits::default).clone()
}

/// Accepts connections on this shard's listener until the node stops.
pub async fn accept_loop(
    shard: Rc<Shard>,
    listener: monoio::net::TcpListener,
    stop: iotdb_runtime::StopSignal,
) {
    loop {
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(slot) = ConnectionSlot::take(&shard.shared) else {
            tracing::warn!(%peer, "refusing a connection: dn_rpc_max_concurrent_client_num reached");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shard = shard.clone();
        monoio::spawn(async move { serve_accepted(shard, stream, slot).await });
    }
}

async fn serve_accepted(
    shard: Rc<Shard>,
    mut stream: monoio::net::TcpStream,
    slot: ConnectionSlot,
) {
    let limits = connection_limits();
    let deadline = Instant::now() + limits.handshake_timeout;
    // Both protocols share the port: the first bytes tell them apart (docs/protocol.md).
    let mut buffered = BytesMut::new();
    match thrift::read_first_bytes(&mut stream, &mut buffered, deadline).await {
        Ok(Sniffed::Thrift(protocol)) => {
            let end = thrift::serve(shard, stream, buffered, protocol, deadline, limits).await;
            tracing::debug!(?end, "thrift connection ended");
            drop(slot);
            return;
        }
        Ok(_) => {}
        Err(end) => {
            tracing::debug!(?end, "connection ended before its first frame");
            return;
        }
    }
    let pending = match iotdb_net::accept_handshake(stream, buffered, deadline, 0, &limits).await {
        Ok(pending) => pending,
        Err(end) => {
            tracing::debug!(?end, "connection ended before its handshake");
            return;
        }
    };
    let target = pending.handshake.target_shard.map(|s| ShardId(s as u16));
    match target {
        Some(to) if to != shard.id && usize::from(to.0) < shard.shared.shard_count => {
            let PendingConnection {
                stream,
                buffered,
                handshake,
                request_id,
                deadline,
                failed_attempts,
            } = pending;
            let adopted = AdoptedConnection {
                stream: iotdb_runtime::net::detach(stream),
                buffered,
                handshake,
                request_id,
                deadline,
                failed_attempts,
                slot,
            };
            shard.mesh.send(to, Message::Adopt(Box::new(adopted))).await;
        }
        _ => serve(shard, pending, slot).await,
    }
}

/// Resumes a connection moved here from another shard.
pub async fn serve_adopted(shard: Rc<Shard>, connection: AdoptedConnection) {
    let AdoptedConnection {
        stream,
        buffered,
        handshake,
        request_id,
        deadline,
        failed_attempts,
        slot,
    } = connection;
    let stream = match monoio::net::TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "resuming a moved connection failed");
            return;
        }
    };
    let pending = PendingConnection {
        stream,
        buffered,
        handshake,
        request_id,
        deadline,
        failed_attempts,
    };
    serve(shard, pending, slot).await;
}

async fn serve(shard: Rc<Shard>, pending: PendingConnection, slot: ConnectionSlot) {
    let handler = Rc::new(ShardHandler { shard });
    let end = iotdb_net::serve_pending(pending, handler, connection_limits()).await;
    tracing::debug!(?end, "connection ended");
    drop(slot);
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// A whole result goes out in frames of at most the given rows, each with the columns,
    /// the rows in order; an empty one as one empty frame.
    #[test]
    fn a_whole_result_is_cut_into_frames() {
        let mut result = ResultSet::new(&[("Time", iotdb_net::DataType::Int64)]);
        result.rows = (0..5)
            .map(|t| vec![Some(iotdb_net::Value::Int64(t))])
            .collect();
        let frames = frames_of(result.clone(), 2);
        assert_eq!(
            frames.iter().map(|f| f.rows.len()).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(frames.iter().all(|f| f.column_names == result.column_names));
        let rows: Vec<_> = frames.into_iter().flat_map(|f| f.rows).collect();
        assert_eq!(rows, result.rows);
        result.rows.clear();
        let frames = frames_of(result, 2);
        assert_eq!(frames.len(), 1);
        assert!(frames[0].rows.is_empty());
    }

    /// The size of the future `call` returns, found from its type alone (never called).
    fn size_of_output<'a, F: Future>(
        _call: impl FnOnce(&'a ShardHandler, &'a Session, Request, &'a ResponseStream) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    /// The network layer spawns a task per request with this future, copied whole: every
    /// path but the write's is boxed in `dispatch`, and the write's own rare waits are
    /// boxed where it awaits them, so the copy stays small: 2 KiB, where the SQL and query
    /// paths unboxed made it 17 KiB (one query path unboxed alone: 4.4 KiB).
    #[test]
    fn a_request_future_stays_small() {
        let size = size_of_output(|handler, session, request, stream| {
            handler.handle(session, request, stream)
        });
        // 2 KiB in the test profile (opt-level 1) and in release.
        let limit = 3 * 1024;
        assert!(
            size <= limit,
            "a request's future is {size} bytes (limit {limit}): box the large path"
        );
        eprintln!("a request's future: {size} bytes");
    }
}
