//! Statement-level tests: one per statement form and its variants, error
//! positions and messages, and property tests that no input panics.

use super::*;
use proptest::prelude::*;

fn ok(sql: &str) -> Statement {
    match parse(sql) {
        Ok(statement) => statement,
        Err(error) => panic!("{sql:?} failed: {error}"),
    }
}

fn err(sql: &str) -> ParseError {
    match parse(sql) {
        Ok(statement) => panic!("{sql:?} parsed as {statement:?}"),
        Err(error) => error,
    }
}

fn path(text: &str) -> Path {
    Path {
        nodes: text.split('.').map(str::to_string).collect(),
    }
}

fn pattern(text: &str) -> PathPattern {
    PathPattern::new(
        text.split('.')
            .map(|node| match node {
                "*" => PathNode::OneLevel,
                "**" => PathNode::MultiLevel,
                name => PathNode::Name(name.to_string()),
            })
            .collect(),
    )
}

fn select(sql: &str) -> Select {
    match ok(sql) {
        Statement::Select(select) => select,
        other => panic!("not a select: {other:?}"),
    }
}

fn range(sql: &str) -> (i64, i64) {
    let filter = select(sql).time_filter.expect("a WHERE clause");
    let range = filter.resolve(1_000_000);
    (range.start_ms, range.end_ms)
}

// ----- databases ------------------------------------------------------------

#[test]
fn create_database_plain_and_case_insensitive() {
    let expected = Statement::CreateDatabase {
        database: path("root.sg"),
        attributes: DatabaseAttributes::default(),
    };
    assert_eq!(ok("CREATE DATABASE root.sg"), expected);
    assert_eq!(ok("create database ROOT.sg;"), expected);
    assert_eq!(ok("set storage group to root.sg"), expected);
    assert_eq!(ok("CREATE STORAGE GROUP root.sg"), expected);
}

#[test]
fn create_database_with_attributes() {
    let statement = ok(
        "CREATE DATABASE root.sg WITH TTL=3600000, TIME_PARTITION_INTERVAL=86400000, \
         SCHEMA_REGION_GROUP_NUM=1, DATA_REGION_GROUP_NUM=4, DATA_REPLICATION_FACTOR=2",
    );
    assert_eq!(
        statement,
        Statement::CreateDatabase {
            database: path("root.sg"),
            attributes: DatabaseAttributes {
                ttl: Some(Ttl::Millis(3_600_000)),
                time_partition_interval_ms: Some(86_400_000),
                schema_region_group_num: Some(1),
                data_region_group_num: Some(4),
                schema_replication_factor: None,
                data_replication_factor: Some(2),
            },
        }
    );
    let Statement::CreateDatabase { attributes, .. } = ok("create database root.a with ttl=INF")
    else {
        unreachable!()
    };
    assert_eq!(attributes.ttl, Some(Ttl::Infinite));
}

#[test]
fn create_database_rejects_bad_attributes() {
    assert!(
        err("CREATE DATABASE root.sg WITH TTL=1, TTL=2")
            .to_string()
            .contains("given twice")
    );
    assert!(
        err("CREATE DATABASE root.sg WITH DATA_REGION_GROUP_NUM=0")
            .to_string()
            .contains("positive")
    );
    let error = err("CREATE DATABASE root.sg WITH COLOR=1");
    assert!(
        error
            .to_string()
            .starts_with("line 1:29 mismatched input 'COLOR' expecting {TTL,")
    );
    assert!(
        err("CREATE DATABASE root")
            .to_string()
            .contains("at least one node")
    );
    assert!(
        err("CREATE DATABASE root.*")
            .to_string()
            .contains("wildcards")
    );
}

#[test]
fn alter_database() {
    assert_eq!(
        ok("ALTER DATABASE root.sg WITH DATA_REGION_GROUP_NUM=8"),
        Statement::AlterDatabase {
            database: path("root.sg"),
            attributes: DatabaseAttributes {
                data_region_group_num: Some(8),
                ..DatabaseAttributes::default()
            },
        }
    );
}

#[test]
fn show_databases_variants() {
    assert_eq!(
        ok("SHOW DATABASES"),
        Statement::ShowDatabases {
            details: false,
            pattern: None
        }
    );
    assert_eq!(
        ok("show databases details root.**"),
        Statement::ShowDatabases {
            details: true,
            pattern: Some(pattern("root.**"))
        }
    );
    assert_eq!(
        ok("SHOW STORAGE GROUP root.sg"),
        Statement::ShowDatabases {
            details: false,
            pattern: Some(pattern("root.sg"))
        }
    );
}

#[test]
fn delete_and_drop_databases() {
    let expected = Statement::DeleteDatabases {
        patterns: vec![pattern("root.a"), pattern("root.b.**")],
    };
    assert_eq!(ok("DELETE DATABASE root.a, root.b.**"), expected);
    assert_eq!(ok("drop database root.a, root.b.**"), expected);
    assert_eq!(ok("DELETE STORAGE GROUP root.a,root.b.**"), expected);
}

#[test]
fn count_databases() {
    assert_eq!(
        ok("COUNT DATABASES"),
        Statement::CountDatabases { pattern: None }
    );
    assert_eq!(
        ok("count databases root.*"),
        Statement::CountDatabases {
            pattern: Some(pattern("root.*"))
        }
    );
}

// ----- timeseries and devices ----------------------------------------------

