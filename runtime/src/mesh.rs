//! The mesh: bounded queues between every pair of shards, with a wake-up per shard.
//!
//! ```text
//!            from shard 0          from shard 1          from shard 2
//!   to 0   [ 0→0 ring ]          [ 1→0 ring ]          [ 2→0 ring ]   ─┐ inbox of shard 0:
//!   to 1   [ 0→1 ring ]          [ 1→1 ring ]          [ 2→1 ring ]    │ it pops its column
//!   to 2   [ 0→2 ring ]          [ 1→2 ring ]          [ 2→2 ring ]    │ round-robin
//!                                                                      │
//!   each ring: single producer (the `from` shard), single consumer (the `to` shard),
//!   fixed capacity, FIFO. Two wait lists per destination side:
//!     inbox[to]      receivers of shard `to` parked on an empty column; a push wakes them
//!     space[from→to] senders of shard `from` parked on a full ring; a pop wakes them
//! ```
//!
//! A queue per ordered pair (rather than one multi-producer queue per destination) means no
//! two cores ever write the same ring slot counter, keeps order per pair, and makes
//! back-pressure local: a slow destination stalls only the senders that talk to it.
//!
//! A [`MeshEndpoint`] is one shard's view of the mesh. It is `!Send`: only the shard that
//! owns it sends from its row and receives from its column, which is what keeps each ring
//! single-producer and single-consumer.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use crossbeam_queue::ArrayQueue;
use futures_channel::oneshot;

use crate::error::{Full, RuntimeError};
use crate::in_flight::InFlightLimit;
use crate::shard::ShardId;
use crate::wait_list::{WaitKey, WaitList};

/// The queues and wait lists of the whole mesh; shared by every shard of a node.
pub(crate) struct MeshShared<M> {
    shard_count: usize,
    /// `shard_count²` rings, indexed by `from * shard_count + to`.
    rings: Box<[ArrayQueue<M>]>,
    /// Senders waiting for space, one list per ring (same index as `rings`).
    space: Box<[WaitList]>,
    /// Receivers waiting for a message, one list per destination shard.
    inbox: Box<[WaitList]>,
}

impl<M> MeshShared<M> {
    /// Allocates every ring of a mesh of `shard_count` shards.
    pub(crate) fn new(shard_count: usize, capacity_per_pair: usize) -> Arc<Self> {
        assert!(shard_count > 0, "a mesh needs at least one shard");
        assert!(capacity_per_pair > 0, "a mesh ring needs at least one slot");
        let pair_count = shard_count * shard_count;
        Arc::new(Self {
            shard_count,
            rings: (0..pair_count)
                .map(|_| ArrayQueue::new(capacity_per_pair))
                .collect(),
            space: (0..pair_count).map(|_| WaitList::default()).collect(),
            inbox: (0..shard_count).map(|_| WaitList::default()).collect(),
        })
    }

    /// Bytes the rings reserve for `shard_count` shards, used to refuse oversized meshes.
    pub(crate) fn ring_bytes(shard_count: usize, capacity_per_pair: usize) -> Option<usize> {
        // crossbeam's ring slot is the value plus a stamp word.
        let slot_bytes = std::mem::size_of::<M>() + std::mem::size_of::<usize>();
        shard_count
            .checked_mul(shard_count)?
            .checked_mul(capacity_per_pair)?
            .checked_mul(slot_bytes)
    }

    fn pair_index(&self, from: ShardId, to: ShardId) -> usize {
        let (from, to) = (from.index(), to.index());
        assert!(
            from < self.shard_count && to < self.shard_count,
            "shard {from} → {to} outside a mesh of {} shards",
            self.shard_count
        );
        from * self.shard_count + to
    }
}

/// One shard's handle on the mesh: it sends to any shard and receives from its own inbox.
///
/// Owned by exactly one shard and touched only on that shard's core (the type is `!Send`).
pub struct MeshEndpoint<M> {
    shared: Arc<MeshShared<M>>,
    id: ShardId,
    /// The source ring the next receive looks at first, so that every sender gets a turn.
    next_source: Cell<usize>,
    /// Pins the endpoint to its shard's thread.
    _not_send: PhantomData<Rc<()>>,
}

