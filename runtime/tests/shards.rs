//! Shards and the mesh end to end: real threads, real monoio runtimes, real cross-core wakes.
//!
//! No test asserts on timing; sleeps only make a waiting side actually park.

use std::time::Duration;

use bytes::Bytes;
use iotdb_runtime::{
    DriverKind, Reply, RuntimeError, ShardContext, ShardId, ShardSetBuilder, UringSetup, limits,
    time,
};

enum Message {
    Ping {
        from: ShardId,
    },
    Pong {
        from: ShardId,
    },
    Sequence {
        from: ShardId,
        sequence: u64,
        payload: Bytes,
    },
    Double {
        value: u64,
        reply: Reply<u64>,
    },
}

fn shard(index: usize) -> ShardId {
    ShardId(u16::try_from(index).unwrap())
}

/// Cores this thread may run on, as the kernel reports them.
fn cpus_allowed() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    let mut cpus = Vec::new();
    for range in list.trim().split(',') {
        match range.split_once('-') {
            Some((first, last)) => {
                cpus.extend(first.parse::<usize>().unwrap()..=last.parse().unwrap())
            }
            None => cpus.push(range.parse().unwrap()),
        }
    }
    cpus
}

fn all_ok<T: std::fmt::Debug>(results: Vec<Result<T, RuntimeError>>) -> Vec<T> {
    results
        .into_iter()
        .map(|result| result.expect("shard failed"))
        .collect()
}

fn check_named_and_pinned(shard_count: usize) {
    let core_ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    let shards = ShardSetBuilder::new()
        .cores(shard_count)
        .start(|context: ShardContext<()>| async move {
            let name = std::thread::current().name().map(str::to_owned);
            (
                context.id,
                context.shards,
                name,
                context.pinned_core,
                cpus_allowed(),
                context.driver,
            )
        })
        .unwrap();
    assert_eq!(shards.shard_count(), shard_count);
    for (index, (id, shards_seen, name, pinned_core, allowed, driver)) in
        all_ok(shards.join()).into_iter().enumerate()
    {
        eprintln!("shard {index}: pinned {pinned_core:?}, allowed {allowed:?}, driver {driver:?}");
        // io_uring, set up as the probe found this kernel allows, or epoll where it is missing.
        assert!(
            driver == DriverKind::IoUring(UringSetup::probed()) || driver == DriverKind::Legacy,
            "{driver:?}"
        );
        assert_eq!(id, shard(index));
        assert_eq!(shards_seen, shard_count);
        assert_eq!(name.as_deref(), Some(format!("shard-{index}").as_str()));
        if !core_ids.is_empty() {
            // Shards beyond the core count wrap around.
            let expected_core = core_ids[index % core_ids.len()];
            // Pinning may be refused in a container; when it succeeded it must be exact.
            if let Some(core) = pinned_core {
                assert_eq!(core, expected_core);
                assert_eq!(allowed, vec![core]);
            }
        }
    }
}

#[test]
fn two_shards_run_on_named_pinned_threads() {
    check_named_and_pinned(2);
}

#[test]
fn four_shards_run_on_named_pinned_threads_wrapping_around_the_cores() {
    check_named_and_pinned(4);
}

#[test]
fn ping_pong_across_every_pair() {
    const SHARDS: usize = 4;
    let shards = ShardSetBuilder::new()
        .cores(SHARDS)
        .start(|context: ShardContext<Message>| async move {
            for to in 0..context.shards {
                context
                    .mesh
                    .send(shard(to), Message::Ping { from: context.id })
                    .await;
            }
            // Every shard pings every shard (itself included), so each expects exactly
            // `shards` pings to answer and `shards` pongs back.
            let (mut pinged_by, mut ponged_by) = (Vec::new(), Vec::new());
            while pinged_by.len() < context.shards || ponged_by.len() < context.shards {
                match context.mesh.recv().await {
                    Message::Ping { from } => {
                        pinged_by.push(from);
                        context
                            .mesh
                            .send(from, Message::Pong { from: context.id })
                            .await;
                    }
                    Message::Pong { from } => ponged_by.push(from),
                    _ => panic!("unexpected message"),
                }
            }
            pinged_by.sort();
            ponged_by.sort();
            (pinged_by, ponged_by)
        })
        .unwrap();
    let everyone: Vec<ShardId> = (0..SHARDS).map(shard).collect();
    for (pinged_by, ponged_by) in all_ok(shards.join()) {
        assert_eq!(pinged_by, everyone);
        assert_eq!(ponged_by, everyone);
    }
}

