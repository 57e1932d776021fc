#!/usr/bin/env bash
# Runs the compatibility test (tests/faults/test_faults_compat.c): shards of the previous release and of
# this one in one cluster. Builds the previous release's vecshard-shard from git (a worktree of
# VS_PREV_COMMIT, default: the last commit of release 0.1.0) into build/prev, builds this tree into
# build/compat, and runs ctest -L compat with VS_PREV_BIN_DIR set. Needs the git history (not a shallow
# clone). Usage: tests/compat/run.sh [-j N]
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc)
[ "${1:-}" = "-j" ] && jobs=$2
prev=${VS_PREV_COMMIT:-edaf7ac1ae4267c9c9133875ad166e21cb175937}   # release 0.1.0: the last commit before the cluster-protocol work
if ! git cat-file -e "$prev^{commit}" 2>/dev/null; then
    echo "tests/compat/run.sh: commit $prev is not in this clone (shallow?): fetch the history first" >&2
    exit 1
fi
./deploy/local/install-deps.sh
rm -rf build/prev-src
git worktree prune
git worktree add --detach build/prev-src "$prev" >/dev/null
trap 'git worktree remove --force build/prev-src >/dev/null 2>&1 || true' EXIT
echo "== build/prev: vecshard-shard of $(git -C build/prev-src log -1 --format='%h %s' | cut -c1-80)"
cmake -S build/prev-src -B build/prev -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVS_BUILD_BENCH=OFF >/dev/null
cmake --build build/prev -j "$jobs" --target vecshard-shard
echo "== build/compat: this tree"
cmake -S . -B build/compat -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVS_WERROR=ON -DVS_BUILD_BENCH=OFF >/dev/null
cmake --build build/compat -j "$jobs"
VS_PREV_BIN_DIR=$PWD/build/prev/bin ctest --test-dir build/compat -L compat --output-on-failure -V | \
    grep -E "^[0-9]+: (ok|FAIL|  )|tests passed|Failed|CHECK"
