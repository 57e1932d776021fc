#!/usr/bin/env bash
# Reproduces the HNSW tables and plots of docs/benchmarks.md: our HNSW{M} and HNSW{M},SQ8, FAISS
# (Debian python3-faiss) on the same factory strings, and hnswlib (-O3 -march=native), in the same run
# on the same data, same M and efConstruction, with the ann-benchmarks protocol (search: 1 thread, 1
# query per call); builds use --build-threads (default 2) for everyone.
# Usage: tests/bench/run_hnsw.sh [fashion|synthetic|all] [OUTDIR]    (default: all, build/bench)
# Env: VS_BENCH_TAG (suffix of the output files), VS_BENCH_BUILD_THREADS, VS_BENCH_BUILD_DIR (build), VS_BENCH_SYNTH (directory
# holding base.fvecs, queries.fvecs, gt100.ivecs of the 1M x 128 set; made here when absent).
set -euo pipefail
cd "$(dirname "$0")/../.."
what=${1:-all}
out=${2:-build/bench}
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
bdir=${VS_BENCH_BUILD_DIR:-build}
cmake -S . -B "$bdir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$bdir" -j "$(nproc)" >/dev/null
bin=$bdir/bin
tag=${VS_BENCH_TAG:-}
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
bt=${VS_BENCH_BUILD_THREADS:-2}
sweep="efSearch=10,16,24,32,48,64,96,128,192,256,384,512"

bench() { # dataset base queries gt factory peers [extra...]
    local name=$1 base=$2 queries=$3 gt=$4 factory=$5 peers=$6
    shift 6
    echo "== $name: $factory (peers: ${peers:-none})" >&2
    "$bin/vecshard-bench" --base "$base" --queries "$queries" --gt "$gt" --dataset "$name" --index "$factory" \
        --search "$sweep" ${peers:+--peers "$peers"} --build-threads "$bt" "$@" --quiet |
        tee -a "$out/hnsw-$name$tag.jsonl"
}

if [ "$what" = fashion ] || [ "$what" = all ]; then
    fashion_data
    name=fashion-mnist-784-euclidean
    : > "$out/hnsw-$name$tag.jsonl"
    bench $name "$base" "$queries" "$gt" HNSW32 faiss,hnswlib --hnsw-m 32 --ef-construction 200
    bench $name "$base" "$queries" "$gt" HNSW32,SQ8 faiss --hnsw-m 32 --ef-construction 200
fi

if [ "$what" = synthetic ] || [ "$what" = all ]; then
    synthetic_data "${VS_BENCH_SYNTH:-$out/synthetic}"
    name=synthetic-1M-128-euclidean
    : > "$out/hnsw-$name$tag.jsonl"
    # M 16, efConstruction 100 and 2,000 queries keep one run of all four under an hour on 2 cores
    bench $name "$syn/base.fvecs" "$syn/queries.fvecs" "$syn/gt100.ivecs" HNSW16 faiss,hnswlib --nq 2000 \
        --hnsw-m 16 --ef-construction 100
    bench $name "$syn/base.fvecs" "$syn/queries.fvecs" "$syn/gt100.ivecs" HNSW16,SQ8 faiss --nq 2000 \
        --hnsw-m 16 --ef-construction 100
fi

/usr/bin/python3 tests/bench/plot.py "$out"/hnsw-*"$tag".jsonl