#[test]
fn a_flood_larger_than_the_queue_waits_loses_nothing_and_keeps_order_per_pair() {
    const SHARDS: usize = 3;
    const CAPACITY: usize = 8;
    const MESSAGES_PER_SENDER: u64 = 20_000;
    let receiver = shard(SHARDS - 1);
    let shards = ShardSetBuilder::new()
        .cores(SHARDS)
        .queue_capacity_per_pair(CAPACITY)
        .start(move |context: ShardContext<Message>| async move {
            if context.id != receiver {
                let mut queued_max = 0;
                for sequence in 0..MESSAGES_PER_SENDER {
                    let payload = Bytes::from(sequence.to_le_bytes().to_vec());
                    context
                        .mesh
                        .send(
                            receiver,
                            Message::Sequence {
                                from: context.id,
                                sequence,
                                payload,
                            },
                        )
                        .await;
                    queued_max = queued_max.max(context.mesh.queued_to(receiver));
                }
                return queued_max;
            }
            // Start late so the senders fill their rings and must wait.
            time::sleep(Duration::from_millis(20)).await;
            let mut next_expected = vec![0_u64; context.shards];
            let total = MESSAGES_PER_SENDER * (context.shards as u64 - 1);
            for received in 0..total {
                match context.mesh.recv().await {
                    Message::Sequence {
                        from,
                        sequence,
                        payload,
                    } => {
                        assert_eq!(
                            sequence,
                            next_expected[from.index()],
                            "order broken from {from}"
                        );
                        assert_eq!(payload.as_ref(), sequence.to_le_bytes());
                        next_expected[from.index()] += 1;
                    }
                    _ => panic!("unexpected message"),
                }
                // Yield now and then so the senders keep hitting a full ring.
                if received % 64 == 0 {
                    time::sleep(Duration::from_micros(1)).await;
                }
            }
            assert!(
                context.mesh.try_recv().is_none(),
                "more messages than were sent"
            );
            next_expected[..context.shards - 1]
                .iter()
                .for_each(|&count| assert_eq!(count, MESSAGES_PER_SENDER));
            0
        })
        .unwrap();
    for queued_max in all_ok(shards.join()) {
        assert!(
            queued_max <= CAPACITY,
            "a ring held {queued_max} > {CAPACITY} messages"
        );
    }
}

#[test]
fn requests_get_answers_across_every_pair() {
    const SHARDS: usize = 4;
    let shards = ShardSetBuilder::new()
        .cores(SHARDS)
        .start(|context: ShardContext<Message>| async move {
            let context = std::rc::Rc::new(context);
            // Serve exactly one request from every shard while asking our own.
            let server = iotdb_runtime::spawn({
                let context = context.clone();
                async move {
                    for _ in 0..context.shards {
                        match context.mesh.recv().await {
                            Message::Double { value, reply } => {
                                reply.send(value * 2 + context.id.0 as u64).unwrap();
                            }
                            _ => panic!("unexpected message"),
                        }
                    }
                }
            });
            let mut answers = Vec::new();
            for to in 0..context.shards {
                let value = 100 * context.id.0 as u64;
                let answer = context
                    .mesh
                    .request(shard(to), |reply| Message::Double { value, reply })
                    .await
                    .unwrap();
                answers.push((value, answer));
            }
            server.await;
            answers
        })
        .unwrap();
    for answers in all_ok(shards.join()) {
        for (to, (value, answer)) in answers.into_iter().enumerate() {
            assert_eq!(answer, value * 2 + to as u64);
        }
    }
}

#[test]
fn a_request_whose_reply_is_dropped_fails_with_a_typed_error() {
    let shards = ShardSetBuilder::new()
        .cores(2)
        .start(|context: ShardContext<Message>| async move {
            if context.id == shard(0) {
                let outcome = context
                    .mesh
                    .request(shard(1), |reply| Message::Double { value: 1, reply })
                    .await;
                matches!(outcome, Err(RuntimeError::ReplyDropped { shard }) if shard == ShardId(1))
            } else {
                drop(context.mesh.recv().await);
                true
            }
        })
        .unwrap();
    assert_eq!(all_ok(shards.join()), vec![true, true]);
}

