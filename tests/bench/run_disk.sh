#!/usr/bin/env bash
# The disk tier's benchmark of docs/benchmarks.md (issue 20; not in tests/run.sh): one IVF index file with
# exact refine vectors (RFlat) searched with its refine section in memory and with it on disk
# (vecshard-bench-disk: same queries, interleaved, each side's best round), beside fio's random 4 KiB read
# IOPS of the same file at queue depth 1 and 32 (O_DIRECT, io_uring; 2 jobs at depth 32, as the
# benchmark's 2 threads). Data: N x 128 vectors as hard as real descriptors (hard_synth_args in data.sh),
# 1,000 queries and their exact 100 nearest neighbours.
# Usage: tests/bench/run_disk.sh [OUTDIR] [N] [NPROBE] [K_FACTORS] [THREADS]
#        (default build/bench/disk, 2000000, 48, 4,8,12,16, 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/disk}
n=${2:-2000000}
nprobe=${3:-48}
kfs=${4:-4,8,12,16}
threads=${5:-2}
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
if [ "$(cat "$out/synth.args" 2>/dev/null)" != "n=$n $hard_synth_args" ]; then
    rm -rf "$out/base.fvecs" "$out/gt100.ivecs" "$out/rf"
    # shellcheck disable=SC2086
    "$bin/vecshard-synth" --out "$out" --n "$n" --nq 1000 $hard_synth_args --quiet
    echo "n=$n $hard_synth_args" > "$out/synth.args"
fi
cd "$out"
[ -s gt100.ivecs ] || "$bin/vecshard-gt" --base base.fvecs --queries queries.fvecs --out gt100.ivecs --k 100 >/dev/null
[ -s rf/v/manifest.json ] || "$bin/vecshard-build" --base base.fvecs --factory IVF4096,PQ32x4fs,RFlat \
    --partitions 1 --out rf --version v --build-time 1 --target-recall 0 --train-sample 200000 --quiet >/dev/null
echo "disk benchmark: $n x 128 ($hard_synth_args), IVF4096,PQ32x4fs,RFlat, nprobe $nprobe, $threads threads, $(nproc) cores"
fio_random_reads rf/v/part-0.vsidx
"$bin/vecshard-bench-disk" --index rf/v/part-0.vsidx --queries queries.fvecs --gt gt100.ivecs --k 10 \
    --nprobe "$nprobe" --k-factor "$kfs" --threads "$threads" --rounds 2