impl<M> MeshEndpoint<M> {
    pub(crate) fn new(shared: Arc<MeshShared<M>>, id: ShardId) -> Self {
        assert!(
            id.index() < shared.shard_count,
            "endpoint for a shard outside the mesh"
        );
        Self {
            shared,
            id,
            next_source: Cell::new(0),
            _not_send: PhantomData,
        }
    }

    /// The shard that owns this endpoint.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Number of shards in the mesh.
    pub fn shard_count(&self) -> usize {
        self.shared.shard_count
    }

    /// Slots of each ring.
    pub fn capacity_per_pair(&self) -> usize {
        self.shared.rings[0].capacity()
    }

    /// Messages currently queued from this shard to `to` (a snapshot; for metrics).
    pub fn queued_to(&self, to: ShardId) -> usize {
        self.shared.rings[self.shared.pair_index(self.id, to)].len()
    }

    /// Enqueues `message` for shard `to` if its ring has space, and wakes `to` if it waits.
    ///
    /// # Panics
    /// If `to` is not a shard of this mesh: shard ids come from the node's own placement, so
    /// an id out of range is a bug, not bad input.
    pub fn try_send(&self, to: ShardId, message: M) -> Result<(), Full<M>> {
        let pair = self.shared.pair_index(self.id, to);
        self.shared.rings[pair].push(message).map_err(Full)?;
        self.shared.inbox[to.index()].notify_all();
        Ok(())
    }

    /// Enqueues `message` for shard `to`, waiting while its ring is full (back-pressure).
    ///
    /// Dropping the returned future before it completes drops the message.
    pub fn send(&self, to: ShardId, message: M) -> SendFuture<'_, M> {
        SendFuture {
            endpoint: self,
            to,
            message: Some(message),
            wait_key: None,
        }
    }

    /// Takes the next message from this shard's inbox, if any, visiting the source rings
    /// round-robin so that one busy sender cannot starve the others.
    pub fn try_recv(&self) -> Option<M> {
        let shard_count = self.shared.shard_count;
        let start = self.next_source.get();
        for offset in 0..shard_count {
            let from = (start + offset) % shard_count;
            let pair = from * shard_count + self.id.index();
            if let Some(message) = self.shared.rings[pair].pop() {
                self.next_source.set((from + 1) % shard_count);
                self.shared.space[pair].notify_all();
                return Some(message);
            }
        }
        None
    }

    /// Waits for the next message in this shard's inbox.
    ///
    /// Cancel-safe: a message is taken off a ring only when the future completes.
    pub fn recv(&self) -> RecvFuture<'_, M> {
        RecvFuture {
            endpoint: self,
            wait_key: None,
        }
    }

    /// Sends a request to shard `to` and waits for its answer.
    ///
    /// `make_request` wraps the [`Reply`] handle into a message; the receiving shard answers
    /// with [`Reply::send`]. Fails with [`RuntimeError::ReplyDropped`] if the handle is
    /// dropped unanswered.
    ///
    /// A request still queued to a shard that has stopped is not dropped until the whole mesh
    /// is (the ring outlives the shard), so a caller that must survive a peer's death should
    /// race this against [`crate::StopSignal::wait`]; a panicking shard raises that signal.
    pub async fn request<R>(
        &self,
        to: ShardId,
        make_request: impl FnOnce(Reply<R>) -> M,
    ) -> Result<R, RuntimeError> {
        let (sender, receiver) = oneshot::channel();
        self.send(to, make_request(Reply { sender })).await;
        receiver
            .await
            .map_err(|_| RuntimeError::ReplyDropped { shard: to })
    }
}

