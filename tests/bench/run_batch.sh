#!/usr/bin/env bash
# Multi-query kernels (issue 19): throughput of one search call over a batch of queries against one query
# per call, on the same index, queries and thread count. Batched answers are identical to one-at-a-time
# answers (tested in test_ivf_recall and test_hnsw), so recall is the same by construction; the script
# still prints both recall columns and fails if they differ.
#
# Protocol: one thread; rounds interleaved (one query per call, then the batch, ROUNDS times) and each
# side's best QPS kept, because this shared machine's speed drifts within minutes; the spread of the
# rounds is printed too. Indexes are built once and reused from OUTDIR (delete OUTDIR/*.vsi to rebuild).
#
# Data: the 1M x 128 synthetic set as hard as real SIFT descriptors (data.sh hard_synth_args), and, when
# present, any set given as NAME=DIR (DIR/base.fvecs, queries.fvecs, gt100.ivecs), e.g. the SIFT
# descriptors of Debian's photographs made by tests/bench/run_hardness.sh.
#
# Usage: tests/bench/run_batch.sh [OUTDIR] [ROUNDS] [NAME=DIR ...]   (default build/bench/batch, 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/batch}
rounds=${2:-3}
shift $(( $# >= 2 ? 2 : $# ))
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target vecshard-bench vecshard-gt vecshard-synth >/dev/null
bin=build/bin
res=$out/results.txt
: > "$res"
log() { echo "$*" | tee -a "$res"; }

# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
syn=$out/syn-hard-1M
mkdir -p "$syn"
# shellcheck disable=SC2086
[ -s "$syn/queries.fvecs" ] || "$bin/vecshard-synth" --out "$syn" --n 1000000 --nq 10000 --d 128 --seed 42 \
    --quiet $hard_synth_args
[ -s "$syn/gt100.ivecs" ] || "$bin/vecshard-gt" --base "$syn/base.fvecs" --queries "$syn/queries.fvecs" \
    --k 100 --out "$syn/gt100.ivecs"
sets=("syn-hard-1M=$syn" "$@")

# one (set, factory, sweep) comparison: single vs batch, interleaved rounds
compare() { # name dir factory sweep batch [build args...]
    local name=$1 dir=$2 factory=$3 sweep=$4 batch=$5
    shift 5
    local tag
    tag=$(echo "$factory" | tr ',' '_')
    local idx=$out/$name-$tag.vsi
    local common=(--base "$dir/base.fvecs" --queries "$dir/queries.fvecs" --gt "$dir/gt100.ivecs"
        --dataset "$name" --index "$factory" --search "$sweep" --threads 1 --quiet)
    if [ ! -s "$idx" ]; then
        echo "== building $factory on $name" >&2
        "$bin/vecshard-bench" "${common[@]}" --search "${sweep%%;*}" --build-threads "$(nproc)" "$@" \
            --save-index "$idx" --nq 100 > /dev/null
    fi
    local raw=$out/$name-$tag.jsonl
    : > "$raw"
    for r in $(seq "$rounds"); do
        for b in 1 "$batch"; do
            "$bin/vecshard-bench" "${common[@]}" --load-index "$idx" --batch "$b" | sed "s/^{/{\"round\":$r,/" >> "$raw"
        done
    done
    /usr/bin/python3 - "$raw" "$batch" <<'EOF' | tee -a "$res"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
B = int(sys.argv[2])
by = {}
for r in rows:
    by.setdefault(r['params'], {}).setdefault(r['batch'], []).append(r)
bad = 0
for params, sides in by.items():
    one, many = sides.get(1, []), sides.get(B, [])
    if not one or not many:
        continue
    q1 = sorted(x['qps'] for x in one)
    qb = sorted(x['qps'] for x in many)
    c1 = min(x['cpu_us_per_query'] for x in one)
    cb = min(x['cpu_us_per_query'] for x in many)
    r1, rb = one[0]['recall_at_10'], many[0]['recall_at_10']
    bad += abs(r1 - rb) > 1e-9
    print('%-13s %-24s %-22s recall %.4f/%.4f | 1/call %7.0f QPS (%.0f..%.0f) %6.1f us CPU | %d/call %7.0f QPS (%.0f..%.0f) %6.1f us CPU | x%.2f QPS, x%.2f CPU' % (
        rows[0]['dataset'], rows[0]['index'], params, r1, rb, q1[-1], q1[0], q1[-1], c1, B, qb[-1], qb[0], qb[-1],
        cb, qb[-1] / q1[-1], c1 / cb))
sys.exit(1 if bad else 0)
EOF
}

log "multi-query kernels: one thread, $rounds interleaved rounds, best QPS of each side (min..max of the rounds), least CPU time per query"
for s in "${sets[@]}"; do
    name=${s%%=*}
    dir=${s#*=}
    [ -s "$dir/gt100.ivecs" ] || "$bin/vecshard-gt" --base "$dir/base.fvecs" --queries "$dir/queries.fvecs" \
        --k 100 --out "$dir/gt100.ivecs"
    compare "$name" "$dir" "IVF4096,PQ32x4fs,RFlat" "nprobe=16,32,64;k_factor=4,8" 1024 --train-size 262144
    compare "$name" "$dir" "HNSW32" "efSearch=32,64,128" 256 --ef-construction 100
done
