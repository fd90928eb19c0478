//! A shard-local bound on how many tasks of one kind run at once.
//!
//! The mesh's receive loop ([`crate::MeshEndpoint::serve`]) takes a [`Permit`] before it
//! takes a message, and the handler's task holds the permit until it finishes. At the bound
//! the loop stops receiving, so the sender's bounded ring fills and the sender meets its
//! usual back-pressure, instead of the shard piling up one task per message without limit.
//!
//! Owned by one shard and used only on its core (`Rc`, `!Send`): no atomics, no lock.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// At most `max` permits out at once. Cheap to clone; clones share the count.
#[derive(Clone)]
pub struct InFlightLimit {
    state: Rc<RefCell<State>>,
}

struct State {
    max: usize,
    in_flight: usize,
    /// The most permits ever out at once (for tests and metrics).
    peak: usize,
    /// Tasks waiting in `acquire`, oldest first. A waiter dropped while it waited leaves
    /// its waker here; waking it once more is harmless.
    waiters: VecDeque<Waker>,
}

/// One unit of the bound; dropping it gives the unit back and wakes a waiter.
pub struct Permit {
    state: Rc<RefCell<State>>,
}

impl InFlightLimit {
    /// A limit of `max` permits.
    ///
    /// # Panics
    /// If `max` is 0: nothing could ever run, which is a configuration bug.
    pub fn new(max: usize) -> InFlightLimit {
        assert!(max > 0, "an in-flight limit needs at least one permit");
        InFlightLimit {
            state: Rc::new(RefCell::new(State {
                max,
                in_flight: 0,
                peak: 0,
                waiters: VecDeque::new(),
            })),
        }
    }

    /// Waits until fewer than `max` permits are out, then takes one. Cancel-safe: a
    /// dropped wait takes nothing.
    pub async fn acquire(&self) -> Permit {
        poll_fn(|context| {
            let mut state = self.state.borrow_mut();
            if state.in_flight < state.max {
                state.in_flight += 1;
                state.peak = state.peak.max(state.in_flight);
                return Poll::Ready(Permit {
                    state: Rc::clone(&self.state),
                });
            }
            state.waiters.push_back(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Permits out now.
    pub fn in_flight(&self) -> usize {
        self.state.borrow().in_flight
    }

    /// The most permits that were ever out at once.
    pub fn peak(&self) -> usize {
        self.state.borrow().peak
    }

    /// The bound.
    pub fn max(&self) -> usize {
        self.state.borrow().max
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let waiter = {
            let mut state = self.state.borrow_mut();
            assert!(state.in_flight > 0, "more permits returned than taken");
            state.in_flight -= 1;
            state.waiters.pop_front()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("monoio runtime")
            .block_on(future)
    }

    #[test]
    fn permits_are_bounded_and_returned() {
        block_on(async {
            let limit = InFlightLimit::new(2);
            let first = limit.acquire().await;
            let second = limit.acquire().await;
            assert_eq!(limit.in_flight(), 2);
            let waiter = {
                let limit = limit.clone();
                monoio::spawn(async move { limit.acquire().await })
            };
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert_eq!(limit.in_flight(), 2, "the third waits");
            drop(first);
            let third = waiter.await;
            assert_eq!(limit.in_flight(), 2);
            drop((second, third));
            assert_eq!(limit.in_flight(), 0);
            assert_eq!(limit.peak(), 2);
        });
    }
}