#[test]
fn create_timeseries_with_attributes() {
    let expected = Statement::CreateTimeseries {
        path: path("root.sg.d1.s1"),
        spec: MeasurementSpec {
            data_type: DataType::Double,
            encoding: Some(Encoding::Gorilla),
            compressor: Some(Compressor::Lz4),
        },
    };
    assert_eq!(
        ok(
            "CREATE TIMESERIES root.sg.d1.s1 WITH DATATYPE=DOUBLE, ENCODING=GORILLA, COMPRESSOR=LZ4"
        ),
        expected
    );
    assert_eq!(
        ok(
            "create timeseries root.sg.d1.s1 with datatype=double,encoding=gorilla,compression=lz4;"
        ),
        expected
    );
    assert_eq!(
        ok("CREATE TIMESERIES root.sg.d1.s1 DOUBLE ENCODING=GORILLA COMPRESSOR=LZ4"),
        expected
    );
}

#[test]
fn create_timeseries_short_form() {
    assert_eq!(
        ok("CREATE TIMESERIES root.sg.d1.s1 DOUBLE"),
        Statement::CreateTimeseries {
            path: path("root.sg.d1.s1"),
            spec: MeasurementSpec {
                data_type: DataType::Double,
                encoding: None,
                compressor: None,
            },
        }
    );
    assert_eq!(
        ok("CREATE TIMESERIES root.sg.d1.s1 WITH DATATYPE=BOOLEAN"),
        Statement::CreateTimeseries {
            path: path("root.sg.d1.s1"),
            spec: MeasurementSpec {
                data_type: DataType::Boolean,
                encoding: None,
                compressor: None,
            },
        }
    );
}

#[test]
fn create_timeseries_errors() {
    let error = err("CREATE TIMESERIES root.sg.d1.s1 WITH DATATYPE=DUBLE");
    assert_eq!(error.to_string(), "line 1:46 unknown data type 'DUBLE'");
    let error = err("CREATE TIMESERIES root.sg.d1.s1");
    assert_eq!(
        error.to_string(),
        "line 1:31 mismatched input '<EOF>' expecting {WITH, DATATYPE, a data type}"
    );
    assert!(
        err("CREATE TIMESERIES root.sg.s1 DOUBLE ENCODING=RLE ENCODING=PLAIN")
            .to_string()
            .contains("given twice")
    );
    assert!(
        err("CREATE TIMESERIES root.s1 DOUBLE")
            .to_string()
            .contains("needs a database")
    );
}

#[test]
fn create_aligned_timeseries() {
    assert_eq!(
        ok(
            "CREATE ALIGNED TIMESERIES root.sg.d1(s1 INT32, s2 FLOAT ENCODING=RLE COMPRESSOR=SNAPPY)"
        ),
        Statement::CreateAlignedTimeseries {
            device: path("root.sg.d1"),
            measurements: vec![
                (
                    "s1".to_string(),
                    MeasurementSpec {
                        data_type: DataType::Int32,
                        encoding: None,
                        compressor: None,
                    }
                ),
                (
                    "s2".to_string(),
                    MeasurementSpec {
                        data_type: DataType::Float,
                        encoding: Some(Encoding::Rle),
                        compressor: Some(Compressor::Snappy),
                    }
                ),
            ],
        }
    );
    assert!(
        err("CREATE ALIGNED TIMESERIES root.sg.d1(s1 INT32, s1 FLOAT)")
            .to_string()
            .contains("given twice")
    );
    assert!(
        err("CREATE ALIGNED TIMESERIES root.sg.d1(s1 INT32")
            .to_string()
            .contains("'<EOF>'")
    );
}

#[test]
fn show_and_count_timeseries_and_devices() {
    assert_eq!(
        ok("SHOW TIMESERIES"),
        Statement::ShowTimeseries { pattern: None }
    );
    assert_eq!(
        ok("show timeseries root.sg.**"),
        Statement::ShowTimeseries {
            pattern: Some(pattern("root.sg.**"))
        }
    );
    assert_eq!(ok("SHOW DEVICES"), Statement::ShowDevices { pattern: None });
    assert_eq!(
        ok("SHOW DEVICES root.sg.*"),
        Statement::ShowDevices {
            pattern: Some(pattern("root.sg.*"))
        }
    );
    assert_eq!(
        ok("COUNT TIMESERIES"),
        Statement::CountTimeseries { pattern: None }
    );
    assert_eq!(
        ok("COUNT TIMESERIES root.**.s1"),
        Statement::CountTimeseries {
            pattern: Some(pattern("root.**.s1"))
        }
    );
    assert_eq!(
        ok("count devices root.sg.**"),
        Statement::CountDevices {
            pattern: Some(pattern("root.sg.**"))
        }
    );
}

#[test]
fn delete_timeseries() {
    let expected = Statement::DeleteTimeseries {
        patterns: vec![pattern("root.sg.d1.s1"), pattern("root.sg.*.s2")],
    };
    assert_eq!(
        ok("DELETE TIMESERIES root.sg.d1.s1, root.sg.*.s2"),
        expected
    );
    assert_eq!(ok("DROP TIMESERIES root.sg.d1.s1, root.sg.*.s2"), expected);
}

// ----- paths ------------------------------------------------------------------

#[test]
fn backquoted_and_digit_led_node_names() {
    assert_eq!(
        ok("SHOW TIMESERIES root.`my db`.`1`.1d.`a``b`"),
        Statement::ShowTimeseries {
            pattern: Some(PathPattern::new(vec![
                PathNode::Name("root".into()),
                PathNode::Name("my db".into()),
                PathNode::Name("1".into()),
                PathNode::Name("1d".into()),
                PathNode::Name("a`b".into()),
            ]))
        }
    );
    assert!(
        err("SHOW TIMESERIES root.``")
            .to_string()
            .contains("expecting {a node name")
    );
    assert!(
        err("SHOW TIMESERIES root.sg.1.5")
            .to_string()
            .contains("'1.5'")
    );
}

