//! Administrative SQL over the wire (`ExecuteSql`): IoTDB's column names and sensible
//! values for databases, the cluster, regions, DataNodes and timeseries counts; a parse
//! error is 700.

use iotdb_net::{BlockingClient, DataType, ResultSet, StatusCode, Value, WireTablet};
use iotdb_tests::{TestServer, server_options};

/// The cell of `row` in `column`, as text (admin tables are TEXT; others are printed).
fn cell(result: &ResultSet, row: usize, column: &str) -> Option<String> {
    let index = result
        .column_names
        .iter()
        .position(|name| name == column)
        .unwrap_or_else(|| panic!("no column {column} in {:?}", result.column_names));
    match result.rows[row][index].as_ref()? {
        Value::Text(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int64(v) => Some(v.to_string()),
        Value::Int32(v) => Some(v.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Rows as maps column → text, for readable assertions.
fn rows_where(result: &ResultSet, column: &str, value: &str) -> Vec<usize> {
    (0..result.rows.len())
        .filter(|row| cell(result, *row, column).as_deref() == Some(value))
        .collect()
}

fn sql(client: &mut BlockingClient, statement: &str) -> ResultSet {
    let result = client
        .execute_sql(statement)
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    result
        .validate()
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    result
}

fn insert_some(client: &mut BlockingClient, device: &str, measurements: &[(&str, DataType)]) {
    let mut tablet = WireTablet::new(device, measurements);
    let cells: Vec<Option<Value>> = measurements
        .iter()
        .map(|(_, data_type)| {
            Some(match data_type {
                DataType::Boolean => Value::Boolean(true),
                DataType::Int32 => Value::Int32(1),
                DataType::Int64 => Value::Int64(1),
                DataType::Float => Value::Float(1.0),
                DataType::Double => Value::Double(1.0),
                DataType::Text => Value::Text(bytes::Bytes::from_static(b"x")),
            })
        })
        .collect();
    tablet.push_row(1, &cells).expect("row");
    client.insert_tablets(&[tablet]).expect("insert");
}

fn admin_statements(cores: usize, kernel_port: bool) {
    let options = server_options!().cores(cores);
    let options = if kernel_port {
        options.kernel_port()
    } else {
        options
    };
    let server = TestServer::start(options).expect("start");
    let mut client = server.client().expect("connect");

    let created = sql(&mut client, "CREATE DATABASE root.t");
    assert!(created.rows.is_empty(), "{created:?}");
    let again = client
        .execute_sql("CREATE DATABASE root.t")
        .expect_err("creating a database twice succeeded");
    assert_eq!(
        again.status_code(),
        Some(StatusCode::DATABASE_ALREADY_EXISTS),
        "{again}"
    );

    let databases = sql(&mut client, "SHOW DATABASES");
    assert_eq!(
        databases.column_names,
        [
            "Database",
            "SchemaReplicationFactor",
            "DataReplicationFactor",
            "TimePartitionOrigin",
            "TimePartitionInterval"
        ]
    );
    let rows = rows_where(&databases, "Database", "root.t");
    assert_eq!(rows.len(), 1, "{databases:?}");
    assert_eq!(
        cell(&databases, rows[0], "DataReplicationFactor").as_deref(),
        Some("1")
    );
    assert_eq!(
        cell(&databases, rows[0], "SchemaReplicationFactor").as_deref(),
        Some("1")
    );
    assert_eq!(
        cell(&databases, rows[0], "TimePartitionInterval").as_deref(),
        Some("604800000"),
        "IoTDB's default time_partition_interval"
    );

    insert_some(
        &mut client,
        "root.t.d1",
        &[
            ("a", DataType::Int64),
            ("b", DataType::Text),
            ("c", DataType::Double),
        ],
    );
    insert_some(&mut client, "root.t.d2", &[("a", DataType::Boolean)]);
    // A database created on the fly by an insert.
    insert_some(&mut client, "root.auto.d1", &[("x", DataType::Float)]);

    let count = sql(&mut client, "COUNT TIMESERIES root.**");
    assert_eq!(count.column_names, ["count(timeseries)"]);
    assert_eq!(cell(&count, 0, "count(timeseries)").as_deref(), Some("5"));
    let count = sql(&mut client, "COUNT TIMESERIES root.t.**");
    assert_eq!(cell(&count, 0, "count(timeseries)").as_deref(), Some("4"));
    let databases = sql(&mut client, "SHOW DATABASES");
    assert_eq!(
        rows_where(&databases, "Database", "root.auto").len(),
        1,
        "{databases:?}"
    );

    let cluster = sql(&mut client, "SHOW CLUSTER");
    assert_eq!(
        cluster.column_names,
        [
            "NodeID",
            "NodeType",
            "Status",
            "InternalAddress",
            "InternalPort",
            "Version",
            "BuildInfo"
        ]
    );
    assert_eq!(
        cluster.rows.len(),
        2,
        "one ConfigNode and one DataNode: {cluster:?}"
    );
    let config_nodes = rows_where(&cluster, "NodeType", "ConfigNode");
    let data_nodes = rows_where(&cluster, "NodeType", "DataNode");
    assert_eq!(
        (config_nodes.len(), data_nodes.len()),
        (1, 1),
        "{cluster:?}"
    );
    for row in 0..cluster.rows.len() {
        assert_eq!(
            cell(&cluster, row, "Status").as_deref(),
            Some("Running"),
            "{cluster:?}"
        );
    }
    // Node ids come from one sequence.
    assert_ne!(
        cell(&cluster, config_nodes[0], "NodeID"),
        cell(&cluster, data_nodes[0], "NodeID")
    );
    let data_node_id = cell(&cluster, data_nodes[0], "NodeID").expect("a node id");

    let datanodes = sql(&mut client, "SHOW DATANODES");
    assert_eq!(
        datanodes.column_names,
        [
            "NodeID",
            "Status",
            "RpcAddress",
            "RpcPort",
            "DataRegionNum",
            "SchemaRegionNum"
        ]
    );
    assert_eq!(datanodes.rows.len(), 1, "{datanodes:?}");
    assert_eq!(cell(&datanodes, 0, "NodeID"), Some(data_node_id.clone()));
    assert_eq!(cell(&datanodes, 0, "Status").as_deref(), Some("Running"));
    assert_eq!(
        cell(&datanodes, 0, "RpcAddress"),
        Some(server.address().ip().to_string()),
        "{datanodes:?}"
    );
    assert_eq!(
        cell(&datanodes, 0, "RpcPort"),
        Some(server.address().port().to_string()),
        "the port clients actually reach: {datanodes:?}"
    );

    let regions = sql(&mut client, "SHOW REGIONS");
    assert_eq!(
        regions.column_names,
        [
            "RegionId",
            "Type",
            "Status",
            "Database",
            "SeriesSlotNum",
            "TimeSlotNum",
            "DataNodeId",
            "RpcAddress",
            "RpcPort",
            "InternalAddress",
            "Role",
            "CreateTime",
            "TsFileSize",
            "InSync"
        ]
    );
    for database in ["root.t", "root.auto"] {
        let rows = rows_where(&regions, "Database", database);
        let data = rows
            .iter()
            .filter(|row| cell(&regions, **row, "Type").as_deref() == Some("DataRegion"))
            .count();
        let schema = rows
            .iter()
            .filter(|row| cell(&regions, **row, "Type").as_deref() == Some("SchemaRegion"))
            .count();
        assert!(data >= 1 && schema >= 1, "{database}: {regions:?}");
    }
    for row in 0..regions.rows.len() {
        assert_eq!(
            cell(&regions, row, "DataNodeId"),
            Some(data_node_id.clone()),
            "{regions:?}"
        );
        assert_eq!(
            cell(&regions, row, "Status").as_deref(),
            Some("Running"),
            "{regions:?}"
        );
        // One replica per region in a standalone server: it leads.
        assert_eq!(
            cell(&regions, row, "Role").as_deref(),
            Some("Leader"),
            "{regions:?}"
        );
        assert_eq!(
            cell(&regions, row, "RpcPort"),
            Some(server.address().port().to_string()),
            "{regions:?}"
        );
    }
    // Region ids are unique.
    let mut ids: Vec<Option<String>> = (0..regions.rows.len())
        .map(|row| cell(&regions, row, "RegionId"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), regions.rows.len(), "{regions:?}");

    for bad in [
        "SELEC * FROM root.t",
        "CREATE DATABASE",
        "SHOW",
        "COUNT TIMESERIES root.((",
    ] {
        let error = client
            .execute_sql(bad)
            .expect_err("a malformed statement succeeded");
        assert_eq!(
            error.status_code(),
            Some(StatusCode::SQL_PARSE_ERROR),
            "{bad}: {error}"
        );
    }
    client.ping().expect("usable after parse errors");
}

#[test]
fn admin_sql_one_shard() {
    admin_statements(1, false);
}

#[test]
fn admin_sql_two_shards() {
    admin_statements(2, false);
}

/// `--rpc-port 0`: the views must report the port the server bound, not 0.
#[test]
fn admin_sql_with_a_kernel_chosen_port() {
    admin_statements(2, true);
}

/// The region directories of a server's data regions.
fn region_dirs(server: &TestServer) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(server.data_dir().join("datanode").join("data")) else {
        return Vec::new();
    };
    entries.flatten().map(|e| e.path()).collect()
}

#[test]
fn delete_database_drops_its_regions_and_data() {
    let server = TestServer::start(server_options!().cores(2)).expect("start");
    let mut client = server.client().expect("client");
    insert_some(&mut client, "root.gone.d1", &[("s1", DataType::Double)]);
    insert_some(&mut client, "root.kept.d1", &[("s1", DataType::Double)]);
    client.flush(Vec::new()).expect("flush");
    let before = region_dirs(&server);
    assert!(before.len() >= 2, "{before:?}");

    sql(&mut client, "DELETE DATABASE root.gone");
    let after = region_dirs(&server);
    assert_eq!(
        after.len(),
        before.len() - 1,
        "one region removed: {before:?} -> {after:?}"
    );
    let databases = sql(&mut client, "SHOW DATABASES");
    assert!(rows_where(&databases, "Database", "root.gone").is_empty());
    assert_eq!(rows_where(&databases, "Database", "root.kept").len(), 1);
    // The series went with its database: IoTDB answers an empty result with its header.
    let gone = client
        .execute_sql("SELECT s1 FROM root.gone.d1")
        .expect("a query matching nothing is not an error");
    assert_eq!(gone.column_names, ["Time"]);
    assert!(gone.rows.is_empty());

    // Writing the same device again starts from nothing.
    insert_some(&mut client, "root.gone.d1", &[("s1", DataType::Int64)]);
    let count = sql(&mut client, "SELECT count(s1) FROM root.gone.d1");
    assert_eq!(
        cell(&count, 0, "count(root.gone.d1.s1)").as_deref(),
        Some("1")
    );
    let kept = sql(&mut client, "SELECT count(s1) FROM root.kept.d1");
    assert_eq!(
        cell(&kept, 0, "count(root.kept.d1.s1)").as_deref(),
        Some("1")
    );
}
