#!/usr/bin/env bash
# Attribute-filtered search in process (issue 17 goal: on >= 1M vectors, 1 % filters uncorrelated and
# correlated with the clusters, by one tag value and by a two-term conjunction, at recall@10 >= 0.95
# against the exact filtered ground truth within 2x the unfiltered latency at recall 0.95; 0.1 %, 10 %
# and 50 % and post-filtering reported beside). Runs vecshard-bench-filter (tests/bench/filter_main.c)
# for IVF1024,PQ32x4fs,RFlat and HNSW32 on the 1M x 128 synthetic set of run_ivf.sh and run_hnsw.sh
# (synthetic_data in data.sh, made once and reused), or with N on an N x 128 set made by vecshard-synth
# (same seed) into OUTDIR/synthetic-N. One query per call on one thread; filtered, post-filtered and
# unfiltered rounds interleaved, each side's best of 2 (the box is shared). Each index runs twice: with its
# default strategy (filters estimated to match at most 4,096 items are answered exactly over them; IVF
# filters of at most 3 % visit the matching items of the nearest lists holding one; others go through the
# lists / the graph), and with filter_exact_threshold at 0.05 % (NAME-scan: the exact path for at most
# 500 items at 1M), the strategies side by side.
# Output per run: OUTDIR/filter-NAME.txt (the table), .json, .log (progress on stderr).
# About 10 minutes at 1M on 2 cores with 300 queries (VS_FILTER_NQ; making the data and its ground truth
# the first time adds 1-2): mostly the builds (each run builds its index) and post-filtering's large k'.
# Exit 1 when a run found a result violating its filter, a short answer, or answers changing between runs.
# Usage: tests/bench/run_filter.sh [OUTDIR] [N]   (default build/bench, the 1M set)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench}
n=${2:-}
nq=${VS_FILTER_NQ:-300}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target vecshard-bench-filter vecshard-synth vecshard-gt >/dev/null
bin=$PWD/build/bin
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
if [ -z "$n" ]; then
    synthetic_data "${VS_BENCH_SYNTH:-$out/synthetic}"
else
    syn=$out/synthetic-$n
    mkdir -p "$syn"
    [ -s "$syn/base.fvecs" ] || "$bin/vecshard-synth" --out "$syn" --n "$n" --nq 10000 --d 128 --seed 42
fi

rc=0
run() { # NAME FACTORY [flags...]
    local name=$1 factory=$2
    shift 2
    echo "== filter-$name: $factory over $syn, $nq queries $*" >&2
    "$bin/vecshard-bench-filter" --base "$syn/base.fvecs" --queries "$syn/queries.fvecs" --factory "$factory" \
        --nq "$nq" --json "$out/filter-$name.json" "$@" 2> "$out/filter-$name.log" | tee "$out/filter-$name.txt" ||
        { echo "run_filter.sh: filter-$name failed (see $out/filter-$name.log)" >&2; rc=1; }
}
run ivf "IVF1024,PQ32x4fs,RFlat"
run ivf-scan "IVF1024,PQ32x4fs,RFlat" --filter-exact 0.0005
run hnsw32 HNSW32
run hnsw32-scan HNSW32 --filter-exact 0.0005
exit $rc
