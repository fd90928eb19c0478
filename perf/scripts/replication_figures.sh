#!/bin/bash
# Replication figures (issue 10): the standard workload against a local 1C3D cluster with a
# given data replication factor and acknowledgement mode.
#
# usage (from the repository root, after
#   cargo build --release -p iotdb-node -p iotdb-perf -p iotdb-ctl):
#   perf/scripts/replication_figures.sh RF [leader|in_sync] [iotdb-perf workload flags ...]
# The workload flags default to $WORKLOAD (below: the standard workload, 1000 devices x 10
# sensors x 1000 rows = 10 M points, 4 clients x 32 in flight, wal_mode sync on the nodes;
# only the untimed query phase is shortened, --query-repeat 10); pass e.g. `--devices 200`
# for a 2 M-point run. About 10 s per run on the 2-core machine.
#
# Starts one ConfigNode (127.0.0.51) and three DataNodes (127.0.0.61-63, --cores 1 each),
# every node with --set data_replication_factor=RF --set data_replication_ack=ACK, in a
# data directory under $TMPDIR that is removed at the end (KEEP=1 keeps it). Waits for each
# DataNode's ready line and for `show cluster` to list four Running nodes, then runs
# iotdb-perf --endpoints 127.0.0.61:6667,127.0.0.62:6667,127.0.0.63:6667.
#
# Server CPU (utime+stime of /proc/PID/stat, every process of the cluster):
#   - "perf window": from just before iotdb-perf starts (it then generates the payloads,
#     client side, while the servers idle) to its `wrote N points ... through the flush`
#     line. iotdb-perf spreads its clients over the endpoints (client i connects to
#     endpoint i % 3; before 2026-12-02 all entered through the first), and its FLUSH goes
#     to the first endpoint and is node-local, so in that window only DataNode 1's regions
#     are flushed.
#   - "sealed window" (the figure to quote): iotdb-perf is stopped (SIGSTOP) at that line,
#     every DataNode gets `FLUSH`, the script waits until the DataNodes' CPU goes quiet
#     (followers caught up), flushes every DataNode again, then takes the CPU; then
#     iotdb-perf continues (SIGCONT) with its verification and queries, which are not
#     counted.
# Prints one `RESULT` line: key=value pairs. Logs stay in the data directory while it runs;
# a copy of the node logs goes to $LOGS (default: no copy) when set.
set -u
RF=${1:?usage: $0 RF [leader|in_sync] [workload flags]}
ACK=${2:-leader}
shift; [ $# -gt 0 ] && shift
WORKLOAD=${WORKLOAD:---query-repeat 10}
[ $# -gt 0 ] && WORKLOAD="$*"
B=${B:-target/release/iotdb-server}; C=${C:-target/release/iotdb-ctl}; P=${P:-target/release/iotdb-perf}
D=$(mktemp -d "${TMPDIR:-/tmp}/replication-figures-rf$RF-$ACK.XXXXXX")
PIDS=()
PERF_PID=
STATUS=fail

cleanup() {
  [ -n "$PERF_PID" ] && { kill -CONT "$PERF_PID" 2>/dev/null; kill "$PERF_PID" 2>/dev/null; }
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for t in $(seq 100); do
    alive=0; for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && { echo "pid $p still alive after 10 s: SIGKILL" >&2; kill -KILL "$p" 2>/dev/null; }; done
  [ -n "$PERF_PID" ] && kill -KILL "$PERF_PID" 2>/dev/null
  wait 2>/dev/null
  if [ -n "${LOGS:-}" ]; then mkdir -p "$LOGS"; cp "$D"/*.out "$D"/*.err "$D"/*.txt "$LOGS"/ 2>/dev/null; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $D" >&2; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "FAILED: $*" >&2; for f in "$D"/*.err; do echo "--- $f (WARN/ERROR, last 10)" >&2; grep -E 'WARN|ERROR' "$f" | tail -10 >&2; done; exit 1; }
ticks() { awk '{print $14+$15}' /proc/$1/stat 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)
# CPU ticks of the ConfigNode ($1=cn) or of every DataNode ($1=dn).
cpu_of() {
  local sum=0 i
  if [ "$1" = cn ]; then sum=$(ticks "${PIDS[0]}"); else for i in 1 2 3; do sum=$((sum + $(ticks "${PIDS[$i]}"))); done; fi
  echo $sum
}
sec() { awk -v t="$1" -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}'; }
ctl() { "$C" -h "$1" "${@:2}"; }

# EXTRA_SET: more settings for every node, e.g. EXTRA_SET="--set data_region_group_extension_policy=CUSTOM
# --set default_data_region_group_num_per_database=3" (with AUTO, RF=2 on 3 one-core DataNodes
# gives one data region group, RF=1 three).
REP="--set data_replication_factor=$RF --set data_replication_ack=$ACK ${EXTRA_SET:-}"
$B confignode --data-dir $D/cn --set cn_internal_address=127.0.0.51 --set cn_seed_config_node=127.0.0.51:10710 $REP > $D/cn.out 2> $D/cn.err &
PIDS+=($!)
for t in $(seq 400); do grep -q ready $D/cn.out && break; kill -0 ${PIDS[0]} 2>/dev/null || die "ConfigNode exited"; sleep 0.05; done
grep -q ready $D/cn.out || die "ConfigNode not ready after 20 s"
for i in 1 2 3; do
  $B datanode --data-dir $D/dn$i --cores 1 --set dn_rpc_address=127.0.0.6$i --set dn_internal_address=127.0.0.6$i --set dn_seed_config_node=127.0.0.51:10710 $REP > $D/dn$i.out 2> $D/dn$i.err &
  PIDS+=($!)
  for t in $(seq 600); do grep -q ready $D/dn$i.out && break; kill -0 ${PIDS[$i]} 2>/dev/null || die "DataNode $i exited"; sleep 0.05; done
  grep -q ready $D/dn$i.out || die "DataNode $i not ready after 30 s"
done
running=0
for t in $(seq 100); do
  ctl 127.0.0.61:6667 sql "show cluster" > $D/show-cluster.txt 2>&1
  running=$(grep -c Running $D/show-cluster.txt)
  [ "$running" -ge 4 ] && break; sleep 0.2
done
[ "$running" -ge 4 ] || { cat $D/show-cluster.txt >&2; die "show cluster lists $running Running nodes, not 4"; }

# Warm-up (WARMUP=0 skips it): a freshly created replicated region group refuses its first
# writes with 606 "region group N is taking over as leader (CatchingUp); retry" for up to
# about a second, and iotdb-perf does not retry them (every request of the run fails). So
# before the timed run: create the database and write, through DataNode 1, the workload's
# own first point of s0 of devices d0 .. d$((${WARMUP_DEVICES:-30} - 1)) (t0, the standard
# workload's value: iotdb-perf later writes the same point again, so its verification and
# its cross-series query still see exactly the workload), retrying each for up to 10 s,
# until a whole round succeeds at the first try. Extra server work: WARMUP_DEVICES points
# per round, before the measured window.
warmup_sql() {
  python3 -c '
import sys
M = (1 << 64) - 1
for d in range(int(sys.argv[1])):
    k = d * 10
    x = (k * 0x9E3779B97F4A7C15 + 1) & M
    v = 2000 + ((x >> 40) % 2000)
    x = (x * 6364136223846793005 + 1442695040888963407) & M
    v = v + ((x >> 33) % 201) - 100
    print("insert into root.bench.d%d(time,s0) values(1700000000000,%s)" % (d, "%s%d.%02d" % ("-" if v < 0 else "", abs(v) // 100, abs(v) % 100)))
' "$1"
}
if [ "${WARMUP:-1}" = 1 ]; then
  ctl 127.0.0.61:6667 sql "create database root.bench" > $D/warmup.txt 2>&1
  warmup_sql ${WARMUP_DEVICES:-30} > $D/warmup.sql
  ok=0
  for round in $(seq 10); do
    clean=1
    while read -r stmt; do
      for t in $(seq 50); do
        out=$(ctl 127.0.0.61:6667 sql "$stmt" 2>&1 < /dev/null)
        echo "round $round $stmt: $out" >> $D/warmup.txt
        echo "$out" | grep -q successfully && break; clean=0; sleep 0.2
      done
    done < $D/warmup.sql
    [ $clean = 1 ] && { ok=1; break; }
  done
  [ $ok = 1 ] || die "warm-up writes kept failing (see warmup.txt): $(grep -v successfully $D/warmup.txt | tail -1)"
  warm_retries=$(grep -vc successfully $D/warmup.txt)
  echo "warm-up: $warm_retries refused warm-up writes before a clean round ($round rounds)" >&2
fi

cn0=$(cpu_of cn); dn0=$(cpu_of dn); t0=$(date +%s.%N)
s1=$(ticks ${PIDS[1]}); s2=$(ticks ${PIDS[2]}); s3=$(ticks ${PIDS[3]})
echo "+ $P --endpoints 127.0.0.61:6667,127.0.0.62:6667,127.0.0.63:6667 $WORKLOAD --json $D/perf.json" >&2
touch $D/perf.out
$P --endpoints 127.0.0.61:6667,127.0.0.62:6667,127.0.0.63:6667 $WORKLOAD --json $D/perf.json > $D/perf.out 2>&1 &
PERF_PID=$!
while kill -0 $PERF_PID 2>/dev/null && ! grep -q '^wrote .* points in' $D/perf.out; do sleep 0.01; done
grep -q '^wrote .* points in' $D/perf.out || { wait $PERF_PID; rc=$?; PERF_PID=; cat $D/perf.out >&2; die "iotdb-perf exited ($rc) before its write phase ended"; }
kill -STOP $PERF_PID
cn1=$(cpu_of cn); dn1=$(cpu_of dn); t1=$(date +%s.%N)
for i in 1 2 3; do ctl 127.0.0.6$i:6667 sql "flush" > /dev/null || echo "FLUSH on DataNode $i failed" >&2; done
# Wait until the DataNodes are quiet (at most 2 ticks of CPU in 0.5 s, all three together).
prev=$(cpu_of dn); quiet_after=
for t in $(seq 60); do
  sleep 0.5; now=$(cpu_of dn)
  [ $((now - prev)) -le 2 ] && { quiet_after=$(awk -v t=$t 'BEGIN {print t / 2}'); break; }
  prev=$now
done
for i in 1 2 3; do ctl 127.0.0.6$i:6667 sql "flush" > /dev/null || echo "FLUSH on DataNode $i failed" >&2; done
cn2=$(cpu_of cn); dn2=$(cpu_of dn); t2=$(date +%s.%N)
e1=$(ticks ${PIDS[1]}); e2=$(ticks ${PIDS[2]}); e3=$(ticks ${PIDS[3]})
ctl 127.0.0.61:6667 sql "show regions" > $D/show-regions.txt 2>&1
groups=$(grep DataRegion $D/show-regions.txt | awk -F"|" '{print $2}' | sort -u | wc -l)
kill -CONT $PERF_PID
wait $PERF_PID; perf_rc=$?; PERF_PID=
[ $perf_rc = 0 ] || { tail -20 $D/perf.out >&2; echo "iotdb-perf exited $perf_rc" >&2; }

points=$(sed -n 's/^wrote \([0-9]*\) points in.*/\1/p' $D/perf.out)
pps=$(sed -n 's/^points\/s: *//p' $D/perf.out | tail -1)
verified=$(sed -n 's/^verified \([0-9]*\) points$/\1/p' $D/perf.out | tail -1)
lagmax=$(cat $D/dn*.err | grep 'replication lag' | grep -o 'lag=\[[^]]*\]' | grep -o '([0-9]*, [0-9]*, [0-9]*)' \
  | tr -d '(),' | awk 'BEGIN {e=0; b=0} {if ($2 > e) e = $2; if ($3 > b) b = $3} END {print e "/" b}')
laglines=$(cat $D/dn*.err | grep -c 'replication lag')
warns=$(cat $D/*.err | grep -cE ' WARN | ERROR ')
dn_perf=$((dn1 - dn0)); dn_sealed=$((dn2 - dn0)); cn_sealed=$((cn2 - cn0))
ppcs() { awk -v p="$points" -v t="$1" -v hz="$HZ" 'BEGIN {if (t > 0) printf "%.0f", p * hz / t; else print "n/a"}'; }
echo "RESULT rf=$RF ack=$ACK data_region_groups=$groups points=$points points_per_s=$pps verified=${verified:-none} perf_rc=$perf_rc" \
  "dn_cpu_s_perf_window=$(sec $dn_perf) cn_cpu_s_perf_window=$(sec $((cn1 - cn0)))" \
  "dn_cpu_s_sealed=$(sec $dn_sealed) cn_cpu_s_sealed=$(sec $cn_sealed) quiet_after_s=${quiet_after:-none}" \
  "points_per_dn_cpu_s=$(ppcs $dn_sealed) points_per_cluster_cpu_s=$(ppcs $((dn_sealed + cn_sealed)))" \
  "points_per_dn_cpu_s_perf_window=$(ppcs $dn_perf)" \
  "wall_perf_window_s=$(awk -v a=$t0 -v b=$t1 'BEGIN {printf "%.2f", b - a}')" \
  "warmup_refused=${warm_retries:-skipped} lag_lines=$laglines max_lag_entries/bytes=$lagmax warn_error_lines=$warns"
echo "PER_NODE rf=$RF ack=$ACK cpu_s_sealed: cn=$(sec $cn_sealed) dn1=$(sec $((e1 - s1))) dn2=$(sec $((e2 - s2))) dn3=$(sec $((e3 - s3)))"
[ $perf_rc = 0 ] && STATUS=ok
[ $STATUS = ok ]