// ----- INSERT -----------------------------------------------------------------

#[test]
fn insert_single_row() {
    assert_eq!(
        ok("INSERT INTO root.sg.d1(time, s1, s2) VALUES (1700000000000, 1.5, 'on')"),
        Statement::Insert(Insert {
            device: path("root.sg.d1"),
            aligned: false,
            measurements: vec!["s1".into(), "s2".into()],
            rows: vec![InsertRow {
                time: TimeExpr::Absolute(1_700_000_000_000),
                values: vec![Literal::Float(1.5), Literal::Text("on".into())],
            }],
        })
    );
}

#[test]
fn insert_values_of_every_kind() {
    let Statement::Insert(insert) = ok(
        "insert into root.sg.d1(timestamp, a, b, c, d, e, f, g, h, i) \
         values (-5, 42, -7, +3.25, 1e3, -2.5E-2, \"dq\", TRUE, false, NULL)",
    ) else {
        unreachable!()
    };
    assert_eq!(insert.rows[0].time, TimeExpr::Absolute(-5));
    assert_eq!(
        insert.rows[0].values,
        vec![
            Literal::Integer(42),
            Literal::Integer(-7),
            Literal::Float(3.25),
            Literal::Float(1000.0),
            Literal::Float(-0.025),
            Literal::Text("dq".into()),
            Literal::Boolean(true),
            Literal::Boolean(false),
            Literal::Null,
        ]
    );
    let Statement::Insert(insert) =
        ok("INSERT INTO root.sg.d1(time,s1) VALUES(-9223372036854775808, 'it''s')")
    else {
        unreachable!()
    };
    assert_eq!(insert.rows[0].time, TimeExpr::Absolute(i64::MIN));
    assert_eq!(insert.rows[0].values, vec![Literal::Text("it's".into())]);
}

#[test]
fn insert_multiple_rows_iso_time_and_aligned() {
    let Statement::Insert(insert) = ok("INSERT INTO root.sg.d1(time, s1) ALIGNED VALUES \
         (2023-11-14T22:13:20, 1), (2023-11-14T22:13:21.5Z, 2), (now(), 3)")
    else {
        unreachable!()
    };
    assert!(insert.aligned);
    let times: Vec<TimeExpr> = insert.rows.iter().map(|row| row.time).collect();
    assert_eq!(
        times,
        vec![
            TimeExpr::Absolute(1_700_000_000_000),
            TimeExpr::Absolute(1_700_000_001_500),
            TimeExpr::Now { offset_ms: 0 },
        ]
    );
}

#[test]
fn insert_without_time_column_uses_now() {
    let Statement::Insert(insert) = ok("INSERT INTO root.sg.d1(s1) VALUES (1)") else {
        unreachable!()
    };
    assert_eq!(insert.rows[0].time, TimeExpr::Now { offset_ms: 0 });
}

#[test]
fn insert_errors() {
    let error = err("INSERT INTO root.sg.d1(time, s1, s2) VALUES (1, 2)");
    assert_eq!(
        error.to_string(),
        "line 1:44 the row has 1 values but 2 measurements were named"
    );
    assert!(
        err("INSERT INTO root.sg.d1(s1, time) VALUES (1, 2)")
            .to_string()
            .contains("time column must come first")
    );
    assert!(
        err("INSERT INTO root.sg.d1(time, s1) VALUES (1, 99999999999999999999)")
            .to_string()
            .contains("INT64 range")
    );
    assert!(
        err("INSERT INTO root.sg.d1(time, s1) VALUES (1, 1e999)")
            .to_string()
            .contains("out of range")
    );
    assert!(
        err("INSERT INTO root.sg.d1(time, s1) VALUES (1.5, 1)")
            .to_string()
            .contains("integer number of milliseconds")
    );
    assert!(
        err("INSERT INTO root.sg.*(time, s1) VALUES (1, 1)")
            .to_string()
            .contains("wildcards")
    );
    assert!(
        err("INSERT INTO root.sg.d1(time, s1, s1) VALUES (1, 1, 1)")
            .to_string()
            .contains("given twice")
    );
    assert!(
        err("INSERT INTO root.sg.d1(time) VALUES (1)")
            .to_string()
            .contains("at least one")
    );
}

// ----- SELECT -----------------------------------------------------------------

#[test]
fn select_raw_columns() {
    assert_eq!(
        select("SELECT s1, s2 FROM root.sg.d1"),
        Select {
            projection: Projection::Raw(vec![pattern("s1"), pattern("s2")]),
            aliases: vec![None, None],
            from: vec![pattern("root.sg.d1")],
            time_filter: None,
            value_filter: None,
            having: None,
            fill: None,
            align_by_device: false,
            slimit: None,
            soffset: None,
            group_by: None,
            group_by_level: None,
            order: TimeOrder::Ascending,
            last_order: None,
            limit: None,
            offset: None,
        }
    );
}

#[test]
fn select_wildcards_and_multiple_from_paths() {
    let query = select("select *, d1.**, *.s1 from root.sg.*, root.other.**");
    assert_eq!(
        query.projection,
        Projection::Raw(vec![pattern("*"), pattern("d1.**"), pattern("*.s1")])
    );
    assert_eq!(
        query.from,
        vec![pattern("root.sg.*"), pattern("root.other.**")]
    );
    let series = query.series_patterns();
    assert_eq!(series.len(), 6);
    assert!(series.contains(&pattern("root.other.**.*.s1")));
    assert!(series[0].matches("root.sg.d1.s1"));
}

