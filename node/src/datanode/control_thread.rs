//! The control thread: the ConfigNode role and the schema regions of a standalone node run
//! on a thread of their own, off every shard's data path.
//!
//! ```text
//!  shard k ──try_send(request, oneshot)──► bounded queue ──► control thread
//!     ▲         (full: Overloaded, at once)                    │ takes every queued request
//!     │   (or several requests at once, in one batch)          │ (≤ CONTROL_BATCH_REQUESTS_MAX)
//!     │                                                        │ = one batch, one fdatasync
//!     │                                                        │ per journal (group commit)
//!     └──────────── answer (after the sync) ◄──────────────────┤
//!                   route table: SharedRoute::publish ◄────────┘ (before the answers)
//! ```
//!
//! The thread blocks on its queue and on `fdatasync`; no shard ever waits on it except
//! for the answer it asked for, and a shard never blocks on the queue: a full queue answers
//! `Overloaded` at once (a client retries). The route table is published before any answer
//! of the batch is sent, so a shard that hears "created" already sees the new partitions.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use futures_channel::oneshot;
use iotdb_net::{Status, StatusCode};

use super::control::{ControlAnswer, ControlPlane, ControlRequest};
use super::route::SharedRoute;

/// Control jobs queued for the control thread at most. Each is a shard's question about
/// schema or partitions, or a few asked together (a few hundred bytes each); a queue this
/// deep is seconds of control work, so a fuller one means the control plane is falling
/// behind and the asker is better told `Overloaded` than made to wait without bound.
pub const CONTROL_QUEUE_REQUESTS_MAX: usize = 4096;

/// Requests handled in one batch at most: bounds the time the first of them waits for
/// the batch's fdatasync while keeping the group commit wide.
pub const CONTROL_BATCH_REQUESTS_MAX: usize = 1024;

/// How often an idle control thread does its periodic work
/// ([`ControlPlane::maintain`]: replicated schema regions apply what their groups
/// committed, leaders report themselves). Why 100 ms: a follower stays within a tenth of a
/// second of its leader, so taking over leadership starts nearly caught up.
pub const MAINTENANCE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

type Answer = Result<ControlAnswer, Status>;

enum Job {
    /// Requests handled in the same batch: nearly always one; a write creating a device
    /// sends its series and its data partition together, so they share one batch (one
    /// sync of each journal, one route update) instead of taking two in turn.
    Requests(Vec<(ControlRequest, oneshot::Sender<Answer>)>),
    /// Checkpoint and stop.
    Stop,
}

/// How shards reach the control thread. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct ControlHandle {
    queue: SyncSender<Job>,
}

impl ControlHandle {
    /// Asks the control plane; the answer comes once it is durable. Never blocks the
    /// calling shard: a full queue is `Overloaded` at once.
    pub async fn call(&self, request: ControlRequest) -> Answer {
        self.call_together(vec![request])
            .await
            .pop()
            .expect("one answer per request")
    }

    /// Asks several requests in one batch of the control plane: each gets its answer (in
    /// order), all once the batch is durable. A full queue refuses them all at once.
    pub async fn call_together(&self, requests: Vec<ControlRequest>) -> Vec<Answer> {
        let count = requests.len();
        let mut receivers = Vec::with_capacity(count);
        let job = requests
            .into_iter()
            .map(|request| {
                let (sender, receiver) = oneshot::channel();
                receivers.push(receiver);
                (request, sender)
            })
            .collect();
        let refused = match self.queue.try_send(Job::Requests(job)) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => Some(Status::new(
                StatusCode::WRITE_PROCESS_REJECT,
                format!(
                    "overloaded: {CONTROL_QUEUE_REQUESTS_MAX} schema and partition requests \
                     are already queued for the control plane; retry"
                ),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Some(Status::internal("the control plane has stopped"))
            }
        };
        if let Some(status) = refused {
            return (0..count).map(|_| Err(status.clone())).collect();
        }
        let mut answers = Vec::with_capacity(count);
        for receiver in receivers {
            answers.push(receiver.await.unwrap_or_else(|_| {
                Err(Status::internal(
                    "the control plane stopped before answering",
                ))
            }));
        }
        answers
    }
}

/// The running control thread; [`ControlThread::stop`] checkpoints and joins it.
pub struct ControlThread {
    queue: SyncSender<Job>,
    thread: Option<JoinHandle<()>>,
}

impl ControlThread {
    /// Starts the thread that owns `plane`, publishing route changes to `route`.
    pub fn start(
        plane: ControlPlane,
        route: Arc<SharedRoute>,
    ) -> std::io::Result<(ControlThread, ControlHandle)> {
        let (queue, jobs) = mpsc::sync_channel(CONTROL_QUEUE_REQUESTS_MAX);
        let thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || run(plane, &route, &jobs))?;
        Ok((
            ControlThread {
                queue: queue.clone(),
                thread: Some(thread),
            },
            ControlHandle { queue },
        ))
    }

    /// Answers what is queued, checkpoints the control plane and waits for the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // A blocking send: the queue drains as the thread works, and Stop comes last.
        let _ = self.queue.send(Job::Stop);
        if thread.join().is_err() {
            tracing::error!("the control thread panicked");
        }
    }
}

