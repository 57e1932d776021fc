#!/usr/bin/env bash
# What recall monitoring costs the serving path (issue 16, part 2): the same version served by a local
# cluster (deploy/local/cluster.sh: etcd, one shard per partition, the coordinator, all on this box's cores)
# at saturation, `vecshard query` one query per call with 8 in flight, with monitoring off
# (--recall-sample 0) and at its defaults (--recall-sample 0.01 --recall-max-qps 20 --recall-budget 0.05),
# rounds interleaved (off, on, off, on; each side's best). Prints QPS, the servers' CPU per query and, for
# the monitored runs, what the monitor did (sampled, replayed, replay seconds) from the coordinator's
# /metrics.
#
# Each measured run sends the query file REPEAT times (default 20: 200,000 calls of 10,000 queries, about
# 30 s here), long enough for the monitor to reach its budget (it rests 19x each replay's time).
#
# Usage: tests/bench/run_recall_cost.sh MANIFEST QUERIES [ROUNDS] [OUTDIR] [REPEAT]
#   MANIFEST: a version keeping exact vectors (RFlat refine, IVF,Flat or HNSW), e.g. the 1M version that
#   tests/bench/run_batch_redis.sh builds (build/bench/batch-redis/ver/syn1m/manifest.json);
#   QUERIES: .fvecs of its dimension (e.g. build/bench/batch-redis/syn/q10k.fvecs).
set -euo pipefail
cd "$(dirname "$0")/../.."
man=${1:?manifest}
queries=${2:?queries}
rounds=${3:-2}
out=${4:-build/bench/recall-cost}
repeat=${5:-20}
mkdir -p "$out"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target vecshard vecshard-shard vecshard-coordinator >/dev/null
bin=build/bin
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }
log "# run_recall_cost.sh $(date -u +%FT%TZ) on $(nproc) CPUs: $man, $queries"
for r in $(seq "$rounds"); do
    for mode in off on; do
        args="--recall-sample 0"
        [ "$mode" = on ] && args="--recall-sample 0.01 --recall-max-qps 20 --recall-budget 0.05"
        cl=$out/cl-$mode
        ./deploy/local/cluster.sh down --dir "$cl" >/dev/null 2>&1 || true
        VS_BIN_DIR=$bin ./deploy/local/cluster.sh up --insecure --manifest "$man" --dir "$cl" --timeout 300 \
            --coordinator-args "$args" >/dev/null
        # warm-up, then the measured run (the query file REPEAT times)
        VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$cl/state" "$out/warm.json" --queries "$queries" --k 10 \
            --batch 1 --concurrency 8 --limit 2000
        [ -s "$out/qrep.fvecs" ] || for _ in $(seq "$repeat"); do cat "$queries"; done > "$out/qrep.fvecs"
        VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$cl/state" "$out/$mode-$r.json" --queries "$out/qrep.fvecs" \
            --k 10 --batch 1 --concurrency 8
        mport=$(sed -n 's/^coordinator_metrics_port=//p' "$cl/state")
        curl -s "http://127.0.0.1:$mport/metrics" | grep -E '^vecshard_coordinator_recall' > "$out/$mode-$r.metrics" || true
        ./deploy/local/cluster.sh down --dir "$cl" >/dev/null
        log "$mode round $r: $(/usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(f\"QPS {j['qps']:.0f}, servers {j['server_cpu_us_per_query']:.0f} us/query, failed {j['calls_failed']}\")" "$out/$mode-$r.json")"
        [ "$mode" = on ] && sed 's/^/    /' "$out/$mode-$r.metrics" | tee -a "$res"
    done
done
/usr/bin/python3 - "$out" "$rounds" <<'EOF' | tee -a "$res"
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
best = {m: max(json.load(open(f"{out}/{m}-{r}.json"))["qps"] for r in range(1, rounds + 1)) for m in ("off", "on")}
cpu = {m: min(json.load(open(f"{out}/{m}-{r}.json"))["server_cpu_us_per_query"] for r in range(1, rounds + 1))
       for m in ("off", "on")}
print(f"best QPS: monitoring off {best['off']:.0f}, on (defaults) {best['on']:.0f}: cost "
      f"{100 * (1 - best['on'] / best['off']):.1f} % of serving QPS (goal <= 5 %); servers' CPU per query "
      f"{cpu['off']:.0f} -> {cpu['on']:.0f} us")
EOF