#[test]
fn select_with_where_limit_offset_and_order() {
    let query = select(
        "SELECT s1 FROM root.sg.d1 WHERE time >= 10 AND time < 20 ORDER BY TIME DESC LIMIT 5 OFFSET 2",
    );
    assert_eq!(query.limit, Some(5));
    assert_eq!(query.offset, Some(2));
    assert_eq!(query.order, TimeOrder::Descending);
    assert_eq!(
        query.time_filter,
        Some(TimeFilter {
            comparisons: vec![
                (Comparison::GreaterEqual, TimeExpr::Absolute(10)),
                (Comparison::Less, TimeExpr::Absolute(20)),
            ]
        })
    );
    let query = select("SELECT s1 FROM root.sg.d1 OFFSET 3 LIMIT 4");
    assert_eq!((query.limit, query.offset), (Some(4), Some(3)));
}

#[test]
fn time_predicates_of_every_shape() {
    assert_eq!(
        range("select s from root.a.d where time > 5"),
        (6, i64::MAX)
    );
    assert_eq!(
        range("select s from root.a.d where timestamp <= 5"),
        (i64::MIN, 6)
    );
    assert_eq!(range("select s from root.a.d where time = 5"), (5, 6));
    assert_eq!(range("select s from root.a.d where time == 5"), (5, 6));
    assert_eq!(
        range("select s from root.a.d where time between 5 and 9"),
        (5, 10)
    );
    assert_eq!(
        range("select s from root.a.d where (time >= 1 and (time < 9)) and time > 2"),
        (3, 9)
    );
    assert_eq!(
        range(
            "select s from root.a.d where time >= 2023-11-14T22:13:20 and time < '2023-11-14T22:13:21+00:00'"
        ),
        (1_700_000_000_000, 1_700_000_001_000)
    );
    assert_eq!(
        range("select s from root.a.d where time >= 2023-11-15T06:13:20.250+08:00"),
        (1_700_000_000_250, i64::MAX)
    );
    // now() is resolved against the 1_000_000 ms clock used by `range`.
    assert_eq!(
        range("select s from root.a.d where time > now() - 1h30m and time <= now() + 1s"),
        (1_000_000 - 5_400_000 + 1, 1_000_000 + 1_000 + 1)
    );
}

#[test]
fn time_predicate_errors() {
    // DELETE takes a time range only; a SELECT's WHERE is a general expression.
    assert!(
        err("delete from root.a.d.s where time > 1 or time < 0")
            .to_string()
            .contains("OR in a time filter")
    );
    assert!(
        err("delete from root.a.d.s where time != 1")
            .to_string()
            .contains("'!='")
    );
    assert!(
        err("delete from root.a.d.s where s1 > 1")
            .to_string()
            .starts_with("line 1:29 mismatched input 's1' expecting {TIME, TIMESTAMP, '('}")
    );
    assert!(
        err("select s from root.a.d where time > 2023-13-01")
            .to_string()
            .contains("month 13")
    );
    assert!(
        err("select s from root.a.d where time > now() - 1mo")
            .to_string()
            .contains("not supported")
    );
    let deep = format!(
        "select s from root.a.d where {}time > 1{}",
        "(".repeat(100),
        ")".repeat(100)
    );
    assert!(err(&deep).to_string().contains("nests deeper"));
}

#[test]
fn select_aggregates_with_aliases() {
    let query = select(
        "SELECT count(s1), avg(s1), sum(s1), min_value(s1), max_value(s1), first_value(s1), \
         last_value(s1), MIN(s2), max(s2), First(s2), last(s2), count(*) FROM root.sg.d1",
    );
    let functions: Vec<AggregateFunction> = match query.projection {
        Projection::Aggregates(aggregates) => aggregates.iter().map(|item| item.function).collect(),
        other => panic!("{other:?}"),
    };
    use AggregateFunction::*;
    assert_eq!(
        functions,
        vec![
            Count, Avg, Sum, MinValue, MaxValue, FirstValue, LastValue, MinValue, MaxValue,
            FirstValue, LastValue, Count
        ]
    );
}

#[test]
fn select_group_by_time_windows() {
    let query = select(
        "SELECT avg(s1) FROM root.sg.d1 WHERE time < 100 GROUP BY ([0, 2023-11-14T22:13:20), 1h)",
    );
    assert_eq!(
        query.group_by,
        Some(GroupByTime {
            range: Some(GroupByRange {
                start: TimeExpr::Absolute(0),
                end: TimeExpr::Absolute(1_700_000_000_000),
                left_closed: true,
            }),
            interval_ms: 3_600_000,
            sliding_step_ms: None,
            months: None,
        })
    );
    let query = select("SELECT count(s1) FROM root.sg.d1 GROUP BY ((0, 100], 10ms, 5ms)");
    let group_by = query.group_by.unwrap();
    assert!(!group_by.range.unwrap().left_closed);
    assert_eq!(
        (group_by.interval_ms, group_by.sliding_step_ms),
        (10, Some(5))
    );
    let query = select("SELECT sum(s1) FROM root.sg.d1 GROUP BY (1d12h)");
    assert_eq!(query.group_by.unwrap().interval_ms, 129_600_000);
    let query =
        select("SELECT sum(s1) FROM root.sg.d1 GROUP BY ([now() - 1w, now()), 1m) LIMIT 10");
    assert_eq!(query.limit, Some(10));
}

