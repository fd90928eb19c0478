//! End to end through real server processes: concurrent ingest from blocking clients and
//! the shard-aware async client (mixed types, nulls, out-of-order rows, overwrites, several
//! devices, two time partitions), every answer compared with the in-test [`Model`]; then a
//! clean restart (SIGTERM) and a crash (SIGKILL during ingest) with recovery checks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iotdb_net::{
    BlockingClient, ClientConfig, CreateDatabase, RawQuery, ShardAwareClient, Value, WireTablet,
};
use iotdb_tests::dataset::{
    ROWS_PER_PARTITION, Rng, STEP_MS, T0, WEEK_MS, device_plan, selection, tablet_of, verify,
};
use iotdb_tests::model::rows_of;
use iotdb_tests::{Model, TestServer, server_options};

const DATABASE: &str = "root.e2e";
fn create_database(client: &mut BlockingClient) {
    client
        .create_database(CreateDatabase {
            name: DATABASE.to_owned(),
            ttl_ms: None,
            data_region_group_num: None,
        })
        .expect("create database");
}

/// Ingests `plans` (device → its inserts) concurrently: one blocking client thread per
/// device for `blocking`, and one shard-aware async client for the rest (its insert calls
/// carry one tablet of each of its devices). Returns the model of what was acknowledged.
fn ingest(
    server: &TestServer,
    blocking: Vec<Vec<WireTablet>>,
    shard_aware: Vec<Vec<WireTablet>>,
) -> Model {
    let address = server.address();
    let mut threads = Vec::new();
    for plan in blocking {
        threads.push(std::thread::spawn(move || {
            let mut client =
                BlockingClient::connect(address, &ClientConfig::default()).expect("connect");
            let mut model = Model::new();
            for tablet in plan {
                client
                    .insert_tablets(std::slice::from_ref(&tablet))
                    .expect("insert");
                model.apply(&tablet);
            }
            model
        }));
    }
    threads.push(std::thread::spawn(move || {
        let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("monoio runtime");
        runtime.block_on(async move {
            let mut client = ShardAwareClient::connect(&[address], ClientConfig::default())
                .await
                .expect("shard-aware connect");
            let mut model = Model::new();
            let longest = shard_aware.iter().map(Vec::len).max().unwrap_or(0);
            for step in 0..longest {
                let batch: Vec<WireTablet> = shard_aware
                    .iter()
                    .filter_map(|plan| plan.get(step).cloned())
                    .collect();
                client
                    .insert_tablets(&batch)
                    .await
                    .expect("shard-aware insert");
                batch.iter().for_each(|tablet| model.apply(tablet));
                if step == 0 {
                    // The first inserts created data partitions; the client learns of them
                    // only by refetching (it does not refresh on its own after a success).
                    client
                        .refresh_route_table()
                        .await
                        .expect("refresh the route table");
                }
            }
            // The route table named this database's regions, so some tablets went
            // straight to a shard's connection.
            assert!(
                client.shard_connection_count() >= 1,
                "the shard-aware client opened no shard connection"
            );
            model
        })
    }));
    let mut model = Model::new();
    for thread in threads {
        model.absorb(thread.join().expect("an ingest thread panicked"));
    }
    model
}

/// A connection naming each shard in its handshake is served by that shard.
fn check_shard_handshakes(server: &TestServer) {
    let shards = server.shard_count() as u32;
    for shard in 0..shards {
        let config = ClientConfig {
            target_shard: Some(shard),
            ..ClientConfig::default()
        };
        let mut client = server.client_with(&config).expect("connect to a shard");
        let accepted = *client.accepted();
        assert_eq!(accepted.shard_id, shard, "handshake naming shard {shard}");
        assert_eq!(accepted.shard_count, shards);
        // The moved connection keeps working.
        client.ping().expect("ping on a moved connection");
        client
            .execute_sql("SHOW DATABASES")
            .expect("SQL on a moved connection");
    }
}

