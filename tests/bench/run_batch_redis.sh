#!/usr/bin/env bash
# Batch neighbours into Redis (issue 16): `vecshard batch` throughput per core, Redis writes included,
# against the in-process single-query loop of the same version with the same parameters (so the same
# recall: the batch kernel's answers equal one-at-a-time answers, tested in test_ivf_recall; recall@k is
# printed for both anyway, on the first 10,000 queries).
#
# Data: 1M x 128 synthetic base as hard as real SIFT descriptors (data.sh hard_synth_args) and 1M queries of
# the same distribution; version IVF4096,PQ32x4fs,RFlat in one partition (built once, kept in OUTDIR).
# Redis: a private redis-server on a free port, no persistence (--save "" --appendonly no), noeviction.
#
# Per core: CPU seconds per query, summed over every process doing the work:
#   single-query:  vecshard-bench --batch 1 --threads 1 (process CPU time per query; 1 thread = 1 core)
#   batch:         vecshard batch --threads $(nproc) (process CPU) + redis-server's CPU over the run
#   online:        the same version served by a local cluster (deploy/local/cluster.sh: etcd, one shard, the
#                  coordinator), `vecshard query` one query per call, 8 in flight (query_cpu.sh: the servers'
#                  CPU from /proc, the client's beside it)
# Rounds interleave (single, online, batch; each side's best) because this shared box drifts.
#
# Usage: tests/bench/run_batch_redis.sh [OUTDIR] [ROUNDS] [K] [PARAMS]
#        (default build/bench/batch-redis, 2, 100, "nprobe=24,k_factor=2")
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/batch-redis}
rounds=${2:-2}
k=${3:-100}
params=${4:-nprobe=24,k_factor=2}
np=$(echo "$params" | sed -n 's/.*nprobe=\([0-9]*\).*/\1/p')
kf=$(echo "$params" | sed -n 's/.*k_factor=\([0-9.]*\).*/\1/p')
[ -n "$np" ] && [ -n "$kf" ] || { echo "PARAMS must give nprobe and k_factor (e.g. nprobe=24,k_factor=2)" >&2; exit 2; }
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target vecshard vecshard-bench vecshard-gt vecshard-synth vecshard-build \
    vecshard-shard vecshard-coordinator >/dev/null
bin=build/bin
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }

# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
syn=$out/syn
mkdir -p "$syn"
# shellcheck disable=SC2086
[ -s "$syn/queries.fvecs" ] || "$bin/vecshard-synth" --out "$syn" --n 1000000 --nq 1000000 --d 128 --seed 42 \
    --quiet $hard_synth_args
[ -s "$syn/q10k.fvecs" ] || head -c $((10000 * 516)) "$syn/queries.fvecs" > "$syn/q10k.fvecs"
[ -s "$syn/gt100-10k.ivecs" ] || "$bin/vecshard-gt" --base "$syn/base.fvecs" --queries "$syn/q10k.fvecs" \
    --k 100 --out "$syn/gt100-10k.ivecs"
[ -s "$out/ver/syn1m/manifest.json" ] || "$bin/vecshard-build" --base "$syn/base.fvecs" \
    --factory IVF4096,PQ32x4fs,RFlat --out "$out/ver" --version syn1m --quiet
man=$out/ver/syn1m/manifest.json

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$out/redis"
redis-server --port "$port" --bind 127.0.0.1 --dir "$out/redis" --save "" --appendonly no \
    --maxmemory-policy noeviction --logfile "$out/redis/log" --daemonize yes --pidfile "$out/redis/pid"
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
rpid=$(cat "$out/redis/pid")
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
hz=$(getconf CLK_TCK)

cl=$out/cluster
./deploy/local/cluster.sh down --dir "$cl" >/dev/null 2>&1 || true
VS_BIN_DIR=$bin ./deploy/local/cluster.sh up --insecure --manifest "$man" --dir "$cl" --timeout 300 >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; ./deploy/local/cluster.sh down --dir "$cl" >/dev/null 2>&1 || true' EXIT

log "# run_batch_redis.sh $(date -u +%FT%TZ) on $(nproc) CPUs: k=$k params=$params, 1M queries, 1M base"
single_best=""
batch_best=""
for r in $(seq "$rounds"); do
    # one query per call, one thread (10,000 queries: the per-query cost; the 1M batch takes minutes)
    "$bin/vecshard-bench" --base "$syn/base.fvecs" --queries "$syn/q10k.fvecs" --gt "$syn/gt100-10k.ivecs" \
        --k "$k" --index IVF4096,PQ32x4fs,RFlat --load-index "$out/ver/syn1m/part-0.vsidx" \
        --search "${params//,/;}" --threads 1 --batch 1 --quiet > "$out/single-$r.json"
    log "single round $r: $(cat "$out/single-$r.json")"
    VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$cl/state" "$out/online-$r.json" --queries "$syn/q10k.fvecs" \
        --gt "$syn/gt100-10k.ivecs" --k "$k" --nprobe "$np" --k-factor "$kf" \
        --batch 1 --concurrency 8
    log "online round $r: $(cat "$out/online-$r.json")"
    redis-cli -p "$port" flushall >/dev/null
    c0=$(cpu_of "$rpid")
    "$bin/vecshard" batch --manifest "$man" --queries "$syn/queries.fvecs" --redis "127.0.0.1:$port" \
        --k "$k" --params "$params" --set "round$r" --json --quiet > "$out/batch-$r.json"
    c1=$(cpu_of "$rpid")
    rcpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz}')
    log "batch round $r: $(cat "$out/batch-$r.json") redis_cpu_seconds=$rcpu"
    echo "$rcpu" > "$out/batch-$r.redis-cpu"
    # recall of what was written, on the first 10,000 keys (row numbers), from Redis
    /usr/bin/python3 - "$port" "round$r" "$syn/gt100-10k.ivecs" "$k" <<'EOF' | tee -a "$res"
