#!/usr/bin/python3
"""test_cluster_filter: attribute filters and group_by through a real local cluster (issue 17), against
numpy's exact filtered oracle, for main and fresh items.

- vecshard-build --attr builds three versions of the same data and attributes (market: integer 0..99, 1 % per
  value; seller: the item's cluster, correlated with the vectors; price: float 0..100), all served by one
  cluster (deploy/local/cluster.sh up --writes: etcd, NATS JetStream, 2 shards, the coordinator):
  v1 IVF32,Flat in 2 hash partitions, v2 HNSW16 in 2 hash partitions, v3 IVF32,Flat in 2 cluster
  partitions (filtered requests go to every partition, each ranking its own lists).
- For filters of 1 % to 50 % (one value, a set, a float range, conjunctions, the correlated field): no
  result of any version ever violates its filter; the exact configurations (v1, v3 at nprobe = nlist)
  return exactly numpy's filtered neighbours; v2 (HNSW) has recall@10 >= 0.95 against them.
- group_by: at most n results per value, group_values right, and (exact configurations) equal to numpy's
  greedy selection, with and without a filter; with exclusions too.
- Fresh items: upserts with attributes (new ids, and replacements that change an item's values and
  vector) and deletes, read through min_log_seq: the same checks against the oracle of the final items.
- Bad input: an unknown field, a set on a float field, group_by on a float field, an attribute column
  the version does not have or of the wrong type: INVALID_ARGUMENT, and the cluster keeps serving.
- vecshard query --filter/--group-by runs against the cluster.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, Checks, cluster_down, cluster_up, install, run_readme_block, write_fvecs  # noqa: E402

N, D, NQ, K, NLIST, NC = 6000, 16, 40, 10, 32, 60
check = Checks()


class Items:
    """The items as the cluster should serve them: id -> vector and attributes (numpy arrays by id)."""

    def __init__(self, vecs, market, seller, price):
        self.ids = np.arange(len(vecs), dtype=np.int64)
        self.vecs, self.market, self.seller, self.price = vecs, market, seller, price

    def match(self, flt):
        m = np.ones(len(self.ids), dtype=bool)
        for field, cond in (flt or {}).items():
            col = getattr(self, field)
            if isinstance(cond, tuple):
                lo = -np.inf if cond[0] is None else cond[0]
                hi = np.inf if cond[1] is None else cond[1]
                m &= (col >= lo) & (col <= hi)
            else:
                m &= np.isin(col, np.atleast_1d(cond))
        return m

    def oracle(self, q, k, flt=None, group=None, exclude=()):
        """Exact filtered (and grouped) neighbours: ids (nq, k), -1 padded."""
        m = self.match(flt) & ~np.isin(self.ids, np.asarray(exclude, dtype=np.int64))
        ids, vecs = self.ids[m], self.vecs[m]
        out = np.full((len(q), k), -1, dtype=np.int64)
        if len(ids) == 0:
            return out
        d = ((q[:, None, :].astype(np.float64) - vecs[None, :, :].astype(np.float64)) ** 2).sum(-1)
        for i in range(len(q)):
            order = np.lexsort((ids, d[i]))
            if group is None:
                sel = ids[order[:k]]
            else:
                field, size = group
                gcol = getattr(self, field)[m]
                seen, sel = {}, []
                for j in order:
                    g = int(gcol[j])
                    if seen.get(g, 0) < size:
                        seen[g] = seen.get(g, 0) + 1
                        sel.append(ids[j])
                        if len(sel) == k:
                            break
            out[i, :len(sel)] = sel
        return out


def violations(items, res_ids, flt, exclude=()):
    ok = items.match(flt)
    bad = 0
    for i in res_ids.ravel():
        if i < 0:
            continue
        pos = np.searchsorted(items.ids, i)
        bad += not (pos < len(items.ids) and items.ids[pos] == i and ok[pos]) or i in set(exclude)
    return bad


def recall(got, want):
    found = total = 0
    for g, w in zip(got, want):
        w = set(int(x) for x in w if x >= 0)
        total += len(w)
        found += len(w & set(int(x) for x in g if x >= 0))
    return found / total if total else 1.0


FILTERS = [
    {"market": [3]},                                   # 1 %, one value
    {"market": list(range(10))},                       # 10 %
    {"price": (None, 50.0)},                        # 50 %, float range
    {"market": list(range(20)), "price": (10.0, 60.0)},  # 20 % x 50 % conjunction
    {"seller": [5]},                                   # about 1.7 %, correlated with the vectors
    {"seller": list(range(6)), "market": (0, 49)},        # correlated term and an integer range
    {"market": [100000]},                              # nothing matches
]


def check_version(vs, c, items, queries, version, exact, what):
    nprobe = NLIST if version != "v2" else 0
    kw = dict(k=K, index_version=version, nprobe=nprobe) if nprobe else dict(k=K, index_version=version,
                                                                              ef_search=64)
    for flt in FILTERS:
        r = c.search(queries, filter=flt, **kw)
        want = items.oracle(queries, K, flt)
        check(violations(items, r.ids, flt) == 0, f"{what} {version} {flt}: a result violates the filter")
        check(((r.ids >= 0).sum(1) == (want >= 0).sum(1)).all(), f"{what} {version} {flt}: short answers")
        if exact:
            check(np.array_equal(r.ids, want), f"{what} {version} {flt}: not the exact filtered neighbours")
        else:
            rc = recall(r.ids, want)
            check(rc >= 0.95, f"{what} {version} {flt}: recall {rc:.3f}")
    for flt, group in [(None, ("seller", 2)), ({"price": (20.0, 80.0)}, ("market", 1)), ({"market": list(range(30))},
                                                                                     ("seller", 3))]:
        r = c.search(queries, filter=flt, group_by=group, **kw)
        want = items.oracle(queries, K, flt, group)
        check(r.group_values is not None and r.group_values.shape == (NQ, K), f"{what} {version}: group_values")
        gcol = getattr(items, group[0])
        bad_cap = bad_val = 0
        for i in range(NQ):
            vals = [int(v) for j, v in zip(r.ids[i], r.group_values[i]) if j >= 0]
            bad_cap += max([vals.count(v) for v in vals] or [0]) > group[1]
            bad_val += sum(int(gcol[np.searchsorted(items.ids, j)]) != int(v)
                           for j, v in zip(r.ids[i], r.group_values[i]) if j >= 0)
        check(bad_cap == 0 and bad_val == 0,
              f"{what} {version} group_by {group} {flt}: {bad_cap} over the cap, {bad_val} wrong values")
        check(violations(items, r.ids, flt) == 0, f"{what} {version} group_by {group}: violates the filter")
        if exact:
            check(np.array_equal(r.ids, want), f"{what} {version} group_by {group} {flt}: not the oracle's")
        else:
            rc = recall(r.ids, want)
            check(rc >= 0.9, f"{what} {version} group_by {group} {flt}: recall {rc:.3f}")
    excl = items.oracle(queries[:1], 5, FILTERS[1])[0]
    r = c.search(queries[0], filter=FILTERS[1], exclude_ids=excl, **kw)
    check(violations(items, r.ids, FILTERS[1], excl) == 0, f"{what} {version}: exclusions with a filter")
    if exact:
        check(np.array_equal(r.ids, items.oracle(queries[:1], K, FILTERS[1], exclude=excl)),
              f"{what} {version}: exclusions with a filter, not the oracle's")


def main():
    tmpdir = os.environ.get("VS_TEST_TMPDIR")
    if tmpdir:
        os.makedirs(tmpdir, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cluster_filter.", dir=tmpdir))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402

    rng = np.random.default_rng(11)
    centers = rng.standard_normal((NC, D)).astype(np.float32) * 3
    seller = rng.integers(0, NC, N)
    base = (centers[seller] + rng.standard_normal((N, D))).astype(np.float32)
    market = rng.integers(0, 100, N).astype(np.int64)
    price = (rng.random(N) * 100).astype(np.float32)
    queries = (centers[rng.integers(0, NC, NQ)] + rng.standard_normal((NQ, D))).astype(np.float32)
    write_fvecs(tmp / "base.fvecs", base)
    np.save(tmp / "market.npy", market)
    np.save(tmp / "seller.npy", seller.astype(np.int64))
    np.save(tmp / "price.npy", price)
    attrs = ["--attr", f"market={tmp / 'market.npy'}", "--attr", f"seller={tmp / 'seller.npy'}",
             "--attr", f"price={tmp / 'price.npy'}"]
    manifests = []
    for version, factory, part in [("v1", f"IVF{NLIST},Flat", "hash"), ("v2", "HNSW16", "hash"),
                                   ("v3", f"IVF{NLIST},Flat", "cluster")]:
        b = subprocess.run([str(BIN / "vecshard-build"), "--base", str(tmp / "base.fvecs"), "--factory", factory,
                            "--partitions", "2", "--partitioning", part, "--version", version, "--out",
                            str(tmp / "idx"), "--target-recall", "0", "--threads", "2", "--quiet"] + attrs,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not check(b.returncode == 0, f"vecshard-build {version}: {b.stdout[-2000:]}"):
            return
        manifests.append(tmp / "idx" / version / "manifest.json")
    cl = tmp / "cluster"
    ok, out, state = cluster_up(cl, manifests, "--writes")
    try:
        if not check(ok, f"cluster.sh up: {out[-2000:]}"):
            return
        addr = state["coordinator_addr"]
        items = Items(base, market, seller.astype(np.int64), price)
        with vecshard.Client(addr, timeout=10.0) as c:
            for version, exact in [("v1", True), ("v2", False), ("v3", True)]:
                check_version(vecshard, c, items, queries, version, exact, "main items")
            bad_input(vecshard, c, queries)
            items = fresh_writes(c, items, queries, rng)
            for version, exact in [("v1", True), ("v2", False), ("v3", True)]:
                check_version(vecshard, c, items, queries, version, exact, "main and fresh items")
        write_fvecs(tmp / "q.fvecs", queries)
        q = subprocess.run([str(BIN / "vecshard"), "query", "--coordinator", addr, "--queries", str(tmp / "q.fvecs"),
                            "--k", str(K), "--nprobe", str(NLIST), "--filter", "market=1|2|3&price=..70",
                            "--group-by", "seller:2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check(q.returncode == 0 and re.search(rf"\b{NQ}\b", q.stdout), f"vecshard query --filter: {q.stdout}")
        run_readme(addr, tmp)
    finally:
        cluster_down(cl)
        if check.failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)


def fresh_writes(c, items, queries, rng):
    """New items near the queries, replacements with new values and vectors, deletes; returns the items
    the cluster must serve afterwards."""
    n_new, n_rep, n_del = 300, 150, 150
    new_ids = np.arange(N, N + n_new, dtype=np.int64)
    rep_ids = rng.choice(N, n_rep, replace=False).astype(np.int64)
    rest = np.setdiff1d(np.arange(N), rep_ids)
    del_ids = rng.choice(rest, n_del, replace=False).astype(np.int64)
    up_ids = np.concatenate([new_ids, rep_ids])
    up_vecs = (queries[rng.integers(0, NQ, len(up_ids))] + 0.5 * rng.standard_normal((len(up_ids), D))).astype(
        np.float32)
    up_market = rng.integers(0, 100, len(up_ids)).astype(np.int64)
    up_seller = rng.integers(0, NC, len(up_ids)).astype(np.int64)
    up_price = (rng.random(len(up_ids)) * 100).astype(np.float32)
    w = c.upsert(up_ids, up_vecs, attributes={"market": up_market, "seller": up_seller, "price": up_price})
    d = c.delete(del_ids)
    seq = max(w.log_seq, d.log_seq)
    # the final items, and a search that waits for both writes in every version
    for v in ("v1", "v2", "v3"):
        r = c.search(queries[0], k=K, index_version=v, min_log_seq=seq)
        check(r.ids.shape == (1, K), f"read-your-writes search of {v}")
    vecs = np.concatenate([items.vecs, up_vecs[:n_new]])
    market, seller, price = (np.concatenate([items.market, up_market[:n_new]]), np.concatenate([items.seller, up_seller[:n_new]]),
                       np.concatenate([items.price, up_price[:n_new]]))
    vecs[rep_ids], market[rep_ids], seller[rep_ids], price[rep_ids] = (up_vecs[n_new:], up_market[n_new:],
                                                                  up_seller[n_new:], up_price[n_new:])
    out = Items(vecs, market, seller, price)
    keep = ~np.isin(out.ids, del_ids)
    out.ids, out.vecs, out.market, out.seller, out.price = (out.ids[keep], out.vecs[keep], out.market[keep],
                                                      out.seller[keep], out.price[keep])
    return out


def run_readme(addr, tmp):
    """The README's filter example (the block after '<!-- filter-example -->'), as written."""
    found, rc, out = run_readme_block("filter-example", addr, D, tmp)
    if check(found, "README.md has no filter-example block"):
        check(rc == 0 and "filtered:" in out, f"README filter example exited {rc}: {out[-2000:]}")


