"""Drives a running server with the released `apache-iotdb` Python client (Thrift RPC).

Run by tests/tests/thrift_python.rs: `python thrift_session_check.py HOST PORT`. Every
check compares exact values; the first failure raises (non-zero exit) with its reason.
"""

import math
import sys

import pandas as pd
from iotdb.Session import Session
from iotdb.SessionPool import PoolConfig, SessionPool
from iotdb.utils.exception import StatementExecutionException
from iotdb.utils.IoTDBConstants import Compressor, TSDataType, TSEncoding
from iotdb.utils.Tablet import Tablet

HOST, PORT = sys.argv[1], int(sys.argv[2])


def rows_of(session, sql):
    """All rows of a query as lists: [time, values...] (time omitted when ignored)."""
    rows = []
    with session.execute_query_statement(sql) as data_set:
        names = data_set.get_column_names()
        while data_set.has_next():
            record = data_set.next()
            values = []
            for field in record.get_fields():
                values.append(None if field.get_data_type() is None else field.get_object_value(field.get_data_type()))
            rows.append([record.get_timestamp()] + values)
    return names, rows


def expect(actual, wanted, what):
    if actual != wanted:
        raise AssertionError(f"{what}: got {actual!r}, wanted {wanted!r}")
    print(f"ok: {what}")


def expect_error(what, code, action):
    try:
        action()
    except StatementExecutionException as error:
        if code is not None and str(code) not in str(error):
            raise AssertionError(f"{what}: raised {error}, wanted code {code}")
        print(f"ok: {what} raised {error}")
        return
    raise AssertionError(f"{what}: no exception")


session = Session(HOST, PORT, "root", "root", fetch_size=100)
session.open(False)

# Databases and series.
session.set_storage_group("root.py")
session.create_time_series("root.py.d0.s0", TSDataType.INT64, TSEncoding.TS_2DIFF, Compressor.LZ4)
session.create_multi_time_series(
    ["root.py.d0.s1", "root.py.d0.s2"],
    [TSDataType.DOUBLE, TSDataType.TEXT],
    [TSEncoding.GORILLA, TSEncoding.PLAIN],
    [Compressor.LZ4, Compressor.LZ4],
)
session.create_aligned_time_series(
    "root.py.al", ["a", "b"], [TSDataType.INT32, TSDataType.FLOAT],
    [TSEncoding.RLE, TSEncoding.GORILLA], [Compressor.LZ4, Compressor.LZ4],
)
expect(session.check_time_series_exists("root.py.d0.s1"), True, "created series exist")

# insert_tablet: every type this server stores, with nulls.
measurements = ["b", "i", "l", "f", "d", "t"]
types = [TSDataType.BOOLEAN, TSDataType.INT32, TSDataType.INT64, TSDataType.FLOAT, TSDataType.DOUBLE, TSDataType.TEXT]
values = [
    [True, 2147483647, -9223372036854775808, 1.5, 0.1, "héllo"],
    [None, -1, None, None, 2.25, None],
    [False, None, 42, -0.0, None, ""],
    [None, None, None, 3.25, None, "last"],
]
session.insert_tablet(Tablet("root.py.all", measurements, types, values, [10, 20, 30, 40]))
names, rows = rows_of(session, "SELECT b, i, l, f, d, t FROM root.py.all")
expect(names, ["Time"] + [f"root.py.all.{m}" for m in measurements], "tablet column names")
expect(
    rows,
    [
        [10, True, 2147483647, -9223372036854775808, 1.5, 0.1, "héllo"],
        [20, None, -1, None, None, 2.25, None],
        [30, False, None, 42, -0.0, None, ""],
        [40, None, None, None, 3.25, None, "last"],
    ],
    "tablet of every type with nulls reads back exactly",
)