import sys, numpy as np, redis
sys.path.insert(0, "coordinator/client/python")
from vecshard.neighbours import decode
port, s, gt_path, k = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
r = redis.Redis(port=port)
raw = np.fromfile(gt_path, dtype="<i4")
gt = raw.reshape(-1, raw[0] + 1)[:, 1:]
vals = r.mget([f"vs:nbrs/{s}:{i}" for i in range(len(gt))])
for kk in sorted({10, k}):
    hits = sum(len(set(decode(v)[0][:kk].tolist()) & set(gt[i, :kk].tolist())) for i, v in enumerate(vals))
    print(f"written set {s}: recall@{kk} {hits / (len(gt) * kk):.4f} over {len(gt)} keys")
EOF
done
/usr/bin/python3 - "$out" "$rounds" "$(nproc)" <<'EOF' | tee -a "$res"
import json, sys
out, rounds, ncpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
single = [json.loads(open(f"{out}/single-{r}.json").read().splitlines()[-1]) for r in range(1, rounds + 1)]
batch = [json.loads(open(f"{out}/batch-{r}.json").read()) for r in range(1, rounds + 1)]
online = [json.load(open(f"{out}/online-{r}.json")) for r in range(1, rounds + 1)]
rcpu = [float(open(f"{out}/batch-{r}.redis-cpu").read()) for r in range(1, rounds + 1)]
s_us = [s["cpu_us_per_query"] for s in single]
b_us = [(b["cpu_seconds"] + c) * 1e6 / b["written"] for b, c in zip(batch, rcpu)]
v_us = [b["cpu_seconds"] * 1e6 / b["written"] for b in batch]
r_us = [c * 1e6 / b["written"] for b, c in zip(batch, rcpu)]
best_s, best_b = min(s_us), min(b_us)
print(f"single-query, 1 thread: CPU per query {best_s:.1f} us (rounds {', '.join(f'{x:.1f}' for x in s_us)}) "
      f"= {1e6 / best_s:.0f} queries/s per core; QPS {max(s['qps'] for s in single):.0f}; "
      f"recall@10 {single[0].get('recall_at_10')}")
print(f"batch, {ncpu} threads, Redis writes included: CPU per query {best_b:.1f} us (rounds "
      f"{', '.join(f'{x:.1f}' for x in b_us)}; vecshard {min(v_us):.1f} + redis-server {min(r_us):.1f}) "
      f"= {1e6 / best_b:.0f} queries/s per core; wall {max(b['qps'] for b in batch):.0f} queries/s on {ncpu} cores; "
      f"search {min(b['search_seconds'] for b in batch):.1f} s, Redis writes {min(b['write_seconds'] for b in batch):.1f} s")
wall = max(b["qps"] for b in batch) / ncpu
print(f"batch throughput per core / single-query: {best_s / best_b:.2f}x by CPU time (goal 2x); by wall clock "
      f"{wall:.0f} queries/s per core (QPS / {ncpu} cores, redis-server on the same cores) = "
      f"{wall / max(s['qps'] for s in single):.2f}x the single-query QPS")
used = max(b["redis_used_after"] - b["redis_used_before"] for b in batch)
print(f"Redis memory of one set: {used / 2**20:.0f} MiB for {batch[0]['written']} keys = {used / batch[0]['written']:.0f} B "
      f"per key (estimated {batch[0]['key_bytes_estimate']} B)")
o_srv = min(o["server_cpu_us_per_query"] for o in online)
o_cli = min(o["client_cpu_us_per_query"] for o in online)
print(f"online through the cluster (1 query per call, 8 in flight): servers {o_srv:.0f} us + client {o_cli:.0f} us "
      f"CPU per query; QPS {max(o['qps'] for o in online):.0f}; recall@{online[0]['k']} {online[0]['recall_at_k']:.4f}")
print(f"CPU-seconds per 1M queries: online through the cluster {o_srv:.0f} s (+{o_cli:.0f} s client); single-query "
      f"in process {best_s:.0f} s; batch into Redis {best_b:.0f} s ({o_srv / best_b:.1f}x less than online)")
EOF
