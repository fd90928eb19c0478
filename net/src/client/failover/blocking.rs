//! The blocking failover client: a [`BlockingClient`] to one DataNode at a time, moved to
//! the next on a transient failure as [`Failover`] decides (see the module above).

use std::net::SocketAddr;
use std::time::Instant;

use super::{CallBudget, Failover, FailoverPolicy};
use crate::client::ClientConfig;
use crate::client::blocking::BlockingClient;
use crate::error::ClientError;
use crate::message::{
    AggregateQuery, CreateDatabase, HandshakeAccepted, RawQuery, SeriesSelection,
};
use crate::partition::RouteTable;
use crate::result::{ColumnBatch, LastPoint, ResultSet};
use crate::tablet::WireTablet;

/// A blocking client of a cluster given several DataNode endpoints.
#[derive(Debug)]
pub struct FailoverClient {
    config: ClientConfig,
    failover: Failover,
    client: Option<BlockingClient>,
}

impl FailoverClient {
    /// Connects to the first of `endpoints` that answers (trying each in turn, without
    /// pausing); a non-transient error (a refused login) is returned at once.
    pub fn connect(
        endpoints: &[SocketAddr],
        config: &ClientConfig,
        policy: FailoverPolicy,
    ) -> Result<Self, ClientError> {
        let mut client = Self {
            config: config.clone(),
            failover: Failover::new(endpoints, policy)?,
            client: None,
        };
        let budget = client.failover.one_pass();
        client.with_failover(budget, |_| Ok(()))?;
        Ok(client)
    }

    /// The endpoint in use (or tried next).
    pub fn endpoint(&self) -> SocketAddr {
        self.failover.endpoint()
    }

    /// What the DataNode in use said at handshake, when connected.
    pub fn accepted(&self) -> Option<&HandshakeAccepted> {
        self.client.as_ref().map(BlockingClient::accepted)
    }

    /// The connection in use, opening one to the current endpoint when there is none.
    fn connected(&mut self) -> Result<&mut BlockingClient, ClientError> {
        if self.client.is_none() {
            self.client = Some(BlockingClient::connect(
                self.failover.endpoint(),
                &self.config,
            )?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Runs `call` on a DataNode, moving to the next one on a transient failure, until it
    /// succeeds, fails otherwise, or `budget` is spent.
    fn with_failover<T>(
        &mut self,
        mut budget: CallBudget,
        mut call: impl FnMut(&mut BlockingClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        loop {
            match self.connected().and_then(&mut call) {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let now = Instant::now();
                    let pause =
                        self.failover
                            .after_failure(&mut budget, error, now, &mut self.client)?;
                    std::thread::sleep(pause);
                }
            }
        }
    }

    /// A request: paced attempts for up to [`FailoverPolicy::retry_for`].
    fn request<T>(
        &mut self,
        call: impl FnMut(&mut BlockingClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let budget = self.failover.until_deadline(Instant::now());
        self.with_failover(budget, call)
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.request(BlockingClient::ping)
    }

    pub fn create_database(&mut self, create: CreateDatabase) -> Result<(), ClientError> {
        self.request(|client| client.create_database(create.clone()))
    }

    pub fn insert_tablets(&mut self, tablets: &[WireTablet]) -> Result<(), ClientError> {
        self.request(|client| client.insert_tablets(tablets))
    }

    pub fn query_raw(&mut self, query: RawQuery) -> Result<Vec<ColumnBatch>, ClientError> {
        self.request(|client| client.query_raw(query.clone()))
    }

    pub fn query_aggregate(
        &mut self,
        query: AggregateQuery,
    ) -> Result<Vec<ColumnBatch>, ClientError> {
        self.request(|client| client.query_aggregate(query.clone()))
    }

    pub fn query_last(
        &mut self,
        series: Vec<SeriesSelection>,
    ) -> Result<Vec<LastPoint>, ClientError> {
        self.request(|client| client.query_last(series.clone()))
    }

    /// `None` when `known_version` is current.
    pub fn fetch_route_table(
        &mut self,
        known_version: u64,
    ) -> Result<Option<RouteTable>, ClientError> {
        self.request(|client| client.fetch_route_table(known_version))
    }

    pub fn flush(&mut self, databases: Vec<String>) -> Result<(), ClientError> {
        self.request(|client| client.flush(databases.clone()))
    }

    pub fn execute_sql(&mut self, statement: &str) -> Result<ResultSet, ClientError> {
        self.request(|client| client.execute_sql(statement))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// No endpoint answers: the client says so after trying each, within the policy's time.
    #[test]
    fn unreachable_endpoints_fail_with_the_last_error() {
        let closed: Vec<SocketAddr> = (0..2)
            .map(|_| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.local_addr().unwrap()
            })
            .collect();
        let config = ClientConfig {
            connect_timeout: Duration::from_millis(200),
            ..ClientConfig::default()
        };
        let error = FailoverClient::connect(&closed, &config, FailoverPolicy::default())
            .expect_err("nothing listens");
        assert!(matches!(error, ClientError::Net(_)), "{error}");
        assert!(FailoverClient::connect(&[], &config, FailoverPolicy::default()).is_err());
    }
}
