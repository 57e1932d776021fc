#!/usr/bin/env bash
# CPU per write, by process, with writes alone (no query load): the cluster of run_writes.sh (etcd,
# nats-server, 2 hash-partition shards, the coordinator), vecshard-bench-writes upserting RATE ids per
# second for SECONDS, BATCH ids per request, no probes; then (utime + stime) of each process over the
# run divided by the ids written, from /proc, and the client's own from time(1).
# Usage: tests/bench/run_writes_cpu.sh [OUTDIR] [RATE] [SECONDS] [BATCH]   (build/bench/cpu, 1000, 10, 1)
# Needs the data and the version run_writes.sh makes (run it once first).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/cpu}
rate=${2:-1000}
secs=${3:-10}
batch=${4:-1}
bin=$PWD/build/bin
[ -s "$out/hash2/manifest.json" ] || { echo "run tests/bench/run_writes.sh first (it builds $out/hash2)" >&2; exit 2; }
dir=$out/cl-writes-cpu
./deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true
VS_BIN_DIR=$bin ./deploy/local/cluster.sh up --insecure --manifest "$out/hash2/manifest.json" --dir "$dir" --writes \
    --timeout 120 >/dev/null
trap './deploy/local/cluster.sh down --dir "$dir" >/dev/null 2>&1 || true' EXIT
addr=$(. "$dir/state" && echo "$coordinator_addr")
pids=$(grep -E '^proc_[A-Za-z0-9]+_pid=' "$dir/state" | cut -d= -f2 | tr -d "\"'")
ticks() { for p in $pids; do echo "$p $(awk '{print $14+$15}' "/proc/$p/stat") $(basename "$(readlink "/proc/$p/exe")")"; done; }
ticks > "$dir/cpu0"
/usr/bin/time -f "%U %S" -o "$dir/client.time" "$bin/vecshard-bench-writes" --coordinator "$addr" \
    --vectors "$out/base.fvecs" --rate "$rate" --batch "$batch" --seconds "$secs" --probe-every 1000000000 \
    --id-base 2000000000 > "$dir/writes.txt"
ticks > "$dir/cpu1"
n=$((rate * secs))
hz=$(getconf CLK_TCK)
echo "== CPU per id written, $rate ids/s, $batch per request, writes alone ($n ids)"
join "$dir/cpu0" "$dir/cpu1" | awk -v n="$n" -v hz="$hz" '{printf "%-24s %7.1f us\n", $3, ($4 - $2) / hz * 1e6 / n}'
awk -v n="$n" '{printf "%-24s %7.1f us\n", "vecshard-bench-writes", ($1 + $2) * 1e6 / n}' "$dir/client.time"
head -2 "$dir/writes.txt"