#[test]
fn select_group_by_errors() {
    assert!(
        err("SELECT s1 FROM root.sg.d1 GROUP BY ([0, 10), 1ms)")
            .to_string()
            .contains("needs aggregate")
    );
    assert!(
        err("SELECT count(s1) FROM root.sg.d1 GROUP BY ([0, 10), 0ms)")
            .to_string()
            .contains("positive")
    );
    assert!(
        err("SELECT count(s1) FROM root.sg.d1 GROUP BY ([0, 10], 1ms)")
            .to_string()
            .contains("expecting ')'")
    );
}

#[test]
fn select_last() {
    let query = select("SELECT LAST s1, s2 FROM root.sg.d1");
    assert_eq!(
        query.projection,
        Projection::Last(vec![pattern("s1"), pattern("s2")])
    );
    let query = select("select last * from root.sg.** where time > 5");
    assert_eq!(query.projection, Projection::Last(vec![pattern("*")]));
    assert!(query.time_filter.is_some());
    // `last(s1)` is the aggregate, not a last query.
    let query = select("select last(s1) from root.sg.d1");
    assert!(matches!(query.projection, Projection::Aggregates(_)));
}

/// IoTDB sorts a LAST result by any of its columns and pages its rows; SLIMIT and SOFFSET
/// it refuses there, and sorting by a LAST column elsewhere.
#[test]
fn select_last_order_and_paging() {
    let query = select("SELECT LAST * FROM root.sg.** ORDER BY TIMESERIES DESC LIMIT 2 OFFSET 1");
    assert_eq!(
        query.last_order,
        Some(LastOrder {
            key: LastSortKey::Timeseries,
            descending: true
        })
    );
    assert_eq!(query.order, TimeOrder::Ascending);
    assert_eq!((query.limit, query.offset), (Some(2), Some(1)));
    for (sql, key) in [
        (
            "SELECT LAST s1 FROM root.sg.d1 ORDER BY TIME",
            LastSortKey::Time,
        ),
        (
            "SELECT LAST s1 FROM root.sg.d1 ORDER BY value ASC",
            LastSortKey::Value,
        ),
        (
            "SELECT LAST s1 FROM root.sg.d1 ORDER BY DataType",
            LastSortKey::DataType,
        ),
    ] {
        let order = select(sql).last_order.expect(sql);
        assert_eq!((order.key, order.descending), (key, false), "{sql}");
    }
    assert!(
        err("SELECT LAST s1 FROM root.sg.d1 SLIMIT 1")
            .to_string()
            .contains("SLIMIT and SOFFSET can not be used in LastQuery")
    );
    assert!(
        err("SELECT s1 FROM root.sg.d1 ORDER BY TIMESERIES")
            .to_string()
            .contains("sorts only a SELECT LAST result")
    );
    assert_eq!(select("SELECT s1 FROM root.sg.d1").last_order, None);
}

#[test]
fn select_errors() {
    let error = err("SELECT s1, s2 FORM root.sg.d1");
    assert_eq!(
        error.to_string(),
        "line 1:14 mismatched input 'FORM' expecting FROM"
    );
    assert_eq!((error.offset, error.line, error.column), (14, 1, 14));
    assert_eq!(error.status_code().code(), 700);
    assert!(
        err("SELECT s1, count(s1) FROM root.sg.d1")
            .to_string()
            .contains("hybrid")
    );
    assert!(
        err("SELECT median(s1) FROM root.sg.d1")
            .to_string()
            .contains("unknown function 'median'")
    );
    assert!(
        err("SELECT root.sg.d1.s1 FROM root.sg.d1")
            .to_string()
            .contains("must not start with root")
    );
    assert_eq!(
        err("SELECT s1 FROM sg.d1").to_string(),
        "line 1:15 mismatched input 'sg' expecting ROOT"
    );
    assert_eq!(
        err("SELECT s1 FROM root.sg.d1 LIMIT -1").to_string(),
        "line 1:32 mismatched input '-' expecting a row count"
    );
}

#[test]
fn error_positions_on_later_lines() {
    let error = err("SELECT s1\nFROM root.sg.d1\nWHERE time > > 5");
    assert_eq!((error.line, error.column), (3, 13));
    assert_eq!(
        error.to_string(),
        "line 3:13 mismatched input '>' expecting an expression"
    );
    assert_eq!(
        err("SHOW DATABASES extra").to_string(),
        "line 1:15 extraneous input 'extra' expecting <EOF>"
    );
    assert_eq!(
        err("SELEC s1 FROM root.sg").to_string(),
        "line 1:0 mismatched input 'SELEC' expecting \
         {CREATE, ALTER, SET, UNSET, SHOW, COUNT, DELETE, DROP, INSERT, SELECT, FLUSH, MIGRATE, REMOVE}"
    );
    assert_eq!(
        err("").to_string(),
        "line 1:0 mismatched input '<EOF>' expecting \
         {CREATE, ALTER, SET, UNSET, SHOW, COUNT, DELETE, DROP, INSERT, SELECT, FLUSH, MIGRATE, REMOVE}"
    );
}

// ----- DELETE FROM ----------------------------------------------------------

