#!/usr/bin/env bash
# shellcheck disable=SC2154 # coordinator_addr, shard_p0r0_metrics_port: the cluster state file
# The 100M run of docs/benchmarks.md (issue 20; not in tests/run.sh: hours of CPU and ~30 GB of disk).
# One shard's index of N x 128 vectors as hard as real descriptors, stored as bytes (.bvecs: 100M x 128
# float32 would be 51 GB), built in one process, then searched with its refine vectors read from disk:
#   1. data: vecshard-synth --bvecs-scale 16 (hard_synth_args), 1,000 queries; exact ground truth
#      (vecshard-gt reads the base in pieces);
#   2. build: IVF{NLIST},PQ32x4fs,RSQ8, one partition; the stage lines give the rates;
#   3. fio: random 4 KiB O_DIRECT reads of the index file at queue depth 1 and 32;
#   4. vecshard-bench-disk with no memory limit: the index all in RAM (page cache) against refine on
#      disk, interleaved, at each nprobe and k_factor (the CPU ratio of the issue's goal);
#   5. the disk side alone in a cgroup v1 memory limit of LIMIT_GB (below the refine section), caches
#      dropped first: what a shard whose refine data does not fit its memory does;
#   6. a real cluster (cluster.sh, TLS) started inside the same cgroup (etcd, coordinator and the shard
#      with --refine-on-disk share the limit: this kernel cannot move a running process's charges), caches
#      dropped first, 1,000 queries through the coordinator with `vecshard query`, twice.
# Steps 1-2 are skipped when their outputs exist for the same arguments.
# Usage: tests/bench/run_100m.sh [OUTDIR] [N] [NLIST] [LIMIT_GB] [NPROBES] [K_FACTORS]
#        (default build/bench/100m, 100000000, 16384, 4, 32,64, 12,48,96,200)
# VS_BUILD_TRAIN_SAMPLE: training rows (default 500000). E2E_NPROBE, E2E_KF: step 6's search parameters
# (default: the first nprobe, k_factor 200). Needs root (cgroup, drop_caches).
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
out=${1:-build/bench/100m}
n=${2:-100000000}
nlist=${3:-16384}
limit_gb=${4:-4}
nprobes=${5:-32,64}
kfs=${6:-12,48,96,200}
ts=${VS_BUILD_TRAIN_SAMPLE:-500000}
e2e_nprobe=${E2E_NPROBE:-${nprobes%%,*}}
e2e_kf=${E2E_KF:-200}
factory="IVF$nlist,PQ32x4fs,RSQ8"
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
cd "$out"
args="n=$n $hard_synth_args --bvecs-scale 16"
if [ "$(cat synth.args 2>/dev/null)" != "$args" ]; then
    rm -rf base.bvecs queries.bvecs gt100.ivecs ix
    # shellcheck disable=SC2086
    "$bin/vecshard-synth" --out . --n "$n" --nq 1000 $hard_synth_args --bvecs-scale 16 --quiet
    echo "$args" > synth.args
fi
echo "100M run: $n x 128 bytes ($hard_synth_args, --bvecs-scale 16), $factory, 1 partition, $(nproc) cores,"
echo "  $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, train sample $ts; $(date -u +%FT%TZ)"
if [ ! -s gt100.ivecs ]; then
    t0=$(date +%s)
    "$bin/vecshard-gt" --base base.bvecs --queries queries.bvecs --out gt100.ivecs --k 100 --quiet
    echo "ground truth: $(($(date +%s) - t0)) s"
fi
if [ ! -s ix/v/manifest.json ] || ! grep -q "\"$factory\"" ix/v/manifest.json; then
    rm -rf ix
    t0=$(date +%s)
    "$bin/vecshard-build" --base base.bvecs --factory "$factory" --partitions 1 --out ix --version v \
        --build-time 1 --target-recall 0 --train-sample "$ts" 2> build.log
    echo "build: $(($(date +%s) - t0)) s wall"