impl<M: 'static> MeshEndpoint<M> {
    /// The shard's receive loop: takes messages from its inbox and runs `handle` on each
    /// in a task of its own, with at most `limit.max()` handlers running at once.
    ///
    /// A permit is taken *before* a message is: at the bound the loop stops receiving, the
    /// rings to this shard fill, and senders meet the mesh's back-pressure (`send` waits,
    /// `try_send` gets [`Full`]) instead of this shard spawning a task per message without
    /// limit. As handlers finish, the loop resumes. (While it waits for a message, the
    /// loop itself holds the permit that message's handler will get.)
    ///
    /// Never returns; race it against [`crate::StopSignal::wait`] to stop. Cancel-safe:
    /// no message is taken that is not handed to a handler.
    ///
    /// A handler must not wait for an answer that only a handler of this same shard can
    /// give (a mesh request to itself, or a chain that comes back to it): with every permit
    /// held by such waiters, the loop could not receive the answer's request, a deadlock.
    pub async fn serve<F, Fut>(&self, limit: &InFlightLimit, mut handle: F)
    where
        F: FnMut(M) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        loop {
            let permit = limit.acquire().await;
            let message = self.recv().await;
            let handler = handle(message);
            monoio::spawn(async move {
                handler.await;
                drop(permit);
            });
        }
    }
}

/// The answer half of a [`MeshEndpoint::request`]: carried inside the request message to the
/// shard that answers, on whichever core that is.
pub struct Reply<R> {
    sender: oneshot::Sender<R>,
}

impl<R> Reply<R> {
    /// Answers the request and wakes the asking shard. Returns the answer back if the asker
    /// has gone away (its request future was dropped).
    pub fn send(self, answer: R) -> Result<(), R> {
        self.sender.send(answer)
    }

    /// Whether the asker has stopped waiting, so the work can be skipped.
    pub fn is_canceled(&self) -> bool {
        self.sender.is_canceled()
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Reply(..)")
    }
}

/// Future of [`MeshEndpoint::send`].
pub struct SendFuture<'a, M> {
    endpoint: &'a MeshEndpoint<M>,
    to: ShardId,
    message: Option<M>,
    wait_key: Option<WaitKey>,
}

impl<M> SendFuture<'_, M> {
    fn space(&self) -> &WaitList {
        let shared = &self.endpoint.shared;
        &shared.space[shared.pair_index(self.endpoint.id, self.to)]
    }
}

impl<M> Drop for SendFuture<'_, M> {
    fn drop(&mut self) {
        // Only a future that waited holds a key (and its destination was then validated).
        let mut wait_key = self.wait_key.take();
        if wait_key.is_some() {
            self.space().deregister(&mut wait_key);
        }
    }
}

impl<M> Unpin for SendFuture<'_, M> {}

impl<M> Future for SendFuture<'_, M> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let message = self
            .message
            .take()
            .expect("mesh send future polled after completion");
        let message = match self.endpoint.try_send(self.to, message) {
            Ok(()) => return Poll::Ready(()),
            Err(Full(message)) => message,
        };
        let mut wait_key = self.wait_key.take();
        self.space().register(&mut wait_key, cx.waker());
        self.wait_key = wait_key;
        // Re-check after registering: the receiver may have popped in between.
        match self.endpoint.try_send(self.to, message) {
            Ok(()) => Poll::Ready(()),
            Err(Full(message)) => {
                self.message = Some(message);
                Poll::Pending
            }
        }
    }
}

/// Future of [`MeshEndpoint::recv`].
pub struct RecvFuture<'a, M> {
    endpoint: &'a MeshEndpoint<M>,
    wait_key: Option<WaitKey>,
}

impl<M> RecvFuture<'_, M> {
    fn inbox(&self) -> &WaitList {
        &self.endpoint.shared.inbox[self.endpoint.id.index()]
    }
}

impl<M> Drop for RecvFuture<'_, M> {
    fn drop(&mut self) {
        let mut wait_key = self.wait_key.take();
        self.inbox().deregister(&mut wait_key);
    }
}

impl<M> Unpin for RecvFuture<'_, M> {}

