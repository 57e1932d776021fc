#!/usr/bin/env bash
# A vecshard cluster on this machine, on loopback: one etcd, P x R vecshard-shard processes, one
# vecshard-coordinator. Every process logs to its own file in the cluster directory; a state file there
# (shell syntax) records pids, ports and logs, so `status` and `down` find what `up` started.
#
#   cluster.sh up --manifest FILE [--manifest FILE...] [--partitions P] [--replicas 1] [--dir build/cluster]
#                 [--cluster local] [--timeout 60] [--shard-threads N] [--coordinator-args "ARGS"] [--writes]
#                 [--shard-args "ARGS"]
#                 [--redis] [--insecure] [--zones a,b,...]
#   cluster.sh status [--dir DIR] [--json]
#   cluster.sh down [--dir DIR] [--timeout 15]
#   cluster.sh etcd-snapshot --snapshot FILE [--dir DIR]
#   cluster.sh etcd-restore --snapshot FILE [--dir DIR] [--timeout 60]
#
# up: starts etcd (fresh data directory, free loopback ports), shard p<p>r<r> for partition p replica r
# (--listen 127.0.0.1:0, --port-file; P is the manifests' partition count, which --partitions must match),
# with --writes first nats-server -js (the write log; the shards and the coordinator get --nats-url),
# (--shard-args split on spaces are added to every shard's command line, e.g. fault-test delays),
# then the coordinator (--etcd, every --manifest, and --coordinator-args split on spaces), and returns once the
# coordinator's health is SERVING (or stops everything it started and fails after --timeout seconds);
# with --writes also until the coordinator has reached the write log (it takes writes). --redis also starts a
# redis-server (AOF in the cluster directory, noeviction) for `vecshard batch`; the state has redis_addr.
# Prints the coordinator's address; the state file has it as coordinator_addr.
# --zones Z1,Z2,...: replica r of every partition runs with --zone Z[r mod n] and the coordinator with
# --zone Z1 (zone-aware replicas; the state has shard_<id>_zone).
# TLS by default: deploy/local/certs.sh makes a CA and certificates in DIR/tls (kept across runs); clients
# reach the coordinator over mutual TLS, the coordinator its shards over mutual TLS (shards accept only
# the coordinator's certificate for Search), every process reaches etcd over TLS. DIR/env sets what
# vecshard tools and the Python client read ($VECSHARD_TLS_CA, _CERT, _KEY): `. DIR/env`. --insecure runs
# everything in plain text (no certificates), as before.
# down: SIGTERM to the coordinator, the shards, then etcd; SIGKILL to what is left after --timeout seconds.
# Idempotent; a pid is only signalled while it is still the process up started (start time checked).
# etcd-snapshot: `etcdctl snapshot save` of the running etcd (as root with TLS). etcd-restore (the recovery
# drill, docs/reliability.md): stops what is left of etcd (SIGKILL), restores FILE into a fresh data
# directory (`etcdctl snapshot restore`) and starts etcd again on the same ports; the shards and the
# coordinator reconnect on their own.
# Binaries: $VS_BIN_DIR (default build/bin); $VS_COORDINATOR_BIN overrides the coordinator (test doubles).
set -euo pipefail

usage() { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "cluster.sh: $*" >&2; exit 1; }

cmd=${1:-}
[ -n "$cmd" ] || { usage >&2; exit 2; }
shift
case "$cmd" in
-h | --help | help) usage; exit 0 ;;
up | down | status | etcd-snapshot | etcd-restore) ;;
*) echo "cluster.sh: unknown command '$cmd' (up, down, status, etcd-snapshot, etcd-restore)" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$root/build/cluster
partitions=""
replicas=1
cluster=local
timeout=""
shard_threads=""
coordinator_args=""
shard_args=""
writes=""
with_redis=""
insecure=""
snapshot=""
zones=""
json=""
manifests=()
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) dir=$2; shift ;;
    --partitions) partitions=$2; shift ;;
    --replicas) replicas=$2; shift ;;
    --manifest) manifests+=("$(realpath "$2")"); shift ;;
    --cluster) cluster=$2; shift ;;
    --timeout) timeout=$2; shift ;;
    --shard-threads) shard_threads=$2; shift ;;
    --coordinator-args) coordinator_args=$2; shift ;;
    --shard-args) shard_args=$2; shift ;;
    --writes) writes=1 ;;
    --redis) with_redis=1 ;;
    --insecure) insecure=1 ;;
    --snapshot) snapshot=$2; shift ;;
    --zones) zones=$2; shift ;;
    --json) json=--json ;;
    -h | --help) usage; exit 0 ;;
    *) echo "cluster.sh $cmd: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$dir"
