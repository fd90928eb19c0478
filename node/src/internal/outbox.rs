//! A bounded queue of encoded frames waiting for one connection's writer.
//!
//! Producers (`send`, `request`, request handlers) push without waiting and get `Full`
//! when a bound is reached; the one writer task takes batches. Single-threaded: owned by
//! the core that owns the connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Too many frames queued.
    FullFrames,
    /// Too many bytes queued.
    FullBytes,
}

#[derive(Debug)]
pub(crate) struct Outbox {
    frames: RefCell<VecDeque<Bytes>>,
    bytes: Cell<usize>,
    frames_max: usize,
    bytes_max: usize,
    /// Set when the writer should stop once the queue is empty (`None` from `next_batch`).
    closing: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Outbox {
    pub(crate) fn new(frames_max: usize, bytes_max: usize) -> Outbox {
        assert!(frames_max > 0 && bytes_max > 0);
        Outbox {
            frames: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            frames_max,
            bytes_max,
            closing: Cell::new(false),
            waker: RefCell::new(None),
        }
    }

    /// Queues one encoded frame. A frame larger than `bytes_max` is still accepted into an
    /// empty queue, so the bound never makes a legal frame unsendable.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut frames = self.frames.borrow_mut();
        if frames.len() >= self.frames_max {
            return Err(PushError::FullFrames);
        }
        if !frames.is_empty() && self.bytes.get() + frame.len() > self.bytes_max {
            return Err(PushError::FullBytes);
        }
        self.bytes.set(self.bytes.get() + frame.len());
        frames.push_back(frame);
        drop(frames);
        self.wake();
        Ok(())
    }

    /// Wakes the writer (a frame arrived, or the connection should stop).
    pub(crate) fn wake(&self) {
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Asks the writer to finish what is queued and stop.
    pub(crate) fn close(&self) {
        self.closing.set(true);
        self.wake();
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Drops everything queued (the connection is gone); returns how many frames.
    pub(crate) fn clear(&self) -> usize {
        let mut frames = self.frames.borrow_mut();
        let count = frames.len();
        frames.clear();
        self.bytes.set(0);
        count
    }

    /// Registers the task to wake when a frame arrives or the outbox closes.
    pub(crate) fn register(&self, waker: &Waker) {
        *self.waker.borrow_mut() = Some(waker.clone());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.frames.borrow().is_empty()
    }

    /// Waits until frames are queued, `stop()` holds, or the outbox is closing and empty
    /// (then `None`); returns up to `batch_bytes_max` bytes of whole frames in one buffer.
    pub(crate) async fn next_batch(
        &self,
        batch_bytes_max: usize,
        stop: impl Fn() -> bool,
    ) -> Option<Bytes> {
        poll_fn(|context| {
            if stop() {
                return Poll::Ready(None);
            }
            let mut frames = self.frames.borrow_mut();
            let Some(first) = frames.pop_front() else {
                if self.closing.get() {
                    return Poll::Ready(None);
                }
                *self.waker.borrow_mut() = Some(context.waker().clone());
                return Poll::Pending;
            };
            let mut taken = first.len();
            if frames
                .front()
                .is_none_or(|next| taken + next.len() > batch_bytes_max)
            {
                self.bytes.set(self.bytes.get() - taken);
                return Poll::Ready(Some(first));
            }
            let mut batch = BytesMut::with_capacity(batch_bytes_max.min(self.bytes.get()));
            batch.extend_from_slice(&first);
            while let Some(next) = frames.front() {
                if taken + next.len() > batch_bytes_max {
                    break;
                }
                taken += next.len();
                batch.extend_from_slice(next);
                frames.pop_front();
            }
            self.bytes.set(self.bytes.get() - taken);
            Poll::Ready(Some(batch.freeze()))
        })
        .await
    }
}

/// A one-shot flag any number of tasks can wait on (the endpoint's shutdown, which the
/// accept loop and every inbound connection await; a connection's reader stop).
/// Single-threaded.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: Cell<bool>,
    /// One waker per waiting task (a task polled again replaces nothing: `will_wake`
    /// dedupes), so the list is bounded by the waiters, themselves bounded by
    /// `inbound_connections_max`.
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    pub(crate) fn fire(&self) {
        self.fired.set(true);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once fired.
    pub(crate) async fn wait(&self) {
        poll_fn(|context| {
            if self.fired.get() {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
                wakers.push(context.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_batches() {
        let outbox = Outbox::new(3, 10);
        outbox.push(Bytes::from_static(b"abcdefghijkl")).unwrap();
        assert_eq!(
            outbox.push(Bytes::from_static(b"x")),
            Err(PushError::FullBytes)
        );
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(outbox.next_batch(4, || false).await.unwrap().len(), 12);
            for piece in [&b"ab"[..], b"cd", b"ef"] {
                outbox.push(Bytes::copy_from_slice(piece)).unwrap();
            }
            assert_eq!(
                outbox.push(Bytes::from_static(b"g")),
                Err(PushError::FullFrames)
            );
            assert_eq!(&outbox.next_batch(4, || false).await.unwrap()[..], b"abcd");
            outbox.close();
            assert_eq!(&outbox.next_batch(4, || false).await.unwrap()[..], b"ef");
            assert!(outbox.next_batch(4, || false).await.is_none());
        });
    }
}
