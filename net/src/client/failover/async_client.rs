//! The async failover client: an [`AsyncClient`] to one DataNode at a time, moved to the
//! next on a transient failure as [`Failover`] decides (see the module above). For one
//! task on one monoio thread, like `AsyncClient`.
//!
//! Each request is encoded once and the same bytes are sent again on the next DataNode,
//! so a failover costs no re-encoding of a large batch of tablets.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{CallBudget, Failover, FailoverPolicy};
use crate::client::ClientConfig;
use crate::client::async_calls::AsyncCalls;
use crate::client::async_client::AsyncClient;
use crate::error::ClientError;
use crate::frame::Opcode;
use crate::message::{HandshakeAccepted, ResponsePayload};

/// An async client of a cluster given several DataNode endpoints: the calls of
/// [`AsyncCalls`], as [`AsyncClient`] has them, each sent again on the next DataNode
/// after a transient failure.
#[derive(Debug)]
pub struct AsyncFailoverClient {
    config: ClientConfig,
    failover: Failover,
    client: Option<AsyncClient>,
}

impl AsyncFailoverClient {
    /// Connects to the first of `endpoints` that answers (trying each in turn, without
    /// pausing); a non-transient error (a refused login) is returned at once.
    pub async fn connect(
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
        client.with_failover(budget, None).await?;
        Ok(client)
    }

    /// The endpoint in use (or tried next).
    pub fn endpoint(&self) -> SocketAddr {
        self.failover.endpoint()
    }

    /// What the DataNode in use said at handshake, when connected.
    pub fn accepted(&self) -> Option<&HandshakeAccepted> {
        self.client.as_ref().map(AsyncClient::accepted)
    }

    /// One attempt: connects to the current endpoint when there is no connection, then
    /// sends `request` (opcode and encoded body) and collects its answer. `None` only
    /// connects (and answers no payloads).
    async fn attempt(
        &mut self,
        request: Option<(Opcode, &Bytes)>,
    ) -> Result<Vec<ResponsePayload>, ClientError> {
        if self.client.is_none() {
            let endpoint = self.failover.endpoint();
            self.client = Some(AsyncClient::connect(endpoint, &self.config).await?);
        }
        let client = self.client.as_mut().expect("connected above");
        let Some((opcode, body)) = request else {
            return Ok(Vec::new());
        };
        client.exchange(opcode, body.clone()).await
    }

    /// Runs `request` on a DataNode, moving to the next one on a transient failure, until
    /// it is answered, fails otherwise, or `budget` is spent.
    async fn with_failover(
        &mut self,
        mut budget: CallBudget,
        request: Option<(Opcode, &Bytes)>,
    ) -> Result<Vec<ResponsePayload>, ClientError> {
        loop {
            match self.attempt(request).await {
                Ok(payloads) => return Ok(payloads),
                Err(error) => {
                    let now = Instant::now();
                    let pause =
                        self.failover
                            .after_failure(&mut budget, error, now, &mut self.client)?;
                    monoio::time::sleep(pause).await;
                }
            }
        }
    }
}

impl AsyncCalls for AsyncFailoverClient {
    /// Encoded once by the caller; paced attempts for up to
    /// [`FailoverPolicy::retry_for`].
    async fn exchange(
        &mut self,
        opcode: Opcode,
        body: Bytes,
    ) -> Result<Vec<ResponsePayload>, ClientError> {
        let budget = self.failover.until_deadline(Instant::now());
        self.with_failover(budget, Some((opcode, &body))).await
    }
}