def bad_input(vecshard, c, queries):
    cases = [
        (dict(filter={"color": [1]}), "color"),
        (dict(filter={"price": [1, 2]}), "price"),
        (dict(group_by=("price", 1)), "price"),
        (dict(group_by=("market", K + 1)), "size"),
    ]
    for kw, word in cases:
        try:
            c.search(queries[0], k=K, **kw)
            check(False, f"{kw} accepted")
        except vecshard.VecshardError as e:
            check(e.code.name == "INVALID_ARGUMENT" and word in e.details, f"{kw}: {e.code.name} {e.details}")
    for attrs, word in [({"color": np.array([1])}, "color"), ({"market": np.array([1.5], dtype=np.float32)}, "market")]:
        try:
            c.upsert([N + 1000], queries[:1], attributes=attrs)
            check(False, f"upsert {attrs} accepted")
        except vecshard.VecshardError as e:
            check(e.code.name == "INVALID_ARGUMENT" and word in e.details, f"upsert {attrs}: {e.details}")
    r = c.search(queries[0], k=K, filter={"market": [3]})
    check(r.ids.shape == (1, K), "the cluster serves after bad input")


if __name__ == "__main__":
    main()
    if check.failures:
        print(f"test_cluster_filter: {check.failures} failures", file=sys.stderr)
        sys.exit(1)
    if check.count < 150:  # every version, filter and group_by case ran (a run that checks nothing fails)
        print(f"test_cluster_filter: only {check.count} checks ran", file=sys.stderr)
        sys.exit(1)
    print(f"test_cluster_filter: ok ({check.count} checks)")
