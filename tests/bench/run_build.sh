#!/usr/bin/env bash
# The build benchmark of docs/benchmarks.md (not in tests/run.sh): the one-process build against the
# distributed build (issue 20) of the same data and options, on this box. Data: vecshard-synth, N 128-d
# vectors as hard as real descriptors (hard_synth_args in data.sh). Prints each stage's wall and CPU time,
# the rate per core with training excluded (assign + encode + merge + save; the distributed side's encode
# workers run at once, one thread each, so the box's cores are all busy), the size of the workers' files,
# and whether every file of the two versions is byte-identical (it must be).
# Usage: tests/bench/run_build.sh [OUTDIR] [N] [FACTORY] [WORKERS]
#        (default build/bench/build, 2000000, IVF4096,PQ32x4fs,RSQ8, nproc)
# VS_BUILD_TRAIN_SAMPLE: training rows (default 200000; both sides).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/build}
n=${2:-2000000}
factory=${3:-IVF4096,PQ32x4fs,RSQ8}
workers=${4:-$(nproc)}
ts=${VS_BUILD_TRAIN_SAMPLE:-200000}
mkdir -p "$out"
./deploy/local/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
# shellcheck source=tests/bench/data.sh
. tests/bench/data.sh
if [ "$(cat "$out/synth.args" 2>/dev/null)" != "n=$n $hard_synth_args" ]; then
    rm -f "$out/base.fvecs"
    # shellcheck disable=SC2086
    "$bin/vecshard-synth" --out "$out" --n "$n" --nq 1000 $hard_synth_args --quiet
    echo "n=$n $hard_synth_args" > "$out/synth.args"
fi
cd "$out"
rm -rf one dist
common=(--base base.fvecs --factory "$factory" --partitions 2 --version v --build-time 1 --target-recall 0
        --train-sample "$ts")
# wall and CPU seconds (its waited-for children included) of a command run in this (sub)shell, as "WALL CPU"
timed() {
    local t0 c0 t1 c1 me=$BASHPID
    t0=$(date +%s.%N)
    c0=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$me/stat")
    "$@" >/dev/null
    t1=$(date +%s.%N)
    c1=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$me/stat")
    echo "$t0 $t1 $c0 $c1 $(getconf CLK_TCK)" | awk '{printf "%.2f %.2f", $2 - $1, ($4 - $3) / $5}'
}
report() { # name, "WALL CPU" (CPU 0 = not measured), rows (0 = no rate)
    echo "$2 $3 $(nproc)" | awk -v name="$1" '{r = $3 > 0 ? sprintf(", %.1fk vectors/s per core (wall x cores)", $3 / $1 / $4 / 1e3) : ""; c = $2 > 0 && $3 > 0 ? sprintf(", %.1fk per CPU-second", $3 / $2 / 1e3) : ""; printf "%-44s %7.2f s wall %7.2f s CPU%s%s\n", name, $1, $2, r, c}'
}
echo "build benchmark: $n x 128 ($hard_synth_args), $factory, 2 hash partitions, train sample $ts, $(nproc) cores"
# one process: its own stage lines ("assign: 2.00M in 12.42 s (...)") give the time without sampling and
# training; its CPU time is for the whole run
t_all=$(timed "$bin/vecshard-build" "${common[@]}" --out one 2> one.log)
report "one process, all (incl. training)" "$t_all" 0
wall=$(awk '/^(assign|add|save)[ :]/ {for (i = 1; i < NF; i++) if ($i == "in") s += $(i + 1)} END {print s}' one.log)
report "one process, training excluded" "$wall 0" "$n"
t_train=$(timed "$bin/vecshard-build" "${common[@]}" --out dist --stage train --quiet)
report "distributed: train" "$t_train" 0
enc() {
    local i
    for ((i = 0; i < workers; i++)); do
        "$bin/vecshard-build" "${common[@]}" --out dist --stage encode --workers "$workers" --worker "$i" --threads 1 --quiet &
    done
    wait
}
t_enc=$(timed enc)
report "distributed: encode ($workers workers x 1 thread)" "$t_enc" "$n"
echo "workers' files: $(du -sh dist/v/.build | cut -f1)"
t_merge=$(timed "$bin/vecshard-build" "${common[@]}" --out dist --stage merge --workers "$workers" --quiet)
report "distributed: merge" "$t_merge" "$n"
wall=$(echo "$t_enc $t_merge" | awk '{print $1 + $3}')
cpu=$(echo "$t_enc $t_merge" | awk '{print $2 + $4}')
report "distributed, training excluded" "$wall $cpu" "$n"
same=0 total=0
for f in one/v/*; do
    total=$((total + 1))
    cmp -s "$f" "dist/v/$(basename "$f")" && same=$((same + 1))
done
echo "byte-identical: $same of $total files"
[ "$same" = "$total" ]