#[test]
fn delete_data() {
    assert_eq!(
        ok("DELETE FROM root.sg.d1.s1, root.sg.d1.s2 WHERE time < 100"),
        Statement::DeleteData {
            patterns: vec![pattern("root.sg.d1.s1"), pattern("root.sg.d1.s2")],
            time_filter: Some(TimeFilter {
                comparisons: vec![(Comparison::Less, TimeExpr::Absolute(100))]
            }),
        }
    );
    let Statement::DeleteData { time_filter, .. } =
        ok("delete from root.sg.d1.* where time >= 10 and time <= 20")
    else {
        unreachable!()
    };
    assert_eq!(
        time_filter.unwrap().resolve(0),
        TimeRange {
            start_ms: 10,
            end_ms: 21
        }
    );
    assert_eq!(
        ok("DELETE FROM root.sg.**"),
        Statement::DeleteData {
            patterns: vec![pattern("root.sg.**")],
            time_filter: None
        }
    );
    assert!(
        err("DROP FROM root.sg.d1.s1")
            .to_string()
            .contains("expecting {DATABASE, STORAGE, TIMESERIES}")
    );
}

// ----- TTL --------------------------------------------------------------------

#[test]
fn ttl_statements() {
    assert_eq!(
        ok("SET TTL TO root.sg 3600000"),
        Statement::SetTtl {
            path: pattern("root.sg"),
            ttl: Ttl::Millis(3_600_000)
        }
    );
    assert_eq!(
        ok("set ttl to root.sg.** inf"),
        Statement::SetTtl {
            path: pattern("root.sg.**"),
            ttl: Ttl::Infinite
        }
    );
    let expected = Statement::UnsetTtl {
        path: pattern("root.sg"),
    };
    assert_eq!(ok("UNSET TTL FROM root.sg"), expected);
    assert_eq!(ok("UNSET TTL TO root.sg"), expected);
    assert_eq!(ok("SHOW ALL TTL"), Statement::ShowAllTtl);
    assert_eq!(
        ok("SHOW TTL ON root.a, root.b"),
        Statement::ShowTtlOn {
            patterns: vec![pattern("root.a"), pattern("root.b")]
        }
    );
    assert!(
        err("SET TTL TO root.sg -1")
            .to_string()
            .contains("expecting {an integer, INF}")
    );
}

// ----- cluster ----------------------------------------------------------------

#[test]
fn cluster_statements() {
    assert_eq!(
        ok("SHOW CLUSTER"),
        Statement::ShowCluster { details: false }
    );
    assert_eq!(
        ok("show cluster details;"),
        Statement::ShowCluster { details: true }
    );
    assert_eq!(ok("SHOW DATANODES"), Statement::ShowDataNodes);
    assert_eq!(ok("SHOW CONFIGNODES"), Statement::ShowConfigNodes);
    assert_eq!(ok("SHOW VARIABLES"), Statement::ShowVariables);
    assert_eq!(ok("SHOW VERSION"), Statement::ShowVersion);
}

#[test]
fn show_regions_variants() {
    assert_eq!(
        ok("SHOW REGIONS"),
        Statement::ShowRegions {
            kind: RegionKind::All,
            databases: vec![],
            node_ids: vec![]
        }
    );
    assert_eq!(
        ok("SHOW DATA REGIONS OF DATABASE root.a, root.b ON NODEID 1, 3"),
        Statement::ShowRegions {
            kind: RegionKind::Data,
            databases: vec![pattern("root.a"), pattern("root.b")],
            node_ids: vec![1, 3]
        }
    );
    assert_eq!(
        ok("show schema regions on nodeid 2"),
        Statement::ShowRegions {
            kind: RegionKind::Schema,
            databases: vec![],
            node_ids: vec![2]
        }
    );
    assert_eq!(
        ok("SHOW REGIONS OF STORAGE GROUP root.a"),
        Statement::ShowRegions {
            kind: RegionKind::All,
            databases: vec![pattern("root.a")],
            node_ids: vec![]
        }
    );
    assert!(
        err("SHOW REGIONS ON NODEID 99999999999")
            .to_string()
            .contains("node id")
    );
}

#[test]
fn flush_statements() {
    assert_eq!(ok("FLUSH"), Statement::Flush { databases: vec![] });
    assert_eq!(
        ok("flush root.a, root.b"),
        Statement::Flush {
            databases: vec![path("root.a"), path("root.b")]
        }
    );
}

#[test]
fn scripts_split_on_semicolons() {
    let statements = parse_script("SHOW CLUSTER; ; show databases;\nSHOW VERSION").unwrap();
    assert_eq!(
        statements,
        vec![
            Statement::ShowCluster { details: false },
            Statement::ShowDatabases {
                details: false,
                pattern: None
            },
            Statement::ShowVersion
        ]
    );
    assert_eq!(parse_script("  ").unwrap(), vec![]);
    assert!(parse_script("SHOW CLUSTER SHOW VERSION").is_err());
}

#[test]
fn displayed_paths_reparse_to_the_same_pattern() {
    let original = PathPattern::new(vec![
        PathNode::Name("root".into()),
        PathNode::Name("a b".into()),
        PathNode::Name("select".into()),
        PathNode::MultiLevel,
        PathNode::Name("x`y".into()),
    ]);
    assert_eq!(
        ok(&format!("SHOW TIMESERIES {original}")),
        Statement::ShowTimeseries {
            pattern: Some(original)
        }
    );
}

// ----- robustness -------------------------------------------------------------

