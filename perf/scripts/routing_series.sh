#!/bin/bash
# The cost of a forwarded write: the standard workload against a local 1C3D cluster with
# each `--route` (one, spread, shard-aware), interleaved in rounds (the modes of a round
# back to back, so a round's ratios come from one stretch of a shared machine), then the
# per-run figures, the medians and the per-round ratios to shard-aware.
# usage: [PERF=target/release/iotdb-perf] [RF=2] [WORKLOAD="iotdb-perf flags"] \
#        perf/scripts/routing_series.sh [ROUNDS]
set -u
ROUNDS=${1:-3}
RF=${RF:-2}
PERF=${PERF:-target/release/iotdb-perf}
WORKLOAD=${WORKLOAD:---cores 1 --query-repeat 5}
OUT=${OUT:-${TMPDIR:-/tmp}/routing-series-$$}; mkdir -p "$OUT"
for round in $(seq "$ROUNDS"); do
  for route in one spread shard-aware; do
    # Bounded: a run that hangs is stopped (its children go with the process group).
    timeout -k 30 900 "$PERF" --cluster 1C3D --replication "$RF" --route "$route" $WORKLOAD \
      --json "$OUT/rf$RF-round$round-$route.json" >"$OUT/rf$RF-round$round-$route.stdout" \
      2>"$OUT/rf$RF-round$round-$route.stderr" \
      || echo "round $round $route failed (exit $?), see $OUT/rf$RF-round$round-$route.stderr"
    tail -1 "$OUT/rf$RF-round$round-$route.stdout"
  done
done
python3 - "$OUT" "$RF" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rf, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
routes = ["one", "spread", "shard-aware"]
runs = {}
for r in range(1, rounds + 1):
    for route in routes:
        try:
            with open(f"{out}/rf{rf}-round{r}-{route}.json") as f:
                report = json.load(f)
        except (OSError, ValueError):
            continue
        flush = report["write"]["with_flush"]
        points = report["write"]["points"]
        by_process = dict(report["server_cpu_by_process"])
        runs[(r, route)] = {
            "points_per_s": flush["points_per_second"],
            "points_per_cpu_s": flush["points_per_server_cpu_second"],
            "cpu_s": flush["server_cpu_seconds"],
            "us_per_point": flush["server_cpu_seconds"] / points * 1e6,
            # The forwarding is DataNode work; the ConfigNode's (creating partitions) is
            # the same in every mode and only adds its noise.
            "dn_us_per_point": sum(s for n, s in by_process.items() if n.startswith("DataNode"))
            / points * 1e6,
            "direct": report["routing"]["direct_requests"] / report["routing"]["requests"],
            "nodes": by_process,
        }
print(f"== RF={rf}: every run (server CPU through the flush and the followers' catch-up)")
for (r, route), x in sorted(runs.items()):
    nodes = " ".join(f"{name.replace(' ', '')}={s:.2f}" for name, s in x["nodes"].items())
    print(f"round {r} {route:<11} points/s={x['points_per_s']/1e6:.2f}M "
          f"points/cpu-s={x['points_per_cpu_s']/1e6:.2f}M cpu={x['cpu_s']:.2f}s "
          f"us/point={x['us_per_point']:.3f} dn_us/point={x['dn_us_per_point']:.3f} "
          f"direct={x['direct']:.0%} {nodes}")
print(f"== RF={rf}: medians")
for route in routes:
    xs = [x for (r, rt), x in runs.items() if rt == route]
    if not xs:
        continue
    med = lambda key: statistics.median(x[key] for x in xs)
    names = sorted({n for x in xs for n in x["nodes"]})
    nodes = " ".join(f"{n.replace(' ', '')}={statistics.median(x['nodes'].get(n, 0) for x in xs):.2f}" for n in names)
    print(f"{route:<11} n={len(xs)} points/s={med('points_per_s')/1e6:.2f}M "
          f"points/cpu-s={med('points_per_cpu_s')/1e6:.2f}M cpu={med('cpu_s'):.2f}s "
          f"us/point={med('us_per_point'):.3f} dn_us/point={med('dn_us_per_point'):.3f} "
          f"direct={med('direct'):.0%} {nodes}")
print(f"== RF={rf}: per round, server CPU per point relative to shard-aware (the forwarded-write overhead)")
for route in ["one", "spread"]:
    for key, what in [("us_per_point", "server"), ("dn_us_per_point", "DataNode")]:
        ratios, extra = [], []
        for r in range(1, rounds + 1):
            if (r, route) in runs and (r, "shard-aware") in runs:
                a, b = runs[(r, route)], runs[(r, "shard-aware")]
                ratios.append(a[key] / b[key])
                extra.append(a[key] - b[key])
        if ratios:
            print(f"{route:<11} {what} cpu/point ratio per round: "
                  f"{' '.join(f'{x:.2f}x' for x in ratios)} "
                  f"(median {statistics.median(ratios):.2f}x); extra us/point: "
                  f"{' '.join(f'{x:+.3f}' for x in extra)} (median {statistics.median(extra):+.3f})")
    tput = [runs[(r, route)]["points_per_s"] / runs[(r, "shard-aware")]["points_per_s"]
            for r in range(1, rounds + 1) if (r, route) in runs and (r, "shard-aware") in runs]
    if tput:
        print(f"{route:<11} points/s ratio per round: {' '.join(f'{x:.2f}x' for x in tput)} "
              f"(median {statistics.median(tput):.2f}x)")
print(f"logs and JSON in {out}")
PY