dir=$(realpath "$dir")
state=$dir/state
bin=${VS_BIN_DIR:-$root/build/bin}
coordinator_bin=${VS_COORDINATOR_BIN:-$bin/vecshard-coordinator}

# The client side of the cluster's TLS for this script's own vecshard calls (status, health): DIR/env.
[ -f "$dir/env" ] && [ "$cmd" = status ] && . "$dir/env"

# ---- process bookkeeping ----

# Start time of a pid (field 22 of /proc/PID/stat), "" when it is gone.
start_time() { [ -r "/proc/$1/stat" ] && sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20 || true; }
# True while pid runs and is the process recorded (same start time); a zombie counts as gone.
alive() {
    local pid=$1 st=$2
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    [ "$(start_time "$pid")" = "$st" ] || return 1
    [ "$(sed 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)" != Z ]
}
record() { echo "$1" >>"$state"; }

# Names recorded in the state file, in start order ("etcd", "p0r0", ..., "coordinator").
names() { { grep -E '^proc_[A-Za-z0-9]+_pid=' "$state" || true; } | sed -E 's/^proc_([A-Za-z0-9]+)_pid=.*/\1/'; }
get() { { grep -E "^$1=" "$state" || true; } | tail -n 1 | cut -d= -f2-; }

# SIGTERM to the named processes that still run, then wait; SIGKILL to what is left after wait_s seconds.
stop_group() {
    local wait_s=$1 n pid st pids=() sts=() who=()
    shift
    for n in "$@"; do
        pid=$(get "proc_${n}_pid")
        st=$(get "proc_${n}_start")
        if alive "$pid" "$st"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid"); sts+=("$st"); who+=("$n")
        fi
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    local deadline=$((SECONDS + wait_s)) i left
    while :; do
        left=0
        for i in "${!pids[@]}"; do alive "${pids[$i]}" "${sts[$i]}" && left=1; done
        [ $left = 0 ] && break
        if [ $SECONDS -ge $deadline ]; then
            for i in "${!pids[@]}"; do
                if alive "${pids[$i]}" "${sts[$i]}"; then
                    echo "cluster.sh: ${who[$i]} (pid ${pids[$i]}) still running after ${wait_s} s: SIGKILL" >&2
                    kill -KILL "${pids[$i]}" 2>/dev/null || true
                fi
            done
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    echo "cluster.sh: stopped ${who[*]}"
}

