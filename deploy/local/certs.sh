#!/bin/sh
# certs.sh: a private CA and the certificates of a local vecshard cluster (openssl; ECDSA P-256).
#
#   deploy/local/certs.sh DIR [--hosts H1,H2,...] [--days N] [--renew NAME]
#
# Creates DIR/ca.crt + DIR/ca.key once (valid 10 x --days), then for every identity below that is missing
# DIR/<name>.crt and DIR/<name>.key (keys mode 0600). Servers' certificates carry the SANs DNS:localhost,
# IP:127.0.0.1 and the --hosts (DNS names or IPv4 addresses) and both EKUs (serverAuth, clientAuth);
# client-only certificates have no SAN and clientAuth only, so a tool's certificate cannot serve:
#   coordinator   CN vecshard-coordinator: serves clients, and is the client certificate shards accept
#   shard         CN vecshard-shard (serves; client of the other replicas' Info)
#   etcd, nats, redis   the servers
#   client        CN vecshard-client, client only: a tool's certificate (a coordinator with --tls-client-ca)
#   etcd-client   no CN, client only: etcd's JSON gateway refuses a client certificate with a CN once auth
#                 is on, so etcd users are RBAC users (password -> token), the certificate proves the CA
#   redis-client  CN vecshard-redis-client, client only
# --renew NAME re-issues NAME's certificate and key (new key, same CA) and replaces the files by rename,
# as a Secret update does: running servers pick it up within their --tls-refresh-s.
# A second DIR is a second, unrelated CA (the tests' "foreign" certificates).
set -eu

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
dir=$1; shift
hosts=""; days=365; renew=""
while [ $# -gt 0 ]; do
    case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --renew) renew=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "certs.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
command -v openssl >/dev/null || { echo "certs.sh: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077

san="DNS:localhost,IP:127.0.0.1"
old_ifs=$IFS; IFS=,
for h in $hosts; do
    case "$h" in
    *[!0-9.]*) san="$san,DNS:$h" ;;
    *) san="$san,IP:$h" ;;
    esac
done
IFS=$old_ifs

if [ ! -s "$dir/ca.crt" ]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$dir/ca.key" \
        -out "$dir/ca.crt" -days "$((days * 10))" -subj "/O=vecshard/CN=vecshard local CA $(date +%s)-$$" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
    chmod 0644 "$dir/ca.crt"
fi

# issue NAME SUBJECT server|client: key + CSR + certificate signed by the CA, written to temporaries then
# renamed.
issue() {
    name=$1; subj=$2
    tmp="$dir/.$name.$$"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$tmp.key" -out "$tmp.csr" \
        -subj "$subj" 2>/dev/null
    if [ "$3" = server ]; then
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$tmp.ext"
    else
        printf 'extendedKeyUsage=clientAuth\n' >"$tmp.ext"
    fi
    printf 'keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' >>"$tmp.ext"
    openssl x509 -req -in "$tmp.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -out "$tmp.crt" -days "$days" -extfile "$tmp.ext" 2>/dev/null
    chmod 0644 "$tmp.crt"
    chmod 0600 "$tmp.key"
    # each file is replaced whole (rename); a watcher reading between the two renames sees a mismatched
    # pair and keeps the previous one until its next refresh
    mv -f "$tmp.key" "$dir/$name.key"
    mv -f "$tmp.crt" "$dir/$name.crt"
    rm -f "$tmp.csr" "$tmp.ext"
}

for spec in "coordinator:server:/O=vecshard/CN=vecshard-coordinator" "shard:server:/O=vecshard/CN=vecshard-shard" \
    "client:client:/O=vecshard/CN=vecshard-client" "etcd:server:/O=vecshard/CN=etcd" "etcd-client:client:/O=vecshard" \
    "nats:server:/O=vecshard/CN=nats" "redis:server:/O=vecshard/CN=redis" \
    "redis-client:client:/O=vecshard/CN=vecshard-redis-client"; do
    name=${spec%%:*}
    rest=${spec#*:}
    if [ "$name" = "$renew" ] || [ ! -s "$dir/$name.crt" ] || [ ! -s "$dir/$name.key" ]; then
        issue "$name" "${rest#*:}" "${rest%%:*}"
    fi
done
if [ -n "$renew" ] && ! grep -q "\"$renew:" "$0"; then
    echo "certs.sh: --renew: no identity '$renew'" >&2; exit 2
fi
