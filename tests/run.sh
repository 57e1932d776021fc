#!/usr/bin/env bash
# Runs every vecshard test: installs what is missing, builds (warnings are errors), runs ctest on every
# label but bench, and exits non-zero on any failure.
# Three passes: a RelWithDebInfo build runs every label but bench; an ASan+UBSan build runs the unit tests
# again (bad input must never crash); a clang libFuzzer build fuzzes the shard's request decoder for a
# bounded time (VS_FUZZ_SECONDS, default 30). Usage: tests/run.sh [--no-asan] [--no-fuzz] [-j N]
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
fuzz=1
jobs=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    -j) jobs=$2; shift ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "tests/run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

./deploy/local/install-deps.sh

export OPENBLAS_NUM_THREADS=1
echo "== build/ci: RelWithDebInfo, -Werror"
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVS_WERROR=ON >/dev/null
cmake --build build/ci -j "$jobs"
ctest --test-dir build/ci -LE bench --output-on-failure -j "$jobs"

if [ "$asan" = 1 ]; then
    echo "== build/ci-asan: AddressSanitizer + UndefinedBehaviorSanitizer, unit tests"
    cmake -S . -B build/ci-asan -DCMAKE_BUILD_TYPE=Debug -DVS_WERROR=ON -DVS_ASAN=ON -DVS_BUILD_BENCH=OFF >/dev/null
    cmake --build build/ci-asan -j "$jobs"
    ctest --test-dir build/ci-asan -L unit --output-on-failure -j "$jobs"
fi

if [ "$fuzz" = 1 ]; then
    secs=${VS_FUZZ_SECONDS:-30}
    echo "== build/ci-fuzz: clang libFuzzer + ASan/UBSan, shard request decoder for ${secs} s"
    CC=clang cmake -S . -B build/ci-fuzz -DCMAKE_BUILD_TYPE=Debug -DVS_FUZZ=ON -DVS_ASAN=ON -DVS_BUILD_BENCH=OFF >/dev/null
    cmake --build build/ci-fuzz -j "$jobs" --target fuzz_shard_request
    rm -rf build/ci-fuzz/corpus && build/ci/tests/fuzz_shard_request --write-seeds build/ci-fuzz/corpus
    if ! (cd build/ci-fuzz && ./fuzz/fuzz_shard_request -max_total_time="$secs" -rss_limit_mb=4096 corpus \
        >fuzz.log 2>&1); then
        tail -n 40 build/ci-fuzz/fuzz.log
        echo "fuzz_shard_request: found a failure (input saved in build/ci-fuzz)" >&2
        exit 1
    fi
    grep -E "^Done|DONE" build/ci-fuzz/fuzz.log | tail -n 2
fi
