#!/usr/bin/env bash
# The rolling binary upgrade test (issue 21; tests/compat/rolling_upgrade.py): a cluster of the previous
# release's vecshard-shard and vecshard-coordinator replaced one process at a time by this tree's, under
# search load, with 0 failed searches. Builds the previous release from git (a worktree of VS_PREV_COMMIT,
# default: the last commit of the previous session's release, 19508b8) into build/prev-upgrade and this
# tree into build/compat. Needs the git history (not a shallow clone); not part of ./tests/run.sh (two
# builds). Usage: tests/compat/rolling_upgrade.sh [-j N]
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc)
[ "${1:-}" = "-j" ] && jobs=$2
prev=${VS_PREV_COMMIT:-19508b8}
if ! git cat-file -e "$prev^{commit}" 2>/dev/null; then
    echo "tests/compat/rolling_upgrade.sh: commit $prev is not in this clone (shallow?): fetch the history first" >&2
    exit 1
fi
./deploy/local/install-deps.sh
rm -rf build/prev-upgrade-src
git worktree prune
git worktree add --detach build/prev-upgrade-src "$prev" >/dev/null
trap 'git worktree remove --force build/prev-upgrade-src >/dev/null 2>&1 || true' EXIT
echo "== build/prev-upgrade: $(git -C build/prev-upgrade-src log -1 --format='%h %s' | cut -c1-80)"
cmake -S build/prev-upgrade-src -B build/prev-upgrade -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVS_BUILD_BENCH=OFF >/dev/null
cmake --build build/prev-upgrade -j "$jobs" --target vecshard-shard vecshard-coordinator vecshard
echo "== build/compat: this tree"
cmake -S . -B build/compat -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVS_WERROR=ON -DVS_BUILD_BENCH=OFF >/dev/null
cmake --build build/compat -j "$jobs" --target vecshard-shard vecshard-coordinator vecshard vecshard-build
mkdir -p build/compat/tests/tmp
VS_PREV_BIN_DIR=$PWD/build/prev-upgrade/bin VS_BIN_DIR=$PWD/build/compat/bin VS_SOURCE_DIR=$PWD \
    VS_TEST_TMPDIR=$PWD/build/compat/tests/tmp /usr/bin/python3 tests/compat/rolling_upgrade.py
