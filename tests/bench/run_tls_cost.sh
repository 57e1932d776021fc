#!/usr/bin/env bash
# What TLS everywhere costs per query (issue 18): the same 2-partition version served by two local
# clusters side by side, one in plain text (cluster.sh up --insecure) and one with TLS everywhere
# (cluster.sh up: mutual TLS client -> coordinator -> shards, etcd https + RBAC, bearer token off), under
# the same `vecshard query` load: one query per call from 8 client threads, and batches of 32 from 2.
# Server CPU = utime + stime of the coordinator and both shards over the run (tests/bench/query_cpu.sh),
# the client's CPU beside it. Rounds interleaved (plain, TLS, plain, TLS...), each side's best kept,
# because this shared machine drifts by tens of percent within minutes. Data: tests/bench/cpu_data.sh
# (200k x 128 synthetic, IVF1024,PQ32x4fs,RFlat, nprobe 16, k_factor 4, k 10).
# Usage: tests/bench/run_tls_cost.sh [OUTDIR] [ROUNDS]   (default build/bench/tls, 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/tls}
rounds=${2:-3}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
tests/bench/cpu_data.sh "$out" hash2:2
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }

up() { # LABEL [--insecure]
    ./deploy/local/cluster.sh down --dir "$out/cl-$1" >/dev/null 2>&1 || true
    VS_BIN_DIR=$bin ./deploy/local/cluster.sh up ${2:-} --manifest "$out/hash2/manifest.json" --dir "$out/cl-$1" \
        --timeout 120 >/dev/null
}
run() { # LABEL CONC BATCH -> "qps server_us client_us p50 p99 recall"
    local dir=$out/cl-$1
    (
        [ -f "$dir/env" ] && . "$dir/env"
        VS_BIN_DIR=$bin tests/bench/query_cpu.sh "$dir/state" "$dir/query.json" --queries "$out/queries.fvecs" \
            --gt "$out/gt100.ivecs" --k 10 --nprobe 16 --k-factor 4 --batch "$3" --concurrency "$2"
    )
    /usr/bin/python3 - "$dir/query.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["calls_failed"] == 0 and j["queries_answered"] > 0, j
print("%.0f %.1f %.1f %.3f %.3f %.4f" % (j["qps"], j["server_cpu_us_per_query"], j["client_cpu_us_per_query"],
      j["latency_ms"]["p50"], j["latency_ms"]["p99"], j["recall_at_k"]))
PY
}
trap './deploy/local/cluster.sh down --dir "$out/cl-plain" >/dev/null 2>&1 || true;
      ./deploy/local/cluster.sh down --dir "$out/cl-tls" >/dev/null 2>&1 || true' EXIT
up plain --insecure
up tls
declare -A best
log "== TLS cost: IVF1024,PQ32x4fs,RFlat, 2 hash partitions, nprobe 16 k_factor 4 k 10; best of $rounds interleaved rounds"
for ((r = 0; r < rounds; r++)); do
    for b in 1 32; do
        c=8; [ "$b" = 32 ] && c=2
        for l in plain tls; do
            line=$(run "$l" "$c" "$b")
            echo "round $r $l batch $b: $line" >>"$res"
            prev=${best[$l $b]:-0 1e9}
            # best = the lowest server CPU per query (the figure compared), its row kept whole
            awk -v a="$(echo "$line" | cut -d' ' -f2)" -v b="$(echo "$prev" | cut -d' ' -f2)" 'BEGIN{exit !(a < b)}' &&
                best[$l $b]=$line
        done
    done
done
log ""
log "mode  batch | QPS | server CPU us/query | client CPU us/query | p50 ms | p99 ms | recall@10"
for b in 1 32; do
    for l in plain tls; do
        read -r qps srv cli p50 p99 rec <<< "${best[$l $b]}"
        log "$(printf '%-5s %5s | %6s | %6s | %6s | %s | %s | %s' "$l" "$b" "$qps" "$srv" "$cli" "$p50" "$p99" "$rec")"
    done
    read -r _ sp cp _ <<< "${best[plain $b]}"
    read -r _ st ct _ <<< "${best[tls $b]}"
    log "batch $b: TLS adds $(awk -v a="$st" -v b="$sp" 'BEGIN{printf "%.1f us (%+.1f%%)", a-b, (a-b)*100/b}') server CPU and $(awk -v a="$ct" -v b="$cp" 'BEGIN{printf "%.1f us", a-b}') client CPU per query"
done
log "results in $res"
