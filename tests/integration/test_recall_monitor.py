#!/usr/bin/python3
"""test_recall_monitor: recall you can see (issue 16, part 2) on a real local cluster (deploy/local/cluster.sh:
etcd, 2 shards of a 2-partition IVF-PQ,RFlat version, the coordinator with --recall-sample 1).

- The coordinator's gauge vecshard_coordinator_recall{version,params,k} equals, within 0.02, the recall@10 of
  the same served answers computed offline against numpy's exact neighbours (`vecshard query --gt`), at two
  settings (nprobe 1 k_factor 1: recall below 0.9; nprobe 32 k_factor 16: near 1), each its own series with
  its window size in vecshard_coordinator_recall_window_queries.
- A version keeping quantised vectors only (IVF-PQ without refine) gets no estimate: its replays are refused
  by the shards (UNIMPLEMENTED) and counted as dropped, and serving is unaffected.
- The canary gate: `vecshard activate --canary` measures a staged version's recall through the coordinator
  on its stored query set (served answers against SearchRequest.exact answers). The corrupt version of the
  issue's example (vecshard-test-scramble: centroids rotated by one list, every file, CRC and content id
  consistent, so the shards load it READY) is refused with the figures and stays inactive; a good version is
  activated, its measured recall printed.
- Sampling off (--recall-sample 0): nothing sampled.
- Every metric the coordinator exports passes `promtool check metrics`.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, Checks, cluster_down, cluster_up, wait_for, write_fvecs  # noqa: E402

N, D, NQ, K = 20000, 24, 400, 10
check = Checks()


def write_ivecs(path, x):
    x = np.ascontiguousarray(x, dtype="<i4")
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype="<i4")
    rows[:, 0] = x.shape[1]
    rows[:, 1:] = x
    rows.tofile(path)


def metrics(port):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def series(text, name, version, params):
    m = re.search(rf'^{name}{{version="{version}",params="{params}",k="{K}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def counter(text, name):
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def query(addr, tmp, version, nprobe, k_factor=4):
    p = subprocess.run([str(BIN / "vecshard"), "query", "--coordinator", addr, "--queries", str(tmp / "q.fvecs"),
                        "--gt", str(tmp / "gt.ivecs"), "--k", str(K), "--nprobe", str(nprobe), "--k-factor", str(k_factor),
                        "--index-version",
                        version, "--batch", "8", "--concurrency", "2", "--json"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    check(p.returncode == 0, f"vecshard query {version} nprobe {nprobe}: {p.stderr}")
    import json
    return json.loads(p.stdout)["recall_at_k"] if p.returncode == 0 else None


def vs(*args, timeout=120):
    return subprocess.run([str(BIN / "vecshard"), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def canary(tmp, cl, addr):
    """Deploys the scrambled copy of v1 and a good rebuild, then activates each with --canary."""
    etcd = re.search(r"^etcd_url=(.*)$", (cl / "state").read_text(), re.M).group(1)
    bad = subprocess.run([str(BIN / "vecshard-test-scramble"), tmp / "idx" / "v1" / "manifest.json", tmp / "idx",
                          "vbad"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(bad.returncode == 0, f"vecshard-test-scramble: {bad.stderr}")
    subprocess.run([str(BIN / "vecshard-build"), "--base", tmp / "base.fvecs", "--factory", "IVF32,PQ12x4fs,RFlat",
                    "--partitions", "2", "--out", tmp / "idx", "--version", "v2", "--seed", "2"], check=True,
                   stdout=subprocess.DEVNULL)
    for v in ("vbad", "v2", "vpq"):
        p = vs("deploy", tmp / "idx" / v / "manifest.json", "--etcd", etcd, "--cluster", "local")
        check(p.returncode == 0, f"deploy {v}: {p.stderr}")

    def activate(v):  # until the shards hold it READY (the canary needs every partition)
        end = time.monotonic() + 60
        while True:
            p = vs("activate", v, "--etcd", etcd, "--cluster", "local", "--canary", addr)
            if p.returncode == 0 or "canary" in p.stderr or "exact vectors" in p.stderr or time.monotonic() > end:
                return p
            time.sleep(0.2)

    p = activate("vpq")
    check(p.returncode == 1 and "Unimplemented" in p.stderr and "keeps no exact vectors" in p.stderr,
          f"a version without exact vectors cannot pass the canary (UNIMPLEMENTED, not retried): {p.stderr.strip()}")
    p = activate("vbad")
    m = re.search(r"measured recall@10 ([0-9.]+) on (\d+) stored queries, below ([0-9.]+)", p.stderr)
    check(p.returncode == 1 and m is not None, f"the scrambled version is refused by the canary: {p.stdout} {p.stderr}")
    if m:
        print(f"canary refused vbad: recall@10 {m.group(1)} on {m.group(2)} queries, below {m.group(3)}")
        check(float(m.group(1)) < 0.8, f"the scrambled version's measured recall is low ({m.group(1)})")
    st = vs("versions", "--etcd", etcd, "--cluster", "local", "--json")
    check('"vbad"' in st.stdout and not re.search(r'"active"\s*:\s*"vbad"', st.stdout),
          f"vbad is not active: {st.stdout[:400]}")
    p = activate("v2")
    m = re.search(r"canary: version v2 recall@10 ([0-9.]+)", p.stdout)
    check(p.returncode == 0 and m is not None and float(m.group(1)) >= 0.95,
          f"the good version passes the canary and is activated: {p.stdout} {p.stderr}")
    if m:
        print(f"canary passed v2: recall@10 {m.group(1)}")


def cluster(tmp, name, manifests, coord_args):
    """A local cluster of the manifests with these coordinator arguments: (dir, address, metrics port)."""
    cl = tmp / name
    ok, out, state = cluster_up(cl, manifests, "--coordinator-args", coord_args)
    check(ok, f"cluster.sh up: {out[-2000:]}")
    return cl, state.get("coordinator_addr"), state.get("coordinator_metrics_port")


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-recall-", dir=os.environ.get("VS_TEST_TMPDIR")))
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(32, D)).astype(np.float32) * 2
    base = (centers[rng.integers(0, 32, N)] + rng.normal(size=(N, D))).astype(np.float32)
    q = (centers[rng.integers(0, 32, NQ)] + rng.normal(size=(NQ, D))).astype(np.float32)
    write_fvecs(tmp / "base.fvecs", base)
    write_fvecs(tmp / "q.fvecs", q)
    d2 = ((q[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    write_ivecs(tmp / "gt.ivecs", np.argsort(d2, axis=1, kind="stable")[:, :K])
    for version, factory in (("v1", "IVF32,PQ12x4fs,RFlat"), ("vpq", "IVF32,PQ12x4fs")):
        subprocess.run([str(BIN / "vecshard-build"), "--base", tmp / "base.fvecs", "--factory", factory,
                        "--partitions", "2", "--out", tmp / "idx", "--version", version], check=True,
                       stdout=subprocess.DEVNULL)
    manifests = [tmp / "idx" / v / "manifest.json" for v in ("v1", "vpq")]
    cl, addr, mport = cluster(tmp, "cl", manifests,
                                      "--recall-sample 1 --recall-max-qps 100000 --recall-window 1000 "
                                      "--recall-budget 1")
    try:
        gauges = []
        for nprobe, kf in ((1, 1), (32, 16)):
            offline = query(addr, tmp, "v1", nprobe, kf)
            # the label is the applied parameters: nprobe, and the version's tuned k_factor
            def got(np_=nprobe):
                t = metrics(mport)
                m = re.search(rf'^vecshard_coordinator_recall_window_queries{{version="v1",params="(nprobe={np_},'
                              rf'k_factor={kf})",k="{K}"}} (\S+)$', t, re.M)
                return (m.group(1), t) if m and float(m.group(2)) >= NQ else None
            params, text = wait_for(got, f"a full window of v1 at nprobe {nprobe}")
            gauge = series(text, "vecshard_coordinator_recall", "v1", params)
            n = series(text, "vecshard_coordinator_recall_window_queries", "v1", params)
            check(gauge is not None and offline is not None and abs(gauge - offline) <= 0.02,
                  f"nprobe {nprobe}: gauge {gauge} vs offline recall@{K} {offline} ({n} queries, params {params})")
            print(f"nprobe {nprobe}: gauge {gauge:.4f}, offline {offline:.4f}, window {n:.0f}, params {params}")
            gauges.append(gauge)
        check(gauges[0] is not None and gauges[0] < 0.9 and gauges[1] is not None and gauges[1] - gauges[0] > 0.05,
              f"the two settings' recalls differ (a monitor that always says 1 fails here): {gauges}")
        # no parameters: the version's own, labelled params="defaults" (what the alert watches)
        p = vs("query", "--coordinator", addr, "--queries", tmp / "q.fvecs", "--k", K, "--index-version", "v1",
               "--batch", 8, "--concurrency", 2)
        check(p.returncode == 0, f"query at the defaults: {p.stderr}")
        wait_for(lambda: series(metrics(mport), "vecshard_coordinator_recall_window_queries", "v1", "defaults"),
                 "the defaults' series")
        # a version with quantised vectors only: replays refused, counted as dropped; serving unaffected
        before = counter(metrics(mport), "vecshard_coordinator_recall_dropped_queries_total") or 0
        offline = query(addr, tmp, "vpq", 4)
        check(offline is not None and offline > 0.3, f"vpq serves: recall {offline}")
        wait_for(lambda: (counter(metrics(mport), "vecshard_coordinator_recall_dropped_queries_total") or 0)
                 >= before + NQ, "vpq's replays to be refused and counted")
        check(not re.search(r'^vecshard_coordinator_recall\{version="vpq"', metrics(mport), re.M),
              "no recall estimate for a version without exact vectors")
        canary(tmp, cl, addr)
        text = metrics(mport)
        (tmp / "metrics.txt").write_text(text)
        pc = subprocess.run(["promtool", "check", "metrics"], input=text, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
        check(pc.returncode == 0, f"promtool check metrics: {pc.stdout}")
    finally:
        cluster_down(cl)
    cl, addr, mport = cluster(tmp, "off", manifests[:1], "--recall-sample 0")
    try:
        query(addr, tmp, "v1", 2)
        check(counter(metrics(mport), "vecshard_coordinator_recall_sampled_queries_total") == 0,
              "--recall-sample 0 samples nothing")
    finally:
        cluster_down(cl)
    return check.finish("test_recall_monitor", tmp)


if __name__ == "__main__":
    sys.exit(main())
