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
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for cfg in "rf=1 ack=leader" "rf=2 ack=leader" "rf=2 ack=in_sync"; do
  line="$cfg:"
  for key in points_per_s dn_cpu_s_sealed cn_cpu_s_sealed points_per_dn_cpu_s points_per_cluster_cpu_s; do
    line="$line $key=$(grep "^RESULT $cfg data_region_groups=[0-9]* " $OUT/results.txt | tr ' ' '\n' | sed -n "s/^$key=//p" | median)"
  done
  echo "$line"
done
