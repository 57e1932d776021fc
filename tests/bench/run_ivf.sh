#!/usr/bin/env bash
# Reproduces the IVF-PQ tables and plots of docs/benchmarks.md: our IVF indexes, FAISS (Debian
# python3-faiss) on the same factory strings, and hnswlib, in the same run on the same data, with the
# ann-benchmarks protocol (1 thread, 1 query per call).
# Usage: tests/bench/run_ivf.sh [fashion|synthetic|all] [OUTDIR]    (default: all, build/bench)
# To compare with another FAISS (e.g. one you built yourself), put it first on PYTHONPATH: the peer
# then labels its rows "faiss-<version>:".
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
out=${2:-build/bench}
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
tag=${VS_BENCH_TAG:-}
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh

bench() { # dataset base queries gt factory sweep peers [extra...]
    local name=$1 base=$2 queries=$3 gt=$4 factory=$5 sweep=$6 peers=$7
    shift 7
    echo "== $name: $factory (peers: ${peers:-none})" >&2
    "$bin/vecshard-bench" --base "$base" --queries "$queries" --gt "$gt" --dataset "$name" --index "$factory" \
        --search "$sweep" ${peers:+--peers "$peers"} "$@" --quiet | tee -a "$out/$name$tag.jsonl"
}

if [ "$what" = fashion ] || [ "$what" = all ]; then
    fashion_data
    name=fashion-mnist-784-euclidean
    : > "$out/$name$tag.jsonl"
    bench $name "$base" "$queries" "$gt" "IVF1024,PQ392x4fs,RFlat" "nprobe=1,2,4,8,16,32,64;k_factor=1,4,8" \
        "faiss${VS_BENCH_HNSWLIB-,hnswlib}" --hnsw-m 32 --ef-construction 200
    bench $name "$base" "$queries" "$gt" "IVF1024,Flat" "nprobe=1,2,4,8,16,32" faiss
fi

if [ "$what" = synthetic ] || [ "$what" = all ]; then
    synthetic_data "$out/synthetic"
    name=synthetic-1M-128-euclidean
    : > "$out/$name$tag.jsonl"
    # 2,000 of the 10,000 queries keep a full run of every peer under half an hour on 2 cores
    bench $name "$syn/base.fvecs" "$syn/queries.fvecs" "$syn/gt100.ivecs" "IVF1024,PQ32x4fs,RFlat" \
        "nprobe=4,8,16,32,64,128;k_factor=4,16" "faiss${VS_BENCH_HNSWLIB-,hnswlib}" --nq 2000 \
        --hnsw-m 16 --ef-construction 100
    bench $name "$syn/base.fvecs" "$syn/queries.fvecs" "$syn/gt100.ivecs" "IVF1024,PQ64x4fs,RFlat" \
        "nprobe=4,8,16,32,64,128;k_factor=2,8" faiss --nq 2000
fi

/usr/bin/python3 tests/bench/plot.py "$out"/*"$tag".jsonl
