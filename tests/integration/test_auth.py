#!/usr/bin/python3
"""test_auth: client authentication at the coordinator (issue 18, security half: bearer tokens) on a real
local cluster with writes (deploy/local/cluster.sh up --writes, the coordinator with --auth-tokens).

- Health checks need no token (cluster.sh up waits on them).
- Search: no token and a wrong token are UNAUTHENTICATED; a search token answers (recall against numpy's
  exact neighbours as without authentication).
- Upsert and Delete: a search token is PERMISSION_DENIED; a write token is acknowledged.
- Status: a write token is PERMISSION_DENIED; an admin token answers (`vecshard status` with $VECSHARD_TOKEN).
- vecshard_coordinator_auth_refused_total counts each refusal by reason; no token appears in the
  coordinator's log or its metrics; a malformed tokens file stops the coordinator with the line named.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, Checks, cluster_down, cluster_up, install, new_token, small_version, write_fvecs  # noqa: E402,E501

N, D, NQ, K = 3000, 16, 20, 10
check = Checks()


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-auth-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402  (installed just above)

    rng = np.random.default_rng(3)  # the version's data, then the vectors upserted below
    base, q, _ = small_version(tmp, rng, N, D, NQ, 8)
    toks = {p: new_token(p, f"{p}-client") for p in ("search", "write", "admin")}
    (tmp / "tokens").write_text("# test tokens\n" + "\n".join(line for _, line in toks.values()) + "\n")
    (tmp / "bad-tokens").write_text("search nothex\n")
    cl = tmp / "cluster"
    ok, out, state = cluster_up(cl, [tmp / "idx" / "v1" / "manifest.json"], "--writes", "--coordinator-args",
                                f"--auth-tokens {tmp / 'tokens'}")
    try:
        if not check(ok, f"cluster.sh up (health checks need no token): {out[-2000:]}"):
            return 1
        addr, mport = state["coordinator_addr"], state["coordinator_metrics_port"]

        def code_of(fn):
            try:
                fn()
                return "OK"
            except vecshard.VecshardError as e:
                return e.code.name

        anon = vecshard.Client(addr, timeout=10.0)
        wrong = vecshard.Client(addr, timeout=10.0, token="vst_" + "0" * 64)
        s = vecshard.Client(addr, timeout=10.0, token=toks["search"][0])
        w = vecshard.Client(addr, timeout=10.0, token=toks["write"][0])
        check(code_of(lambda: anon.search(q, k=K)) == "UNAUTHENTICATED", "search without a token")
        check(code_of(lambda: wrong.search(q, k=K)) == "UNAUTHENTICATED", "search with a wrong token")
        r = s.search(q, k=K, nprobe=8)
        d = ((q[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
        exact = np.argsort(d, axis=1, kind="stable")[:, :K]
        hits = sum(len(set(r.ids[i].tolist()) & set(exact[i].tolist())) for i in range(NQ))
        check(hits == NQ * K, f"a search token answers, exactly at nprobe = nlist ({hits} of {NQ * K})")
        vec = rng.standard_normal((1, D)).astype(np.float32)
        check(code_of(lambda: s.upsert([N + 1], vec)) == "PERMISSION_DENIED", "upsert with a search token")
        check(code_of(lambda: s.delete([1])) == "PERMISSION_DENIED", "delete with a search token")
        check(code_of(lambda: w.upsert([N + 1], vec)) == "OK", "upsert with a write token")
        check(code_of(lambda: w.search(q, k=K)) == "OK", "a write token may search")
        st = subprocess.run([str(BIN / "vecshard"), "status", "--coordinator", addr],
                            env=dict(os.environ, VECSHARD_TOKEN=toks["write"][0]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        check(st.returncode == 1 and "PERMISSION_DENIED" in (st.stderr + st.stdout).upper().replace(" ", "_"),
              f"status with a write token: {st.stderr.strip()}")
        st = subprocess.run([str(BIN / "vecshard"), "status", "--coordinator", addr],
                            env=dict(os.environ, VECSHARD_TOKEN=toks["admin"][0]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        check(st.returncode == 0, f"status with an admin token: {st.stderr.strip()}")
        qf = tmp / "q.fvecs"
        write_fvecs(qf, q)
        vq = subprocess.run([str(BIN / "vecshard"), "query", "--coordinator", addr, "--queries", qf, "--k", str(K)],
                            env=dict(os.environ, VECSHARD_TOKEN=toks["search"][0]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
        check(vq.returncode == 0, f"vecshard query with $VECSHARD_TOKEN: {vq.stdout[-400:]} {vq.stderr}")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
        counts = dict(re.findall(r'^vecshard_coordinator_auth_refused_total\{reason="(\w+)"\} (\S+)$', metrics,
                                 re.M))
        check(float(counts.get("missing", 0)) >= 1 and float(counts.get("invalid", 0)) >= 1 and
              float(counts.get("permission", 0)) >= 3, f"refusals counted by reason: {counts}")
        log = (cl / "coordinator.log").read_text()
        leaked = [p for p, (t, _) in toks.items() if t in log or t in metrics or t[4:] in log]
        check(not leaked, f"no token in the coordinator's log or metrics: {leaked}")
        for c in (anon, wrong, s, w):
            c.close()
    finally:
        cluster_down(cl)
    bad = subprocess.run([str(BIN / "vecshard-coordinator"), "--shards", "0=127.0.0.1:1", "--manifest",
                          str(tmp / "idx" / "v1" / "manifest.json"), "--auth-tokens", str(tmp / "bad-tokens"),
                          "--listen", "127.0.0.1:0", "--metrics-listen", "none"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=30)
    check(bad.returncode != 0 and "line 1" in bad.stderr, f"a malformed tokens file is refused: {bad.stderr.strip()}")
    return check.finish("test_auth", tmp)


if __name__ == "__main__":
    sys.exit(main())
