//! Clients over several DataNodes of a cluster: they talk to one at a time, and when that
//! one fails (its connection breaks, or it answers with a status that a moment later
//! another DataNode will not: a stale route, an overload, a leader that is taking over)
//! they move to the next and send the request again, for a bounded time.
//!
//! ```text
//!  call ─► current DataNode ─ ok ─────────────────────────────► answer
//!               │ connection lost / 420 / 606 / 305
//!               └─► next endpoint (round robin), pause, send again ─► ... until
//!                   `FailoverPolicy::retry_for` has passed: the last error
//! ```
//!
//! Two clients share that behaviour: [`FailoverClient`] (blocking, over `BlockingClient`)
//! and [`AsyncFailoverClient`] (monoio, over `AsyncClient`). What they decide — which
//! endpoint is current, whether a failure is worth another attempt, how long to pause,
//! when the call's time is up, dropping the connection it leaves — is [`Failover`], a value
//! without I/O or a clock of its own (the caller passes `now`), so the two differ only in
//! how they connect, send and sleep.
//!
//! Sending again is safe for what the clients send: a write of the same points is
//! idempotent (same series and timestamp, the newest value wins), and queries only read.
//! Statements are sent again too; a DDL statement that took effect before the connection
//! broke answers its "already exists" status the second time, which is returned as is.

pub mod async_client;
pub mod blocking;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use async_client::AsyncFailoverClient;
pub use blocking::FailoverClient;

use crate::error::ClientError;
use crate::status::StatusCode;

/// How long and how a failover client keeps trying.
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

/// What one call may still spend on attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallBudget {
    /// Each endpoint once, back to back (connecting: the caller wants to know now whether
    /// any endpoint answers). Counts the attempts left.
    OnePass(usize),
    /// Paced attempts until this instant (a request: [`FailoverPolicy::retry_for`] from
    /// its start).
    Until(Instant),
}

/// What a failover client does after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The error is not one another attempt can fix (a type mismatch, a parse error, a
    /// protocol violation): return it. The connection stays.
    Return,
    /// The error was transient but the call's budget is spent: drop the connection (the
    /// endpoint has moved on) and return the error.
    GiveUp,
    /// Drop the connection, wait this long, then try the (new) current endpoint.
    RetryAfter(Duration),
}

/// The endpoints of a failover client, the one in use, and its policy: every decision
/// the clients make between attempts, with the time passed in.
///
/// A client view, owned by the one client (thread or task) that holds it.
#[derive(Debug, Clone)]
pub struct Failover {
    endpoints: Vec<SocketAddr>,
    /// Index into `endpoints` of the endpoint in use (or tried next).
    current: usize,
    policy: FailoverPolicy,
}