/// Fragments that make up plausible and implausible statements.
const FRAGMENTS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "time",
    "timestamp",
    "AND",
    "OR",
    "BETWEEN",
    "GROUP",
    "BY",
    "LIMIT",
    "OFFSET",
    "ORDER",
    "DESC",
    "LAST",
    "count",
    "avg",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "*",
    "**",
    ";",
    "root",
    "sg",
    "d1",
    "s1",
    "`q`",
    "'str'",
    "\"s\"",
    "1",
    "-",
    "+",
    "1.5",
    "1e-3",
    "1h30m",
    "0ms",
    "2023-11-14T22:13:20",
    "now",
    "now()",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "!=",
    "CREATE",
    "DATABASE",
    "TIMESERIES",
    "ALIGNED",
    "WITH",
    "DATATYPE",
    "DOUBLE",
    "ENCODING",
    "INSERT",
    "INTO",
    "VALUES",
    "true",
    "null",
    "DELETE",
    "DROP",
    "SET",
    "UNSET",
    "TTL",
    "TO",
    "INF",
    "SHOW",
    "REGIONS",
    "OF",
    "ON",
    "NODEID",
    "FLUSH",
    "COUNT",
    "DEVICES",
    "99999999999999999999",
    "é",
    "\n",
    "/*",
    "*/",
    "--",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_strings_never_panic(text in "\\PC{0,80}") {
        let _ = parse(&text);
        let _ = parse_script(&text);
    }

    #[test]
    fn random_ascii_never_panics(text in "[ -~\n]{0,80}") {
        let _ = parse(&text);
    }

    #[test]
    fn token_soups_never_panic(
        picks in proptest::collection::vec(0..FRAGMENTS.len(), 0..30),
        separators in proptest::collection::vec(prop_oneof![Just(" "), Just("")], 30),
    ) {
        let mut text = String::new();
        for (pick, separator) in picks.iter().zip(&separators) {
            text.push_str(FRAGMENTS[*pick]);
            text.push_str(separator);
        }
        if let Err(error) = parse(&text) {
            // Positions always point inside the statement.
            prop_assert!(error.offset <= text.len());
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn inserted_integers_round_trip(time in any::<i64>(), value in any::<i64>()) {
        let sql = format!("INSERT INTO root.sg.d1(time, s1) VALUES ({time}, {value})");
        let Statement::Insert(insert) = parse(&sql).unwrap() else { unreachable!() };
        prop_assert_eq!(insert.rows[0].time, TimeExpr::Absolute(time));
        prop_assert_eq!(&insert.rows[0].values, &vec![Literal::Integer(value)]);
    }

    #[test]
    fn inserted_floats_round_trip(value in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
        let sql = format!("INSERT INTO root.sg.d1(time, s1) VALUES (1, {value:e})");
        let Statement::Insert(insert) = parse(&sql).unwrap() else { unreachable!() };
        let parsed = match insert.rows[0].values[0] {
            Literal::Float(parsed) => parsed,
            Literal::Integer(parsed) => parsed as f64,
            ref other => panic!("{other:?}"),
        };
        prop_assert_eq!(parsed, value);
    }
}

// ----- WHERE expressions, HAVING, layout clauses --------------------------------

#[test]
fn value_filters_parse_with_precedence_and_split_off_time() {
    use crate::sql::{CompareOp, Expr};
    let query = select(
        "SELECT s1 FROM root.sg.d1 WHERE time >= 10 AND (s1 > 5 OR NOT s2 <= 1) AND s3 IN (1, 2) \
         AND s4 NOT BETWEEN 1 AND 2 AND s5 LIKE 'a%' AND s6 REGEXP '^b' AND s7 IS NOT NULL",
    );
    assert_eq!(
        query.time_filter.unwrap().comparisons,
        vec![(Comparison::GreaterEqual, TimeExpr::Absolute(10))]
    );
    let conjuncts = query.value_filter.unwrap().conjuncts();
    assert_eq!(conjuncts.len(), 6);
    assert!(matches!(&conjuncts[0], Expr::Or(left, right)
        if matches!(**left, Expr::Compare(CompareOp::Greater, _, _))
            && matches!(**right, Expr::Not(_))));
    assert!(matches!(&conjuncts[1], Expr::In { list, negated: false, .. } if list.len() == 2));
    assert!(matches!(&conjuncts[2], Expr::Between { negated: true, .. }));
    assert!(matches!(&conjuncts[3], Expr::Like { pattern, .. } if pattern == "a%"));
    assert!(matches!(&conjuncts[4], Expr::Regexp { .. }));
    assert!(matches!(&conjuncts[5], Expr::IsNull { negated: true, .. }));
    // Arithmetic binds tighter than comparison, * tighter than +.
    let query = select("SELECT s1 FROM root.sg.d1 WHERE s1 + 2 * s2 > -3 AND time != 5");
    let conjuncts = query.value_filter.unwrap().conjuncts();
    assert!(
        matches!(&conjuncts[0], Expr::Compare(CompareOp::Greater, left, _)
        if matches!(**left, Expr::Arithmetic(crate::sql::ArithmeticOp::Add, _, _)))
    );
    assert!(query.time_filter.is_none());
}

#[test]
fn having_aliases_slimit_and_align_by_device() {
    let query = select(
        "SELECT count(s1) AS c, max_time(s1), extreme(s1) FROM root.sg.* \
         GROUP BY ([0, 10), 5ms) HAVING count(s1) > 1 SLIMIT 2 SOFFSET 1 ALIGN BY DEVICE",
    );
    assert_eq!(query.aliases, vec![Some("c".to_string()), None, None]);
    assert!(query.having.is_some());
    assert_eq!((query.slimit, query.soffset), (Some(2), Some(1)));
    assert!(query.align_by_device);
    assert!(
        err("SELECT s1 FROM root.sg.d1 HAVING s1 > 1")
            .to_string()
            .contains("HAVING")
    );
    assert!(
        err("SELECT s1 FROM root.sg.d1 WHERE s1 >")
            .to_string()
            .contains("expression")
    );
    assert!(
        err("SELECT s1 FROM root.sg.d1 WHERE s1 NOT 5")
            .to_string()
            .contains("extraneous input 'NOT'")
    );
    let deep = format!(
        "select s from root.a.d where {}s > 1{}",
        "(".repeat(100),
        ")".repeat(100)
    );
    assert!(err(&deep).to_string().contains("nests deeper"));
}

#[test]
fn fill_clauses() {
    use crate::sql::Fill;
    assert_eq!(
        select("SELECT s1 FROM root.sg.d1 FILL(previous)").fill,
        Some(Fill::Previous(None))
    );
    assert_eq!(
        select("SELECT s1 FROM root.sg.d1 FILL(PREVIOUS, 2m)").fill,
        Some(Fill::Previous(Some(120_000)))
    );
    for bad in [
        "SELECT s1 FROM root.sg.d1 FILL(LINEAR, 2m)",
        "SELECT s1 FROM root.sg.d1 FILL(1, 2m)",
    ] {
        assert!(
            err(bad)
                .to_string()
                .contains("only FILL(PREVIOUS, duration) takes a time bound"),
            "{bad}"
        );
    }
    assert!(
        err("SELECT s1 FROM root.sg.d1 FILL(PREVIOUS, 0ms)")
            .to_string()
            .contains("positive")
    );
    assert_eq!(
        select("SELECT count(s1) FROM root.sg.d1 GROUP BY ([0, 9), 3ms) FILL(LINEAR) ORDER BY TIME DESC").fill,
        Some(Fill::Linear)
    );
    assert_eq!(
        select("SELECT s1 FROM root.sg.d1 FILL(2.5) LIMIT 3").fill,
        Some(Fill::Constant(Literal::Float(2.5)))
    );
    assert!(
        err("SELECT LAST s1 FROM root.sg.d1 FILL(previous)")
            .to_string()
            .contains("FILL")
    );
    assert!(
        err("SELECT s1 FROM root.sg.d1 FILL(previous")
            .to_string()
            .contains("')'")
    );
}

#[test]
fn calendar_months_add_as_natural_months_and_parse_in_group_by() {
    use crate::sql::time::{add_months_millis, parse_months};
    // From Jan 31 (06:00 UTC): Feb 29 in a leap year, then Mar 31; a year on: Jan 31.
    let jan31 = 1_706_680_800_000;
    assert_eq!(add_months_millis(jan31, 1), Some(1_709_186_400_000));
    assert_eq!(add_months_millis(jan31, 2), Some(1_711_864_800_000));
    assert_eq!(add_months_millis(jan31, 12), Some(1_738_303_200_000));
    // Across a year, and before the epoch.
    assert_eq!(
        add_months_millis(1_703_980_800_000, 2),
        Some(1_709_164_800_000)
    );
    assert_eq!(add_months_millis(-86_400_000, 1), Some(2_592_000_000));
    assert_eq!(add_months_millis(i64::MAX - 1, 1), None);
    assert_eq!(parse_months("3mo"), Some(Ok(3)));
    assert_eq!(parse_months("3h"), None);
    assert!(matches!(parse_months("0mo"), Some(Err(_))));
    let query = select("SELECT count(s) FROM root.a.d GROUP BY ([0, 100), 1mo, 2mo)");
    let group_by = query.group_by.expect("a GROUP BY");
    assert_eq!(
        group_by.months,
        Some(crate::sql::CalendarWindows {
            interval: 1,
            step: 2
        })
    );
    assert!(
        err("SELECT count(s) FROM root.a.d GROUP BY ([0, 100), 1h, 1mo)")
            .to_string()
            .contains("not months")
    );
}

#[test]
fn select_expressions_of_aggregates() {
    let query = select("SELECT count(s1) + 1, sum(s1) / count(*), -max_value(s2) FROM root.sg.d1");
    let Projection::AggregateExpressions(items) = &query.projection else {
        panic!("expressions of aggregates: {:?}", query.projection);
    };
    assert_eq!(items.len(), 3);
    assert!(matches!(items[2], Expr::Negate(_)));
    assert!(query.projection.is_aggregate());
    // A plain aggregate among expressions is its call.
    let query = select("SELECT count(s1), count(s1) * 2 FROM root.sg.d1 GROUP BY LEVEL = 1");
    let Projection::AggregateExpressions(items) = &query.projection else {
        panic!("expressions of aggregates");
    };
    assert_eq!(
        crate::sql::Aggregate::of_call(&items[0]),
        Some(crate::sql::Aggregate {
            function: AggregateFunction::Count,
            path: pattern("s1"),
        })
    );
    // Plain aggregates alone stay plain.
    let query = select("SELECT count(s1), sum(s2) FROM root.sg.d1");
    assert!(matches!(query.projection, Projection::Aggregates(_)));
    // A path outside the aggregates, or mixed items, is IoTDB's hybrid query.
    for hybrid in [
        "SELECT count(s1) + s1 FROM root.sg.d1",
        "SELECT s1, count(s1) + 1 FROM root.sg.d1",
        "SELECT count(s1) + 1, s1 FROM root.sg.d1",
    ] {
        assert!(err(hybrid).to_string().contains("hybrid"), "{hybrid}");
    }
    assert!(
        err("SELECT sum(s1 + 1) FROM root.sg.d1")
            .to_string()
            .contains("one series path")
    );
}
