#!/usr/bin/python3
"""FAISS peer for vecshard-bench.

What it does: loads the base/query .npy files written by vecshard-bench, builds
one FAISS index from a factory string (train + add, timed together as build_s),
then for every search setting of the --search sweep runs an untimed warm-up and
a timed pass over all queries, writes the result ids to DIR/faiss_<i>.npy
(int32, shape (nq, k), -1 for missing) and prints one JSON line on stdout.

What it does not do: compute recall (the harness does that from the ids file, so
recall is computed identically for every peer), download data, or tune anything
beyond the parameters it is given.  stdout carries only the JSON lines; all
progress and diagnostics go to stderr.

Key design choice: search parameters are applied only through
faiss.ParameterSpace().set_index_parameter, so nested structures (IVF inside
IndexRefine / IndexPreTransform, HNSW quantizers, ...) are handled by FAISS
itself and the names are exactly FAISS's own (nprobe, efSearch, k_factor,
quantizer_efSearch, ...; 'k_factor' is mapped to faiss 1.7.3's 'k_factor_rf'
for IndexRefine).  Names are validated on a throwaway untrained copy of the
index before the (possibly long) build, so typos fail fast.  OpenBLAS is kept
single-threaded (see main) so that --threads means faiss's OpenMP threads only.

Must run under /usr/bin/python3 (Debian's python3-faiss is not visible to other
interpreters).
"""

import argparse
import itertools
import json
import os
import sys
import time

# numpy and faiss are imported in main(), after the command line is parsed,
# because the BLAS thread count must be in the environment before libopenblas loads.
np = None
faiss = None

PEER = "faiss"


# The version Debian 12 ships as python3-faiss.
DEBIAN_FAISS_VERSION = "1.7.3"


def die(msg, code=2):
    sys.stderr.write("peer_faiss: error: %s\n" % msg)
    sys.exit(code)


def faiss_msg(e):
    """FAISS exceptions carry a multi-line C++ trace; keep the informative line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Error:"):
            return ln
    return lines[-1] if lines else repr(e)


def log(msg):
    sys.stderr.write("peer_faiss: %s\n" % msg)
    sys.stderr.flush()


def load_matrix(path, what):
    """Load a 2-D float matrix; any problem is reported as a clean error."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        die("cannot open %s file %r: %s" % (what, path, e))
    if magic != b"\x93NUMPY":
        die("%s file %r is not a .npy file (bad magic)" % (what, path))
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # missing, truncated, not an npy, pickled object, ...
        die("cannot load %s file %r: %s" % (what, path, e))
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        die("%s file %r must hold a 2-D array, got shape %s" % (what, path, getattr(arr, "shape", "?")))
    if arr.dtype.kind not in "fiu":
        die("%s file %r has non-numeric dtype %s" % (what, path, arr.dtype))
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        die("%s file %r is empty (shape %s)" % (what, path, arr.shape))
    try:
        x = np.ascontiguousarray(arr, dtype=np.float32)
    except Exception as e:  # e.g. data shorter than the header claims
        die("cannot read %s data from %r: %s" % (what, path, e))
    if not x.flags.writeable:
        # A read-only view of the mmap; FAISS (and normalize_L2) want their own buffer.
        x = np.array(x, dtype=np.float32, order="C", copy=True)
    return x


def parse_search(spec):
    """'a=1,2;b=3' -> [('a', ['1','2']), ('b', ['3'])]; '' -> []."""
    out = []
    if spec is None:
        return out
    seen = set()
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            die("bad --search element %r (expected name=v1,v2,...)" % part)
        name, vals = part.split("=", 1)
        name = name.strip()
        if not name:
            die("bad --search element %r (empty parameter name)" % part)
        if name in seen:
            die("--search parameter %r given twice" % name)
        seen.add(name)
        values = [v.strip() for v in vals.split(",")]
        if not values or any(v == "" for v in values):
            die("bad --search values for %r: %r" % (name, vals))
        for v in values:
            try:
                float(v)
            except ValueError:
                die("--search value %r for %r is not a number" % (v, name))
        out.append((name, values))
    return out