#[test]
fn an_idle_shard_parked_on_its_inbox_is_woken_by_another_core() {
    let shards = ShardSetBuilder::new()
        .cores(2)
        .start(|context: ShardContext<Message>| async move {
            if context.id == shard(0) {
                // Nothing else runs on this shard: its loop parks in the driver until the
                // message's wake-up arrives from shard 1.
                match context.mesh.recv().await {
                    Message::Ping { from } => from,
                    _ => panic!("unexpected message"),
                }
            } else {
                time::sleep(Duration::from_millis(30)).await;
                context
                    .mesh
                    .send(shard(0), Message::Ping { from: context.id })
                    .await;
                context.id
            }
        })
        .unwrap();
    assert_eq!(all_ok(shards.join()), vec![shard(1), shard(1)]);
}

#[test]
fn shutdown_stops_shards_waiting_on_their_inbox_and_joins_them() {
    let shards = ShardSetBuilder::new()
        .cores(4)
        .start(|context: ShardContext<Message>| async move {
            let mut received = 0_u64;
            loop {
                monoio::select! {
                    _ = context.mesh.recv() => received += 1,
                    _ = context.stop.wait() => break,
                }
            }
            received
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(all_ok(shards.shutdown()), vec![0, 0, 0, 0]);
}

#[test]
fn dropping_the_set_stops_and_joins_the_shards() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let shards = ShardSetBuilder::new()
        .cores(2)
        .start(move |context: ShardContext<()>| async move {
            context.stop.wait().await;
            sender.send(context.id).unwrap();
        })
        .unwrap();
    drop(shards);
    let mut stopped: Vec<ShardId> = receiver.try_iter().collect();
    stopped.sort();
    assert_eq!(stopped, vec![shard(0), shard(1)]);
}

#[test]
fn a_panic_in_one_shard_is_reported_by_the_join_and_stops_the_others() {
    let shards = ShardSetBuilder::new()
        .cores(2)
        .start(|context: ShardContext<()>| async move {
            if context.id == shard(1) {
                panic!("boom on shard {}", context.id);
            }
            // Shard 0 would wait forever; the panic of shard 1 raises the stop signal.
            context.stop.wait().await;
            context.id
        })
        .unwrap();
    let mut results = shards.join().into_iter();
    assert_eq!(results.next().unwrap().unwrap(), shard(0));
    match results.next().unwrap() {
        Err(RuntimeError::ShardPanicked {
            shard: panicked,
            message,
        }) => {
            assert_eq!(panicked, shard(1));
            assert_eq!(message, "boom on shard 1");
        }
        other => panic!("expected a panic report, got {other:?}"),
    }
}

#[test]
fn invalid_configurations_are_refused_with_typed_errors() {
    let start = |builder: ShardSetBuilder| {
        builder
            .start(|_context: ShardContext<u64>| async {})
            .map(drop)
    };
    assert!(matches!(
        start(ShardSetBuilder::new().cores(0)),
        Err(RuntimeError::ShardCount { .. })
    ));
    assert!(matches!(
        start(ShardSetBuilder::new().cores(limits::SHARD_COUNT_MAX + 1)),
        Err(RuntimeError::ShardCount { .. })
    ));
    assert!(matches!(
        start(ShardSetBuilder::new().cores(1).queue_capacity_per_pair(0)),
        Err(RuntimeError::QueueCapacity { .. })
    ));
    assert!(matches!(
        start(
            ShardSetBuilder::new()
                .cores(limits::SHARD_COUNT_MAX)
                .queue_capacity_per_pair(limits::MESH_QUEUE_CAPACITY_MAX)
        ),
        Err(RuntimeError::MeshTooLarge { .. })
    ));
}

#[test]
fn many_round_trips_through_one_slot_rings_never_lose_a_wake_up() {
    // With one slot per ring every message makes the other side park and be woken, so a
    // lost wake-up would hang this test instead of passing it.
    const ROUND_TRIPS: u64 = 20_000;
    let shards = ShardSetBuilder::new()
        .cores(2)
        .queue_capacity_per_pair(1)
        .start(|context: ShardContext<u64>| async move {
            let peer = shard(1 - context.id.index());
            if context.id == shard(0) {
                for value in 0..ROUND_TRIPS {
                    context.mesh.send(peer, value).await;
                    assert_eq!(context.mesh.recv().await, value + 1);
                }
            } else {
                for _ in 0..ROUND_TRIPS {
                    let value = context.mesh.recv().await;
                    context.mesh.send(peer, value + 1).await;
                }
            }
            ROUND_TRIPS
        })
        .unwrap();
    assert_eq!(all_ok(shards.join()), vec![ROUND_TRIPS, ROUND_TRIPS]);
}
