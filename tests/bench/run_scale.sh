#!/usr/bin/env bash
# The scale run of docs/benchmarks.md (a benchmark, not in tests/run.sh): 10M synthetic clustered 128-d
# vectors (vecshard-synth, fixed seed, as hard as real descriptors: hard_synth_args in data.sh), exact
# ground truth for 10,000 queries, built by vecshard-build into 4 hash partitions of
# IVF16384,PQ32x4fs,RSQ8, served by 4 shard processes + the coordinator on loopback
# (deploy/local/cluster.sh), queried with `vecshard query`. Prints build time and rate, bytes per vector
# on disk and in RSS; then, one query per call under saturating closed-loop load (8 calls in flight) over a
# sweep of (nprobe, k_factor) (VS_SCALE_SWEEP): recall@10, QPS, CPU per query (coordinator + shards from
# /proc, the client from time(1), and their sum: every process on the box), p50/p99; at the setting
# reaching recall@10 0.95 with the highest QPS: open-loop load (Poisson arrivals, latency from the
# intended send time) at half the peak rate: p50/p99; batches of 32; and the same with each shard ranking
# its own lists (--coarse-at shard). Needs ~12 GiB of disk, ~8 GiB RAM.
# Usage: tests/bench/run_scale.sh [OUTDIR] [N]     (default build/bench/scale, 10000000)
# VS_SCALE_FACTORY / VS_SCALE_VERSION: another index over the same data (e.g. IVF16384_HNSW32,PQ32x4fs,RSQ8
# as version v10m-hnsw); the data and ground truth are reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/scale}
n=${2:-10000000}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
res=$out/results-${VS_SCALE_VERSION:-v10m}.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }
t() { date +%s.%N; }

# The data: vecshard-synth with the arguments that make it as hard as real 128-d descriptors at 1M (the
# same nprobe for IVF1024,Flat at recall@10 0.95 and the same local intrinsic dimensionality as SIFT
# descriptors of real photographs: tests/bench/run_hardness.sh, docs/benchmarks.md). Other data sets
# (VS_SYNTH_ARGS) are made afresh: the data, its ground truth and the indexes are dropped when it changes.
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
synth_args=${VS_SYNTH_ARGS-$hard_synth_args}
if [ "$(cat "$out/synth.args" 2>/dev/null)" != "n=$n $synth_args" ]; then
    rm -rf "$out/base.fvecs" "$out/queries.fvecs" "$out/gt100.ivecs" "$out"/v10m*
fi
if [ ! -s "$out/base.fvecs" ]; then
    s=$(t)
    # shellcheck disable=SC2086
    "$bin/vecshard-synth" --out "$out" --n "$n" --nq 10000 --d 128 --quiet $synth_args
    echo "n=$n $synth_args" > "$out/synth.args"
    log "synth: $n x 128 ($synth_args) in $(echo "$(t) - $s" | bc) s"
fi
log "data: $n x 128, vecshard-synth $synth_args"
if [ ! -s "$out/gt100.ivecs" ]; then
    s=$(t)
    "$bin/vecshard-gt" --base "$out/base.fvecs" --queries "$out/queries.fvecs" --k 100 --out "$out/gt100.ivecs"
    log "ground truth: 10000 queries in $(echo "$(t) - $s" | bc) s"
fi
factory=${VS_SCALE_FACTORY:-IVF16384,PQ32x4fs,RSQ8}
ver=${VS_SCALE_VERSION:-v10m}
log "index: $factory (version $ver)"
if [ ! -s "$out/$ver/manifest.json" ]; then
    s=$(t)
    "$bin/vecshard-build" --base "$out/base.fvecs" --factory "$factory" --partitions 4 --partitioning hash \
        --version "$ver" --out "$out" --train-sample 327680 --seed 1
    e=$(echo "$(t) - $s" | bc)
    log "build: $n vectors, $factory, 4 hash partitions in $e s ($(echo "$n / $e" | bc) vectors/s, 2 threads)"
fi
disk=$(du -cb "$out/$ver"/part-*.vsidx | tail -1 | cut -f1)
log "on disk: $disk bytes = $(echo "scale=1; $disk / $n" | bc) bytes/vector"