fn scenario(cores: usize) {
    let mut server = TestServer::start(server_options!().cores(cores)).expect("start");
    assert_eq!(server.shard_count(), cores);
    check_shard_handshakes(&server);
    create_database(&mut server.client().expect("connect"));
    let devices: Vec<String> = (0..5).map(|d| format!("{DATABASE}.d{d}")).collect();
    let plans: Vec<Vec<WireTablet>> = devices
        .iter()
        .enumerate()
        .map(|(index, device)| device_plan(device, 1000 * cores as u64 + index as u64, 0))
        .collect();
    let (blocking, shard_aware) = {
        let mut plans = plans;
        let shard_aware = plans.split_off(3);
        (plans, shard_aware)
    };
    let mut model = ingest(&server, blocking, shard_aware);
    assert_eq!(model.devices(), devices);
    verify(&mut server.client().expect("connect"), &model);

    // Clean restart: everything is still there.
    server.stop().expect("clean stop");
    server.restart().expect("restart");
    check_shard_handshakes(&server);
    verify(&mut server.client().expect("connect"), &model);

    // Overwrite flushed data after the restart: the newest write still wins.
    let again: Vec<Vec<WireTablet>> = devices
        .iter()
        .enumerate()
        .map(|(index, device)| {
            let mut plan = device_plan(device, 7 + index as u64, ROWS_PER_PARTITION / 2);
            plan.truncate(6);
            plan
        })
        .collect();
    let (blocking, shard_aware) = {
        let mut again = again;
        let shard_aware = again.split_off(2);
        (again, shard_aware)
    };
    model.absorb(ingest(&server, blocking, shard_aware));
    verify(&mut server.client().expect("connect"), &model);
    server.stop().expect("clean stop");
}

#[test]
fn one_shard_ingest_query_restart() {
    scenario(1);
}

#[test]
fn two_shards_ingest_query_restart() {
    scenario(2);
}

/// SIGKILL while clients write: after restart every acknowledged point is there, and
/// nothing that was never sent.
#[test]
fn acknowledged_writes_survive_sigkill() {
    const WRITERS: usize = 3;
    const ACKS_BEFORE_KILL: usize = 120;
    const ROWS: usize = 8;
    let mut server = TestServer::start(server_options!().cores(2).wal_mode("sync")).expect("start");
    create_database(&mut server.client().expect("connect"));
    let acknowledged = Arc::new(Mutex::new(Model::new()));
    let attempted = Arc::new(Mutex::new(Model::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let address = server.address();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (acknowledged, attempted, acks, stop) = (
                acknowledged.clone(),
                attempted.clone(),
                acks.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let device = format!("{DATABASE}.crash{writer}");
                let mut rng = Rng(writer as u64 + 77);
                let mut client =
                    BlockingClient::connect(address, &ClientConfig::default()).expect("connect");
                let mut batch = 0i64;
                // Bounded so a server that never dies cannot make the test spin forever.
                while !stop.load(Ordering::Relaxed) && batch < 100_000 {
                    // Alternate partitions so both see writes when the process dies.
                    let base = T0 + (batch % 2) * WEEK_MS + batch * ROWS as i64 * STEP_MS;
                    let timestamps: Vec<i64> =
                        (0..ROWS as i64).map(|row| base + row * STEP_MS).collect();
                    let tablet = tablet_of(&device, &mut rng, &timestamps, 0);
                    attempted.lock().unwrap().apply(&tablet);
                    if client
                        .insert_tablets(std::slice::from_ref(&tablet))
                        .is_err()
                    {
                        return;
                    }
                    acknowledged.lock().unwrap().apply(&tablet);
                    acks.fetch_add(1, Ordering::Relaxed);
                    batch += 1;
                }
            })
        })
        .collect();
    while acks.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
        assert!(
            writers.iter().any(|writer| !writer.is_finished()),
            "every writer stopped before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().expect("SIGKILL");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer thread");
    }
    server.restart().expect("restart after SIGKILL");
    let acknowledged = acknowledged.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(acknowledged.point_count() > 0);
    let mut client = server.client().expect("connect");
    for id in attempted.series_ids() {
        let batches = client
            .query_raw(RawQuery {
                series: vec![selection(&id.device, &[id.measurement.as_str()])],
                start_time: i64::MIN,
                end_time: i64::MAX,
                limit: None,
                offset: 0,
            })
            .unwrap_or_else(|error| panic!("query {id:?} after recovery: {error}"));
        let (_, rows) = rows_of(&batches).expect("batches");
        let found: BTreeMap<i64, Value> = rows
            .into_iter()
            .filter_map(|(t, mut cells)| cells.pop().flatten().map(|v| (t, v)))
            .collect();
        for (t, value) in acknowledged.points(id) {
            assert_eq!(
                found.get(t),
                Some(value),
                "{} at {t}: an acknowledged point is lost or wrong after SIGKILL",
                id.path()
            );
        }
        let sent: BTreeMap<i64, Value> =
            attempted.points(id).map(|(t, v)| (*t, v.clone())).collect();
        for (t, value) in &found {
            assert_eq!(
                sent.get(t),
                Some(value),
                "{} at {t}: never written",
                id.path()
            );
        }
    }
    server.stop().expect("clean stop after recovery");
}

