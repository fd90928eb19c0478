"""The standard workload (shared/WORKLOAD.md) through IoTDB's Python client (Thrift RPC).

1000 devices x 10 DOUBLE sensors x 1000 rows = 10,000,000 points in requests of one
device x 100 rows, batch-major, taken from a shared counter by 4 client threads, each
with its own `Session` (one request in flight per connection: the client is
synchronous, so 4 in flight in all).

Two modes:
  --mode rpc     (default) requests encoded before timing (`gen_insert_tablet_req`), then
                 timed `insertTablet` calls: the RPC and the server, as WORKLOAD.md asks.
  --mode session `Session.insert_tablet(NumpyTablet)` timed end to end: includes the
                 Python client's own encoding of every tablet.

Server CPU = utime + stime of the server process (pass --pid) from the first request
until the last response, and again until a FLUSH has sealed the data in files.

Usage: python thrift_insert_bench.py HOST PORT --pid PID [--mode rpc|session]
Needs the apache-iotdb package (tests/python/requirements.txt pins the version tested).
"""

import argparse
import os
import threading
import time

import numpy as np
from iotdb.Session import Session
from iotdb.utils.IoTDBConstants import TSDataType
from iotdb.utils.NumpyTablet import NumpyTablet

DEVICES, SENSORS, ROWS, BATCH, CLIENTS = 1000, 10, 1000, 100, 4
T0, STEP_MS = 1_700_000_000_000, 1000
MASK = (1 << 64) - 1


def workload_values():
    """values[d, s, r] of the standard random walk, bit-exact (uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        k = np.arange(DEVICES * SENSORS, dtype=np.uint64)
        x = k * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
        v = (np.uint64(2000) + ((x >> np.uint64(40)) % np.uint64(2000))).astype(np.int64)
        out = np.empty((DEVICES * SENSORS, ROWS), dtype=np.float64)
        a, c = np.uint64(6364136223846793005), np.uint64(1442695040888963407)
        for r in range(ROWS):
            x = x * a + c
            v = v + ((x >> np.uint64(33)) % np.uint64(201)).astype(np.int64) - 100
            out[:, r] = v / 100.0
    return out.reshape(DEVICES, SENSORS, ROWS)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf(os.sysconf_names["SC_CLK_TCK"])
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--mode", choices=["rpc", "session"], default="rpc")
    args = parser.parse_args()

    values = workload_values()
    measurements = [f"s{s}" for s in range(SENSORS)]
    types = [TSDataType.DOUBLE] * SENSORS
    sessions = [Session(args.host, args.port, "root", "root") for _ in range(CLIENTS)]
    for session in sessions:
        session.open(False)
    sessions[0].set_storage_group("root.bench")

    # Batch-major: every device's first batch, then every device's second, ...
    order = [(b, d) for b in range(ROWS // BATCH) for d in range(DEVICES)]
    tablets = []
    for b, d in order:
        times = np.arange(T0 + b * BATCH * STEP_MS, T0 + (b + 1) * BATCH * STEP_MS, STEP_MS, dtype=np.int64)
        columns = [values[d, s, b * BATCH:(b + 1) * BATCH].copy() for s in range(SENSORS)]
        tablets.append(NumpyTablet(f"root.bench.d{d}", measurements, types, columns, times))
    requests = None
    if args.mode == "rpc":
        requests = [sessions[0].gen_insert_tablet_req(t) for t in tablets]

    next_request = [0]
    lock = threading.Lock()
    errors = []

    def client(index):
        session = sessions[index]
        raw = session._Session__client  # the Thrift client of the session's connection
        while True:
            with lock:
                i = next_request[0]
                next_request[0] += 1
            if i >= len(order):
                return
            try:
                if requests is not None:
                    status = raw.insertTablet(requests[i])
                    if status.code != 200:
                        errors.append(status)
                else:
                    session.insert_tablet(tablets[i])
            except Exception as error:  # counted, reported below
                errors.append(error)

    cpu_before = cpu_seconds(args.pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_writes = cpu_seconds(args.pid) - cpu_before
    sessions[0].execute_non_query_statement("FLUSH")
    elapsed_flushed = time.perf_counter() - started
    cpu_flushed = cpu_seconds(args.pid) - cpu_before

    points = DEVICES * SENSORS * ROWS
    with sessions[0].execute_query_statement("SELECT count(s0) FROM root.bench.d0, root.bench.d999") as data_set:
        counts = data_set.todf().values.tolist()
    for session in sessions:
        session.close()
    print(f"mode={args.mode} clients={CLIENTS} in_flight={CLIENTS} errors={len(errors)} counts={counts}")
    if errors:
        print("first error:", errors[0])
    print(f"points={points} wall={elapsed:.2f}s points/s={points / elapsed:,.0f}")
    print(f"server cpu (writes)={cpu_writes:.2f}s points per server cpu-s={points / cpu_writes:,.0f}")
    print(f"with flush: wall={elapsed_flushed:.2f}s server cpu={cpu_flushed:.2f}s points per server cpu-s={points / cpu_flushed:,.0f}")


if __name__ == "__main__":
    main()
