#!/usr/bin/env bash
# test_prometheus_alerts (ctest, label integration): the alert rules of deploy/k8s/monitoring against real
# series. Usage: test_prometheus_alerts.sh SOURCE_DIR BIN_DIR WORK_DIR
#  1. `promtool check rules` and `promtool test rules` (tests/integration/prometheus/rules_test.yaml) on the
#     PrometheusRule's spec.
#  2. A local cluster (deploy/local/cluster.sh: etcd, 2 partitions x 2 replicas, a coordinator) scraped by
#     the Debian prometheus server every second, with the same rules (their `for` shortened to 2 s) and the
#     target labels of servicemonitor.yaml (job, partition, replica). Every target's /metrics passes
#     `promtool check metrics`. No alert fires while all is up.
#  3. kill -9 of replica p1r0: VecshardReplicaDown fires for partition 1, replica p1r0, and
#     VecshardPartitionNotCovered does not (p1r1 still serves). kill -9 of p1r1: VecshardPartitionNotCovered
#     fires. No alert is even pending while all is up. Each wait is on the condition (Prometheus's /api/v1/alerts), bounded.
set -euo pipefail
src=$(realpath "${1:?source dir}")
bin=$(realpath "${2:?bin dir}")
work=${3:?work dir}
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
for tool in promtool prometheus curl; do
    command -v $tool >/dev/null || { echo "FAIL: $tool not installed (deploy/local/install-deps.sh)" >&2; exit 1; }
done
fail() { echo "FAIL: $*" >&2; exit 1; }
prom_pid=
cleanup() {
    [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
    "$src/deploy/local/cluster.sh" down --dir "$work/cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# rules_file FOR_OVERRIDE OUT: the PrometheusRule's spec as a rules file ("" keeps the `for` durations)
rules_file() {
    /usr/bin/python3 - "$src/deploy/k8s/monitoring/prometheusrule.yaml" "$1" "$2" <<'EOF'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
spec = doc["spec"]
for g in spec["groups"]:
    for r in g["rules"]:
        if sys.argv[2] and "for" in r:
            r["for"] = sys.argv[2]
yaml.safe_dump(spec, open(sys.argv[3], "w"), sort_keys=False)
EOF
}

echo "== promtool check rules / test rules"
mkdir -p "$work/unit"
rules_file "" "$work/unit/vecshard-rules.yaml"
cp "$src/tests/integration/prometheus/rules_test.yaml" "$work/unit/"
promtool check rules "$work/unit/vecshard-rules.yaml"
(cd "$work/unit" && promtool test rules rules_test.yaml)

echo "== a local cluster scraped by prometheus"
manifest=$("$bin/vecshard-test-version" "$work/data" v1 IVF16,Flat l2 4000 16 2 10 7 | tail -1)
VS_BIN_DIR=$bin "$src/deploy/local/cluster.sh" up --insecure --manifest "$manifest" --dir "$work/cluster" --replicas 2 \
    --timeout 60 >/dev/null
state=$work/cluster/state
get() { sed -n "s/^$1=//p" "$state" | tail -1; }
rules_file 2s "$work/vecshard-rules.yaml"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
    echo "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}"
    echo "rule_files: [$work/vecshard-rules.yaml]"
    echo "scrape_configs:"
    echo "  - job_name: vecshard-coordinator"
    echo "    static_configs: [{targets: ['127.0.0.1:$(get coordinator_metrics_port)']}]"
    echo "  - job_name: vecshard-shard"
    echo "    static_configs:"
    for p in 0 1; do
        for r in 0 1; do
            echo "      - {targets: ['127.0.0.1:$(get "shard_p${p}r${r}_metrics_port")'], labels: {partition: '$p', replica: p${p}r${r}}}"
        done
    done
} >"$work/prometheus.yml"
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom_pid=$!
api() { curl -sf "http://127.0.0.1:$port/api/v1/$1"; }

# wait_for WHAT SECONDS PYTHON-CONDITION API-PATH: polls until the condition on the JSON answer holds
wait_for() {
    local what=$1 limit=$2 cond=$3 path=$4 start=$SECONDS
    while :; do
        if body=$(api "$path") && /usr/bin/python3 -c "import json,sys; d=json.loads(sys.argv[1])['data']; sys.exit(0 if ($cond) else 1)" "$body"; then
            echo "ok: $what (after $((SECONDS - start)) s)"
            return 0
        fi
        kill -0 "$prom_pid" 2>/dev/null || { tail -5 "$work/prometheus.log" >&2; fail "prometheus exited"; }
        [ $((SECONDS - start)) -lt "$limit" ] || { echo "last answer: ${body:-none}" >&2; fail "$what: not within $limit s"; }
        sleep 0.5
    done
}
# holds_now WHAT PYTHON-CONDITION API-PATH: the condition holds on the answer now (no waiting)
holds_now() { wait_for "$1" 0 "$2" "$3"; }
firing='[a for a in d["alerts"] if a["state"] == "firing"]'
wait_for "all 5 targets up" 60 \
    'len(d["activeTargets"]) == 5 and all(t["health"] == "up" for t in d["activeTargets"])' targets
wait_for "rules evaluated with every target up" 30 \
    'all(g["rules"] and all(r.get("lastEvaluation", "").startswith("2") and r["health"] == "ok" for r in g["rules"]) for g in d["groups"])' rules

echo "== promtool check metrics on every target"
for p in $(get coordinator_metrics_port) $(get shard_p0r0_metrics_port) $(get shard_p1r0_metrics_port); do
    curl -sf "http://127.0.0.1:$p/metrics" >"$work/metrics-$p.txt"
    grep -q '^vecshard_' "$work/metrics-$p.txt" || fail "no vecshard_ series on port $p"
    lint=$(promtool check metrics <"$work/metrics-$p.txt" 2>&1) || fail "promtool check metrics (port $p): $lint"
    [ -z "$lint" ] || fail "promtool check metrics (port $p): $lint"
done
echo "ok: /metrics of the coordinator and of two shards pass promtool check metrics"
wait_for "the coordinator's coverage scraped as 1" 30 \
    'any(float(r["value"][1]) == 1 for r in d["result"])' 'query?query=vecshard_coordinator_coverage_ratio'
holds_now "no alert fires or is pending while everything is up" 'not d["alerts"]' alerts

echo "== kill -9 replica p1r0"
kill -9 "$(get proc_p1r0_pid)"
wait_for "VecshardReplicaDown fires for partition 1 replica p1r0" 60 \
    "any(a['labels'].get('alertname') == 'VecshardReplicaDown' and a['labels'].get('partition') == '1' and a['labels'].get('replica') == 'p1r0' for a in $firing)" alerts
holds_now "only VecshardReplicaDown{replica=p1r0} fires (partition 1 is still covered by p1r1)" \
    "all(a['labels']['alertname'] == 'VecshardReplicaDown' and a['labels'].get('replica') == 'p1r0' for a in $firing)" alerts

echo "== kill -9 replica p1r1: partition 1 has no replica left"
kill -9 "$(get proc_p1r1_pid)"
wait_for "VecshardPartitionNotCovered fires" 60 \
    "any(a['labels'].get('alertname') == 'VecshardPartitionNotCovered' for a in $firing)" alerts
echo "PASS test_prometheus_alerts"
