#!/bin/bash
# Cluster figures: DataNode registration time, idle CPU per node, ConfigNode failover.
# usage (from the repository root, after cargo build --release):
#   perf/scripts/cluster_figures.sh HEARTBEAT_MS IDLE_SECONDS [failover]
# Starts 3 ConfigNodes (127.0.0.51-53) and 3 DataNodes (127.0.0.61-63) on the default ports.
set -u
HB=$1; IDLE=$2
B=${B:-target/release/iotdb-server}; C=${C:-target/release/iotdb-ctl}
D=${TMPDIR:-/tmp}/cluster-figures-$HB; rm -rf $D; mkdir -p $D
ms() { date +%s%N | cut -c1-13; }
for i in 1 2 3; do
  $B confignode --data-dir $D/cn$i --set cn_internal_address=127.0.0.5$i --set cn_seed_config_node=127.0.0.51:10710 --set heartbeat_interval_in_ms=$HB > $D/cn$i.out 2> $D/cn$i.err & echo $! > $D/cn$i.pid
  for t in $(seq 200); do grep -q ready $D/cn$i.out && break; sleep 0.05; done
done
for i in 1 2 3; do
  t0=$(ms)
  $B datanode --data-dir $D/dn$i --cores 1 --set dn_rpc_address=127.0.0.6$i --set dn_internal_address=127.0.0.6$i --set dn_seed_config_node=127.0.0.51:10710 --set heartbeat_interval_in_ms=$HB > $D/dn$i.out 2> $D/dn$i.err & echo $! > $D/dn$i.pid
  for t in $(seq 400); do grep -q ready $D/dn$i.out && break; sleep 0.005; done
  t1=$(ms); echo "DataNode $i ready after $((t1-t0)) ms (process start to ready line, registration included)"
done
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
declare -A before
for f in $D/*.pid; do before[$f]=$(cpu $(cat $f)); done
sleep $IDLE
for f in $D/*.pid; do n=$(basename $f .pid); echo "$n idle CPU over ${IDLE}s: $(( ($(cpu $(cat $f)) - ${before[$f]}) * 10 )) ms"; done
if [ "${3:-}" = failover ]; then
  $C -h 127.0.0.61:6667 sql "create database root.before" >/dev/null
  leader=$($C -h 127.0.0.61:6667 --format csv sql "show confignodes" | awk -F, '$NF ~ /Leader/ {print $1}')
  echo "leader: ConfigNode $leader"
  kill -9 $(cat $D/cn$((leader+1)).pid); t0=$(ms)
  for t in $(seq 600); do $C -h 127.0.0.62:6667 sql "create database root.after$t" >/dev/null 2>&1 && break; sleep 0.02; done
  t1=$(ms); echo "CREATE DATABASE works again $((t1-t0)) ms after SIGKILL of the leading ConfigNode"
fi
for f in $D/*.pid; do kill $(cat $f) 2>/dev/null; done; sleep 1
for f in $D/*.pid; do kill -9 $(cat $f) 2>/dev/null; done
