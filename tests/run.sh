#!/usr/bin/env bash
# Runs every vecshard test: installs what is missing, builds (warnings are errors), runs ctest on every
# label but bench, and exits non-zero on any failure.
# Two passes: a RelWithDebInfo build runs every label but bench; an ASan+UBSan build runs the unit tests
# again (bad input must never crash). Usage: tests/run.sh [--no-asan] [-j N]
set -euo pipefail
cd "$(dirname "$0")/.."

asan=1
jobs=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
    --no-asan) asan=0 ;;
    -j) jobs=$2; shift ;;
    -h | --help) sed -n '2,5p' "$0"; exit 0 ;;
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
