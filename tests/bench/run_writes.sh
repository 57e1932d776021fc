#!/usr/bin/env bash
# Fresh writes under query load (issue 15 goals), on the 200k x 128 set of run_cpu.sh split into 2 hash
# partitions (IVF1024,PQ32x4fs,RFlat): a local cluster with the write log (cluster.sh up --writes, plain text), then
#  - the writes re-write base rows under their own ids (the data stay the same, so recall still compares
#    with the base's ground truth; every write is a replacement: a tombstone and a fresh record), and every
#    20th writes a row under a new id and probes for it;
#  - read-only: `vecshard query` (one query per call, 8 in flight) -> QPS and server CPU per query;
#  - the same query load while vecshard-bench-writes upserts RATE ids per second (default 1000), one id per
#    request and then BATCH ids per request (default 10), and probes about 10 requests a second (a
#    search every 5 ms until found, then until gone; these searches are counted and printed):
#    insert -> searchable and delete -> hidden latency (p50/p99/max), acknowledgement latency, failures;
#  - QPS under writes as a fraction of read-only QPS (goal >= 0.8), rounds interleaved (read-only, one id
#    per request, BATCH per request), each side's best. Every write run re-writes the same 12,000 rows, so
#    after a first write pass (before the rounds) every read-only run also searches that fresh state: the
#    ratio is the cost of the write load. The cost of the fresh state itself is printed apart: read-only
#    QPS before any write against read-only QPS with the 12,000 replacements (6 % of the base).
# Usage: tests/bench/run_writes.sh [OUTDIR] [RATE] [ROUNDS] [BATCH]   (default build/bench/cpu, 1000, 2, 10)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/cpu}
rate=${2:-1000}
rounds=${3:-2}
batch=${4:-10}
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
factory="IVF1024,PQ32x4fs,RFlat" # the version's (tests/bench/cpu_data.sh)
tests/bench/cpu_data.sh "$out" hash2:2
res=$out/writes-results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }
dir=$out/cl-writes
./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
VS_BIN_DIR=$bin ./deploy/local/cluster.sh up --insecure --manifest "$out/hash2/manifest.json" --dir "$dir" --writes \
    --timeout 120 >/dev/null
trap './deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true' EXIT
addr=$(. "$dir/state" && echo "$coordinator_addr")
mport=$(. "$dir/state" && echo "$coordinator_metrics_port")
# Waits (up to 10 s) until the coordinator has acknowledged N more writes than at the call: the write load
# is running. Usage: writes_running N BEFORE (BEFORE from writes_acked).
writes_acked() {
    /usr/bin/python3 -c 'import sys, urllib.request
for l in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode().splitlines():
    if l.startswith("vecshard_coordinator_writes_acknowledged_total "): print(int(float(l.split()[1])))' "$mport"
}
writes_running() {
    local want=$(($2 + $1)) t
    for ((t = 0; t < 200; t++)); do
        [ "$(writes_acked)" -ge "$want" ] && return 0
        sleep 0.05
    done
    echo "run_writes.sh: the write load did not start within 10 s" >&2
    return 1
}

query() { # -> "qps server_us"
    VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$dir/state" "$dir/query.json" --queries "$out/queries.fvecs" \
        --gt "$out/gt100.ivecs" --k 10 --nprobe 16 --k-factor 4 --concurrency 8
    /usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["calls_failed"]==0, j
print("%.0f %.1f %.4f" % (j["qps"], j["server_cpu_us_per_query"], j["recall_at_k"]))' "$dir/query.json"
}
best_ro=0 line_ro=""
declare -A best line
id_base=1000000000
line_empty=$(query)
"$bin/vecshard-bench-writes" --coordinator "$addr" --vectors "$out/base.fvecs" --rate 4000 --batch 50 \
    --probe-every 1000000 --seconds 3 --id-base 900000000 > "$dir/writes-first.txt" 2>&1 ||
    log "first write pass: vecshard-bench-writes reported failures"
for ((r = 0; r < rounds; r++)); do
    l=$(query)
    [ "${l%% *}" -gt "$best_ro" ] && best_ro=${l%% *} line_ro=$l
    for b in 1 "$batch"; do
        every=$((rate / b / 10 > 0 ? rate / b / 10 : 1))
        # writes for a little longer than the query run, which then runs entirely under writes
        before=$(writes_acked)
        "$bin/vecshard-bench-writes" --coordinator "$addr" --vectors "$out/base.fvecs" --rate "$rate" \
            --batch "$b" --probe-every "$every" --seconds 12 --id-base "$id_base" > "$dir/writes-$r-$b.txt" 2>&1 &
        wpid=$!
        writes_running 100 "$before"
        l=$(query)
        [ "${l%% *}" -gt "${best[$b]:-0}" ] && best[$b]=${l%% *} line[$b]=$l
        wait "$wpid" || log "round $r, batch $b: vecshard-bench-writes reported failures"
        id_base=$((id_base + 100000000))
    done
done
log "== $factory, 200k x 128, 2 hash partitions, nprobe 16, k_factor 4; best of $rounds interleaved rounds"
log "read-only before any write: QPS $(echo "$line_empty" | cut -d' ' -f1), server CPU $(echo "$line_empty" | cut -d' ' -f2) us/query, recall@10 $(echo "$line_empty" | cut -d' ' -f3) (one run)"
log "read-only:       QPS $(echo "$line_ro" | cut -d' ' -f1), server CPU $(echo "$line_ro" | cut -d' ' -f2) us/query, recall@10 $(echo "$line_ro" | cut -d' ' -f3)"
for b in 1 "$batch"; do
    log "under $rate upserts/s, $b per request: QPS $(echo "${line[$b]}" | cut -d' ' -f1), server CPU $(echo "${line[$b]}" | cut -d' ' -f2) us/query, recall@10 $(echo "${line[$b]}" | cut -d' ' -f3); QPS under writes / read-only: $(awk -v a="${best[$b]}" -v b="$best_ro" 'BEGIN{printf "%.2f", a/b}')"
done
for ((r = 0; r < rounds; r++)); do
    for b in 1 "$batch"; do
        log "-- writes, round $r, $b per request"
        tee -a "$res" < "$dir/writes-$r-$b.txt"
    done
done
log "results in $res"
