//! The calls every async client offers, written once over one primitive: send a request's
//! encoded body and collect its answer. [`AsyncClient`](super::async_client::AsyncClient)
//! answers it on its one connection, [`AsyncFailoverClient`](super::failover::AsyncFailoverClient)
//! by sending the same bytes to another DataNode after a transient failure; the calls
//! themselves (which request, which answer) cannot differ between the two.

use bytes::Bytes;

use super::{into_batches, into_done, into_last, into_result_set, into_route_table};
use crate::error::ClientError;
use crate::frame::Opcode;
use crate::message::{
    AggregateQuery, CreateDatabase, RawQuery, Request, ResponsePayload, SeriesSelection,
    encode_insert_tablets,
};
use crate::partition::RouteTable;
use crate::result::{ColumnBatch, LastPoint, ResultSet};
use crate::tablet::WireTablet;

/// Request and answer, for monoio clients (bring the trait into scope to call them).
///
/// Why `async fn` in a public trait is fine here (`async_fn_in_trait` warns that callers
/// cannot require `Send` futures): monoio runs a task on the thread that spawned it, and
/// its connections are `!Send`, so no caller could use a `Send` bound anyway.
#[allow(async_fn_in_trait)]
pub trait AsyncCalls {
    /// Sends one request (its opcode and encoded body) and collects every frame of its
    /// answer; a server's error status is `ClientError::Status`.
    async fn exchange(
        &mut self,
        opcode: Opcode,
        body: Bytes,
    ) -> Result<Vec<ResponsePayload>, ClientError>;

    async fn call(&mut self, request: &Request) -> Result<Vec<ResponsePayload>, ClientError> {
        self.exchange(request.opcode(), request.encode_body()).await
    }

    async fn ping(&mut self) -> Result<(), ClientError> {
        into_done(self.call(&Request::Ping).await?)
    }

    async fn create_database(&mut self, create: CreateDatabase) -> Result<(), ClientError> {
        into_done(self.call(&Request::CreateDatabase(create)).await?)
    }

    /// Tablets are validated before anything is sent: a malformed tablet fails here, on
    /// no server.
    async fn insert_tablets(&mut self, tablets: &[WireTablet]) -> Result<(), ClientError> {
        for tablet in tablets {
            tablet.validate().map_err(ClientError::Protocol)?;
        }
        into_done(
            self.exchange(Opcode::InsertTablets, encode_insert_tablets(tablets))
                .await?,
        )
    }

    async fn query_raw(&mut self, query: RawQuery) -> Result<Vec<ColumnBatch>, ClientError> {
        into_batches(self.call(&Request::QueryRaw(query)).await?)
    }

    async fn query_aggregate(
        &mut self,
        query: AggregateQuery,
    ) -> Result<Vec<ColumnBatch>, ClientError> {
        into_batches(self.call(&Request::QueryAggregate(query)).await?)
    }

    async fn query_last(
        &mut self,
        series: Vec<SeriesSelection>,
    ) -> Result<Vec<LastPoint>, ClientError> {
        into_last(self.call(&Request::QueryLast(series)).await?)
    }

    /// `None` when `known_version` is current.
    async fn fetch_route_table(
        &mut self,
        known_version: u64,
    ) -> Result<Option<RouteTable>, ClientError> {
        into_route_table(
            self.call(&Request::FetchRouteTable { known_version })
                .await?,
        )
    }

    async fn flush(&mut self, databases: Vec<String>) -> Result<(), ClientError> {
        into_done(self.call(&Request::Flush { databases }).await?)
    }

    async fn execute_sql(&mut self, statement: &str) -> Result<ResultSet, ClientError> {
        into_result_set(
            self.call(&Request::ExecuteSql {
                statement: statement.to_owned(),
            })
            .await?,
        )
    }
}
