#!/usr/bin/env bash
# CPU per query through the cluster against the same index in process (issue 14, goal 1). Data:
# vecshard-synth 200k x 128 (fixed seed), 10,000 queries, IVF1024,PQ32x4fs,RFlat at nprobe 16, k_factor 4,
# k 10, built by vecshard-build into 1, 2 and 4 hash partitions (one trained state).
#  - in process: vecshard-bench --load-index, 1 thread, one query per call and batches of 32. A
#    single-threaded CPU-bound loop: CPU per query = 1 / QPS.
#  - through the cluster (deploy/local/cluster.sh: etcd, one shard per partition, the coordinator, release
#    binaries), `vecshard query` under saturating closed-loop load: one query per call from 8 client
#    threads, and batches of 32 from 2. Server CPU = utime + stime of the coordinator and every shard
#    from /proc over the run; the client's CPU is printed beside it (it shares the 2 cores).
#  - the same cluster settings with one gRPC worker per server ("now1"), and the floor gRPC itself sets on
#    this box: vecshard-bench-rpc, an echo server with no vecshard code, unary and persistent streams.
#  - rounds interleaved (in process, cluster, in process, cluster...) and each side's best kept, because
#    this shared machine drifts by tens of percent within minutes.
# With VS_BASE_BIN_DIR set (binaries of another build: vecshard-coordinator, vecshard-shard), every
# cluster setting also runs with those, for a before/after comparison in the same run.
# Usage: tests/bench/run_cpu.sh [OUTDIR] [ROUNDS]   (default build/bench/cpu, 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/cpu}
rounds=${2:-2}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
factory="IVF1024,PQ32x4fs,RFlat" # the versions' (tests/bench/cpu_data.sh)
tests/bench/cpu_data.sh "$out" one:1 hash2:2 hash4:4
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }

inproc() { # batch -> "qps"
    "$bin/vecshard-bench" --base "$out/base.fvecs" --queries "$out/queries.fvecs" --gt "$out/gt100.ivecs" \
        --index "$factory" --load-index "$out/one/part-0.vsidx" --search "nprobe=16;k_factor=4" --batch "$1" \
        --quiet | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["qps"])'
}

# cluster LABEL BINDIR VERSION CONC BATCH -> one line: qps server_us client_us p50 p99 rpcs calls
cluster_run() {
    local dir=$out/cl-$1-$3
    VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$dir/state" "$dir/query.json" --queries "$out/queries.fvecs" \
        --gt "$out/gt100.ivecs" --k 10 --nprobe 16 --k-factor 4 --batch "$5" --concurrency "$4"
    /usr/bin/python3 - "$dir/query.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["calls_failed"] == 0 and j["queries_answered"] > 0, j
print("%.0f %.1f %.1f %.3f %.3f %.4f" % (j["qps"], j["server_cpu_us_per_query"], j["client_cpu_us_per_query"],
      j["latency_ms"]["p50"], j["latency_ms"]["p99"], j["recall_at_k"]))
EOF
}

up() { # LABEL BINDIR VERSION [THREADS]
    local dir=$out/cl-$1-$3 targs=()
    [ -n "${4:-}" ] && targs=(--shard-threads "$4" --coordinator-args "--threads $4")
    ./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
    VS_BIN_DIR=$2 ./deploy/local/cluster.sh up --insecure --manifest "$out/$3/manifest.json" --dir "$dir" --replicas 1 \
        --timeout 120 "${targs[@]}" >/dev/null
}
down() { ./deploy/local/cluster.sh down --dir "$out/cl-$1-$2" >/dev/null; }

# LABEL:BINDIR:THREADS. "now" runs the servers' default (one gRPC worker per CPU); "now1" one worker in the
# coordinator and one in each shard, the setting for servers sharing 2 vCPUs with each other and the client.
labels=("now:$bin:" "now1:$bin:1")
[ -n "${VS_BASE_BIN_DIR:-}" ] && labels+=("base:$VS_BASE_BIN_DIR:")
declare -A best_in best
for b in 1 32; do best_in[$b]=0; done
log "== $factory nprobe 16 k_factor 4 k 10, 200k x 128 synthetic; best of $rounds interleaved rounds"
for v in one hash2 hash4; do
    for l in "${labels[@]}"; do
        IFS=: read -r name dir th <<< "$l"
        up "$name" "$dir" "$v" "$th"
    done
    for ((r = 0; r < rounds; r++)); do
        for b in 1 32; do
            q=$(inproc "$b")
            awk -v a="$q" -v b="${best_in[$b]}" 'BEGIN{exit !(a > b)}' && best_in[$b]=$q
            c=8; [ "$b" = 32 ] && c=2
            for l in "${labels[@]}"; do
                IFS=: read -r name dir th <<< "$l"
                line=$(cluster_run "$name" "$dir" "$v" "$c" "$b")
                key="${l%%:*} $v $b"
                prev=${best[$key]:-0 0}
                awk -v a="${line%% *}" -v b="${prev%% *}" 'BEGIN{exit !(a > b)}' && best[$key]=$line
            done
        done
    done
    for l in "${labels[@]}"; do down "${l%%:*}" "$v"; done
done
log ""
log "in process, 1 thread: batch 1 ${best_in[1]} QPS = $(awk -v q="${best_in[1]}" 'BEGIN{printf "%.1f", 1e6/q}') us/query; batch 32 ${best_in[32]} QPS = $(awk -v q="${best_in[32]}" 'BEGIN{printf "%.1f", 1e6/q}') us/query"
log "build version batch | cluster QPS | server CPU us/query | ratio to in process | client CPU us/query | p50 ms | p99 ms | recall@10"
for l in "${labels[@]}"; do
    for v in one hash2 hash4; do
        for b in 1 32; do
            read -r qps srv cli p50 p99 rec <<< "${best[${l%%:*} $v $b]}"
            log "$(printf '%-5s %-5s %5s | %7s | %6s | %5s | %6s | %s | %s | %s' "${l%%:*}" "$v" "$b" "$qps" "$srv" \
                "$(awk -v s="$srv" -v q="${best_in[$b]}" 'BEGIN{printf "%.2fx", s*q/1e6}')" "$cli" "$p50" "$p99" "$rec")"
        done
    done
done
log ""
log "gRPC floor (vecshard-bench-rpc: an echo server, no vecshard code; per message, best of 3 interleaved rounds):"
log "one query per call (600 B request, 200 B answer, 8 in flight):"
"$bin/vecshard-bench-rpc" --n 40000 --inflight 8 --rounds 3 | grep '^{' | tee -a "$res"
log "a batch of 32 per call (16,600 B request, 4,000 B answer, 2 in flight):"
"$bin/vecshard-bench-rpc" --n 10000 --inflight 2 --rounds 3 --req-bytes 16600 --resp-bytes 4000 | grep '^{' |
    tee -a "$res"
log "results in $res"
