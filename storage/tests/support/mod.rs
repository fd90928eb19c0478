//! What the storage integration tests share.

/// Runs `future` to completion on a fresh monoio runtime with timers (a region spawns
/// its WAL's commit task and a ticking background task, so it needs both).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("a monoio runtime")
        .block_on(future)
}