dir=$out/cluster
# VS_SCALE_THREADS=N: N gRPC workers in the coordinator and in each shard (default: one per CPU).
threads=${VS_SCALE_THREADS:-}
[ -n "$threads" ] && log "server workers: $threads per process (VS_SCALE_THREADS)"
up() {
    local targs=() cargs="$*"
    [ -n "$threads" ] && targs=(--shard-threads "$threads") cargs="--threads $threads $cargs"
    ./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
    ./deploy/local/cluster.sh up --insecure --manifest "$out/$ver/manifest.json" --dir "$dir" --replicas 1 --timeout 600 \
        --coordinator-args "$cargs" "${targs[@]}" >/dev/null
    addr=$(. "$dir/state" && echo "$coordinator_addr")
}
# measure LABEL QUERY-ARGS...: one `vecshard query` run and its CPU per query (query_cpu.sh)
measure() {
    local label=$1
    shift
    VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$dir/state" "$out/query.json" --queries "$out/queries.fvecs" \
        --gt "$out/gt100.ivecs" --k 10 "$@"
    /usr/bin/python3 - "$out/query.json" "$label" <<'EOF2' | tee -a "$res"
import json, sys
j = json.load(open(sys.argv[1]))
srv, cli = j["server_cpu_us_per_query"], j["client_cpu_us_per_query"]
print("%-34s | failed %d | recall@10 %.4f | QPS %6.0f | CPU/query server %6.1f us, client %5.1f us, total %6.1f us"
      " | p50 %.2f ms | p99 %.2f ms" % (sys.argv[2], j["calls_failed"], j["recall_at_k"], j["qps"], srv, cli,
      srv + cli, j["latency_ms"]["p50"], j["latency_ms"]["p99"]))
EOF2
}
jget() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/query.json" "$1"; }
up
# the sweep of (nprobe, k_factor); the rest runs at the setting with recall@10 >= 0.95 and the highest QPS
# (the last setting if none reaches it). On the hard data the PQ codes, not nprobe, bound recall at
# k_factor 4 (re-ranking 40 candidates per partition): the sweep raises both.
goal=
best_qps=0
for s in ${VS_SCALE_SWEEP:-8:4 16:4 32:4 64:4 8:8 16:8 8:16}; do
    np=${s%%:*} kf=${s##*:}
    measure "nprobe $np k_factor $kf, 1/call, 8 in flight" --nprobe "$np" --k-factor "$kf" --concurrency 8
    qps=$(jget qps | cut -d. -f1)
    if awk -v r="$(jget recall_at_k)" 'BEGIN{exit !(r >= 0.95)}' && [ "$qps" -gt "$best_qps" ]; then
        goal=$s best_qps=$qps
    fi
done
goal=${goal:-$s}
np=${goal%%:*} kf=${goal##*:}
log "setting for recall@10 >= 0.95 (highest QPS): nprobe $np k_factor $kf"
measure "nprobe $np k_factor $kf, 1/call, 8 in flight" --nprobe "$np" --k-factor "$kf" --concurrency 8
peak=$(jget qps | cut -d. -f1)
measure "nprobe $np k_factor $kf, open loop at $((peak / 2))/s" --nprobe "$np" --k-factor "$kf" \
    --concurrency 64 --rate $((peak / 2))
measure "nprobe $np k_factor $kf, batches of 32, 2 in flight" --nprobe "$np" --k-factor "$kf" --concurrency 2 \
    --batch 32
up --coarse-at shard
measure "--coarse-at shard: nprobe $np k_factor $kf, 1/call" --nprobe "$np" --k-factor "$kf" --concurrency 8
measure "--coarse-at shard: batches of 32" --nprobe "$np" --k-factor "$kf" --concurrency 2 --batch 32
rss=0
for p in $(sed -n 's/^proc_p[0-9]*r[0-9]*_pid=//p' "$dir/state"); do
    r=$(awk '/VmRSS/{print $2}' "/proc/$p/status")
    rss=$((rss + r * 1024))
done
log "RSS of the 4 shards after the queries: $rss bytes = $(echo "scale=1; $rss / $n" | bc) bytes/vector"
./deploy/local/cluster.sh down --dir "$dir" >/dev/null
log "results in $res"
