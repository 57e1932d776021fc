"""vstest: what the Python integration tests share: the checks counter, vector files, the client install, a
local cluster (deploy/local/cluster.sh) and waiting on a condition."""
import base64
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np

SRC = pathlib.Path(os.environ.get("VS_SOURCE_DIR") or pathlib.Path(__file__).resolve().parents[2])
BIN = pathlib.Path(os.environ.get("VS_BIN_DIR") or SRC / "build" / "bin")


class Checks:
    """Counts checks and failures; check(cond, what) prints what on failure and returns cond."""

    def __init__(self):
        self.failures = 0
        self.count = 0

    def __call__(self, cond, what):
        self.count += 1
        if not cond:
            self.failures += 1
            print(f"FAIL: {what}", file=sys.stderr)
        return cond

    def finish(self, name, tmp=None):
        """The test's closing line; removes tmp when every check passed (kept for a look otherwise).
        Returns the exit status."""
        if tmp is not None and self.failures == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{name}: {self.count} checks, {self.failures} failures")
        return 1 if self.failures else 0


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype="<f4")
    rows[:, 0] = np.array([x.shape[1]], dtype="<i4").view("<f4")[0]
    rows[:, 1:] = x
    rows.tofile(path)


def install(tmp):
    """pip-installs a copy of the package (the checkout stays clean) into tmp/site; returns that path."""
    pkg = tmp / "pkg"
    shutil.copytree(SRC / "coordinator" / "client" / "python", pkg)
    site = tmp / "site"
    env = dict(os.environ, VS_PROTOS_DIR=str(SRC / "protos"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--root-user-action=ignore",
                    "--no-build-isolation", "--no-deps", "--target", str(site), str(pkg)], check=True, env=env)
    return site


def run_readme_block(marker, addr, dim, tmp):
    """Runs README.md's Python block after '<!-- marker -->' as written, with VECSHARD_ADDR and VECSHARD_DIM
    set and the installed client (tmp/site) importable. Returns (found, exit status, output)."""
    readme = (SRC / "README.md").read_text()
    m = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", readme, re.S)
    if m is None:
        return False, None, ""
    (tmp / f"{marker}.py").write_text(m.group(1))
    env = dict(os.environ, VECSHARD_ADDR=addr, VECSHARD_DIM=str(dim), PYTHONPATH=str(tmp / "site"))
    p = subprocess.run([sys.executable, str(tmp / f"{marker}.py")], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    return True, p.returncode, p.stdout


def wait_for(cond, what, timeout=60.0, poll=0.05):
    """cond()'s first true value, polled every poll seconds; TimeoutError naming what after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(poll)
    raise TimeoutError(f"timed out waiting for {what}")


def cluster_up(cl, manifests, *args, timeout=60, tls=False):
    """deploy/local/cluster.sh up in directory cl with the manifests and further args (VS_BIN_DIR = BIN),
    in plain text (--insecure) unless tls (then cl/env holds the clients' TLS settings).
    Returns (ok, output, state): state maps the state file's keys (coordinator_addr, ...) to values."""
    cmd = [str(SRC / "deploy" / "local" / "cluster.sh"), "up", "--dir", str(cl), "--timeout", str(timeout)]
    if not tls:
        cmd.append("--insecure")
    for m in manifests:
        cmd += ["--manifest", str(m)]
    up = subprocess.run(cmd + [str(a) for a in args], env=dict(os.environ, VS_BIN_DIR=str(BIN)),
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = {}
    if up.returncode == 0:
        state = dict(re.findall(r"^(\w+)=(.*)$", (pathlib.Path(cl) / "state").read_text(), re.M))
    return up.returncode == 0, up.stdout, state


def cluster_down(cl):
    """deploy/local/cluster.sh down in directory cl."""
    subprocess.run([str(SRC / "deploy" / "local" / "cluster.sh"), "down", "--dir", str(cl)],
                   env=dict(os.environ, VS_BIN_DIR=str(BIN)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class EtcdGateway:
    """etcd's JSON gateway over TLS (a deploy/local/certs.sh directory tls), as an RBAC user when given (its
    token fetched once), with the CN-less etcd client certificate unless cert is False."""

    def __init__(self, url, tls, user=None, password=None, cert=True):
        import ssl
        ctx = ssl.create_default_context(cafile=str(pathlib.Path(tls) / "ca.crt"))
        if cert:
            ctx.load_cert_chain(str(pathlib.Path(tls) / "etcd-client.crt"), str(pathlib.Path(tls) / "etcd-client.key"))
        self.url, self.ctx, self.token = url, ctx, None
        if user:
            self.token = self.post("/v3/auth/authenticate", {"name": user, "password": password})["token"]

    def post(self, path, body):
        """The JSON reply; an HTTP error's JSON body with "http": its code."""
        import json
        import urllib.error
        import urllib.request
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Authorization": self.token} if self.token else {})
        try:
            return json.load(urllib.request.urlopen(req, context=self.ctx, timeout=5))
        except urllib.error.HTTPError as e:
            return {"http": e.code, **json.loads(e.read() or b"{}")}

    def put(self, key, value):
        """"OK", or etcd's error text."""
        b64 = lambda t: base64.b64encode(t.encode()).decode()  # noqa: E731
        r = self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return "OK" if "header" in r and "error" not in r else r.get("error", r.get("message", str(r)))

    def get_prefix(self, prefix):
        """{key: value} of every key under prefix."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.post("/v3/kv/range", {"key": base64.b64encode(prefix.encode()).decode(),
                                       "range_end": base64.b64encode(end.encode()).decode()})
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                for kv in r.get("kvs", [])}


def small_version(tmp, seed, n=4000, d=16, nq=32, nlist=8, version="v1", partitions=2):
    """A random base (n x d) and nq queries, and an IVF<nlist>,Flat version of the base in hash partitions
    built by vecshard-build under tmp/idx, drawn from seed (an int, or a numpy Generator that goes on being
    used after). Returns (base, queries, manifest path)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    write_fvecs(tmp / "base.fvecs", base)
    subprocess.run([str(BIN / "vecshard-build"), "--base", tmp / "base.fvecs", "--factory", f"IVF{nlist},Flat",
                    "--partitions", str(partitions), "--out", tmp / "idx", "--version", version,
                    "--target-recall", "0"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return base, q, tmp / "idx" / version / "manifest.json"


class SearchLoad:
    """A thread searching through client without pause (one query per call, cycling through queries) until
    stop(); counts complete ("ok") and partial answers and failures by status name."""

    def __init__(self, client, queries, k, **params):
        import threading
        self.stats = {"ok": 0, "partial": 0, "failed": {}}
        self._stop = threading.Event()
        self._args = (client, queries, k, params)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        from vecshard import VecshardError
        client, queries, k, params = self._args
        i = 0
        while not self._stop.is_set():
            try:
                r = client.search(queries[i % len(queries):i % len(queries) + 1], k=k, **params)
                self.stats["partial" if r.coverage.partial else "ok"] += 1
            except VecshardError as e:
                self.stats["failed"][e.code.name] = self.stats["failed"].get(e.code.name, 0) + 1
            i += 1

    def answered(self):
        return self.stats["ok"] + self.stats["partial"]

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)
        return self.stats


def new_token(perm, name):
    """`vecshard token new`: (the token, its line for the coordinator's --auth-tokens file)."""
    out = subprocess.run([str(BIN / "vecshard"), "token", "new", "--permission", perm, "--name", name],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return re.search(r"^token: (\S+)$", out, re.M).group(1), re.search(r"^line:  (.*)$", out, re.M).group(1)

