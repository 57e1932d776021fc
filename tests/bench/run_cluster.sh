#!/usr/bin/env bash
# Reproduces the coordinator tables of docs/benchmarks.md on Fashion-MNIST (IVF1024,PQ392x4fs,RFlat,
# nprobe 16, k_factor 4, k 10; the same trained state for every variant, built by vecshard-build):
#  1. the unpartitioned index in process (vecshard-bench, 1 thread, one query per call);
#  2. the same index through one shard over gRPC (vecshard-bench-shard: what the shard adds);
#  3. the same index through shard + coordinator (P=1: what the coordinator adds on top);
#  4. 2 hash partitions and 2 cluster partitions through the coordinator: recall, QPS, p50/p99, fan-out.
# Client: `vecshard query`, one query per call, concurrency 1 (latency) and 2 (throughput).
# Usage: tests/bench/run_cluster.sh [OUTDIR]   (default build/bench/cluster; versions are cached there)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/cluster}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
d=/usr/share/datasets/fashion-mnist
base=$d/train-images-idx3-ubyte.gz
queries=$d/t10k-images-idx3-ubyte.gz
gt=$out/fashion-gt100.ivecs
[ -s "$gt" ] || "$bin/vecshard-gt" --base "$base" --queries "$queries" --k 100 --out "$gt"
factory="IVF1024,PQ392x4fs,RFlat"
build() { # version partitions partitioning
    [ -s "$out/$1/manifest.json" ] && return 0
    "$bin/vecshard-build" --base "$base" --factory "$factory" --partitions "$2" --partitioning "$3" \
        --version "$1" --out "$out" --seed 1 --quiet
}
build one 1 hash
build hash2 2 hash
build cluster2 2 cluster
build hash4 4 hash
build cluster4 4 cluster
res=$out/results.txt
: > "$res"

echo "== 1. in process, unpartitioned" | tee -a "$res"
"$bin/vecshard-bench" --base "$base" --queries "$queries" --gt "$gt" --dataset fashion-mnist \
    --index "$factory" --load-index "$out/one/part-0.vsidx" --search "nprobe=16;k_factor=4" --quiet | tee -a "$res"

echo "== 2. one shard over gRPC" | tee -a "$res"
"$bin/vecshard-bench-shard" --index "$out/one/part-0.vsidx" --queries "$queries" --k 10 \
    --params nprobe=16,k_factor=4 --batches 1 --calls 3000 --dataset fashion-mnist/one 2>/dev/null | tee -a "$res"

# fan-out and recall at several nprobe (2,000 queries each, concurrency 1): hash vs cluster partitions
sweep() { # name manifest
    local name=$1 manifest=$2 dir=$out/cluster-$1-sweep
    ./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
    ./deploy/local/cluster.sh up --insecure --manifest "$manifest" --dir "$dir" --replicas 1 --timeout 120 >/dev/null
    local addr m
    addr=$(. "$dir/state" && echo "$coordinator_addr")
    m=$(. "$dir/state" && echo "$coordinator_metrics_port")
    fan() { curl -s "http://127.0.0.1:$m/metrics" | awk '/^vecshard_coordinator_fanout_partitions_total/{p=$2} /^vecshard_coordinator_fanout_requests_total/{r=$2} END{print p, r}'; }
    for np in 1 2 4 8 16; do
        read -r p0 r0 < <(fan)
        local rec
        rec=$("$bin/vecshard" query --coordinator "$addr" --queries "$queries" --gt "$gt" --k 10 --nprobe "$np" \
            --k-factor 4 --limit 2000 --json | /usr/bin/python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["recall_at_k"])')
        read -r p1 r1 < <(fan)
        echo "$name nprobe=$np recall@10=$rec fanout=$(echo "$p0 $r0 $p1 $r1" | awk '{printf "%.2f", ($3-$1)/($4-$2)}')" | tee -a "$res"
    done
    ./deploy/local/cluster.sh down --dir "$dir" >/dev/null
}

through() { # name manifest concurrency...
    local name=$1 manifest=$2
    shift 2
    local dir=$out/cluster-$name
    ./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
    ./deploy/local/cluster.sh up --insecure --manifest "$manifest" --dir "$dir" --replicas 1 --timeout 120 >/dev/null
    local addr
    addr=$(. "$dir/state" && echo "$coordinator_addr")
    for c in "$@"; do
        echo "== $name through the coordinator, concurrency $c" | tee -a "$res"
        "$bin/vecshard" query --coordinator "$addr" --queries "$queries" --gt "$gt" --k 10 --nprobe 16 \
            --k-factor 4 --batch 1 --concurrency "$c" | tee -a "$res"
    done
    local m
    m=$(. "$dir/state" && echo "${coordinator_metrics_port:-}")
    if [ -n "$m" ]; then
        curl -s "http://127.0.0.1:$m/metrics" | grep -E '^vecshard_coordinator_fanout' | tee -a "$res"
    fi
    ./deploy/local/cluster.sh down --dir "$dir" >/dev/null
}
through one "$out/one/manifest.json" 1
through hash2 "$out/hash2/manifest.json" 1 2
through cluster2 "$out/cluster2/manifest.json" 1 2
sweep hash2 "$out/hash2/manifest.json"
sweep cluster2 "$out/cluster2/manifest.json"
sweep hash4 "$out/hash4/manifest.json"
sweep cluster4 "$out/cluster4/manifest.json"
echo "results in $res"
