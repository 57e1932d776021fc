#!/usr/bin/env bash
# The data of the cluster CPU benchmarks (run_cpu.sh, run_writes.sh, run_writes_cpu.sh), made once and
# reused: 200k x 128 synthetic vectors with 10,000 queries, their exact top 100, and the versions asked
# for, each NAME:P an IVF1024,PQ32x4fs,RFlat index in P hash partitions (seed 1). Run with the Release
# binaries built (build/bin). Usage: tests/bench/cpu_data.sh OUTDIR NAME:P...
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?OUTDIR}
shift
bin=$PWD/build/bin
mkdir -p "$out"
[ -s "$out/base.fvecs" ] || "$bin/vecshard-synth" --out "$out" --n 200000 --nq 10000 --d 128 --quiet
[ -s "$out/gt100.ivecs" ] ||
    "$bin/vecshard-gt" --base "$out/base.fvecs" --queries "$out/queries.fvecs" --k 100 --out "$out/gt100.ivecs"
for v in "$@"; do
    [ -s "$out/${v%%:*}/manifest.json" ] ||
        "$bin/vecshard-build" --base "$out/base.fvecs" --factory "IVF1024,PQ32x4fs,RFlat" \
            --partitions "${v##*:}" --partitioning hash --version "${v%%:*}" --out "$out" --seed 1 --quiet
done
