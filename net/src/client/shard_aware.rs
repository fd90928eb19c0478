//! A shard-aware async client: it caches the route table, keeps one
//! connection per (endpoint, shard) named in that connection's handshake,
//! and sends each tablet straight to the shard leading the tablet's region,
//! so the server does no cross-core hop.
//!
//! Tablets with no route (a new time slot, an unknown database) go to the
//! default connection, whose server routes them. On `ROUTE_TABLE_STALE` the
//! client refetches the table and resends; on a connection failure it drops
//! the connection and retries, failing over between the seed endpoints. After
//! [`INSERT_ATTEMPTS_MAX`] quick attempts it keeps trying, paced, for as long as
//! its [`FailoverPolicy`] allows (a DataNode's death takes a few seconds to
//! reach the route table), on transient failures only (see
//! [`super::failover::is_transient`]).
//! A tablet is routed by its first row's timestamp: a tablet spanning two
//! time slots is routed (and split) by the server.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};

use super::ClientConfig;
use super::async_calls::AsyncCalls;
use super::async_client::{AsyncClient, insert_outcome};
use super::failover::{FailoverPolicy, is_transient};
use crate::error::{ClientError, NetError};
use crate::partition::RouteTable;
use crate::status::StatusCode;
use crate::tablet::WireTablet;

/// Attempts per insert made at once (route refreshes and reconnects); later ones are
/// paced by the client's [`FailoverPolicy`].
pub const INSERT_ATTEMPTS_MAX: usize = 4;

/// A connection to one core of one DataNode: its client endpoint `host:port` (as the route
/// table names it) and the shard named in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardEndpoint {
    pub rpc_endpoint: String,
    pub shard_id: u32,
}

/// Where the client sends a tablet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The (DataNode, core) leading the tablet's region group: no hop on the server.
    Leader(ShardEndpoint),
    /// The default connection, when the route table does not know the tablet's region
    /// (a new time slot, an unknown database, an empty tablet): that server routes it,
    /// forwarding where another DataNode leads, and a route refresh teaches the client.
    Default,
}

/// Shard-aware client (one task, one shard thread).
#[derive(Debug)]
pub struct ShardAwareClient {
    config: ClientConfig,
    seeds: Vec<SocketAddr>,
    /// Index into `seeds` of the endpoint the default connection uses.
    seed_index: usize,
    default_connection: Option<AsyncClient>,
    shard_connections: HashMap<ShardEndpoint, AsyncClient>,
    route_table: RouteTable,
    policy: FailoverPolicy,
}

impl ShardAwareClient {
    /// Connects to the first reachable seed and fetches the route table.
    pub async fn connect(seeds: &[SocketAddr], config: ClientConfig) -> Result<Self, ClientError> {
        if seeds.is_empty() {
            return Err(ClientError::Unavailable("no seed endpoints".to_owned()));
        }
        let mut client = Self {
            config,
            seeds: seeds.to_vec(),
            seed_index: 0,
            default_connection: None,
            shard_connections: HashMap::new(),
            route_table: RouteTable::empty(),
            policy: FailoverPolicy::default(),
        };
        client.refresh_route_table().await?;
        Ok(client)
    }

    /// How long an insert keeps trying after its quick attempts failed.
    pub fn set_failover_policy(&mut self, policy: FailoverPolicy) {
        self.policy = policy;
    }

    pub fn route_table(&self) -> &RouteTable {
        &self.route_table
    }

    /// Open connections to shards (not counting the default connection).
    pub fn shard_connection_count(&self) -> usize {
        self.shard_connections.len()
    }

    /// The default connection, (re)connecting and failing over between seeds.
    pub async fn default_connection(&mut self) -> Result<&mut AsyncClient, ClientError> {
        if self.default_connection.is_none() {
            let mut last_error = None;
            for attempt in 0..self.seeds.len() {
                let index = (self.seed_index + attempt) % self.seeds.len();
                let mut config = self.config.clone();
                config.target_shard = None;
                match AsyncClient::connect(self.seeds[index], &config).await {
                    Ok(client) => {
                        self.seed_index = index;
                        self.default_connection = Some(client);
                        break;
                    }
                    Err(error @ ClientError::Status(_)) => return Err(error),
                    Err(error) => last_error = Some(error),
                }
            }
            if self.default_connection.is_none() {
                let reason =
                    last_error.map_or_else(|| "no seeds".to_owned(), |error| error.to_string());
                return Err(ClientError::Unavailable(reason));
            }
        }
        Ok(self.default_connection.as_mut().expect("connected above"))
    }