/// With `--rpc-port 0` the route table must name the port the server bound, or a
/// shard-aware client cannot reach any shard.
#[test]
fn shard_aware_client_with_a_kernel_chosen_port() {
    let server = TestServer::start(server_options!().cores(2).kernel_port()).expect("start");
    create_database(&mut server.client().expect("connect"));
    let address = server.address();
    let device = format!("{DATABASE}.kp");
    let mut rng = Rng(5);
    let first = tablet_of(&device, &mut rng, &[T0, T0 + STEP_MS], 0);
    let second = tablet_of(&device, &mut rng, &[T0 + 2 * STEP_MS, T0 + 3 * STEP_MS], 0);
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    runtime.block_on(async {
        let mut client = ShardAwareClient::connect(&[address], ClientConfig::default())
            .await
            .expect("shard-aware connect");
        client
            .insert_tablets(std::slice::from_ref(&first))
            .await
            .expect("first insert");
        client.refresh_route_table().await.expect("refresh");
        let endpoint = client
            .route_table()
            .route_for(&device, T0)
            .map(|target| target.rpc_endpoint.to_owned());
        assert_eq!(
            endpoint,
            Some(address.to_string()),
            "the route table's endpoint for {device}"
        );
        client
            .insert_tablets(std::slice::from_ref(&second))
            .await
            .expect("routed insert");
        assert!(client.shard_connection_count() >= 1);
    });
    let mut model = Model::new();
    model.apply(&first);
    model.apply(&second);
    verify(&mut server.client().expect("connect"), &model);
}

