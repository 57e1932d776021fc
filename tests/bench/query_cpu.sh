#!/usr/bin/env bash
# One `vecshard query` run against a local cluster and the CPU it cost, for the cluster benchmarks
# (run_cpu.sh, run_scale.sh). Writes OUT_JSON: the query's --json report plus
#   server_cpu_us_per_query  utime + stime of the coordinator and every shard (from /proc, the pids in the
#                            cluster.sh state file) over the run, per answered query
#   client_cpu_us_per_query  the query process's own utime + stime (time(1)), per answered query
# Usage: query_cpu.sh STATE_FILE OUT_JSON QUERY-ARGS...   (--coordinator and --json are added; the binary
#        is $VS_BIN_DIR/vecshard, default build/bin)
set -euo pipefail
state=$1 json=$2
shift 2
bin=${VS_BIN_DIR:-build/bin}
addr=$(. "$state" && echo "$coordinator_addr")
pids=$(grep -E '^proc_(coordinator|p[0-9]+r[0-9]+)_pid=' "$state" | cut -d= -f2)
ticks() { local s=0 p; for p in $pids; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
t0=$(ticks)
# exit status 1 (some call failed: refused for overload, say) still gives a report: the caller judges it
rc=0
/usr/bin/time -f "%U %S" -o "$json.time" "$bin/vecshard" query --coordinator "$addr" --json "$@" > "$json.raw" || rc=$?
[ "$rc" -le 1 ] && [ -s "$json.raw" ] || exit "$((rc ? rc : 1))"
t1=$(ticks)
/usr/bin/python3 - "$json.raw" "$json.time" "$t0" "$t1" "$(getconf CLK_TCK)" "$json" <<'EOF2'
import json, sys
j = json.load(open(sys.argv[1])); u, s = open(sys.argv[2]).read().split("\n")[-2].split()  # time(1): last line
n, hz = max(j["queries_answered"], 1), float(sys.argv[5])
j["server_cpu_us_per_query"] = (int(sys.argv[4]) - int(sys.argv[3])) / hz * 1e6 / n
j["client_cpu_us_per_query"] = (float(u) + float(s)) * 1e6 / n
json.dump(j, open(sys.argv[6], "w"))
EOF2
rm -f "$json.raw" "$json.time"
