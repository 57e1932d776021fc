#!/usr/bin/env bash
# Index speed against the peers (issue 19): our IVF against FAISS's best IVF configuration, and our graph
# (HNSW{M}, HNSW{M},SQ8) against hnswlib, on several data shapes, in one run. A benchmark, not part of
# tests/run.sh (an hour or more on 2 cores).
#
# Protocol: one thread, one query per call (ann-benchmarks), every peer timed from a compiled loop
# (vecshard-peer-faiss, vecshard-peer-hnswlib), recall computed by vecshard-bench for everyone from the
# ids they return. ROUNDS rounds, interleaved: in each round ours, then FAISS, then our graph, then
# hnswlib; each side's best round is reported with the spread (tests/bench/speed_table.py). Every index,
# ours and the peers', is built in the first round and saved in OUTDIR, and loaded in later rounds
# (vecshard-bench --save-index/--load-index, --peer-index-file; build_s is then the load time): delete
# OUTDIR's index files to build again. M and efConstruction are the same for us and hnswlib; FAISS runs
# the same factory strings as ours plus RaBitQ fast-scan strings (same refine, so comparable resident
# bytes).
# Each round then also times batched, multi-threaded search (the multi-query kernels against FAISS's
# batched search and hnswlib's threads): all queries in one call, on every CPU, the same sweeps; the table
# reports that mode separately.
#
# FAISS: the compiled peer is built against the FAISS under VS_FAISS_ROOT (an installed prefix; we use
# v1.15.0 built from source by hand with FAISS_OPT_LEVEL=avx512, see docs/benchmarks.md), else against
# Debian's libfaiss-dev 1.7.3 (-DVS_FAISS_SYSTEM=ON; it has no RaBitQ, those rows then fail and are
# skipped).
#
# Data sets, each NAME=DIR:METRIC[:N] with DIR/base.fvecs, queries.fvecs and gt100.ivecs (made here when
# absent; with N, the first N base vectors, copied with their own ground truth into OUTDIR/data-NAME-N;
# DIR holds no ':'):
# Fashion-MNIST is always included; add e.g. the SIFT descriptors of Debian's photographs
# (tests/bench/run_hardness.sh makes them), and the word and sentence embeddings of
# tests/bench/text_debian.py (metric ip or cosine).
#
# Usage: tests/bench/run_speed.sh [OUTDIR] [ROUNDS] [NAME=DIR:METRIC[:N] ...]   (default build/bench/speed, 2)
# Env: VS_FAISS_ROOT, VS_BENCH_NQ (queries per set, default 10000), VS_BENCH_EFC (efConstruction, 200),
#      VS_BENCH_M (HNSW M, 32), VS_BENCH_BUILD_THREADS (2), VS_BENCH_FASHION=0 (leave Fashion-MNIST out),
#      VS_BENCH_IVF_SWEEP, VS_BENCH_GRAPH_SWEEP (the sweeps, FAISS parameter names; HNSW{M},SQ8 adds
#      k_factor=1,2,4 to the graph sweep).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/speed}
rounds=${2:-2}
shift $(( $# >= 2 ? 2 : $# ))
mkdir -p "$out"
./deploy/local/install-deps.sh --bench
bdir=build
faiss_args=(-DVS_FAISS_SYSTEM=ON)
[ -n "${VS_FAISS_ROOT:-}" ] && faiss_args=(-DVS_FAISS_ROOT="$VS_FAISS_ROOT")
cmake -S . -B "$bdir" -DCMAKE_BUILD_TYPE=Release "${faiss_args[@]}" >/dev/null
cmake --build "$bdir" -j "$(nproc)" >/dev/null
bin=$bdir/bin
[ -x "$bin/vecshard-peer-faiss" ] || { echo "run_speed.sh: no compiled FAISS peer (set VS_FAISS_ROOT)" >&2; exit 1; }
nq=${VS_BENCH_NQ:-10000}
efc=${VS_BENCH_EFC:-200}
M=${VS_BENCH_M:-32}
bt=${VS_BENCH_BUILD_THREADS:-2}
ivf_sweep=${VS_BENCH_IVF_SWEEP:-"nprobe=1,2,4,6,8,12,16,24,32,48,64,96,128,192,256;k_factor=1,2,4,8,16"}
graph_sweep=${VS_BENCH_GRAPH_SWEEP:-"efSearch=10,16,24,32,48,64,96,128,192,256,384,512"}

# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
sets=("$@")
if [ "${VS_BENCH_FASHION:-1}" != 0 ]; then
    fashion_data
    sets=("fashion-mnist-784=FASHION:l2" "$@")
fi

threads=1 # search threads and queries per call of run(): 1 and 1, or every CPU and all queries (batched)
batch=1
run() { # jsonl round [vecshard-bench args...]: one bench call, its rows tagged with the round
    local file=$1 r=$2
    shift 2
    "$bin/vecshard-bench" "$@" --threads "$threads" --batch "$batch" --nq "$nq" --build-threads "$bt" \
        --ef-construction "$efc" --hnsw-m "$M" --quiet | sed "s/^{/{\"round\":$r,/" >> "$file" || echo "run_speed.sh: failed: $*" >&2
}

ours() { # jsonl round factory sweep: our index, built and saved on its first round, loaded after
    local idx
    idx=$out/$name-$(echo "$3" | tr ',' '_').vsi
    if [ -s "$idx" ]; then
        run "$1" "$2" "${common[@]}" --index "$3" --search "$4" --load-index "$idx"
    else
        run "$1" "$2" "${common[@]}" --index "$3" --search "$4" --save-index "$idx"
    fi
}

peer() { # jsonl round factory-for-hnswlib peer peer-index sweep: a peer, its index cached in OUTDIR
    local cache own=() # the cache is named by all the peer cannot check in it: set (and N), metric, factory
    cache=$out/$name-$metric-$4-$(echo "${5:-$3}" | tr ',' '_')
    if [ "$4" = faiss ]; then
        own=(--peer-index "$5") # FAISS's own factory string
    fi
    run "$1" "$2" "${common[@]}" --index "$3" --no-ours --peers "$4" "${own[@]}" --peer-search "$6" \
        --peer-index-file "$cache"
}

for s in "${sets[@]}"; do
    name=${s%%=*}
    rest=${s#*=}
    dir=${rest%%:*}
    rest=${rest#*:}
    metric=${rest%%:*}
    nmax=
    [ "$rest" != "$metric" ] && nmax=${rest#*:}
    if [ -n "$nmax" ]; then # the first nmax base vectors, with their own ground truth
        if ! [[ $nmax =~ ^[1-9][0-9]*$ ]] || [ "$dir" = FASHION ]; then
            echo "run_speed.sh: $s: N must be a positive integer, and Fashion-MNIST takes none" >&2
            exit 2
        fi
        name=$name-$nmax
        sub=$out/data-$name
        mkdir -p "$sub"
        if [ ! -s "$sub/gt100.ivecs" ]; then
            d=$(od -An -t d4 -N 4 "$dir/base.fvecs" | tr -d ' ')
            head -c $((nmax * 4 * (d + 1))) "$dir/base.fvecs" > "$sub/base.fvecs"
            cp "$dir/queries.fvecs" "$sub/queries.fvecs"
        fi
        dir=$sub
    fi
    if [ "$dir" = FASHION ]; then
        files=(--base "$base" --queries "$queries" --gt "$gt")
        n=60000
        d=784
    else
        [ -s "$dir/gt100.ivecs" ] || "$bin/vecshard-gt" --base "$dir/base.fvecs" --queries "$dir/queries.fvecs" \
            --k 100 --metric "$metric" --out "$dir/gt100.ivecs"
        files=(--base "$dir/base.fvecs" --queries "$dir/queries.fvecs" --gt "$dir/gt100.ivecs")
        d=$(od -An -t d4 -N 4 "$dir/base.fvecs" | tr -d ' ')
        n=$(( $(stat -c %s "$dir/base.fvecs") / (4 * (d + 1)) ))
    fi
    # nlist: the power of two nearest 4 sqrt(n); PQ fast scan with d/4 and d/2 sub-quantizers
    nlist=$(/usr/bin/python3 -c "import math; print(2 ** round(math.log2(4 * math.sqrt($n))))")
    ivf_ours=("IVF$nlist,PQ$((d / 4))x4fs,RFlat" "IVF$nlist,PQ$((d / 2))x4fs,RFlat")
    ivf_faiss=("${ivf_ours[@]}" "RR$d,IVF$nlist,RaBitQfs,RFlat" "IVF$nlist,RaBitQfs4,RFlat")
    file=$out/$name.jsonl
    : > "$file"
    echo "== $name: $n x $d ($metric), nlist $nlist, $rounds rounds" >&2
    common=("${files[@]}" --dataset "$name" --metric "$metric")
    for r in $(seq "$rounds"); do
        for mode in single batched; do
            threads=1 batch=1
            [ $mode = batched ] && threads=$(nproc) batch=$nq
            for f in "${ivf_ours[@]}"; do
                ours "$file" "$r" "$f" "$ivf_sweep"
            done
            for f in "${ivf_faiss[@]}"; do
                peer "$file" "$r" "${ivf_ours[0]}" faiss "$f" "$ivf_sweep"
            done
            for f in "HNSW$M" "HNSW$M,SQ8"; do
                sweep=$graph_sweep
                [ "$f" = "HNSW$M,SQ8" ] && sweep="$graph_sweep;k_factor=1,2,4"
                ours "$file" "$r" "$f" "$sweep"
            done
            peer "$file" "$r" "HNSW$M" hnswlib "" "$graph_sweep"
        done
    done
done
/usr/bin/python3 tests/bench/speed_table.py "$out"/*.jsonl | tee "$out/table.md"