impl Failover {
    /// Refuses an empty list: a client with nowhere to go is a caller's mistake, better
    /// named at construction than as a failed first call.
    pub fn new(endpoints: &[SocketAddr], policy: FailoverPolicy) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::Unavailable("no endpoint given".to_owned()));
        }
        Ok(Self {
            endpoints: endpoints.to_vec(),
            current: 0,
            policy,
        })
    }

    /// The endpoint in use (or tried next).
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoints[self.current]
    }

    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    pub fn policy(&self) -> FailoverPolicy {
        self.policy
    }

    /// The budget of a connect: every endpoint once.
    pub fn one_pass(&self) -> CallBudget {
        CallBudget::OnePass(self.endpoints.len())
    }

    /// The budget of a request started at `now`.
    pub fn until_deadline(&self, now: Instant) -> CallBudget {
        CallBudget::Until(now + self.policy.retry_for)
    }

    /// [`Failover::decide`], applied to a client's connection slot: the connection is
    /// dropped when the call moves on from its endpoint (a broken one cannot be reused,
    /// and a late answer to the failed request could still arrive on it). Answers the pause
    /// before the next attempt, or the error to return.
    pub fn after_failure<C>(
        &mut self,
        budget: &mut CallBudget,
        error: ClientError,
        now: Instant,
        connection: &mut Option<C>,
    ) -> Result<Duration, ClientError> {
        let next = self.decide(budget, &error, now);
        if next != Next::Return {
            *connection = None;
        }
        match next {
            Next::RetryAfter(pause) => Ok(pause),
            Next::Return | Next::GiveUp => Err(error),
        }
    }

    /// Decides what follows the failed attempt that ended with `error` at `now`, and on a
    /// transient error moves to the next endpoint (round robin): the DataNode that failed
    /// is the one least likely to answer the next attempt.
    pub fn decide(&mut self, budget: &mut CallBudget, error: &ClientError, now: Instant) -> Next {
        if !is_transient(error) {
            return Next::Return;
        }
        self.current = (self.current + 1) % self.endpoints.len();
        match budget {
            CallBudget::OnePass(left) => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    Next::GiveUp
                } else {
                    Next::RetryAfter(Duration::ZERO)
                }
            }
            CallBudget::Until(deadline) => {
                if now + self.policy.pause >= *deadline {
                    Next::GiveUp
                } else {
                    Next::RetryAfter(self.policy.pause)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    fn status(code: StatusCode) -> ClientError {
        ClientError::Status(Status::new(code, "x"))
    }

    fn endpoints(count: u16) -> Vec<SocketAddr> {
        (0..count)
            .map(|index| SocketAddr::from(([127, 0, 0, 1], 6667 + index)))
            .collect()
    }

    const POLICY: FailoverPolicy = FailoverPolicy {
        retry_for: Duration::from_secs(1),
        pause: Duration::from_millis(100),
    };

    #[test]
    fn transient_errors_are_the_ones_another_data_node_may_not_have() {
        assert!(is_transient(&ClientError::Net(crate::NetError::Closed)));
        assert!(is_transient(&ClientError::Unavailable("x".into())));
        assert!(is_transient(&status(StatusCode::ROUTE_TABLE_STALE)));
        assert!(is_transient(&status(StatusCode::WRITE_PROCESS_REJECT)));
        assert!(is_transient(&status(StatusCode::INTERNAL_SERVER_ERROR)));
        assert!(!is_transient(&status(StatusCode::DATA_TYPE_MISMATCH)));
        assert!(!is_transient(&status(StatusCode::SQL_PARSE_ERROR)));
        assert!(!is_transient(&ClientError::Protocol("x".into())));
    }

    #[test]
    fn no_endpoint_is_refused_at_construction() {
        let error = Failover::new(&[], POLICY).expect_err("empty");
        assert!(matches!(error, ClientError::Unavailable(_)), "{error}");
    }

    /// A non-transient error ends the call where it is: no other endpoint, no pause.
    #[test]
    fn a_lasting_error_is_returned_at_once_on_the_same_endpoint() {
        let list = endpoints(3);
        let mut failover = Failover::new(&list, POLICY).unwrap();
        let now = Instant::now();
        let mut budget = failover.until_deadline(now);
        let next = failover.decide(&mut budget, &status(StatusCode::SQL_PARSE_ERROR), now);
        assert_eq!(next, Next::Return);
        assert_eq!(failover.endpoint(), list[0]);
        assert_eq!(budget, CallBudget::Until(now + POLICY.retry_for));
    }

    /// Transient errors walk the endpoints round robin, pausing between attempts, until
    /// the next attempt would start past the deadline.
    #[test]
    fn transient_errors_move_round_robin_until_the_deadline() {
        let list = endpoints(3);
        let mut failover = Failover::new(&list, POLICY).unwrap();
        let start = Instant::now();
        let mut budget = failover.until_deadline(start);
        let broken = ClientError::Net(crate::NetError::Closed);
        let mut now = start;
        let mut visited = vec![failover.endpoint()];
        loop {
            match failover.decide(&mut budget, &broken, now) {
                Next::RetryAfter(pause) => {
                    assert_eq!(pause, POLICY.pause);
                    now += pause;
                    visited.push(failover.endpoint());
                }
                Next::GiveUp => break,
                Next::Return => panic!("a broken connection is transient"),
            }
        }
        // 1 s of budget at 100 ms a pause: the tenth pause would end at the deadline.
        assert_eq!(visited.len(), 10, "{visited:?}");
        assert!(now < start + POLICY.retry_for);
        for (attempt, endpoint) in visited.iter().enumerate() {
            assert_eq!(*endpoint, list[attempt % list.len()]);
        }
        // Giving up moved on as well: the next call starts on another DataNode.
        assert_eq!(failover.endpoint(), list[visited.len() % list.len()]);
    }

    /// A connect tries each endpoint once, without pausing, then gives up.
    #[test]
    fn one_pass_tries_every_endpoint_once() {
        let list = endpoints(3);
        let mut failover = Failover::new(&list, POLICY).unwrap();
        let mut budget = failover.one_pass();
        let now = Instant::now();
        let refused = status(StatusCode::WRITE_PROCESS_REJECT);
        let mut tried = vec![failover.endpoint()];
        while let Next::RetryAfter(pause) = failover.decide(&mut budget, &refused, now) {
            assert_eq!(pause, Duration::ZERO);
            tried.push(failover.endpoint());
        }
        assert_eq!(tried, list);
        assert_eq!(budget, CallBudget::OnePass(0));
    }

    /// The connection goes with the endpoint it was on; a lasting error keeps it.
    #[test]
    fn the_connection_is_dropped_only_when_the_call_moves_on() {
        let list = endpoints(2);
        let mut failover = Failover::new(&list, POLICY).unwrap();
        let now = Instant::now();
        let mut budget = failover.until_deadline(now);
        let mut connection = Some("to the first");
        let error = failover
            .after_failure(
                &mut budget,
                status(StatusCode::SQL_PARSE_ERROR),
                now,
                &mut connection,
            )
            .expect_err("returned as is");
        assert_eq!(error.status_code(), Some(StatusCode::SQL_PARSE_ERROR));
        assert_eq!(connection, Some("to the first"));
        let pause = failover
            .after_failure(
                &mut budget,
                ClientError::Net(crate::NetError::Closed),
                now,
                &mut connection,
            )
            .expect("a broken connection is tried again");
        assert_eq!(pause, POLICY.pause);
        assert_eq!(connection, None);
        assert_eq!(failover.endpoint(), list[1]);
    }

    /// With no time to retry (`retry_for` zero) the first transient error is the answer.
    #[test]
    fn a_zero_budget_gives_up_after_the_first_attempt() {
        let list = endpoints(2);
        let policy = FailoverPolicy {
            retry_for: Duration::ZERO,
            ..POLICY
        };
        let mut failover = Failover::new(&list, policy).unwrap();
        let now = Instant::now();
        let mut budget = failover.until_deadline(now);
        let broken = ClientError::Net(crate::NetError::Closed);
        assert_eq!(failover.decide(&mut budget, &broken, now), Next::GiveUp);
        assert_eq!(failover.endpoint(), list[1]);
    }
}