/// `FLUSH` folds the control plane's logs (the SchemaRegion's and the ConfigNode's) into
/// compressed snapshots and leaves them empty; a SIGKILL right after loses no series, and
/// series created after the fold are replayed from the log on top of the snapshot.
#[test]
fn flush_folds_the_schema_and_config_logs_into_compressed_snapshots() {
    const LOG_MAGIC_BYTES: u64 = 8;
    let mut server = TestServer::start(server_options!().cores(1)).expect("start");
    let mut client = server.client().expect("connect");
    create_database(&mut client);
    for d in 0..50 {
        let series: Vec<String> = (0..4)
            .map(|s| format!("{DATABASE}.d{d}.s{s} WITH DATATYPE=DOUBLE"))
            .collect();
        for one in series {
            client
                .execute_sql(&format!("CREATE TIMESERIES {one}"))
                .expect("create timeseries");
        }
    }
    let data = server.data_dir();
    let schema_dirs: Vec<_> = std::fs::read_dir(data.join("datanode/schema"))
        .expect("schema directory")
        .map(|entry| entry.expect("entry").path())
        .collect();
    let file_bytes =
        |path: &std::path::Path| std::fs::metadata(path).expect("a journal file").len();
    let schema_log_before: u64 = schema_dirs
        .iter()
        .map(|dir| file_bytes(&dir.join("schema.log")))
        .sum();
    assert!(
        schema_log_before > 200 * 50,
        "{schema_log_before} bytes of schema log"
    );

    client.execute_sql("FLUSH").expect("flush");
    for dir in &schema_dirs {
        assert_eq!(
            file_bytes(&dir.join("schema.log")),
            LOG_MAGIC_BYTES,
            "{dir:?}"
        );
        let snapshot = std::fs::read(dir.join("schema.snapshot")).expect("snapshot");
        assert_eq!(&snapshot[..8], b"IOTDBSN2", "{dir:?}");
    }
    let snapshots: u64 = schema_dirs
        .iter()
        .map(|dir| file_bytes(&dir.join("schema.snapshot")))
        .sum();
    assert!(
        snapshots * 4 < schema_log_before,
        "snapshots of {snapshots} bytes for a log of {schema_log_before}"
    );
    assert_eq!(
        file_bytes(&data.join("confignode/confignode.log")),
        LOG_MAGIC_BYTES
    );
    // Nothing new: a second FLUSH rewrites no snapshot.
    let modified = |path: std::path::PathBuf| {
        std::fs::metadata(path)
            .expect("snapshot")
            .modified()
            .expect("mtime")
    };
    let before = modified(schema_dirs[0].join("schema.snapshot"));
    client.execute_sql("FLUSH").expect("flush again");
    assert_eq!(modified(schema_dirs[0].join("schema.snapshot")), before);

    client
        .execute_sql(&format!(
            "CREATE TIMESERIES {DATABASE}.late.s0 WITH DATATYPE=INT64"
        ))
        .expect("create timeseries after the fold");
    drop(client);
    server.kill().expect("kill");
    server.restart().expect("restart");
    let count = server
        .client()
        .expect("connect")
        .execute_sql(&format!("COUNT TIMESERIES {DATABASE}.**"))
        .expect("count");
    assert_eq!(
        iotdb_tests::cluster::text_rows(&count)[0]["count(timeseries)"],
        "201",
        "{count:?}"
    );
    server.stop().expect("clean stop");
}

/// The CPUs a thread of `pid` may run on (`Cpus_allowed_list` of its status), by thread
/// name; the process's own (its main thread's) under the name `""`.
fn allowed_cpus_by_thread(pid: u32) -> Vec<(String, String)> {
    let allowed = |status: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .map(|list| list.trim().to_owned())
            .expect("Cpus_allowed_list in a thread's status")
    };
    let main = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mut threads = vec![(String::new(), allowed(&main))];
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("status")),
        ) else {
            continue; // a thread that ended meanwhile
        };
        threads.push((name.trim().to_owned(), allowed(&status)));
    }
    threads
}

/// Shards are pinned to a core each, but the storage pool's threads (every flush and
/// compaction) may run on every core the process may: they once inherited the pin of the
/// shard that opened the first region, so all of a node's background work ran on core 0.
#[test]
fn background_threads_are_not_pinned_to_a_shards_core() {
    let server = TestServer::start(
        server_options!()
            .cores(2)
            .set("dn_pin_shards_to_cores", true),
    )
    .expect("start");
    // Regions open (and the pool would have started then, were it not started already).
    let mut client = server.client().expect("connect");
    create_database(&mut client);
    let mut rng = Rng(36);
    let tablets: Vec<WireTablet> = (0..4)
        .map(|d| {
            tablet_of(
                &format!("{DATABASE}.d{d}"),
                &mut rng,
                &[T0, T0 + STEP_MS],
                1,
            )
        })
        .collect();
    client.insert_tablets(&tablets).expect("insert");
    client.flush(Vec::new()).expect("flush");

    let threads = allowed_cpus_by_thread(server.pid().expect("a running server"));
    let process = threads[0].1.clone();
    let pool: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("storage-bg-"))
        .collect();
    assert!(!pool.is_empty(), "no storage-bg thread in {threads:?}");
    for (name, cpus) in &pool {
        assert_eq!(
            *cpus, process,
            "{name} may run on {cpus}, the process on {process}"
        );
    }
    // Where the process may use more than one core, the shards are pinned (so the check
    // above tells a pinned pool apart from an unpinned one).
    let shards: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("shard-"))
        .collect();
    assert_eq!(shards.len(), 2, "{threads:?}");
    if process.contains(['-', ',']) {
        for (name, cpus) in shards {
            assert!(!cpus.contains(['-', ',']), "{name} not pinned: {cpus}");
        }
    }
}