fi
# the build's stage lines ("assign: 100.00M in 812.3 s (...)")
grep -E '^(sample|train|assign|add|save)[ :]' build.log | sed 's/^/  build /' || true
awk '/^(assign|add|save)[ :]/ {for (i = 1; i < NF; i++) if ($i == "in") s += $(i + 1)} END {if (s > 0) printf "  build, training excluded: %.0f s, %.1fk vectors/s per core (wall x cores)\n", s, '"$n"' / s / '"$(nproc)"' / 1e3}' build.log
stat -c %s ix/v/part-0.vsidx | awk '{printf "index file: %.2f GB\n", $1 / 1e9}'
df -h . | awk 'NR == 2 {print "disk: " $2 " in all, " $4 " free"}'
fio_random_reads ix/v/part-0.vsidx
IFS=, read -r -a nps <<< "$nprobes"
echo "== no memory limit: all in RAM (page cache) against refine on disk =="
for np in "${nps[@]}"; do
    "$bin/vecshard-bench-disk" --index ix/v/part-0.vsidx --queries queries.bvecs --gt gt100.ivecs --k 10 \
        --nprobe "$np" --k-factor "$kfs" --threads 2 --rounds 2 | sed "s/^/nprobe $np: /"
done
cg=/sys/fs/cgroup/memory/vecshard-100m
in_cgroup() { # runs "$@" in the memory cgroup
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"
}
cg_report() {
    echo "  cgroup: limit $(($(cat $cg/memory.limit_in_bytes) >> 20)) MiB, peak $(($(cat $cg/memory.max_usage_in_bytes) >> 20)) MiB, limit hit $(cat $cg/memory.failcnt) times"
}
mkdir -p "$cg"
echo $((limit_gb << 30)) > "$cg/memory.limit_in_bytes"
echo "== disk side alone, memory limit $limit_gb GiB, caches dropped =="
for np in "${nps[@]}"; do
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo 0 > "$cg/memory.max_usage_in_bytes"
    echo 0 > "$cg/memory.failcnt"
    in_cgroup "$bin/vecshard-bench-disk" --index ix/v/part-0.vsidx --queries queries.bvecs --gt gt100.ivecs --k 10 \
        --nprobe "$np" --k-factor "$kfs" --threads 2 --rounds 2 --disk-only | sed "s/^/nprobe $np: /"
    cg_report
done
echo "== cluster: the shard with --refine-on-disk in the memory limit, queries through the coordinator =="
cdir=$PWD/cluster
manifest=$PWD/ix/v/manifest.json
cleanup() {
    (cd "$src" && deploy/local/cluster.sh down --dir "$cdir" >/dev/null 2>&1) || true
    rmdir "$cg" 2>/dev/null || true
}
trap cleanup EXIT
sync
echo 3 > /proc/sys/vm/drop_caches
echo 0 > "$cg/memory.max_usage_in_bytes"
echo 0 > "$cg/memory.failcnt"
(cd "$src" && in_cgroup deploy/local/cluster.sh up --manifest "$manifest" --partitions 1 --dir "$cdir" \
    --timeout 600 --shard-args "--refine-on-disk" >/dev/null)
# shellcheck disable=SC1091
. "$cdir/state"
# shellcheck disable=SC1091
. "$cdir/env"
for round in 1 2; do
    "$bin/vecshard" query --coordinator "$coordinator_addr" --queries queries.bvecs --gt gt100.ivecs --k 10 \
        --nprobe "$e2e_nprobe" --k-factor "$e2e_kf" --concurrency 4 --timeout-ms 5000 |
        sed "s/^/round $round (nprobe $e2e_nprobe, k_factor $e2e_kf): /"
done
cg_report
curl -s "http://127.0.0.1:$shard_p0r0_metrics_port/metrics" |
    grep -E '^vecshard_shard_refine_disk_(reads|bytes|fetches)_total|^process_resident_memory_bytes' | sed 's/^/  /' || true