def settings_of(params):
    """Cartesian product, first parameter outermost; one empty setting if none."""
    if not params:
        return [[]]
    names = [n for n, _ in params]
    return [list(zip(names, combo)) for combo in itertools.product(*[v for _, v in params])]


def numeric(v):
    f = float(v)
    return int(f) if f.is_integer() else f


def set_param(ps, index, name, value):
    """Set one FAISS search parameter.  faiss 1.7.3 names IndexRefine's factor
    'k_factor_rf' ('k_factor' is IndexIVFPQR's); the harness always says
    'k_factor', so fall back to the _rf name when the plain one is refused.
    vecshard also accepts 'ef_search' for efSearch; so does this peer."""
    if name == "ef_search":  # vecshard's alternative spelling
        name = "efSearch"
    try:
        ps.set_index_parameter(index, name, value)
    except Exception:
        if name != "k_factor":
            raise
        ps.set_index_parameter(index, "k_factor_rf", value)


def set_ef_construction(index, efc):
    """Set efConstruction on every HNSW graph reachable from index (before add)."""
    found = False
    stack = [index]
    while stack:
        idx = faiss.downcast_index(stack.pop())
        if idx is None:
            continue
        if hasattr(idx, "hnsw"):
            idx.hnsw.efConstruction = efc
            found = True
        for attr in ("quantizer", "base_index", "index"):
            sub = getattr(idx, attr, None)
            if sub is not None and isinstance(sub, faiss.Index):
                stack.append(sub)
    return found


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0


def run_queries(index, xq, k, batch, collect=None, lat_us=None):
    """Submit xq in chunks of `batch` (batch=1: one query per call, ann-benchmarks
    protocol).  If lat_us is a list, per-call latency in microseconds is appended."""
    nq = xq.shape[0]
    for i in range(0, nq, batch):
        q = xq[i:i + batch]
        t0 = time.perf_counter_ns()
        _, I = index.search(q, k)
        t1 = time.perf_counter_ns()
        if lat_us is not None:
            lat_us.append((t1 - t0) / 1000.0)
        if collect is not None:
            collect[i:i + q.shape[0]] = I