# insert_aligned_tablet and insert_records (two devices, mixed types).
session.insert_aligned_tablet(Tablet("root.py.al", ["a", "b"], [TSDataType.INT32, TSDataType.FLOAT], [[1, 0.5], [2, None]], [1, 2]))
expect(rows_of(session, "SELECT a, b FROM root.py.al")[1], [[1, 1, 0.5], [2, 2, None]], "aligned tablet")
session.insert_records(
    ["root.py.r1", "root.py.r2"],
    [5, 6],
    [["x", "y"], ["z"]],
    [[TSDataType.INT64, TSDataType.TEXT], [TSDataType.DOUBLE]],
    [[7, "seven"], [6.5]],
)
expect(rows_of(session, "SELECT x, y FROM root.py.r1")[1], [[5, 7, "seven"]], "insert_records device 1")
expect(rows_of(session, "SELECT z FROM root.py.r2")[1], [[6, 6.5]], "insert_records device 2")
session.insert_record("root.py.r1", 8, ["x"], [TSDataType.INT64], [9])
session.insert_records_of_one_device("root.py.r1", [9, 10], [["x"], ["x"]], [[TSDataType.INT64], [TSDataType.INT64]], [[10], [11]])
session.insert_str_record("root.py.r3", 1, ["v", "w"], ["12", "text"])
expect(rows_of(session, "SELECT x FROM root.py.r1")[1], [[5, 7], [8, 9], [9, 10], [10, 11]], "insert_record(s_of_one_device)")
expect(rows_of(session, "SELECT v, w FROM root.py.r3")[1], [[1, 12.0, "text"]], "insert_str_record infers DOUBLE and TEXT")

# insert_tablets (two devices in one call) and the test_* variant (checked, not written).
session.insert_tablets([
    Tablet("root.py.t1", ["v"], [TSDataType.INT64], [[1], [2]], [1, 2]),
    Tablet("root.py.t2", ["v"], [TSDataType.DOUBLE], [[0.5]], [3]),
])
expect(rows_of(session, "SELECT v FROM root.py.t1")[1], [[1, 1], [2, 2]], "insert_tablets device 1")
expect(rows_of(session, "SELECT v FROM root.py.t2")[1], [[3, 0.5]], "insert_tablets device 2")
session.test_insert_tablet(Tablet("root.py.t3", ["v"], [TSDataType.INT64], [[1]], [1]))
expect(session.check_time_series_exists("root.py.t3.v"), False, "test_insert_tablet writes nothing")

# Time zone (stored per session) and executeStatementV2.
session.set_time_zone("Asia/Shanghai")
expect(session.get_time_zone(), "Asia/Shanghai", "set_time_zone / get_time_zone")
with session.execute_statement("SHOW DATABASES root.py") as data_set:
    frame = data_set.todf()
expect(frame["Database"].tolist(), ["root.py"], "execute_statement (executeStatementV2)")

# SQL INSERT through execute_non_query_statement.
session.execute_non_query_statement("INSERT INTO root.py.d0(time, s0, s1, s2) VALUES (1, 100, 1.25, 'a'), (2, 200, 2.5, 'b'), (3, 300, 3.75, 'c')")
expect(
    rows_of(session, "SELECT s0, s1, s2 FROM root.py.d0")[1],
    [[1, 100, 1.25, "a"], [2, 200, 2.5, "b"], [3, 300, 3.75, "c"]],
    "SQL INSERT then raw query",
)

# Aggregates, GROUP BY, LAST.
names, rows = rows_of(session, "SELECT count(s0), sum(s0), avg(s1), min_value(s0), max_value(s1) FROM root.py.d0")
expect(rows[0][1:], [3, 600.0, 2.5, 100, 3.75], "aggregates")
names, rows = rows_of(session, "SELECT count(s0), sum(s0) FROM root.py.d0 GROUP BY ([0, 4), 2ms)")
expect(rows, [[0, 1, 100.0], [2, 2, 500.0]], "GROUP BY time")
names, rows = rows_of(session, "SELECT LAST s0, s2 FROM root.py.d0")
expect(rows, [[3, "root.py.d0.s0", "300", "INT64"], [3, "root.py.d0.s2", "c", "TEXT"]], "LAST")

# executeRawDataQueryV2 / executeLastDataQueryV2.
with session.execute_raw_data_query(["root.py.d0.s0", "root.py.d0.s1"], 2, 4) as data_set:
    frame = data_set.todf()
expect(frame.values.tolist(), [[2, 200, 2.5], [3, 300, 3.75]], "raw data query [2, 4)")
with session.execute_last_data_query(["root.py.d0.s0"], 0) as data_set:
    frame = data_set.todf()
expect(frame.values.tolist(), [[3, "root.py.d0.s0", "300", "INT64"]], "last data query")

