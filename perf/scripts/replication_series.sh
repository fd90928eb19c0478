#!/bin/bash
# Runs replication_figures.sh N times (default 3) for RF=1, RF=2 leader, RF=2 in_sync,
# interleaved (1, 2L, 2S, 1, 2L, 2S, ...), and prints every RESULT line, then the medians.
# usage: [WORKLOAD="iotdb-perf flags"] perf/scripts/replication_series.sh [N]
set -u
N=${1:-3}
OUT=${OUT:-${TMPDIR:-/tmp}/replication-series-$$}; mkdir -p $OUT
for r in $(seq $N); do
  for cfg in "1 leader" "2 leader" "2 in_sync"; do
    LOGS=$OUT/run$r-rf${cfg// /-} perf/scripts/replication_figures.sh $cfg 2>$OUT/run$r-rf${cfg// /-}.stderr | tee -a $OUT/results.txt
  done
done
echo "== medians ($N runs each; logs in $OUT)"
for cfg in "rf=1 ack=leader" "rf=2 ack=leader" "rf=2 ack=in_sync"; do
  grep "^RESULT $cfg " $OUT/results.txt | tr ' ' '\n' | awk -F= -v cfg="$cfg" '
    $1 == "points_per_s" || $1 == "points_per_dn_cpu_s" || $1 == "dn_cpu_s_sealed" || $1 == "cn_cpu_s_sealed" {v[$1] = v[$1] " " $2}
    END {printf "%s:", cfg; for (k in v) {n = split(v[k], a, " "); asort(a); printf " %s=%s", k, a[int((n + 1) / 2)]} print ""}'
done
