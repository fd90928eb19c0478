//! Waiting on several futures of one shard at once, without spawning them: [`join_all`].
//!
//! A shard's task often asks several things that proceed independently (each region's
//! flush, each other shard's part of a command) and must wait for all of them. Awaiting them
//! one after another starts each only when the previous ended; `monoio::spawn` would start
//! them at once but needs `'static` futures, so borrowed state would have to be cloned into
//! each. `join_all` polls every future from the task that awaits it.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

/// Runs every future of `futures` concurrently on the current task and returns their
/// outputs in the order given, once all have ended. Each is polled until it ends, even
/// when another has already failed: nothing is abandoned half done.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    poll_fn(|context| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            let Some(future) = slot else { continue };
            match future.as_mut().poll(context) {
                Poll::Ready(value) => {
                    *output = Some(value);
                    *slot = None;
                }
                Poll::Pending => done = false,
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future ended"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::Duration;

    /// The futures overlap (they end in the order of their sleeps, not in the order given,
    /// which awaiting one after another would give), and each output keeps its place.
    #[test]
    fn futures_run_at_once_and_outputs_keep_their_order() {
        let ended = RefCell::new(Vec::new());
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        let outputs = runtime.block_on(join_all([30u64, 10, 20].map(|ms| {
            let ended = &ended;
            async move {
                monoio::time::sleep(Duration::from_millis(ms)).await;
                ended.borrow_mut().push(ms);
                ms * 2
            }
        })));
        assert_eq!(outputs, vec![60, 20, 40]);
        assert_eq!(*ended.borrow(), vec![10, 20, 30]);
    }

    #[test]
    fn no_futures_is_no_outputs() {
        let outputs = block_on(join_all(Vec::<std::future::Ready<u8>>::new()));
        assert!(outputs.is_empty());
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
            .block_on(future)
    }
}