impl<M> Future for RecvFuture<'_, M> {
    type Output = M;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M> {
        if let Some(message) = self.endpoint.try_recv() {
            return Poll::Ready(message);
        }
        let mut wait_key = self.wait_key.take();
        self.inbox().register(&mut wait_key, cx.waker());
        self.wait_key = wait_key;
        // Re-check after registering: a sender may have pushed in between.
        match self.endpoint.try_recv() {
            Some(message) => Poll::Ready(message),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use proptest::prelude::*;

    use super::*;

    /// Endpoints of every shard, all on the test thread: the mesh logic without threads.
    fn endpoints(shard_count: usize, capacity: usize) -> Vec<MeshEndpoint<u64>> {
        let shared = MeshShared::new(shard_count, capacity);
        (0..shard_count)
            .map(|index| MeshEndpoint::new(shared.clone(), ShardId(index as u16)))
            .collect()
    }

    #[test]
    fn serve_bounds_the_handlers_in_flight_and_handles_every_message() {
        const MESSAGES: u64 = 200;
        const BOUND: usize = 4;
        let mut endpoints = endpoints(2, 8);
        let receiver = endpoints.pop().expect("shard 1");
        let sender = endpoints.pop().expect("shard 0");
        let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        runtime.expect("monoio runtime").block_on(async move {
            let running = Rc::new(Cell::new(0usize));
            let peak = Rc::new(Cell::new(0usize));
            let started = Rc::new(std::cell::RefCell::new(Vec::new()));
            let finished = Rc::new(Cell::new(0u64));
            let limit = InFlightLimit::new(BOUND);
            {
                let (running, peak, started, finished) = (
                    running.clone(),
                    peak.clone(),
                    started.clone(),
                    finished.clone(),
                );
                let limit = limit.clone();
                monoio::spawn(async move {
                    receiver
                        .serve(&limit, |message| {
                            let (running, peak, started, finished) = (
                                running.clone(),
                                peak.clone(),
                                started.clone(),
                                finished.clone(),
                            );
                            async move {
                                running.set(running.get() + 1);
                                peak.set(peak.get().max(running.get()));
                                started.borrow_mut().push(message);
                                // A slow handler: the sender outruns it.
                                monoio::time::sleep(std::time::Duration::from_micros(200)).await;
                                running.set(running.get() - 1);
                                finished.set(finished.get() + 1);
                            }
                        })
                        .await;
                });
            }
            let mut refused = 0;
            for message in 0..MESSAGES {
                if let Err(Full(message)) = sender.try_send(ShardId(1), message) {
                    // The receiver stopped taking messages: the ring filled up.
                    refused += 1;
                    sender.send(ShardId(1), message).await;
                }
                assert!(limit.in_flight() <= BOUND);
            }
            while finished.get() < MESSAGES {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert_eq!(
                peak.get(),
                BOUND,
                "handlers ran up to the bound, never past it"
            );
            assert_eq!(limit.peak(), BOUND);
            // The loop holds one permit while it waits for the next message.
            assert_eq!(limit.in_flight(), 1, "every handler's permit came back");
            assert!(refused > 0, "the ring filled while the handlers were busy");
            assert_eq!(*started.borrow(), (0..MESSAGES).collect::<Vec<_>>());
        });
    }

    struct CountingWake(AtomicUsize);

    impl Wake for CountingWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn try_send_fills_exactly_the_capacity_then_hands_the_message_back() {
        let mesh = endpoints(2, 4);
        for value in 0..4 {
            mesh[0].try_send(ShardId(1), value).unwrap();
        }
        assert_eq!(
            mesh[0].try_send(ShardId(1), 99).unwrap_err().into_inner(),
            99
        );
        assert_eq!(mesh[0].queued_to(ShardId(1)), 4);
        // The ring to another destination is independent.
        mesh[0].try_send(ShardId(0), 7).unwrap();
        assert_eq!(mesh[1].try_recv(), Some(0));
        mesh[0].try_send(ShardId(1), 4).unwrap();
        let drained: Vec<u64> = std::iter::from_fn(|| mesh[1].try_recv()).collect();
        assert_eq!(drained, vec![1, 2, 3, 4]);
    }

    #[test]
    fn receive_takes_turns_between_sources() {
        let mesh = endpoints(3, 8);
        for value in 0..3 {
            mesh[0].try_send(ShardId(2), value).unwrap();
            mesh[1].try_send(ShardId(2), 10 + value).unwrap();
        }
        let drained: Vec<u64> = std::iter::from_fn(|| mesh[2].try_recv()).collect();
        assert_eq!(drained, vec![0, 10, 1, 11, 2, 12]);
    }

    #[test]
    fn a_pending_receive_is_woken_by_a_send_and_a_pending_send_by_a_receive() {
        let mesh = endpoints(2, 1);
        let wake = Arc::new(CountingWake(AtomicUsize::new(0)));
        let waker = Waker::from(wake.clone());
        let mut context = Context::from_waker(&waker);

        let mut receive = std::pin::pin!(mesh[1].recv());
        assert!(receive.as_mut().poll(&mut context).is_pending());
        mesh[0].try_send(ShardId(1), 1).unwrap();
        assert_eq!(wake.0.load(Ordering::SeqCst), 1);
        assert_eq!(receive.as_mut().poll(&mut context), Poll::Ready(1));

        mesh[0].try_send(ShardId(1), 2).unwrap();
        let mut send = std::pin::pin!(mesh[0].send(ShardId(1), 3));
        assert!(send.as_mut().poll(&mut context).is_pending());
        assert_eq!(mesh[1].try_recv(), Some(2));
        assert_eq!(wake.0.load(Ordering::SeqCst), 2);
        assert!(send.as_mut().poll(&mut context).is_ready());
        assert_eq!(mesh[1].try_recv(), Some(3));
    }

    #[test]
    fn receive_and_send_futures_dropped_while_waiting_leave_no_waker_behind() {
        let mesh = endpoints(2, 1);
        let waker = Waker::noop();
        let mut context = Context::from_waker(waker);
        mesh[0].try_send(ShardId(1), 0).unwrap();
        for _ in 0..1000 {
            let mut receive = std::pin::pin!(mesh[0].recv());
            assert!(receive.as_mut().poll(&mut context).is_pending());
            let mut send = std::pin::pin!(mesh[0].send(ShardId(1), 1));
            assert!(send.as_mut().poll(&mut context).is_pending());
        }
        let shared = &mesh[0].shared;
        assert_eq!(shared.inbox[0].registered_count(), 0);
        assert_eq!(shared.space[1].registered_count(), 0);
    }

    #[test]
    #[should_panic(expected = "outside a mesh")]
    fn sending_to_a_shard_outside_the_mesh_is_a_bug() {
        let mesh = endpoints(2, 1);
        let _ = mesh[0].try_send(ShardId(2), 0);
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Send { from: usize, to: usize },
        Receive { at: usize },
    }

    fn operation(shard_count: usize) -> impl Strategy<Value = Operation> {
        prop_oneof![
            (0..shard_count, 0..shard_count).prop_map(|(from, to)| Operation::Send { from, to }),
            (0..shard_count).prop_map(|at| Operation::Receive { at }),
        ]
    }

    proptest! {
        /// Against a model of one FIFO per pair: a send fails exactly when the model's queue
        /// is full, a receive finds nothing exactly when every queue into the shard is empty,
        /// and what it finds is the head of one of them (so order per pair holds and nothing
        /// is lost or invented).
        #[test]
        fn the_mesh_behaves_like_bounded_fifos_per_pair(
            capacity in 1_usize..5,
            operations in proptest::collection::vec(operation(3), 0..400),
        ) {
            const SHARDS: usize = 3;
            let mesh = endpoints(SHARDS, capacity);
            let mut model = vec![VecDeque::new(); SHARDS * SHARDS];
            for (step, operation) in operations.into_iter().enumerate() {
                match operation {
                    Operation::Send { from, to } => {
                        // Encode the pair in the value so the receive side can find its queue.
                        let value = (step * SHARDS * SHARDS + from * SHARDS + to) as u64;
                        let queue = &mut model[from * SHARDS + to];
                        match mesh[from].try_send(ShardId(to as u16), value) {
                            Ok(()) => {
                                prop_assert!(queue.len() < capacity);
                                queue.push_back(value);
                            }
                            Err(full) => {
                                prop_assert_eq!(queue.len(), capacity);
                                prop_assert_eq!(full.into_inner(), value);
                            }
                        }
                    }
                    Operation::Receive { at } => match mesh[at].try_recv() {
                        Some(value) => {
                            let pair = (value as usize) % (SHARDS * SHARDS);
                            prop_assert_eq!(pair % SHARDS, at);
                            prop_assert_eq!(model[pair].pop_front(), Some(value));
                        }
                        None => {
                            for from in 0..SHARDS {
                                prop_assert!(model[from * SHARDS + at].is_empty());
                            }
                        }
                    },
                }
            }
        }
    }
}