# Coordinator first (it stops sending), then the shards (they drain and leave etcd), etcd last.
stop_all() {
    local wait_s=${1:-15} n shards=()
    [ -f "$state" ] || { echo "cluster.sh: nothing running (no $state)"; return 0; }
    for n in $(names); do
        case "$n" in coordinator | etcd | nats | redis) ;; *) shards+=("$n") ;; esac
    done
    stop_group "$wait_s" coordinator
    [ ${#shards[@]} -eq 0 ] || stop_group "$wait_s" "${shards[@]}"
    names | grep -qx nats && stop_group "$wait_s" nats
    names | grep -qx redis && stop_group "$wait_s" redis
    stop_group "$wait_s" etcd
    rm -rf "$dir/etcd-data" "$dir/etcd-users" "$dir/nats-data" "$dir/nats-users" "$dir/nats.conf" \
        "$dir/redis-data" "$dir/redis-users" "$dir/redis.conf" "$dir/env"
    mv -f "$state" "$state.last"
}

# ---- up ----

# True once the coordinator whose /metrics is on port $1 reports it reached the write log.
write_log_connected() {
    /usr/bin/python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
body = opener.open("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=1).read().decode()
sys.exit(0 if "vecshard_coordinator_write_log_connected 1" in body.splitlines() else 1)
PY
}

etcd_healthy() { # "URL|TLS_DIR" (TLS_DIR empty: plain text)
    /usr/bin/python3 - "${1%%|*}" "${1#*|}" <<'PY' 2>/dev/null
import json, ssl, sys, urllib.request
handlers = [urllib.request.ProxyHandler({})]
if sys.argv[2]:
    ctx = ssl.create_default_context(cafile=sys.argv[2] + "/ca.crt")
    ctx.load_cert_chain(sys.argv[2] + "/etcd-client.crt", sys.argv[2] + "/etcd-client.key")
    handlers.append(urllib.request.HTTPSHandler(context=ctx))
opener = urllib.request.build_opener(*handlers)
sys.exit(0 if json.load(opener.open(sys.argv[1] + "/health", timeout=1)).get("health") == "true" else 1)
PY
}

# etcd RBAC for a TLS cluster (before auth is enabled): users with random passwords in DIR/etcd-users/
# (mode 0700), roles limited to this cluster's keys. vecshard-admin reads and writes /vecshard/<cluster>/
# (deploy, activate, rollback, remove); vecshard-coordinator only reads it; vecshard-shard-<p> reads it
# and writes only /vecshard/<cluster>/members/<p>/ (its membership record).
etcd_rbac() { # URL TLS_DIR
    local url=$1 t=$2 u p pre=/vecshard/$cluster/
    ectl() { ETCDCTL_API=3 etcdctl --endpoints "$url" --cacert "$t/ca.crt" --cert "$t/etcd-client.crt" \
        --key "$t/etcd-client.key" --dial-timeout 5s "$@" >/dev/null; }
    mkdir -p "$dir/etcd-users" && chmod 0700 "$dir/etcd-users"
    for u in root vecshard-admin vecshard-coordinator $(seq -f 'vecshard-shard-%g' 0 $((partitions - 1))); do
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/etcd-users/$u")
    done
    # users through the JSON gateway, the passwords read from their files (never on a command line: ps)
    /usr/bin/python3 - "$url" "$t" "$dir/etcd-users" <<'PY' || return 1
import json, os, ssl, sys, urllib.request
url, t, users = sys.argv[1:]
ctx = ssl.create_default_context(cafile=t + "/ca.crt")
ctx.load_cert_chain(t + "/etcd-client.crt", t + "/etcd-client.key")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
for name in sorted(os.listdir(users)):
    pw = open(os.path.join(users, name)).read().strip()
    body = json.dumps({"name": name, "password": pw}).encode()
    opener.open(urllib.request.Request(url + "/v3/auth/user/add", data=body), timeout=10).read()
PY
    ectl role add root && ectl user grant-role root root || return 1
    ectl role add vecshard-admin && ectl role grant-permission vecshard-admin --prefix=true readwrite "$pre" &&
        ectl user grant-role vecshard-admin vecshard-admin || return 1
    ectl role add vecshard-coordinator && ectl role grant-permission vecshard-coordinator --prefix=true read "$pre" &&
        ectl user grant-role vecshard-coordinator vecshard-coordinator || return 1
    for ((p = 0; p < partitions; p++)); do
        u=vecshard-shard-$p
        ectl role add "$u" && ectl role grant-permission "$u" --prefix=true read "$pre" &&
            ectl role grant-permission "$u" --prefix=true readwrite "${pre}members/$p/" &&
            ectl user grant-role "$u" "$u" || return 1
    done
    ectl auth enable
}

# nats-server's configuration for a TLS cluster: TLS with client certificates (verify), and three users
# with random passwords in DIR/nats-users/: vecshard-coordinator may append to the log (publish to the
# writes subject, create and inspect the stream) and nothing else, vecshard-shard may only read it (pull
# consumers), vecshard-admin may do anything (vecshard-fold, operators).
nats_conf() { # PORT TLS_DIR
    local port=$1 t=$2 u js='$JS.API' sn=VS_$cluster
    mkdir -p "$dir/nats-users" && chmod 0700 "$dir/nats-users"
    for u in vecshard-coordinator vecshard-shard vecshard-admin; do
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/nats-users/$u")
    done
    (umask 077 && cat >"$dir/nats.conf" <<EOF
listen: 127.0.0.1:$port
server_name: vs-local
jetstream { store_dir: "$dir/nats-data" }
tls { cert_file: "$t/nats.crt", key_file: "$t/nats.key", ca_file: "$t/ca.crt", verify: true, timeout: 2 }
authorization {
  users = [
    { user: vecshard-coordinator, password: "$(cat "$dir/nats-users/vecshard-coordinator")",
      permissions: { publish: { allow: ["vs.$cluster.writes", "$js.INFO", "$js.STREAM.INFO.$sn",
                                        "$js.STREAM.CREATE.$sn"] },
                     subscribe: { allow: ["_INBOX.>"] } } }
    { user: vecshard-shard, password: "$(cat "$dir/nats-users/vecshard-shard")",
      permissions: { publish: { allow: ["$js.INFO", "$js.STREAM.INFO.$sn", "$js.CONSUMER.CREATE.$sn",
                                        "$js.CONSUMER.CREATE.$sn.>", "$js.CONSUMER.MSG.NEXT.$sn.>",
                                        "$js.CONSUMER.DELETE.$sn.>", "$js.CONSUMER.INFO.$sn.>"] },
                     subscribe: { allow: ["_INBOX.>"] } } }
    { user: vecshard-admin, password: "$(cat "$dir/nats-users/vecshard-admin")" }
  ]
}
EOF
)
}

# The environment of a process reaching NATS as user $1 with certificate $2 (nothing without TLS).
nats_env() {
    [ -n "$tls" ] || return 0
    echo "VECSHARD_NATS_CA=$tls/ca.crt" "VECSHARD_NATS_CERT=$tls/$2.crt" "VECSHARD_NATS_KEY=$tls/$2.key" \
        "VECSHARD_NATS_USER=$1" "VECSHARD_NATS_PASSWORD_FILE=$dir/nats-users/$1"
}

# The environment of a process reaching etcd as RBAC user $1 (nothing without TLS).
etcd_env() {
    [ -n "$tls" ] || return 0
    echo "VECSHARD_ETCD_CA=$tls/ca.crt" "VECSHARD_ETCD_CERT=$tls/etcd-client.crt" \
        "VECSHARD_ETCD_KEY=$tls/etcd-client.key" "VECSHARD_ETCD_USER=$1" \
        "VECSHARD_ETCD_PASSWORD_FILE=$dir/etcd-users/$1"
}

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port_file() { # file pid start_time seconds -> prints the grpc port
    local f=$1 pid=$2 st=$3 until=$((SECONDS + $4))
    while [ $SECONDS -lt $until ]; do
        if [ -s "$f" ] && grep -q '^grpc=' "$f"; then
            sed -n 's/^grpc=//p' "$f"
            return 0
        fi
        alive "$pid" "$st" || return 1
        sleep 0.05
    done
    return 1
}

# Starts a process in the background with its log; records pid and start time under name.
launch() {
    local name=$1 log=$dir/$1.log
    shift
    echo "== $name: $*" >>"$log"
    "$@" </dev/null >>"$log" 2>&1 &
    local pid=$!
    local st=""
    for _ in 1 2 3 4 5 6 7 8 9 10; do st=$(start_time "$pid"); [ -n "$st" ] && break; sleep 0.01; done
    record "proc_${name}_pid=$pid"
    record "proc_${name}_start=$st"
    record "proc_${name}_log=$log"
}

# wait_started NAME READY URL: waits up to 15 s until `READY URL` succeeds while the process launched as
# NAME runs; if it does not, kills that process and returns 1 (the caller retries on new ports).
wait_started() {
    local name=$1 ready=$2 url=$3 pid st until=$((SECONDS + 15))
    pid=$(get "proc_${name}_pid")
    st=$(get "proc_${name}_start")
    while [ $SECONDS -lt $until ] && alive "$pid" "$st"; do
        "$ready" "$url" && return 0
        sleep 0.1
    done
    alive "$pid" "$st" && kill -KILL "$pid" 2>/dev/null || true
    return 1
}

# start_etcd SCHEME CLIENT_PORT PEER_PORT: etcd on DIR/etcd-data (TLS with client certificates when $tls).
start_etcd() {
    local scheme=$1 client=$2 peer=$3 eargs=()
    [ -z "$tls" ] || eargs=(--cert-file "$tls/etcd.crt" --key-file "$tls/etcd.key" --client-cert-auth
        --trusted-ca-file "$tls/ca.crt")
    launch etcd etcd --name vs-local --data-dir "$dir/etcd-data" \
        --listen-client-urls "$scheme://127.0.0.1:$client" --advertise-client-urls "$scheme://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "vs-local=http://127.0.0.1:$peer" --log-level warn "${eargs[@]}"
}

# etcdctl on this cluster's etcd (TLS and root's password, from the environment, when it runs TLS).
cluster_etcdctl() {
    local url t
    url=$(get etcd_url)
    t=$(get tls_dir)
    [ -n "$url" ] || die "no etcd in $state"
    if [ -n "$t" ]; then
        ETCDCTL_USER="root:$(cat "$dir/etcd-users/root")" ETCDCTL_API=3 etcdctl --endpoints "$url" \
            --cacert "$t/ca.crt" --cert "$t/etcd-client.crt" --key "$t/etcd-client.key" "$@"
    else
        ETCDCTL_API=3 etcdctl --endpoints "$url" "$@"
    fi
}

etcd_snapshot() {
    [ -n "$snapshot" ] || { echo "cluster.sh etcd-snapshot: --snapshot FILE is required" >&2; exit 2; }
    [ -f "$state" ] || die "etcd-snapshot: nothing running (no $state)"
    cluster_etcdctl snapshot save "$snapshot" >/dev/null || die "etcd-snapshot: etcdctl snapshot save failed"
    echo "cluster.sh: etcd snapshot in $snapshot"
}

# The recovery drill: etcd lost (what is left of it is killed), restored from a snapshot on the same ports.
etcd_restore() {
    [ -s "$snapshot" ] || { echo "cluster.sh etcd-restore: --snapshot FILE (a snapshot) is required" >&2; exit 2; }
    [ -f "$state" ] || die "etcd-restore: nothing running (no $state)"
    local url client peer scheme pid st
    url=$(get etcd_url)
    peer=$(get etcd_peer_port)
    tls=$(get tls_dir)
    scheme=${url%%://*}
    client=${url##*:}
    [ -n "$peer" ] || die "etcd-restore: no etcd_peer_port in $state (a cluster started by an older cluster.sh)"
    pid=$(get proc_etcd_pid)
    st=$(get proc_etcd_start)
    if alive "$pid" "$st"; then
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid" "$st"; do sleep 0.05; done
    fi
    rm -rf "$dir/etcd-data"
    # etcd >= 3.5 has etcdutl for offline restores (3.6 removed it from etcdctl); Debian 12's 3.4 has etcdctl
    local restore=(env ETCDCTL_API=3 etcdctl)
    command -v etcdutl >/dev/null && restore=(etcdutl)
    "${restore[@]}" snapshot restore "$snapshot" --data-dir "$dir/etcd-data" --name vs-local \
        --initial-cluster "vs-local=http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        >>"$dir/etcd.log" 2>&1 || die "etcd-restore: snapshot restore failed (see $dir/etcd.log)"
    start_etcd "$scheme" "$client" "$peer"
    local until=$((SECONDS + ${timeout:-60}))
    until etcd_healthy "$url|$tls"; do
        [ $SECONDS -lt $until ] || die "etcd-restore: etcd not healthy after ${timeout:-60} s (see $dir/etcd.log)"
        alive "$(get proc_etcd_pid)" "$(get proc_etcd_start)" || die "etcd-restore: etcd exited (see $dir/etcd.log)"
        sleep 0.1
    done
    echo "cluster.sh: etcd restored from $snapshot at $url"
}

# nats_ready nats://HOST:PORT: the server greets with its INFO line.
nats_ready() {
    local hp=${1#nats://}
    timeout 1 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp##*:} && head -c 4 <&3" 2>/dev/null | grep -q INFO
}

# redis-server's ACL users for a TLS cluster (DIR/redis-users/, passwords stored hashed in the config):
# vecshard-batch writes result sets under the default prefix vs:nbrs (vecshard batch: exactly the commands
# it and its scripts send, so no FLUSHALL, KEYS or RESTORE, which name no key), vecshard-reader only GETs
# them (the Python neighbours.Reader); the default user is off.
redis_acl() {
    local u
    mkdir -p "$dir/redis-users" && chmod 0700 "$dir/redis-users"
    for u in vecshard-batch vecshard-reader; do
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/redis-users/$u")
    done
    h() { printf '%s' "$(cat "$dir/redis-users/$1")" | sha256sum | cut -d' ' -f1; }
    (umask 077 && cat >"$dir/redis.conf" <<EOF
user default off
user vecshard-batch on #$(h vecshard-batch) ~vs:nbrs* resetchannels -@all +get +set +del +unlink +type +exists +scan +hget +hset +hsetnx +hgetall +lpush +lrange +lrem +eval +info +ping +hello
user vecshard-reader on #$(h vecshard-reader) ~vs:nbrs* resetchannels -@all +get +mget +ping +hello
EOF
)
}

# redis_ready_tls PORT: the server answers PING over TLS, as vecshard-batch.
redis_ready_tls() {
    REDISCLI_AUTH=$(cat "$dir/redis-users/vecshard-batch") timeout 2 redis-cli --tls --cacert "$tls/ca.crt" \
        --cert "$tls/redis-client.crt" --key "$tls/redis-client.key" -h 127.0.0.1 -p "$1" --user vecshard-batch \
        PING 2>/dev/null | grep -q PONG
}

# redis_ready PORT: the server answers PING.
redis_ready() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null |
        grep -q PONG
}

failed_up() {
    echo "cluster.sh up: $1; stopping what was started" >&2
    [ -n "${2:-}" ] && [ -f "$2" ] && { echo "---- tail of $2 ----" >&2; tail -n 20 "$2" >&2; }
    stop_all 10 >/dev/null || true
    exit 1
}

up() {
    [ ${#manifests[@]} -gt 0 ] || { echo "cluster.sh up: --manifest is required" >&2; exit 2; }
    # the caller's client settings (an earlier cluster's DIR/env) must not leak into this cluster's processes
    unset $(compgen -e | grep '^VECSHARD_' || true)
    local m np
    for m in "${manifests[@]}"; do
        [ -s "$m" ] || die "up: no manifest $m"
        np=$(/usr/bin/python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["partitions"]))' "$m") ||
            die "up: cannot read the partitions of $m"
        [ -n "$partitions" ] || partitions=$np
        [ "$np" = "$partitions" ] ||
            { echo "cluster.sh up: $m has $np partitions, not $partitions" >&2; exit 2; }
    done
    [[ "$partitions" =~ ^[1-9][0-9]*$ && "$replicas" =~ ^[1-9][0-9]*$ ]] ||
        { echo "cluster.sh up: --partitions and --replicas must be positive integers" >&2; exit 2; }
    for m in "$bin/vecshard-shard" "$bin/vecshard" "$coordinator_bin"; do
        [ -x "$m" ] || die "up: $m not built (cmake --build build)"
    done
    command -v etcd >/dev/null || die "up: etcd not installed (apt-get install etcd-server)"
    if [ -f "$state" ]; then
        local n running=""
        for n in $(names); do
            alive "$(get "proc_${n}_pid")" "$(get "proc_${n}_start")" && running="$running $n"
        done
        [ -z "$running" ] || die "up: already running in $dir:$running (cluster.sh down --dir $dir first)"
        mv -f "$state" "$state.last"
    fi
    local wait_s=${timeout:-60}
    : >"$state"
    record "# vecshard local cluster, written by deploy/local/cluster.sh up on $(date -u +%FT%TZ)"
    record "cluster=$cluster"
    record "partitions=$partitions"
    record "replicas=$replicas"
    trap 'failed_up "interrupted"' INT TERM

    # TLS: a CA and the certificates (kept across runs), and the client settings in DIR/env
    tls=""
    local sargs=() cargs=()
    rm -f "$dir/env"
    if [ -z "$insecure" ]; then
        tls=$dir/tls
        "$root/deploy/local/certs.sh" "$tls" || die "up: cannot make the TLS certificates in $tls"
        record "tls_dir=$tls"
        sargs=(--tls-cert "$tls/shard.crt" --tls-key "$tls/shard.key" --tls-client-ca "$tls/ca.crt")
        cargs=(--tls-cert "$tls/coordinator.crt" --tls-key "$tls/coordinator.key" --tls-client-ca "$tls/ca.crt"
            --shard-tls-ca "$tls/ca.crt" --shard-tls-cert "$tls/coordinator.crt"
            --shard-tls-key "$tls/coordinator.key")
        printf 'export VECSHARD_TLS_CA=%s VECSHARD_TLS_CERT=%s VECSHARD_TLS_KEY=%s\n' "$tls/ca.crt" \
            "$tls/client.crt" "$tls/client.key" >"$dir/env"
        echo "export $(etcd_env vecshard-admin)" >>"$dir/env"
        . "$dir/env"
    else
        record "tls_dir="
    fi

    # etcd: fresh data directory, two free loopback ports (retried if another process took one meanwhile)
    local try client peer url="" scheme=http
    if [ -n "$tls" ]; then
        scheme=https
        command -v etcdctl >/dev/null || die "up: etcdctl not installed (apt-get install etcd-client)"
    fi
    for try in 1 2 3; do
        client=$(free_port)
        peer=$(free_port)
        rm -rf "$dir/etcd-data" "$dir/etcd-users"
        start_etcd "$scheme" "$client" "$peer"
        if wait_started etcd etcd_healthy "$scheme://127.0.0.1:$client|$tls"; then
            url=$scheme://127.0.0.1:$client
            break
        fi
    done
    [ -n "$url" ] || failed_up "etcd did not become healthy" "$dir/etcd.log"
    record "etcd_peer_port=$peer"
    if [ -n "$tls" ]; then
        etcd_rbac "$url" "$tls" || failed_up "cannot set up etcd's users and roles" "$dir/etcd.log"
        echo "cluster.sh: etcd users and roles set, auth enabled (passwords in $dir/etcd-users)"
    fi
    record "etcd_url=$url"
    echo "cluster.sh: etcd at $url"

    # the write log: nats-server with JetStream (fresh data directory, a free loopback port)
    local wargs=()
    if [ -n "$writes" ]; then
        command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] ||
            die "up: nats-server not installed (apt-get install nats-server)"
        local nats_bin nport nurl=""
        nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
        for try in 1 2 3; do
            nport=$(free_port)
            rm -rf "$dir/nats-data"
            if [ -n "$tls" ]; then
                nats_conf "$nport" "$tls"
                launch nats "$nats_bin" -c "$dir/nats.conf"
            else
                launch nats "$nats_bin" -a 127.0.0.1 -p "$nport" -js -sd "$dir/nats-data" -n vs-local
            fi
            if wait_started nats nats_ready "nats://127.0.0.1:$nport"; then
                nurl=nats://127.0.0.1:$nport
                [ -z "$tls" ] || nurl=tls://127.0.0.1:$nport
                break
            fi
        done
        [ -n "$nurl" ] || failed_up "nats-server did not start" "$dir/nats.log"
        record "nats_url=$nurl"
        [ -z "$tls" ] || echo "export $(nats_env vecshard-admin client)" >>"$dir/env"
        echo "cluster.sh: nats-server (JetStream) at $nurl"
        wargs=(--nats-url "$nurl")
    fi

    # batch neighbours: redis-server (fresh data directory, a free loopback port)
    if [ -n "$with_redis" ]; then
        command -v redis-server >/dev/null || die "up: redis-server not installed (apt-get install redis-server)"
        local rport raddr=""
        for try in 1 2 3; do
            rport=$(free_port)
            rm -rf "$dir/redis-data" && mkdir -p "$dir/redis-data"
            if [ -n "$tls" ]; then
                redis_acl
                launch redis redis-server "$dir/redis.conf" --port 0 --tls-port "$rport" --bind 127.0.0.1 \
                    --tls-cert-file "$tls/redis.crt" --tls-key-file "$tls/redis.key" --tls-ca-cert-file "$tls/ca.crt" \
                    --dir "$dir/redis-data" --save "" --appendonly yes --maxmemory-policy noeviction
                if wait_started redis redis_ready_tls "$rport"; then
                    raddr=127.0.0.1:$rport
                    break
                fi
                continue
            fi
            launch redis redis-server --port "$rport" --bind 127.0.0.1 --dir "$dir/redis-data" --save "" \
                --appendonly yes --maxmemory-policy noeviction
            if wait_started redis redis_ready "$rport"; then
                raddr=127.0.0.1:$rport
                break
            fi
        done
        [ -n "$raddr" ] || failed_up "redis-server did not start" "$dir/redis.log"
        record "redis_addr=$raddr"
        [ -z "$tls" ] || printf 'export VECSHARD_REDIS_CA=%s VECSHARD_REDIS_CERT=%s VECSHARD_REDIS_KEY=%s VECSHARD_REDIS_USER=vecshard-batch VECSHARD_REDIS_PASSWORD_FILE=%s\n' \
            "$tls/ca.crt" "$tls/redis-client.crt" "$tls/redis-client.key" "$dir/redis-users/vecshard-batch" >>"$dir/env"
        echo "cluster.sh: redis-server at $raddr"
    fi

    # shards
    local p r id extra=()
    [ -n "$shard_threads" ] && extra=(--threads "$shard_threads")
    local margs=()
    for m in "${manifests[@]}"; do margs+=(--manifest "$m"); done
    local zlist=() zargs=()
    [ -z "$zones" ] || IFS=, read -r -a zlist <<<"$zones"
    for ((p = 0; p < partitions; p++)); do
        for ((r = 0; r < replicas; r++)); do
            id=p${p}r${r}
            zargs=()
            if [ ${#zlist[@]} -gt 0 ]; then
                zargs=(--zone "${zlist[$((r % ${#zlist[@]}))]}")
                record "shard_${id}_zone=${zlist[$((r % ${#zlist[@]}))]}"
            fi
            rm -f "$dir/$id.ports"
            launch "$id" env $(etcd_env "vecshard-shard-$p") $(nats_env vecshard-shard shard) \
                "$bin/vecshard-shard" --etcd "$url" --cluster "$cluster" --partition "$p" \
                --replica-id "$id" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --port-file "$dir/$id.ports" \
                --grace-ms 2000 "${margs[@]}" "${extra[@]}" "${wargs[@]}" "${sargs[@]}" "${zargs[@]}" $shard_args
        done
    done
    for ((p = 0; p < partitions; p++)); do
        for ((r = 0; r < replicas; r++)); do
            id=p${p}r${r}
            local port
            port=$(wait_port_file "$dir/$id.ports" "$(get "proc_${id}_pid")" "$(get "proc_${id}_start")" 30) ||
                failed_up "shard $id did not start" "$dir/$id.log"
            record "shard_${id}_addr=127.0.0.1:$port"
            record "shard_${id}_metrics_port=$(sed -n 's/^metrics=//p' "$dir/$id.ports")"
        done
    done
    echo "cluster.sh: $((partitions * replicas)) shards started (partitions $partitions, replicas $replicas)"

    # coordinator
    rm -f "$dir/coordinator.ports"
    launch coordinator env $(etcd_env vecshard-coordinator) $(nats_env vecshard-coordinator coordinator) \
        "$coordinator_bin" --etcd "$url" --cluster "$cluster" --listen 127.0.0.1:0 \
        --metrics-listen 127.0.0.1:0 --port-file "$dir/coordinator.ports" --grace-ms 2000 "${margs[@]}" \
        "${wargs[@]}" "${cargs[@]}" ${zlist[@]:+--zone "${zlist[0]}"} $coordinator_args
    local cport
    cport=$(wait_port_file "$dir/coordinator.ports" "$(get proc_coordinator_pid)" "$(get proc_coordinator_start)" 30) ||
        failed_up "the coordinator did not start" "$dir/coordinator.log"
    local addr=127.0.0.1:$cport
    record "coordinator_addr=$addr"
    record "coordinator_metrics_port=$(sed -n 's/^metrics=//p' "$dir/coordinator.ports")"
    if ! "$bin/vecshard" health --coordinator "$addr" --service full-coverage --wait-ms "$((wait_s * 1000))" \
        >/dev/null; then
        failed_up "the coordinator at $addr is not SERVING after ${wait_s} s" "$dir/coordinator.log"
    fi
    if [ -n "$writes" ]; then # and takes writes: it has reached the write log
        local mport t
        mport=$(get coordinator_metrics_port)
        for ((t = 0; t < wait_s * 20; t++)); do
            write_log_connected "$mport" && break
            sleep 0.05
        done
        write_log_connected "$mport" ||
            failed_up "the coordinator did not reach the write log in ${wait_s} s" "$dir/coordinator.log"
    fi
    trap - INT TERM
    echo "cluster.sh: coordinator SERVING at $addr (state: $state, logs: $dir/*.log)"
}

status_json() {
    # one JSON object: the processes, the addresses and the coordinator's own Status (null if unreachable)
    local n pid s all=0 rows="" coord="null" addr
    for n in $(names); do
        pid=$(get "proc_${n}_pid")
        if alive "$pid" "$(get "proc_${n}_start")"; then s=running; else s=GONE; all=1; fi
        rows="$rows$n	$pid	$s	$(get "proc_${n}_log")
"
    done
    addr=$(get coordinator_addr)
    if [ -n "$addr" ] && out=$("$bin/vecshard" status --coordinator "$addr" --json 2>/dev/null); then
        coord=$out
    else
        all=1
    fi
    printf '%s' "$rows" | /usr/bin/python3 -c '
import json, sys
procs = [dict(zip(("name", "pid", "state", "log"), l.split("\t"))) for l in sys.stdin.read().splitlines() if l]
for p in procs:
    p["pid"] = int(p["pid"]) if p["pid"].isdigit() else None
print(json.dumps({"ok": sys.argv[4] == "0", "processes": procs, "etcd_url": sys.argv[1],
                  "coordinator_addr": sys.argv[2], "coordinator": json.loads(sys.argv[3])}, indent=1))
' "$(get etcd_url)" "$addr" "$coord" "$all"
    return $all
}

status() {
    [ -f "$state" ] || {
        if [ -n "$json" ]; then echo '{"ok": false, "processes": [], "error": "nothing running"}'; else
            echo "cluster.sh: nothing running (no $state)"; fi
        return 1
    }
    [ -z "$json" ] || { status_json; return $?; }
    local n pid s all=0
    printf '%-12s %-8s %-8s %s\n' NAME PID STATE LOG
    for n in $(names); do
        pid=$(get "proc_${n}_pid")
        if alive "$pid" "$(get "proc_${n}_start")"; then s=running; else s=GONE; all=1; fi
        printf '%-12s %-8s %-8s %s\n' "$n" "$pid" "$s" "$(get "proc_${n}_log")"
    done
    echo "etcd: $(get etcd_url)  coordinator: $(get coordinator_addr)"
    local addr
    addr=$(get coordinator_addr)
    [ -n "$addr" ] || return 1
    "$bin/vecshard" status --coordinator "$addr" || all=1
    return $all
}

case "$cmd" in
up) up ;;
down) stop_all "${timeout:-15}" ;;
status) status ;;
etcd-snapshot) etcd_snapshot ;;
etcd-restore) etcd_restore ;;
esac
