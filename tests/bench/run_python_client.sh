#!/usr/bin/env bash
# What the Python client (coordinator/client/python) adds per call over the C load generator (issue 17 goal:
# at most 50 us at one query per call, d = 128 and d = 784). For each d: 50,000 synthetic vectors in one
# IVF64,Flat partition (cheap to search: the client's cost is what differs), a local cluster, then one
# query per call with one call in flight, interleaved rounds (C `vecshard query`, Python loop over
# Client.search, twice), each side's best; the same 5,000 queries, k 10, nprobe 4. Prints microseconds
# per call for both, the difference, the client processes' CPU per call, and grpcio's own call with the
# requests serialised beforehand (the floor of any client on python3-grpcio).
# Usage: tests/bench/run_python_client.sh [OUTDIR] [QUERIES]   (default build/bench/pyclient, 5000)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/bench/pyclient}
nq=${2:-5000}
./deploy/local/install-deps.sh >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
bin=$PWD/build/bin
mkdir -p "$out"
site=$out/site
rm -rf "$site"
VS_PROTOS_DIR=$PWD/protos /usr/bin/python3 -m pip install --quiet --root-user-action=ignore --no-build-isolation \
    --no-deps --target "$site" ./coordinator/client/python
rm -rf coordinator/client/python/build coordinator/client/python/*.egg-info
res=$out/results.txt
: > "$res"
for d in 128 784; do
    data=$out/d$d
    mkdir -p "$data"
    [ -s "$data/base.fvecs" ] || "$bin/vecshard-synth" --out "$data" --n 50000 --nq "$nq" --d "$d" --quiet
    [ -s "$data/v1/manifest.json" ] || "$bin/vecshard-build" --base "$data/base.fvecs" --factory IVF64,Flat \
        --partitions 1 --version v1 --out "$data" --target-recall 0 --quiet
    cl=$data/cluster
    ./deploy/local/cluster.sh down --dir "$cl" >/dev/null 2>&1 || true
    VS_BIN_DIR=$bin ./deploy/local/cluster.sh up --insecure --dir "$cl" --manifest "$data/v1/manifest.json" --timeout 60 >/dev/null
    addr=$(sed -n 's/^coordinator_addr=//p' "$cl/state")
    c_best=1e9 py_best=1e9 raw_best=1e9 c_cpu=0 py_cpu=0
    for round in 1 2; do
        line=$(/usr/bin/python3 - "$bin/vecshard" "$addr" "$data/queries.fvecs" "$nq" <<'PY'
import json, resource, subprocess, sys
before = resource.getrusage(resource.RUSAGE_CHILDREN)
p = subprocess.run([sys.argv[1], "query", "--coordinator", sys.argv[2], "--queries", sys.argv[3], "--k", "10",
                    "--nprobe", "4", "--limit", sys.argv[4], "--json"], check=True, capture_output=True, text=True)
after = resource.getrusage(resource.RUSAGE_CHILDREN)
j = json.loads(p.stdout)
assert j["calls_failed"] == 0, j
cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / j["queries_answered"] * 1e6
print("%.1f %.1f" % (1e6 / j["qps"], cpu))
PY
)
        set -- $line
        c_best=$(awk -v a="$c_best" -v b="$1" 'BEGIN{print (b < a ? b : a)}')
        [ "$c_best" = "$1" ] && c_cpu=$2
        line=$(PYTHONPATH=$site /usr/bin/python3 - "$addr" "$data/queries.fvecs" "$nq" <<'PY'
import sys, time
import numpy as np
import vecshard
raw = np.fromfile(sys.argv[2], dtype="<f4")
d = raw[:1].view("<i4")[0]
q = raw.reshape(-1, d + 1)[: int(sys.argv[3]), 1:].copy()
with vecshard.Client(sys.argv[1], timeout=5.0) as c:
    for i in range(200):  # warm the channel
        c.search(q[i], k=10, nprobe=4)
    t0, c0 = time.perf_counter(), time.process_time()
    for row in q:
        c.search(row, k=10, nprobe=4)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # the floor: grpcio's own call with the requests serialised beforehand (no numpy, no protobuf)
    from vecshard.v1 import common_pb2, coordinator_pb2
    from vecshard.client import _packed_floats
    head = coordinator_pb2.SearchRequest(dim=int(d), k=10, params=common_pb2.SearchParams(nprobe=4))
    payloads = [head.SerializeToString() + _packed_floats(2, row[None, :]) for row in q]
    t0 = time.perf_counter()
    for p in payloads:
        c._search(p, timeout=5.0)
    raw_wall = time.perf_counter() - t0
print("%.1f %.1f %.1f" % (wall / len(q) * 1e6, cpu / len(q) * 1e6, raw_wall / len(q) * 1e6))
PY
)
        set -- $line
        py_best=$(awk -v a="$py_best" -v b="$1" 'BEGIN{print (b < a ? b : a)}')
        [ "$py_best" = "$1" ] && py_cpu=$2
        raw_best=$(awk -v a="${raw_best:-1e9}" -v b="$3" 'BEGIN{print (b < a ? b : a)}')
    done
    ./deploy/local/cluster.sh down --dir "$cl" >/dev/null
    echo "d $d: C vecshard query ${c_best} us/call (client CPU ${c_cpu} us), Python client ${py_best} us/call" \
        "(client CPU ${py_cpu} us), grpcio alone (requests serialised beforehand) ${raw_best} us/call; the" \
        "Python client adds $(awk -v a="$py_best" -v b="$c_best" 'BEGIN{printf "%.1f", a - b}') us per call" \
        | tee -a "$res"
done
echo "results in $res"
