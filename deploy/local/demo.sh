#!/usr/bin/env bash
# vecshard demo on this machine: installs what is missing, builds, computes exact ground truth for
# Fashion-MNIST (Debian's dataset-fashion-mnist: 60,000 base images, 10,000 test queries, 784-d, L2),
# then runs the real test queries through our exact search and prints recall@10, QPS and latency:
# one query at a time on one thread (the ann-benchmarks protocol) and in batches of 1,000 on all cores;
# then the same queries through an IVF-PQ index (4-bit fast-scan codes, float re-rank), built once and
# kept in build/demo/ as an index file that later runs map instead of rebuilding.
# Usage: deploy/local/demo.sh [--peers]   (--peers: FAISS and hnswlib beside us, same run, same data)
set -euo pipefail
cd "$(dirname "$0")/../.."

peers=""
case "${1:-}" in
--peers) peers="--peers faiss,hnswlib" ;;
-h | --help) sed -n '2,6p' "$0"; exit 0 ;;
"") ;;
*) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
esac

./deploy/local/install-deps.sh

echo "== building (build/, Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin

data=/usr/share/datasets/fashion-mnist
base=$data/train-images-idx3-ubyte.gz
queries=$data/t10k-images-idx3-ubyte.gz
work=build/demo
mkdir -p "$work"
gt=$work/fashion-mnist-gt100.ivecs
if [ ! -s "$gt" ]; then
    echo "== exact ground truth, k=100 (vecshard-gt)"
    "$bin/vecshard-gt" --base "$base" --queries "$queries" --k 100 --out "$gt"
fi

run() {
    "$bin/vecshard-bench" --base "$base" --queries "$queries" --gt "$gt" --dataset fashion-mnist-784-euclidean \
        --index Flat --k 10 "$@" --quiet
}
echo "== exact search (Flat), 10,000 queries: one at a time, 1 thread"
run --threads 1 --batch 1 $peers | tee "$work/flat-single.jsonl"
echo "== exact search (Flat), 10,000 queries: batches of 1,000, $(nproc) threads"
run --threads "$(nproc)" --batch 1000 $peers | tee "$work/flat-batch.jsonl"

ivf="IVF1024,PQ392x4fs,RFlat"
echo "== IVF-PQ ($ivf: 4-bit fast-scan codes + float re-rank), one query at a time, 1 thread"
index_file=$work/fashion-ivf1024-pq392x4fs-rflat.vsi
if [ -s "$index_file" ]; then
    run_ivf=(--load-index "$index_file")
else
    run_ivf=(--save-index "$index_file")
fi
"$bin/vecshard-bench" --base "$base" --queries "$queries" --gt "$gt" --dataset fashion-mnist-784-euclidean \
    --index "$ivf" --search "nprobe=4,8,16;k_factor=4" "${run_ivf[@]}" $peers | tee "$work/ivf-single.jsonl"

/usr/bin/python3 - "$work/flat-single.jsonl" "$work/flat-batch.jsonl" "$work/ivf-single.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
print()
print(f"{'index':<32} {'params':<20} {'threads':>7} {'batch':>6} {'recall@10':>9} {'QPS':>10} {'p50 us':>10} {'p99 us':>10}")
for r in rows:
    print(f"{r['index']:<32} {r['params']:<20} {r['threads']:>7} {r['batch']:>6} {r['recall_at_10']:>9.4f}"
          f" {r['qps']:>10.1f} {r['p50_us']:>10.1f} {r['p99_us']:>10.1f}")
print("(batch rows: latency is per call of 1,000 queries)")
PY
