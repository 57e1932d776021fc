#!/usr/bin/python3
"""test_python_client: the Python client (coordinator/client/python) against a real local cluster.

- The package installs with the documented pip line's options (--no-build-isolation, stubs generated
  from protos/ by protoc and grpc_python_plugin at build), into a directory of its own.
- deploy/local/cluster.sh up --writes starts etcd, NATS JetStream, 2 hash partitions of an IVF16,Flat
  version and the coordinator. With nprobe = nlist the index is exact, so the client's single and batch
  searches must return numpy's brute-force neighbours and distances.
- exclude_ids: the excluded nearest neighbours are skipped, the next ones come up.
- upsert and delete through the client: with min_log_seq the next search sees each write at once.
- Errors: bad shapes and NaN are refused before the network (ValueError); a wrong dimension and k = 0 are
  the server's INVALID_ARGUMENT as VecshardError; a dead address is UNAVAILABLE after the retries, within
  the deadline.
- The README.md example runs as written (its code block, with VECSHARD_ADDR set to this cluster).
Env: VS_BIN_DIR (the built binaries), VS_SOURCE_DIR (the checkout), VS_TEST_TMPDIR."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, cluster_down, cluster_up, install, run_readme_block, write_fvecs  # noqa: E402

N, D, NQ, K, NLIST = 4000, 16, 50, 10, 16
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}", file=sys.stderr)
    return cond


def exact(base, ids, q, k):
    d = ((q[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(d, order, axis=1)


def main():
    tmpdir = os.environ.get("VS_TEST_TMPDIR")
    if tmpdir:
        os.makedirs(tmpdir, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="python_client.", dir=tmpdir))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402  (installed just above)

    rng = np.random.default_rng(7)
    base = rng.standard_normal((N, D)).astype(np.float32)
    queries = rng.standard_normal((NQ, D)).astype(np.float32)
    write_fvecs(tmp / "base.fvecs", base)
    subprocess.run([str(BIN / "vecshard-build"), "--base", str(tmp / "base.fvecs"), "--factory", f"IVF{NLIST},Flat",
                    "--partitions", "2", "--version", "v1", "--out", str(tmp / "idx"), "--target-recall", "0",
                    "--threads", "2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cl = tmp / "cluster"
    ok, out, state = cluster_up(cl, [tmp / "idx" / "v1" / "manifest.json"], "--writes")
    try:
        if not check(ok, f"cluster.sh up: {out[-2000:]}"):
            return
        addr = state["coordinator_addr"]
        run_checks(vecshard, addr, base, queries)
        run_readme(addr, tmp)
    finally:
        cluster_down(cl)
        if failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)


def run_checks(vecshard, addr, base, queries):
    ids_all = np.arange(N, dtype=np.int64)
    want_ids, want_d = exact(base, ids_all, queries, K)
    with vecshard.Client(addr, timeout=5.0) as c:
        r = c.search(queries, k=K, nprobe=NLIST)  # batch
        check(r.ids.shape == (NQ, K) and r.ids.dtype == np.int64 and r.distances.dtype == np.float32,
              f"batch result shapes {r.ids.shape} {r.ids.dtype} {r.distances.dtype}")
        check(np.array_equal(r.ids, want_ids), "batch search: not the exact neighbours")
        check(np.allclose(r.distances, want_d, rtol=1e-4, atol=1e-4), "batch search: distances differ")
        check(r.index_version == "v1" and not r.coverage.partial and r.coverage.partitions_answered == 2,
              f"version {r.index_version}, coverage {r.coverage}")
        one = c.search(queries[3], k=K, nprobe=NLIST)  # one query, 1-D
        check(np.array_equal(one.ids[0], want_ids[3]), "single search: not the exact neighbours")
        ex = c.search(queries[3], k=K, nprobe=NLIST, exclude_ids=want_ids[3, :3])  # the 3 nearest excluded
        check(np.array_equal(ex.ids[0, :K - 3], want_ids[3, 3:]), f"exclude_ids: {ex.ids[0]}")
        ex = c.search(queries[3], k=K, nprobe=NLIST, exclude_ids=int(want_ids[3, 0]))  # one id, a scalar
        check(np.array_equal(ex.ids[0, :K - 1], want_ids[3, 1:]), f"exclude_ids scalar: {ex.ids[0]}")
        big = c.search(np.random.default_rng(1).standard_normal((1000, D), dtype=np.float32), k=400, nprobe=2)
        check(big.ids.shape == (1000, 400), "an answer over gRPC's default 4 MiB")

        # writes, read through min_log_seq
        new_id = 10 ** 12 + 5
        w = c.upsert([new_id], queries[7:8])
        check(w.log_seq > 0 and not w.duplicate, f"upsert answered {w}")
        r = c.search(queries[7], k=3, nprobe=NLIST, min_log_seq=w.log_seq)
        check(r.ids[0, 0] == new_id and abs(float(r.distances[0, 0])) < 1e-5, f"upserted id not first: {r.ids}")
        again = c.upsert([new_id], queries[7:8], write_id=w.write_id)  # a retry of the same write
        check(again.duplicate and again.log_seq == w.log_seq, f"retried write: {again}")
        gone = c.delete([new_id, int(want_ids[7, 0])])
        r = c.search(queries[7], k=K, nprobe=NLIST, min_log_seq=gone.log_seq)
        check(new_id not in r.ids and want_ids[7, 0] not in r.ids, "deleted ids still returned")
        check(np.array_equal(r.ids[0, :K - 1], want_ids[7, 1:]), "after the delete: not the next neighbours")

        # errors
        for bad, what in ((np.full((1, D), np.nan), "NaN"), (np.zeros((2, 3, 4)), "3-D"), (np.zeros((0, D)), "empty")):
            try:
                c.search(bad, k=K)
                check(False, f"{what} queries were sent")
            except ValueError:
                pass
        for kwargs, what in (({"queries": np.zeros((1, D + 1), np.float32), "k": K}, "wrong dimension"),
                             ({"queries": queries[:1], "k": 0}, "k = 0")):
            try:
                c.search(**kwargs)
                check(False, f"{what} was answered")
            except vecshard.VecshardError as e:
                check(e.code.name == "INVALID_ARGUMENT", f"{what}: {e.code} {e.details}")
    with vecshard.Client(addr, timeout=None) as c:  # no deadline at all
        check(c.search(queries[0], k=1, nprobe=NLIST).ids[0, 0] == want_ids[0, 0], "timeout=None")
    dead = vecshard.Client("127.0.0.1:1", timeout=0.5, retries=2, retry_backoff=0.05)
    t0 = time.monotonic()
    try:
        dead.search(queries[:1], k=K)
        check(False, "a dead address answered")
    except vecshard.VecshardError as e:
        took = time.monotonic() - t0
        check(e.code.name in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and took < 1.5,
              f"dead address: {e.code} after {took:.2f} s")
    dead.close()


def run_readme(addr, tmp):
    """The README's Python example (the block after '<!-- python-client-example -->'), as written."""
    found, rc, out = run_readme_block("python-client-example", addr, D, tmp)
    if check(found, "README.md has no python-client-example block"):
        check(rc == 0, f"README example exited {rc}: {out[-2000:]}")
        check("nearest" in out, f"README example printed: {out[-500:]}")


if __name__ == "__main__":
    main()
    print("test_python_client: " + ("ok" if failures == 0 else f"{failures} failed"))
    sys.exit(1 if failures else 0)
