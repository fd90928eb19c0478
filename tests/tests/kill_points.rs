//! A multi-step ConfigNode operation survives a crash at each of its steps: a real server
//! started with `IOTDB_KILL_POINT=<name>` aborts when `DELETE DATABASE` reaches that kill
//! point; restarted without it, the server resumes the procedure before serving anyone and
//! the database is gone as if nothing had happened (its region directories removed, the
//! other database intact, the name usable again).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use iotdb_net::{BlockingClient, DataType, Value, WireTablet};
use iotdb_tests::{TestServer, server_options};

/// The kill points of `DELETE DATABASE` (`node/src/confignode/procedure.rs`).
const KILL_POINTS: [&str; 4] = [
    "DeleteDatabase.Started",
    "DeleteDatabase.ReplicasDropped",
    "DeleteDatabase.ForgetRecorded",
    "DeleteDatabase.Forgotten",
];
/// How long an aborting server may take to die.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn write_rows(client: &mut BlockingClient, device: &str, rows: i64) {
    let mut tablet = WireTablet::new(device, &[("s1", DataType::Int64)]);
    for time in 0..rows {
        tablet
            .push_row(time, &[Some(Value::Int64(time))])
            .expect("row");
    }
    client.insert_tablets(&[tablet]).expect("insert");
}

fn count(client: &mut BlockingClient, device: &str) -> Option<i64> {
    let result = client
        .execute_sql(&format!("SELECT count(s1) FROM {device}"))
        .expect("count");
    match result.rows.first()?.first()?.as_ref()? {
        Value::Int64(n) => Some(*n),
        other => panic!("count is {other:?}"),
    }
}

/// Every region directory (data and schema) of the server.
fn region_dirs(server: &TestServer) -> BTreeSet<PathBuf> {
    let datanode = server.data_dir().join("datanode");
    ["data", "schema"]
        .iter()
        .flat_map(|kind| std::fs::read_dir(datanode.join(kind)).into_iter().flatten())
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("region-"))
        })
        .collect()
}

fn databases(client: &mut BlockingClient) -> Vec<String> {
    let result = client
        .execute_sql("SHOW DATABASES")
        .expect("show databases");
    result
        .rows
        .iter()
        .filter_map(|row| match row.first()?.as_ref()? {
            Value::Text(name) => Some(String::from_utf8_lossy(name).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn delete_database_resumes_after_a_crash_at_each_kill_point() {
    for point in KILL_POINTS {
        let mut server =
            TestServer::start(server_options!().cores(2).env("IOTDB_KILL_POINT", point))
                .expect("start");
        let mut client = server.client().expect("client");
        write_rows(&mut client, "root.kept.d1", 10);
        let kept_dirs = region_dirs(&server);
        for device in ["root.doomed.d1", "root.doomed.d2", "root.doomed.d3"] {
            write_rows(&mut client, device, 5);
        }
        let doomed_dirs: BTreeSet<PathBuf> = region_dirs(&server)
            .difference(&kept_dirs)
            .cloned()
            .collect();
        assert!(!doomed_dirs.is_empty(), "{point}: the database has regions");

        // The server aborts inside the statement: the client sees its connection die.
        assert!(
            client.execute_sql("DELETE DATABASE root.doomed").is_err(),
            "{point}: DELETE DATABASE answered though the server aborted"
        );
        let status = server.wait_exit(EXIT_TIMEOUT).expect("the server exits");
        assert!(!status.success(), "{point}: exit status {status}");

        server.options_mut().env.clear();
        server.restart().expect("restart");
        let mut client = server.client().expect("client after restart");
        let names = databases(&mut client);
        assert!(
            !names.iter().any(|name| name == "root.doomed"),
            "{point}: {names:?}"
        );
        assert!(names.iter().any(|name| name == "root.kept"), "{point}");
        assert_eq!(count(&mut client, "root.kept.d1"), Some(10), "{point}");
        let left: Vec<&PathBuf> = doomed_dirs.iter().filter(|dir| dir.exists()).collect();
        assert!(
            left.is_empty(),
            "{point}: region directories left: {left:?}"
        );
        assert!(
            kept_dirs.iter().all(|dir| dir.exists()),
            "{point}: a live region directory was removed"
        );

        // The name is usable again and starts empty.
        write_rows(&mut client, "root.doomed.d1", 2);
        assert_eq!(count(&mut client, "root.doomed.d1"), Some(2), "{point}");
        server.stop().expect("clean stop");
    }
}
