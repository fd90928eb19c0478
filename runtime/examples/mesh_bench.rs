//! Measures the mesh between two shards: round-trip latency and messages per second.
//!
//! ```text
//! cargo run -p iotdb-runtime --release --example mesh_bench -- [round_trips] [messages] [capacity] [pin: 1|0]
//! ```
//!
//! Shard 0 drives every phase; shard 1 serves: it echoes `Echo`, answers `Request` through
//! its `Reply`, and drops `Payload`. Phases:
//! 1. `echo`: a `u64` to shard 1 and back, one at a time (two mesh hops, two wake-ups when
//!    the peer is parked);
//! 2. `request`: the same through `MeshEndpoint::request` (mesh hop + oneshot reply);
//! 3. `flood u64` / `flood Bytes`: shard 0 sends as fast as `send().await` lets it, shard 1
//!    drains; the rate is messages received per second, back-pressure included. The `Bytes`
//!    variant clones one shared buffer, so each message costs a cross-core refcount.
//!
//! Measured on the 2-core development VM (kernel 6.18, io_uring driver) while other builds
//! kept its load average at 4-5, so the figures are upper bounds, noisy from run to run:
//!
//! ```text
//!                      pinned (default)          unpinned (pin 0)
//!   echo round trip    p50 26-35 µs              p50 8-10 µs
//!   request/reply      p50 26-35 µs              p50 8 µs
//!   flood u64          1.8-5.7 M messages/s      3.8-7.2 M messages/s
//!   flood Bytes        1.5-5.6 M messages/s      3.8-6.2 M messages/s
//! ```
//!
//! For scale, two unpinned std threads ping-ponging over crossbeam bounded channels measured
//! p50 9 µs on the same machine at the same time.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use bytes::Bytes;
use iotdb_runtime::{Reply, ShardContext, ShardId, ShardSetBuilder, limits};

enum BenchMessage {
    Echo(u64),
    Request { value: u64, reply: Reply<u64> },
    Sink(u64),
    Payload(Bytes),
    Done,
}

const WARM_UP_ROUND_TRIPS: u64 = 10_000;

fn main() {
    let arguments: Vec<u64> = std::env::args()
        .skip(1)
        .map(|argument| argument.parse().expect("numeric argument"))
        .collect();
    let round_trips = arguments.first().copied().unwrap_or(200_000);
    let messages = arguments.get(1).copied().unwrap_or(10_000_000);
    let pin_to_cores = arguments.get(3).is_none_or(|&pin| pin != 0);
    let capacity = arguments
        .get(2)
        .copied()
        .map_or(limits::MESH_QUEUE_CAPACITY_DEFAULT, |value| value as usize);
    println!(
        "mesh_bench: 2 shards, capacity {capacity}/pair, {round_trips} round trips, {messages} flood messages, {} cores available",
        iotdb_runtime::available_cores()
    );

    let shards = ShardSetBuilder::new()
        .cores(2)
        .queue_capacity_per_pair(capacity)
        .pin_to_cores(pin_to_cores)
        .start(move |context: ShardContext<BenchMessage>| async move {
            if context.id == ShardId(1) {
                serve(&context).await;
                return;
            }
            println!(
                "shard 0: pinned {:?}, driver {:?}",
                context.pinned_core, context.driver
            );
            let peer = ShardId(1);
            for value in 0..WARM_UP_ROUND_TRIPS {
                echo(&context, peer, value).await;
            }
            let mut latencies_ns = Vec::with_capacity(round_trips as usize);
            for value in 0..round_trips {
                let started = Instant::now();
                echo(&context, peer, value).await;
                latencies_ns.push(started.elapsed().as_nanos() as u64);
            }
            report("echo round trip", &mut latencies_ns);

            latencies_ns.clear();
            for value in 0..round_trips {
                let started = Instant::now();
                let answer = context
                    .mesh
                    .request(peer, |reply| BenchMessage::Request { value, reply })
                    .await
                    .expect("peer answers");
                assert_eq!(answer, value);
                latencies_ns.push(started.elapsed().as_nanos() as u64);
            }
            report("request/reply", &mut latencies_ns);

            let started = Instant::now();
            for value in 0..messages {
                context.mesh.send(peer, BenchMessage::Sink(value)).await;
            }
            // Rings are FIFO per pair: once `Done` is echoed back, everything was consumed.
            context.mesh.send(peer, BenchMessage::Done).await;
            let _ = context.mesh.recv().await;
            let elapsed = started.elapsed();
            println!(
                "{:<18} {:>12.0} messages/s (u64 one way)",
                "flood u64",
                messages as f64 / elapsed.as_secs_f64()
            );

            let payload = Bytes::from(vec![7_u8; 4096]);
            let started = Instant::now();
            for _ in 0..messages {
                context
                    .mesh
                    .send(peer, BenchMessage::Payload(payload.clone()))
                    .await;
            }
            context.mesh.send(peer, BenchMessage::Done).await;
            let _ = context.mesh.recv().await;
            let elapsed = started.elapsed();
            println!(
                "{:<18} {:>12.0} messages/s (4 KiB Bytes handle one way)",
                "flood Bytes",
                messages as f64 / elapsed.as_secs_f64()
            );
            context.stop.request();
        })
        .expect("shards start");
    for result in shards.join() {
        result.expect("shard ran");
    }
}

async fn echo(context: &ShardContext<BenchMessage>, peer: ShardId, value: u64) {
    context.mesh.send(peer, BenchMessage::Echo(value)).await;
    match context.mesh.recv().await {
        BenchMessage::Echo(echoed) => assert_eq!(echoed, value),
        _ => panic!("shard 1 answered an echo with something else"),
    }
}

/// Shard 1's loop: echo, answer or drop until shard 0 is done.
async fn serve(context: &ShardContext<BenchMessage>) {
    let peer = ShardId(0);
    loop {
        monoio::select! {
            message = context.mesh.recv() => match message {
                BenchMessage::Echo(value) => context.mesh.send(peer, BenchMessage::Echo(value)).await,
                BenchMessage::Request { value, reply } => {
                    let _ = reply.send(value);
                }
                BenchMessage::Sink(value) => {
                    std::hint::black_box(value);
                }
                BenchMessage::Payload(payload) => drop(payload),
                BenchMessage::Done => context.mesh.send(peer, BenchMessage::Done).await,
            },
            _ = context.stop.wait() => return,
        }
    }
}

fn report(name: &str, latencies_ns: &mut [u64]) {
    latencies_ns.sort_unstable();
    let percentile =
        |fraction: f64| latencies_ns[((latencies_ns.len() - 1) as f64 * fraction) as usize];
    let mean = latencies_ns.iter().sum::<u64>() as f64 / latencies_ns.len() as f64;
    println!(
        "{name:<18} mean {mean:>7.0} ns  p50 {:>6} ns  p99 {:>7} ns  p99.9 {:>7} ns  max {:>8} ns  ({:.0} round trips/s)",
        percentile(0.5),
        percentile(0.99),
        percentile(0.999),
        percentile(1.0),
        1e9 / mean
    );
}