def main():
    ap = argparse.ArgumentParser(description="FAISS peer for vecshard-bench")
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--metric", choices=("l2", "ip", "cosine"), default="l2")
    ap.add_argument("--index", required=True, help="faiss index_factory string")
    ap.add_argument("--search", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--build-threads", type=int, default=0, help="threads for the build (default: --threads)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--hnsw-m", type=int, default=32, help="accepted for symmetry with the hnswlib peer; unused")
    a = ap.parse_args()

    if a.k < 1:
        die("--k must be >= 1")
    if a.threads < 1:
        die("--threads must be >= 1")
    if a.batch < 1:
        die("--batch must be >= 1")
    if a.ef_construction < 1:
        die("--ef-construction must be >= 1")
    params = parse_search(a.search)
    settings = settings_of(params)

    # Threads: faiss parallelises with OpenMP (omp_set_num_threads below).  The
    # Debian libblas is the pthread build of OpenBLAS, whose busy-waiting workers
    # fight with faiss's spinning OpenMP team (measured 8-13x slowdowns of
    # Flat/IVF batch search and of k-means training with both at N threads on N
    # cores).  So BLAS is single-threaded unless the caller set it explicitly;
    # this also keeps --threads 1 honest (no hidden BLAS threads).  Cost: the
    # sgemm inside large-batch Flat search does not scale with --threads.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    global np, faiss
    try:
        import numpy as np
        import faiss
    except ImportError as e:
        die("cannot import numpy/faiss (%s); run with /usr/bin/python3" % e)

    # Debian's python3-faiss (the peer of record) is labelled "faiss:"; any other FAISS found on
    # PYTHONPATH (e.g. a local build from source, which we never ship) carries its version in the label.
    version = getattr(faiss, "__version__", "?")
    label = "faiss:" if version == DEBIAN_FAISS_VERSION else "faiss-%s:" % version
    print("peer_faiss: faiss %s (%s)" % (version, faiss.get_compile_options()), file=sys.stderr)
    xb = load_matrix(a.base, "base")
    xq = load_matrix(a.queries, "queries")
    nb, d = xb.shape
    nq = xq.shape[0]
    if xq.shape[1] != d:
        die("dimension mismatch: base d=%d, queries d=%d" % (d, xq.shape[1]))
    if nb >= 2 ** 31:
        die("base has %d rows; int32 ids cannot represent them" % nb)
    try:
        os.makedirs(a.out_dir, exist_ok=True)
    except OSError as e:
        die("cannot create --out-dir %r: %s" % (a.out_dir, e))

    metric = faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    faiss.omp_set_num_threads(a.threads)

    # Fail fast on an unknown factory string or parameter name, before the build.
    try:
        probe = faiss.index_factory(d, a.index, metric)
    except Exception as e:
        die("unknown/invalid faiss factory %r: %s" % (a.index, faiss_msg(e)))
    ps = faiss.ParameterSpace()
    for name, values in params:
        try:
            set_param(ps, probe, name, numeric(values[0]))
        except Exception as e:
            die("search parameter %r is not supported by index %r: %s" % (name, a.index, faiss_msg(e)))
    del probe

    # Cosine: queries are normalised here, before any timing starts (normalising
    # the base happens inside the timed build below).
    if a.metric == "cosine":
        faiss.normalize_L2(xq)

    build_threads = a.build_threads if a.build_threads > 0 else a.threads
    faiss.omp_set_num_threads(build_threads)
    log("building %s on %d x %d (%s, %d threads)" % (a.index, nb, d, a.metric, build_threads))
    t0 = time.perf_counter()
    if a.metric == "cosine":
        faiss.normalize_L2(xb)  # counted in build_s: it is part of preparing the index
    index = faiss.index_factory(d, a.index, metric)
    set_ef_construction(index, a.ef_construction)
    if not index.is_trained:
        index.train(xb)
    index.add(xb)
    build_s = time.perf_counter() - t0
    index_bytes = int(len(faiss.serialize_index(index)))
    faiss.omp_set_num_threads(a.threads)
    log("built in %.3f s, %d bytes" % (build_s, index_bytes))

    k = a.k
    nwarm = min(nq, 100)
    for si, setting in enumerate(settings):
        for name, value in setting:
            try:
                set_param(ps, index, name, numeric(value))
            except Exception as e:
                die("cannot set %s=%s on %r: %s" % (name, value, a.index, faiss_msg(e)))
        pstr = ",".join("%s=%s" % (n, v) for n, v in setting)

        run_queries(index, xq[:nwarm], k, a.batch)  # untimed warm-up

        ids = np.full((nq, k), -1, dtype=np.int64)
        lat = []
        w0 = time.perf_counter_ns()
        run_queries(index, xq, k, a.batch, collect=ids, lat_us=lat)
        wall_s = (time.perf_counter_ns() - w0) / 1e9

        ids_file = os.path.join(a.out_dir, "%s_%d.npy" % (PEER, si))
        np.save(ids_file, ids.astype("<i4"))
        rec = {
            "index": label + a.index,
            "params": pstr,
            "qps": float(nq / wall_s) if wall_s > 0 else 0.0,
            "p50_us": percentile(lat, 50),
            "p99_us": percentile(lat, 99),
            "build_s": float(build_s),
            "index_bytes": index_bytes,
            "threads": a.threads,
            "batch": a.batch,
            "ids_file": ids_file,
        }
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()
        log("setting %d/%d [%s] done: %.0f qps" % (si + 1, len(settings), pstr, rec["qps"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
