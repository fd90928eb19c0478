//! A blocking client over several DataNodes of a cluster: it talks to one at a time, and
//! when that one fails (its connection breaks, or it answers with a status that a moment
//! later another DataNode will not: a stale route, an overload, a leader that is taking
//! over) it moves to the next and sends the request again, for a bounded time.
//!
//! ```text
//!  call ─► current DataNode ─ ok ─────────────────────────────► answer
//!               │ connection lost / 420 / 606 / 305
//!               └─► next endpoint (round robin), pause, send again ─► ... until
//!                   `FailoverPolicy::retry_for` has passed: the last error
//! ```
//!
//! Sending again is safe for what the client sends: a write of the same points is
//! idempotent (same series and timestamp, the newest value wins), and queries only read.
//! Statements are sent again too; a DDL statement that took effect before the connection
//! broke answers its "already exists" status the second time, which is returned as is.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ClientConfig;
use super::blocking::BlockingClient;
use crate::error::ClientError;
use crate::message::{AggregateQuery, HandshakeAccepted, RawQuery, SeriesSelection};
use crate::partition::RouteTable;
use crate::result::{ColumnBatch, LastPoint, ResultSet};
use crate::status::StatusCode;
use crate::tablet::WireTablet;

/// How long and how a [`FailoverClient`] keeps trying.
#[derive(Debug, Clone, Copy)]
pub struct FailoverPolicy {
    /// How long one call keeps trying other DataNodes before it returns the last error.
    /// Why 15 s by default: a dead DataNode turns `Unknown` after three missed heartbeats
    /// (3 s with IoTDB's 1 s interval) and its groups' new leaders take over within
    /// another second or two; twice that covers a loaded machine.
    pub retry_for: Duration,
    /// The pause before sending again.
    pub pause: Duration,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            retry_for: Duration::from_secs(15),
            pause: Duration::from_millis(100),
        }
    }
}

/// Whether another attempt (on another DataNode, or a moment later) may succeed where
/// `error` failed: a broken connection, or a status that says "not here" or "not now".
pub fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Net(_) | ClientError::Unavailable(_) => true,
        ClientError::Status(status) => matches!(
            status.code,
            // The route moved (a new leader), the DataNode is overloaded or a group is
            // taking over as leader, or it could not reach the DataNode it forwards to.
            StatusCode::ROUTE_TABLE_STALE
                | StatusCode::WRITE_PROCESS_REJECT
                | StatusCode::INTERNAL_SERVER_ERROR
        ),
        ClientError::Protocol(_) => false,
    }
}

/// A blocking client of a cluster given several DataNode endpoints.
#[derive(Debug)]
pub struct FailoverClient {
    endpoints: Vec<SocketAddr>,
    config: ClientConfig,
    policy: FailoverPolicy,
    /// The endpoint tried next (or now in use).
    current: usize,
    client: Option<BlockingClient>,
}

impl FailoverClient {
    /// Connects to the first of `endpoints` that answers (trying each in turn).
    pub fn connect(
        endpoints: &[SocketAddr],
        config: &ClientConfig,
        policy: FailoverPolicy,
    ) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::Unavailable("no endpoint given".to_owned()));
        }
        let mut client = Self {
            endpoints: endpoints.to_vec(),
            config: config.clone(),
            policy,
            current: 0,
            client: None,
        };
        let mut last_error = None;
        for _ in 0..endpoints.len() {
            match client.connected() {
                Ok(_) => return Ok(client),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one endpoint was tried"))
    }

    /// The endpoint in use (or tried next).
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoints[self.current]
    }

    /// What the DataNode in use said at handshake, when connected.
    pub fn accepted(&self) -> Option<&HandshakeAccepted> {
        self.client.as_ref().map(BlockingClient::accepted)
    }

    /// The connection in use, opening one to the current endpoint when there is none (a
    /// failed attempt moves on to the next endpoint).
    fn connected(&mut self) -> Result<&mut BlockingClient, ClientError> {
        if self.client.is_none() {
            match BlockingClient::connect(self.endpoint(), &self.config) {
                Ok(client) => self.client = Some(client),
                Err(error) => {
                    self.current = (self.current + 1) % self.endpoints.len();
                    return Err(error);
                }
            }
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Runs `call` on a DataNode, moving to the next one on a transient failure, until it
    /// succeeds, fails otherwise, or [`FailoverPolicy::retry_for`] has passed.
    fn with_failover<T>(
        &mut self,
        mut call: impl FnMut(&mut BlockingClient) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.policy.retry_for;
        loop {
            let error = match self.connected() {
                Ok(client) => match call(client) {
                    Ok(value) => return Ok(value),
                    Err(error) => {
                        if !is_transient(&error) {
                            return Err(error);
                        }
                        // The next attempt goes to another DataNode over a fresh
                        // connection (a broken one cannot be reused anyway).
                        self.client = None;
                        self.current = (self.current + 1) % self.endpoints.len();
                        error
                    }
                },
                Err(error) => error,
            };
            if Instant::now() + self.policy.pause >= deadline {
                return Err(error);
            }
            std::thread::sleep(self.policy.pause);
        }
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.with_failover(BlockingClient::ping)
    }

    pub fn insert_tablets(&mut self, tablets: &[WireTablet]) -> Result<(), ClientError> {
        self.with_failover(|client| client.insert_tablets(tablets))
    }

    pub fn query_raw(&mut self, query: RawQuery) -> Result<Vec<ColumnBatch>, ClientError> {
        self.with_failover(|client| client.query_raw(query.clone()))
    }

    pub fn query_aggregate(
        &mut self,
        query: AggregateQuery,
    ) -> Result<Vec<ColumnBatch>, ClientError> {
        self.with_failover(|client| client.query_aggregate(query.clone()))
    }

    pub fn query_last(
        &mut self,
        series: Vec<SeriesSelection>,
    ) -> Result<Vec<LastPoint>, ClientError> {
        self.with_failover(|client| client.query_last(series.clone()))
    }

    /// `None` when `known_version` is current.
    pub fn fetch_route_table(
        &mut self,
        known_version: u64,
    ) -> Result<Option<RouteTable>, ClientError> {
        self.with_failover(|client| client.fetch_route_table(known_version))
    }

    pub fn flush(&mut self, databases: Vec<String>) -> Result<(), ClientError> {
        self.with_failover(|client| client.flush(databases.clone()))
    }

    pub fn execute_sql(&mut self, statement: &str) -> Result<ResultSet, ClientError> {
        self.with_failover(|client| client.execute_sql(statement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn transient_errors_are_the_ones_another_data_node_may_not_have() {
        let status = |code| ClientError::Status(Status::new(code, "x"));
        assert!(is_transient(&ClientError::Net(crate::NetError::Closed)));
        assert!(is_transient(&status(StatusCode::ROUTE_TABLE_STALE)));
        assert!(is_transient(&status(StatusCode::WRITE_PROCESS_REJECT)));
        assert!(!is_transient(&status(StatusCode::DATA_TYPE_MISMATCH)));
        assert!(!is_transient(&status(StatusCode::SQL_PARSE_ERROR)));
        assert!(!is_transient(&ClientError::Protocol("x".into())));
    }

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
