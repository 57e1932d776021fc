#!/usr/bin/env bash
# Reproduces the shard-overhead table of docs/benchmarks.md: the same Fashion-MNIST queries through
# in-process search and through a vecshard-shard process on loopback gRPC, one call at a time, batches of
# 1 and 100, with the shard's default worker count (one per core) and with one worker.
# Usage: tests/bench/run_shard.sh [OUTDIR]   (default build/bench; the IVF index is built once, cached there)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
d=/usr/share/datasets/fashion-mnist
index=$out/fashion-ivf1024-pq392x4fs-rflat.vsi
if [ ! -s "$index" ]; then
    gt=$out/fashion-gt100.ivecs
    [ -s "$gt" ] || "$bin/vecshard-gt" --base "$d/train-images-idx3-ubyte.gz" --queries "$d/t10k-images-idx3-ubyte.gz" \
        --k 100 --out "$gt"
    "$bin/vecshard-bench" --base "$d/train-images-idx3-ubyte.gz" --queries "$d/t10k-images-idx3-ubyte.gz" --gt "$gt" \
        --index "IVF1024,PQ392x4fs,RFlat" --search "nprobe=8;k_factor=4" --save-index "$index" --quiet >/dev/null
fi
: > "$out/shard-rpc.jsonl"
for threads in default 1; do
    echo "== shard gRPC workers: $threads"
    "$bin/vecshard-bench-shard" --index "$index" --queries "$d/t10k-images-idx3-ubyte.gz" --k 10 \
        --params nprobe=8,k_factor=4 --batches 1,100 --calls 3000 --dataset "fashion-mnist/workers=$threads" \
        $([ "$threads" = default ] || echo --shard-threads "$threads") 2>>"$out/shard-rpc.jsonl"
done
grep -v '^{' "$out/shard-rpc.jsonl" >&2 || true
sed -i '/^{/!d' "$out/shard-rpc.jsonl"
