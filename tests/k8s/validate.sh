#!/usr/bin/env bash
# Offline validation of the container image recipe and the Kubernetes manifests (ctest test_k8s_manifests,
# label deploy; run by tests/run.sh). Usage: tests/k8s/validate.sh SOURCE_DIR WORK_DIR
#  1. deploy/docker/Dockerfile: COPY sources exist, FROM pinned, USER non-root (check_dockerfile.py).
#  2. yamllint (deploy/k8s/.yamllint) on deploy/k8s and tests/k8s/broken.
#  3. kubectl kustomize renders every overlay; each overlay with its jobs/* is one group, which must pass
#     yamllint, npm kubernetes-models (validate.mjs) and check_manifests.py.
#  4. Negative: tests/k8s/broken (overlay and Dockerfile) must be rejected with every expected message.
# Exit 0 all passed; 1 a check failed or a tool it needs is missing (npm install failing included);
# 77 (ctest: skipped, said loudly) when kubectl is not installed.
set -euo pipefail
src=$(realpath "${1:?source dir}")
work=${2:?work dir}
mkdir -p "$work"
work=$(realpath "$work")
k8s=$src/deploy/k8s
here=$src/tests/k8s
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

# Every expected substring (file, '#' lines skipped) must appear in the output file.
expect_all() {
    local expected=$1 out=$2 what=$3 line missing=0
    while IFS= read -r line; do
        case "$line" in '#'* | '') continue ;; esac
        grep -qF -- "$line" "$out" || { bad "$what: expected a problem containing: $line"; missing=1; }
    done <"$expected"
    [ $missing = 0 ] && echo "ok: $what rejected with every expected problem"
    return 0
}

echo "== Dockerfile"
/usr/bin/python3 "$here/check_dockerfile.py" "$src/deploy/docker/Dockerfile" "$src" || bad "deploy/docker/Dockerfile"
if /usr/bin/python3 "$here/check_dockerfile.py" "$here/broken/Dockerfile" "$src" >"$work/broken-dockerfile.out"; then
    bad "check_dockerfile.py accepted tests/k8s/broken/Dockerfile"
fi
expect_all "$here/broken/expected-dockerfile-errors.txt" "$work/broken-dockerfile.out" "broken Dockerfile"

command -v yamllint >/dev/null || { echo "FAIL: yamllint not installed (deploy/local/install-deps.sh)" >&2; exit 1; }
echo "== yamllint deploy/k8s tests/k8s/broken"
yamllint -s -c "$k8s/.yamllint" "$k8s" "$here/broken" || bad "yamllint"

if ! command -v kubectl >/dev/null; then
    echo "SKIPPED: kubectl not installed, so the overlays cannot be rendered (kubectl is not in Debian 12" \
        "main; install it from the Kubernetes apt repository). Nothing was validated past yamllint." >&2
    [ $fail = 0 ] || exit 1
    exit 77
fi

# npm packages, installed once into the work directory.
mods=$work/node_modules
if [ ! -f "$mods/kubernetes-models/package.json" ] || [ ! -f "$mods/yaml/package.json" ]; then
    command -v npm >/dev/null || { echo "FAIL: npm not installed (deploy/local/install-deps.sh)" >&2; exit 1; }
    echo "== npm install kubernetes-models@5.1.0 yaml@2 into $work"
    if ! npm install --prefix "$work" --no-audit --no-fund --loglevel=error kubernetes-models@5.1.0 yaml@2 \
        >"$work/npm.log" 2>&1; then
        cat "$work/npm.log" >&2
        echo "FAIL: npm install failed (offline?); the manifests were not schema-checked" >&2
        exit 1
    fi
fi

render() { # dir out
    kubectl kustomize "$1" >"$2" 2>"$2.err" || { cat "$2.err" >&2; bad "kubectl kustomize $1"; return 1; }
}

for overlay in "$k8s"/overlays/*/; do
    overlay=${overlay%/}
    name=$(basename "$overlay")
    echo "== overlay $name"
    files=()
    render "$overlay" "$work/$name.yaml" && files+=("$work/$name.yaml")
    for j in "$overlay"/jobs/*/; do
        [ -f "$j/kustomization.yaml" ] || continue
        j=${j%/}
        render "$j" "$work/$name-jobs-$(basename "$j").yaml" && files+=("$work/$name-jobs-$(basename "$j").yaml")
    done
    [ ${#files[@]} -gt 0 ] || continue
    yamllint -s -c "$k8s/.yamllint" "${files[@]}" || bad "yamllint of the rendered $name"
    node "$here/validate.mjs" --modules "$mods" "${files[@]}" || bad "kubernetes-models on $name"
    /usr/bin/python3 "$here/check_manifests.py" "${files[@]}" || bad "check_manifests.py on $name"
done

echo "== negative: tests/k8s/broken"
if render "$here/broken" "$work/broken.yaml"; then
    if /usr/bin/python3 "$here/check_manifests.py" "$work/broken.yaml" >"$work/broken.out" 2>&1; then
        bad "check_manifests.py accepted the broken overlay"
    fi
    expect_all "$here/broken/expected-errors.txt" "$work/broken.out" "broken overlay (check_manifests.py)"
    if node "$here/validate.mjs" --modules "$mods" "$work/broken.yaml" >"$work/broken-models.out" 2>&1; then
        bad "kubernetes-models accepted the broken overlay"
    fi
    grep -qF "livenessProbe/grpc/port must be integer" "$work/broken-models.out" &&
        echo "ok: broken overlay rejected by kubernetes-models (named gRPC probe port)" ||
        bad "kubernetes-models did not report the named gRPC probe port"
fi

[ $fail = 0 ] && echo "k8s validation: all checks passed"
exit $fail