impl Drop for ControlThread {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(mut plane: ControlPlane, route: &SharedRoute, jobs: &Receiver<Job>) {
    let mut stopping = false;
    let mut maintained = std::time::Instant::now();
    let mut published: Option<std::time::Instant> = None;
    while !stopping {
        if published.is_none_or(|at| at.elapsed() >= crate::metrics::GAUGE_PUBLISH_INTERVAL) {
            published = Some(std::time::Instant::now());
            plane.publish_metrics();
        }
        if maintained.elapsed() >= MAINTENANCE_INTERVAL {
            maintained = std::time::Instant::now();
            if let Some(view) = plane.maintain() {
                route.publish(view);
            }
        }
        let first = match jobs.recv_timeout(MAINTENANCE_INTERVAL) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Requests(requests) => batch.extend(requests),
                Job::Stop => {
                    stopping = true;
                    break;
                }
            }
            if batch.len() < CONTROL_BATCH_REQUESTS_MAX {
                next = jobs.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        let (requests, replies): (Vec<ControlRequest>, Vec<_>) = batch.into_iter().unzip();
        let (answers, published) = plane.handle_batch(requests);
        if let Some(view) = published {
            route.publish(view);
        }
        for (answer, reply) in answers.into_iter().zip(replies) {
            let _ = reply.send(answer);
        }
    }
    plane.checkpoint();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        let mut context = Context::from_waker(Waker::noop());
        pin!(future).poll(&mut context)
    }

    /// Requests asked together travel as one job, so the control thread takes them into
    /// one batch; each gets its own answer, in order. A full queue refuses them all.
    #[test]
    fn requests_asked_together_reach_one_batch_and_get_their_own_answers() {
        let (queue, jobs) = mpsc::sync_channel(1);
        let handle = ControlHandle { queue };
        let ensure = |device: &str| ControlRequest::EnsureDatabase {
            device: device.into(),
        };
        let mut together =
            Box::pin(handle.call_together(vec![ensure("root.a.d"), ensure("root.b.d")]));
        assert!(poll_once(together.as_mut()).is_pending());
        let Ok(Job::Requests(requests)) = jobs.try_recv() else {
            panic!("one job with both requests");
        };
        assert_eq!(requests.len(), 2);
        assert!(jobs.try_recv().is_err(), "nothing else was queued");
        for (index, (_, reply)) in requests.into_iter().enumerate() {
            let answer = if index == 0 {
                Ok(ControlAnswer::Done)
            } else {
                Err(Status::internal("the second failed"))
            };
            let _ = reply.send(answer);
        }
        let Poll::Ready(answers) = poll_once(together.as_mut()) else {
            panic!("both answered");
        };
        assert!(matches!(answers[0], Ok(ControlAnswer::Done)));
        assert_eq!(
            answers[1].as_ref().err().unwrap().message,
            "the second failed"
        );
        // The queue holds one job: a second pair is refused whole, at once.
        let _waiting = poll_once(handle.call(ensure("root.c.d")));
        let Poll::Ready(refused) =
            poll_once(handle.call_together(vec![ensure("root.d.d"), ensure("root.e.d")]))
        else {
            panic!("a full queue must answer at once");
        };
        assert_eq!(refused.len(), 2);
        assert!(refused.iter().all(|answer| {
            answer
                .as_ref()
                .is_err_and(|status| status.code == StatusCode::WRITE_PROCESS_REJECT)
        }));
    }

    /// A full queue answers at once with a typed overload status; nothing waits.
    #[test]
    fn a_full_queue_answers_overloaded_at_once() {
        let (queue, jobs) = mpsc::sync_channel(2);
        let handle = ControlHandle { queue };
        for _ in 0..2 {
            let waiting = poll_once(handle.call(ControlRequest::EnsureDatabase {
                device: "root.sg.d1".into(),
            }));
            assert!(
                waiting.is_pending(),
                "queued, waiting for the control thread"
            );
        }
        let Poll::Ready(answer) = poll_once(handle.call(ControlRequest::EnsureDatabase {
            device: "root.sg.d1".into(),
        })) else {
            panic!("a full queue must answer at once");
        };
        let status = answer.expect_err("overloaded");
        assert_eq!(status.code, StatusCode::WRITE_PROCESS_REJECT);
        assert!(status.message.contains("overloaded"), "{}", status.message);
        // A stopped control thread is an error too, not a hang.
        drop(jobs);
        let Poll::Ready(answer) = poll_once(handle.call(ControlRequest::EnsureDatabase {
            device: "root.sg.d1".into(),
        })) else {
            panic!("a stopped control plane must answer at once");
        };
        assert!(answer.is_err());
    }
}