    /// Refetches the route table if the server holds a newer one.
    pub async fn refresh_route_table(&mut self) -> Result<(), ClientError> {
        let known_version = self.route_table.version();
        let result = self
            .default_connection()
            .await?
            .fetch_route_table(known_version)
            .await;
        match result {
            Ok(Some(table)) => {
                self.route_table = table;
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => {
                self.drop_default_if_broken(&error);
                Err(error)
            }
        }
    }

    fn drop_default_if_broken(&mut self, error: &ClientError) {
        if !matches!(error, ClientError::Status(_)) {
            self.default_connection = None;
            self.seed_index = (self.seed_index + 1) % self.seeds.len();
        }
    }

    async fn shard_connection(
        &mut self,
        key: &ShardEndpoint,
    ) -> Result<&mut AsyncClient, ClientError> {
        if !self.shard_connections.contains_key(key) {
            let address = key
                .rpc_endpoint
                .to_socket_addrs()
                .map_err(|error| NetError::io("resolving a route endpoint", error))?
                .next()
                .ok_or_else(|| {
                    ClientError::Unavailable(format!(
                        "endpoint {} does not resolve",
                        key.rpc_endpoint
                    ))
                })?;
            let mut config = self.config.clone();
            config.target_shard = Some(key.shard_id);
            let client = AsyncClient::connect(address, &config).await?;
            self.shard_connections.insert(key.clone(), client);
        }
        Ok(self.shard_connections.get_mut(key).expect("inserted above"))
    }

    /// Where a tablet of `device` whose first row is at `first_time_ms` goes, by the
    /// cached route table.
    pub fn destination(&self, device: &str, first_time_ms: i64) -> Destination {
        self.route_table
            .route_for(device, first_time_ms)
            .map_or(Destination::Default, |target| {
                Destination::Leader(ShardEndpoint {
                    rpc_endpoint: target.rpc_endpoint.to_owned(),
                    shard_id: target.shard_id,
                })
            })
    }

    /// The connection to `destination`, opened when there is none (the default one fails
    /// over between the seeds). With [`ShardAwareClient::destination`] this is the
    /// pipelining surface: a caller that keeps many requests in flight sends each with
    /// `send_*` on its destination's connection and collects it later with `receive`
    /// there (`iotdb-perf` does), instead of awaiting each
    /// [`ShardAwareClient::insert_tablets`].
    pub async fn connection(
        &mut self,
        destination: &Destination,
    ) -> Result<&mut AsyncClient, ClientError> {
        match destination {
            Destination::Leader(key) => self.shard_connection(key).await,
            Destination::Default => self.default_connection().await,
        }
    }

    /// The connection to `destination` if one is open: the answer to a request comes on
    /// the connection it went out on, so a receive must not open a new one.
    pub fn open_connection(&mut self, destination: &Destination) -> Option<&mut AsyncClient> {
        match destination {
            Destination::Leader(key) => self.shard_connections.get_mut(key),
            Destination::Default => self.default_connection.as_mut(),
        }
    }

    /// Drops the connection to `destination` when `error` says it is broken (anything but
    /// a status the server answered), so the next [`ShardAwareClient::connection`] opens a
    /// fresh one (the default connection to the next seed).
    pub fn forget(&mut self, destination: &Destination, error: &ClientError) {
        match destination {
            Destination::Leader(key) => {
                if !matches!(error, ClientError::Status(_)) {
                    self.shard_connections.remove(key);
                }
            }
            Destination::Default => self.drop_default_if_broken(error),
        }
    }

    /// Inserts tablets, each sent to the shard leading its region. Requests to
    /// different shards are pipelined: all are sent before any is awaited.
    pub async fn insert_tablets(&mut self, tablets: &[WireTablet]) -> Result<(), ClientError> {
        let mut remaining: Vec<usize> = (0..tablets.len()).collect();
        let mut last_error = None;
        let deadline = std::time::Instant::now() + self.policy.retry_for;
        for attempt in 1.. {
            if remaining.is_empty() {
                return Ok(());
            }
            if attempt > INSERT_ATTEMPTS_MAX {
                if std::time::Instant::now() + self.policy.pause >= deadline {
                    break;
                }
                monoio::time::sleep(self.policy.pause).await;
            }
            let mut groups: HashMap<Destination, Vec<usize>> = HashMap::new();
            for index in &remaining {
                let tablet = &tablets[*index];
                let destination = tablet
                    .timestamps
                    .first()
                    .map_or(Destination::Default, |first| {
                        self.destination(&tablet.device, *first)
                    });
                groups.entry(destination).or_default().push(*index);
            }
            let unrouted = groups.contains_key(&Destination::Default);
            let mut sent = Vec::new();
            let mut failed = Vec::new();
            for (key, indexes) in groups {
                let batch: Vec<WireTablet> = indexes
                    .iter()
                    .map(|index| tablets[*index].clone())
                    .collect();
                match self.connection(&key).await {
                    Ok(connection) => match connection.send_insert_tablets(&batch).await {
                        Ok(request_id) => sent.push((key, indexes, request_id)),
                        Err(error) => {
                            self.forget(&key, &error);
                            last_error = Some(error);
                            failed.extend(indexes);
                        }
                    },
                    Err(error) => {
                        self.forget(&key, &error);
                        last_error = Some(error);
                        failed.extend(indexes);
                    }
                }
            }
            let mut stale = false;
            for (key, indexes, request_id) in sent {
                let Some(connection) = self.open_connection(&key) else {
                    failed.extend(indexes);
                    continue;
                };
                match insert_outcome(connection.receive(request_id).await) {
                    Ok(()) => {}
                    Err(error) if error.status_code() == Some(StatusCode::ROUTE_TABLE_STALE) => {
                        stale = true;
                        last_error = Some(error);
                        failed.extend(indexes);
                    }
                    Err(error) if !is_transient(&error) => return Err(error),
                    Err(error) => {
                        // A broken connection is dropped; a DataNode that said "not now"
                        // (606) or could not reach another (305) is asked again.
                        self.forget(&key, &error);
                        last_error = Some(error);
                        failed.extend(indexes);
                    }
                }
            }
            if failed.is_empty() {
                // The server created partitions for the tablets that had no route: learn
                // them, so the next writes go straight to their shards. Best effort: the
                // writes themselves succeeded.
                if unrouted && let Err(error) = self.refresh_route_table().await {
                    tracing::debug!(%error, "refreshing the route table after new partitions failed");
                }
                return Ok(());
            }
            // Stale or failed: the leader may have moved, refresh before retrying.
            if let Err(error) = self.refresh_route_table().await
                && !stale
            {
                last_error = Some(error);
            }
            failed.sort_unstable();
            remaining = failed;
        }
        Err(last_error
            .unwrap_or_else(|| ClientError::Unavailable("insert attempts exhausted".to_owned())))
    }
}
