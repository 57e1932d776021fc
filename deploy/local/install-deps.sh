#!/usr/bin/env bash
# Installs the Debian 12 packages vecshard needs to build, test, benchmark and run its demo.
# Idempotent: installs only what is missing. As root it runs apt-get; otherwise it prints the
# exact command to run. Usage: deploy/local/install-deps.sh [--bench | --build-only] [--print]
# --build-only: the build packages alone (the container image's build stage, deploy/docker/Dockerfile).
set -euo pipefail

# build: compilers come with the machine; these are the libraries and tools the build links or runs.
build_pkgs=(cmake pkg-config make gcc g++ libopenblas-dev zlib1g-dev libcjson-dev
    libgrpc-dev protobuf-c-compiler libprotobuf-c-dev grpc-proto libcurl4-openssl-dev libmicrohttpd-dev
    libnats-dev libhiredis-dev libssl-dev liburing-dev)
# tests and demo: the Fashion-MNIST data set, the peers we benchmark against in the same run, a real etcd
# and a real NATS JetStream (nats-server: the write log), openssl for the local CA (deploy/local/certs.sh),
# an independent gRPC client (python3-grpcio), the Python client's stub generator and installer
# (protoc, grpc_python_plugin 1.51 to match python3-grpcio 1.51, setuptools, pip, venv), promtool (prometheus), clang for the libFuzzer targets, and
# for the Kubernetes manifest checks (tests/k8s/) yamllint, python3-yaml and node (npm fetches
# kubernetes-models; kubectl is not in Debian 12 main, so the check skips loudly without it).
test_pkgs=(dataset-fashion-mnist python3-numpy python3-faiss libhnswlib-dev
    etcd-server etcd-client nats-server python3-grpcio python3-protobuf prometheus python3-prometheus-client clang
    yamllint python3-yaml nodejs protobuf-compiler protobuf-compiler-grpc python3-setuptools python3-pip
    python3-venv redis-server redis-tools python3-redis openssl)
# Debian's nodejs has no npm (a separate package); NodeSource's nodejs ships it and conflicts with it.
command -v npm >/dev/null || test_pkgs+=(npm)
# benchmarks only (tests/bench/run_*.sh): plots, fio (the disk's random-read IOPS beside the disk tier's).
bench_pkgs=(python3-matplotlib fio)
pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}")
case "${1:-}" in
--bench) pkgs+=("${bench_pkgs[@]}"); shift ;;
--build-only) pkgs=("${build_pkgs[@]}"); shift ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "${1:-}" = "--print" ] || [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages; run as root:"
    echo "  apt-get update && $cmd"
    [ "${1:-}" = "--print" ] && exit 0
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists; refresh them when the first install attempt cannot find a package.
if ! $cmd; then
    apt-get update
    $cmd
fi