# A result larger than one fetch (fetch_size=100): 1000 rows in 10 pages.
count = 1000
session.insert_tablet(Tablet("root.py.big", ["v"], [TSDataType.INT64], [[i * 3] for i in range(count)], list(range(count))))
names, rows = rows_of(session, "SELECT v FROM root.py.big")
expect(len(rows), count, "rows of a multi-page result")
expect(rows[-1], [count - 1, (count - 1) * 3], "last row of a multi-page result")
expect(sum(r[1] for r in rows), 3 * count * (count - 1) // 2, "sum over every page")
# The same newest first (the server reads windows from the end as pages are fetched).
names, rows = rows_of(session, "SELECT v FROM root.py.big ORDER BY TIME DESC")
expect([r[0] for r in rows], list(range(count - 1, -1, -1)), "times of a descending multi-page result")
expect(rows[0], [count - 1, (count - 1) * 3], "first row of a descending multi-page result")

# todf(): a pandas frame.
with session.execute_query_statement("SELECT v FROM root.py.big") as data_set:
    frame = data_set.todf()
expect(isinstance(frame, pd.DataFrame), True, "todf gives a pandas DataFrame")
expect(list(frame.columns), ["Time", "root.py.big.v"], "todf columns")
expect((len(frame), int(frame["root.py.big.v"].sum())), (count, 3 * count * (count - 1) // 2), "todf values")

# SHOW TIMESERIES.
with session.execute_query_statement("SHOW TIMESERIES root.py.d0.**") as data_set:
    frame = data_set.todf()
expect(sorted(frame["Timeseries"].tolist()), ["root.py.d0.s0", "root.py.d0.s1", "root.py.d0.s2"], "show timeseries")
expect(
    dict(zip(frame["Timeseries"], frame["DataType"])),
    {"root.py.d0.s0": "INT64", "root.py.d0.s1": "DOUBLE", "root.py.d0.s2": "TEXT"},
    "show timeseries types",
)

# delete_data: [1, 2] of s0.
session.delete_data_in_range(["root.py.d0.s0"], 1, 2)
expect(rows_of(session, "SELECT s0 FROM root.py.d0")[1], [[3, 300]], "delete_data_in_range")
session.delete_data(["root.py.d0.s1"], 2)
expect(rows_of(session, "SELECT s1 FROM root.py.d0")[1], [[3, 3.75]], "delete_data up to a time")

# Errors raise the client's exception with IoTDB's codes.
expect_error(
    "type mismatch",
    614,
    lambda: session.insert_tablet(Tablet("root.py.d0", ["s1"], [TSDataType.INT32], [[1]], [100])),
)
expect_error("syntax error", 700, lambda: session.execute_query_statement("SELEC s0 FROM root.py.d0"))
expect_error("syntax error (non-query)", 700, lambda: session.execute_non_query_statement("CREATE TIMESERIES"))
expect_error("unsupported type", 300, lambda: session.insert_tablet(Tablet("root.py.d9", ["s"], [TSDataType.STRING], [["x"]], [1])))
expect_error("database exists", 501, lambda: session.set_storage_group("root.py"))

# Schema deletions.
session.delete_time_series(["root.py.r3.w"])
expect(session.check_time_series_exists("root.py.r3.w"), False, "delete_time_series")

# RPC compression (TCompactProtocol) on another session.
compact = Session(HOST, PORT, "root", "root", fetch_size=7)
compact.open(True)
names, rows = rows_of(compact, "SELECT v FROM root.py.big WHERE time < 20")
expect([r[1] for r in rows], [i * 3 for i in range(20)], "compact protocol, 3 pages")
compact.insert_tablet(Tablet("root.py.cp", ["v"], [TSDataType.DOUBLE], [[math.pi]], [1]))
expect(rows_of(compact, "SELECT v FROM root.py.cp")[1], [[1, math.pi]], "compact protocol insert")
compact.close()

# A wrong password is refused.
try:
    Session(HOST, PORT, "root", "wrong").open(False)
    raise AssertionError("wrong password accepted")
except AssertionError:
    raise
except Exception as error:  # the client raises its own exception type here
    print(f"ok: wrong password refused: {error}")

# SessionPool: several sessions, used and returned.
pool = SessionPool(PoolConfig(host=HOST, port=str(PORT), user_name="root", password="root", fetch_size=50), 3, 3000)
sessions = [pool.get_session() for _ in range(3)]
for index, pooled in enumerate(sessions):
    pooled.insert_tablet(Tablet(f"root.py.pool{index}", ["v"], [TSDataType.INT32], [[index]], [index]))
for pooled in sessions:
    pool.put_back(pooled)
again = pool.get_session()
names, rows = rows_of(again, "SELECT v FROM root.py.pool0, root.py.pool1, root.py.pool2")
expect(rows, [[0, 0, None, None], [1, None, 1, None], [2, None, None, 2]], "SessionPool writes")
pool.put_back(again)
pool.close()

session.delete_storage_group("root.py")
expect(session.check_time_series_exists("root.py.d0.s0"), False, "delete_storage_group")
session.close()
print("ALL CHECKS PASSED")
