#!/usr/bin/env bash
# Reproduces the exact-search (Flat) figures of docs/benchmarks.md on Fashion-MNIST: ours and FAISS's
# IndexFlatL2 in the same run, one query per call on 1 thread, and batches of 1,000 on 2 threads.
# Usage: tests/bench/run_flat.sh [OUTDIR]   (default build/bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
d=/usr/share/datasets/fashion-mnist
gt=$out/fashion-gt100.ivecs
[ -s "$gt" ] || build/bin/vecshard-gt --base "$d/train-images-idx3-ubyte.gz" \
    --queries "$d/t10k-images-idx3-ubyte.gz" --k 100 --out "$gt"
run() {
    build/bin/vecshard-bench --base "$d/train-images-idx3-ubyte.gz" --queries "$d/t10k-images-idx3-ubyte.gz" \
        --gt "$gt" --dataset fashion-mnist-784-euclidean --index Flat --peers faiss --quiet "$@"
}
{
    run --threads 2 --batch 1000
    run --threads 1 --batch 1 --nq 2000
} | tee "$out/flat${VS_BENCH_TAG:-}.jsonl"
build/bin/vecshard-scanbw --mib 1024 --m 32 | tee -a "$out/flat${VS_BENCH_TAG:-}.jsonl"
build/bin/vecshard-scanbw --mib 1024 --m 64 | tee -a "$out/flat${VS_BENCH_TAG:-}.jsonl"
