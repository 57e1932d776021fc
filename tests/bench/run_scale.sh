#!/usr/bin/env bash
# The scale run of docs/benchmarks.md (a benchmark, not in tests/run.sh): 10M synthetic clustered 128-d
# vectors (vecshard-synth, fixed seed), exact ground truth for 1,000 queries, built by vecshard-build into
# 4 hash partitions of IVF16384,PQ32x4fs,RSQ8, served by 4 shard processes + the coordinator on loopback
# (deploy/local/cluster.sh), queried with `vecshard query` at several nprobe. Prints build time and
# rate, bytes per vector on disk and in RSS, recall@10, QPS, p50/p99. Needs ~12 GiB of disk, ~8 GiB RAM.
# Usage: tests/bench/run_scale.sh [OUTDIR] [N]     (default build/bench/scale, 10000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/scale}
n=${2:-10000000}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }
t() { date +%s.%N; }

if [ ! -s "$out/base.fvecs" ]; then
    s=$(t)
    "$bin/vecshard-synth" --out "$out" --n "$n" --nq 1000 --d 128 --quiet
    log "synth: $n x 128 in $(echo "$(t) - $s" | bc) s"
fi
if [ ! -s "$out/gt100.ivecs" ]; then
    s=$(t)
    "$bin/vecshard-gt" --base "$out/base.fvecs" --queries "$out/queries.fvecs" --k 100 --out "$out/gt100.ivecs"
    log "ground truth: 1000 queries in $(echo "$(t) - $s" | bc) s"
fi
factory="IVF16384,PQ32x4fs,RSQ8"
if [ ! -s "$out/v10m/manifest.json" ]; then
    s=$(t)
    "$bin/vecshard-build" --base "$out/base.fvecs" --factory "$factory" --partitions 4 --partitioning hash \
        --version v10m --out "$out" --train-sample 327680 --seed 1
    e=$(echo "$(t) - $s" | bc)
    log "build: $n vectors, $factory, 4 hash partitions in $e s ($(echo "$n / $e" | bc) vectors/s, 2 threads)"
fi
disk=$(du -cb "$out"/v10m/part-*.vsidx | tail -1 | cut -f1)
log "on disk: $disk bytes = $(echo "scale=1; $disk / $n" | bc) bytes/vector"

dir=$out/cluster
./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
./deploy/local/cluster.sh up --manifest "$out/v10m/manifest.json" --dir "$dir" --replicas 1 --timeout 600 >/dev/null
addr=$(. "$dir/state" && echo "$coordinator_addr")
for np in 8 16 32 64; do
    log "== nprobe $np, k_factor 4, one query per call, concurrency 2"
    "$bin/vecshard" query --coordinator "$addr" --queries "$out/queries.fvecs" --gt "$out/gt100.ivecs" --k 10 \
        --nprobe "$np" --k-factor 4 --concurrency 2 | grep -E "failed|recall|QPS|latency" | tee -a "$res"
done
rss=0
for p in $(sed -n 's/^proc_p[0-9]*r[0-9]*_pid=//p' "$dir/state"); do
    r=$(awk '/VmRSS/{print $2}' "/proc/$p/status")
    rss=$((rss + r * 1024))
done
log "RSS of the 4 shards after the queries: $rss bytes = $(echo "scale=1; $rss / $n" | bc) bytes/vector"
./deploy/local/cluster.sh down --dir "$dir" >/dev/null
log "results in $res"
