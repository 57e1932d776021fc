#!/usr/bin/env bash
# vecshard demo on this machine: installs what is missing, builds (build/, Release), and serves Fashion-MNIST
# (Debian's dataset-fashion-mnist: 60,000 base images, 10,000 test queries, 784-d, L2) from a local cluster:
# vecshard-build splits an IVF-PQ index ("IVF1024,PQ392x4fs,RFlat") into 2 hash partitions (kept in
# build/demo, reruns skip the build), deploy/local/cluster.sh starts etcd, 2 shards and the coordinator, and
# `vecshard query` sends the 10,000 test queries through the coordinator (one per call, 2 client threads,
# nprobe 16, k_factor 4): recall@10 against exact ground truth, QPS, latency p50/p99. Then it stops the cluster.
# Usage: deploy/local/demo.sh [--keep] [--in-process] [--peers]
#   --keep        leave the cluster running (deploy/local/cluster.sh status|down --dir build/demo/cluster)
#   --in-process  also search in one process with vecshard-bench: exact (Flat) and the same IVF-PQ factory
#   --peers       implies --in-process: FAISS and hnswlib beside us, same run, same data
set -euo pipefail
cd "$(dirname "$0")/../.."

keep=0
in_process=0
peers=""
while [ $# -gt 0 ]; do
    case "$1" in
    --keep) keep=1 ;;
    --in-process) in_process=1 ;;
    --peers) in_process=1; peers="--peers faiss,hnswlib" ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

./deploy/local/install-deps.sh

echo "== building (build/, Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=build/bin
for b in vecshard vecshard-shard vecshard-coordinator vecshard-build vecshard-gt; do
    [ -x "$bin/$b" ] || { echo "demo.sh: $bin/$b was not built" >&2; exit 1; }
done

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

factory="IVF1024,PQ392x4fs,RFlat"
version=fashion-ivf1024-pq392x4fs-2p
manifest=$work/versions/$version/manifest.json
if [ -s "$manifest" ]; then
    echo "== index version $version: kept from an earlier run ($manifest)"
else
    echo "== vecshard-build: $factory, 2 hash partitions -> $work/versions/$version"
    "$bin/vecshard-build" --base "$base" --metric l2 --factory "$factory" --partitions 2 --partitioning hash \
        --version "$version" --model-version fashion-mnist-pixels --out "$work/versions"
fi

cluster_dir=$work/cluster
stop_cluster() { ./deploy/local/cluster.sh down --dir "$cluster_dir" >/dev/null || true; }
# A cluster left by an earlier --keep run in the demo's own directory is stopped first.
stop_cluster
if [ "$keep" = 0 ]; then
    trap stop_cluster EXIT
fi
echo "== local cluster: etcd, 2 shards (one per partition), the coordinator (deploy/local/cluster.sh)"
./deploy/local/cluster.sh up --partitions 2 --replicas 1 --manifest "$manifest" --dir "$cluster_dir" --timeout 120
addr=$(sed -n 's/^coordinator_addr=//p' "$cluster_dir/state")
# the cluster runs TLS (mutual, with certificates from deploy/local/certs.sh): the tools' settings
. "$cluster_dir/env"
"$bin/vecshard" status --coordinator "$addr"

echo "== 10,000 Fashion-MNIST test queries through the coordinator at $addr"
echo "   (vecshard query: one query per call, 2 client threads, nprobe 16, k_factor 4, k 10)"
rc=0
"$bin/vecshard" query --coordinator "$addr" --queries "$queries" --gt "$gt" --k 10 --batch 1 --concurrency 2 \
    --nprobe 16 --k-factor 4 --timeout-ms 5000 | tee "$work/cluster-query.txt" || rc=$?
[ "$rc" = 0 ] || echo "demo.sh: some calls failed (see above and $cluster_dir/*.log)" >&2

if [ "$in_process" = 1 ]; then
    run() {
        "$bin/vecshard-bench" --base "$base" --queries "$queries" --gt "$gt" --dataset fashion-mnist-784-euclidean \
            --k 10 "$@" --quiet
    }
    echo "== in one process: exact search (Flat), one query at a time, 1 thread"
    run --index Flat --threads 1 --batch 1 $peers | tee "$work/flat-single.jsonl"
    echo "== in one process: $factory (one index, not partitioned), one query at a time, 1 thread"
    index_file=$work/fashion-ivf1024-pq392x4fs-rflat.vsi
    if [ -s "$index_file" ]; then ivf=(--load-index "$index_file"); else ivf=(--save-index "$index_file"); fi
    run --index "$factory" --search "nprobe=4,8,16;k_factor=4" "${ivf[@]}" $peers | tee "$work/ivf-single.jsonl"
    /usr/bin/python3 - "$work/flat-single.jsonl" "$work/ivf-single.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
print()
print(f"{'index':<32} {'params':<20} {'threads':>7} {'batch':>6} {'recall@10':>9} {'QPS':>10} {'p50 us':>10} {'p99 us':>10}")
for r in rows:
    print(f"{r['index']:<32} {r['params']:<20} {r['threads']:>7} {r['batch']:>6} {r['recall_at_10']:>9.4f}"
          f" {r['qps']:>10.1f} {r['p50_us']:>10.1f} {r['p99_us']:>10.1f}")
PY
fi

if [ "$keep" = 1 ]; then
    echo "== the cluster keeps running (TLS): . $cluster_dir/env for the tools and the Python client;"
    echo "   deploy/local/cluster.sh status --dir $cluster_dir (and down)"
else
    echo "== stopping the cluster"
fi
exit "$rc"
