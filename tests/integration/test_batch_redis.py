#!/usr/bin/python3
"""test_batch_redis: `vecshard batch` (offline batch neighbours into Redis, issue 16) against a real
redis-server (Debian's, AOF with appendfsync always, so a killed Redis restarts with what it acknowledged).

- Values are right: every key's ids are the in-process search's, recall@10 against numpy's exact
  neighbours >= 0.9; string keys (text file) and int64 keys (.npy) both work; binary and JSON values agree.
- kill -9 mid-run: a run stopped between sending a block's SETs and reading their replies (the
  VS_NBRS_TEST_STOP_AFTER hook: Redis then holds keys beyond the recorded progress), killed with SIGKILL,
  and rerun, writes exactly the keys and bytes an uninterrupted run writes; no switch happened before.
- Readers polling during switches (vecshard.neighbours.Reader, keep = 1 so old sets are deleted right
  after each switch) never see values of two sets in one read, never miss a key, and see several sets.
- Redis killed mid-run: the run fails with Redis's error and says the current set is unchanged; Redis
  restarted from its AOF still has the previous set current and intact; the rerun completes.
- Redis full mid-run (maxmemory lowered while the run is stopped): OOM error, current set untouched; a run
  that would not fit under maxmemory is refused before writing; allkeys-* eviction policies are refused.
- Bad input: wrong dimension, NaN, duplicate keys, too few keys, a set name held by another run: exit 1
  with a clear message, nothing switched.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import numpy as np
import redis

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, SRC, Checks, cluster_down, cluster_up, wait_for, write_fvecs  # noqa: E402

sys.path.insert(0, str(SRC / "coordinator" / "client" / "python"))
from vecshard.neighbours import Reader, decode, set_tag  # noqa: E402

N, D, NQ, K = 20000, 24, 3000, 10
check = Checks()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, tmp):
        self.dir = tmp / "redis"
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.dir / "log")])
        self.client = redis.Redis(port=self.port)
        wait_for(lambda: self._ping(), "redis-server", timeout=30.0, poll=0.01)

    def _ping(self):
        try:
            return self.client.ping()
        except redis.exceptions.RedisError:
            return False

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


def batch(redis_port, *args, env=None, wait=True):
    cmd = [str(BIN / "vecshard"), "batch", "--redis", f"127.0.0.1:{redis_port}", "--quiet", "--timeout-ms", "20000",
           *map(str, args)]
    e = dict(os.environ)
    e.update(env or {})
    if not wait:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


def dump(r, prefix, set_name):
    """{key suffix: value bytes} of one set."""
    pat = f"{prefix}/{set_name}:*"
    keys = list(r.scan_iter(match=pat, count=1000))
    vals = r.mget(keys) if keys else []
    cut = len(f"{prefix}/{set_name}:")
    return {k[cut:].decode(): v for k, v in zip(keys, vals)}


def same_answers(got, ref, set_name):
    """got (a set's dump) holds ref's keys with the same ids and scores, each value tagged set_name."""
    if set(got) != set(ref):
        return False
    for k, v in got.items():
        ids, scores, tag, _ = decode(v)
        rids, rscores, _, _ = decode(ref[k])
        if tag != set_tag(set_name) or not np.array_equal(ids, rids) or not np.array_equal(scores, rscores):
            return False
    return True


def proc_state(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def stopped_run(port, args, blocks):
    """Starts a run that stops itself (SIGSTOP) after `blocks` recorded blocks, with the next block's SETs sent
    and their replies unread; returns the process once it is stopped."""
    p = batch(port, *args, env={"VS_NBRS_TEST_STOP_AFTER": str(blocks)}, wait=False)
    wait_for(lambda: proc_state(p.pid) == "T" or p.poll() is not None, "the run to stop itself", timeout=30.0,
             poll=0.01)
    check(p.poll() is None, f"the run stopped itself after {blocks} blocks (rc {p.poll()})")
    return p


def cluster(rs, tmp, man, common, keys, ref1):
    """vecshard batch --coordinator: the same answers as in process (the version has no fresh writes), the
    version pinned and named in the set; a coordinator that cannot be reached is a clear error."""
    cl = tmp / "cluster"
    ok, out, state = cluster_up(cl, [man], "--redis")
    try:
        if not check(ok, f"cluster.sh up: {out[-2000:]}"):
            return
        addr = state["coordinator_addr"]
        remote = [a for a in common if a != man]
        remote = remote[:remote.index("--manifest")] + remote[remote.index("--manifest") + 1:]
        p = batch(rs.port, *remote, "--coordinator", addr, "--queries", tmp / "q1.fvecs", "--keys",
                  tmp / "keys.txt", "--prefix", "cl", "--set", "s1", "--call-queries", 100, "--concurrency", 3,
                  "--json")
        check(p.returncode == 0 and '"version":"v1"' in p.stdout, f"through the cluster: {p.stdout} {p.stderr}")
        check(dump(rs.client, "cl", "s1") == ref1, "through the cluster: the same bytes as in process")
        p = batch(rs.port, *remote, "--coordinator", addr, "--index-version", "v9", "--queries", tmp / "q1.fvecs",
                  "--keys", tmp / "keys.txt", "--prefix", "cl", "--set", "s9")
        check(p.returncode == 1 and "v9" in p.stderr, f"an unknown version: {p.stderr.strip()}")
        # cluster.sh up --redis: a redis-server beside the cluster, named in the state file
        raddr = state["redis_addr"]
        cmd = [str(BIN / "vecshard"), "batch", "--redis", raddr, "--quiet", *map(str, remote), "--coordinator", addr,
               "--queries", str(tmp / "q1.fvecs"), "--keys", str(tmp / "keys.txt")]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        cr = redis.Redis(host=raddr.split(":")[0], port=int(raddr.split(":")[1]))
        cur = cr.get("vs:nbrs:#current")
        check(p.returncode == 0 and cur is not None and cr.dbsize() >= NQ, f"cluster.sh --redis: {p.stderr}")
    finally:
        cluster_down(cl)
    p = batch(rs.port, *remote, "--coordinator", addr, "--timeout-ms", 2000, "--queries", tmp / "q1.fvecs", "--keys",
              tmp / "keys.txt", "--prefix", "cl", "--set", "s2")
    check(p.returncode == 1 and "coordinator" in p.stderr, f"coordinator down: {p.stderr.strip()}")


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-batch-", dir=os.environ.get("VS_TEST_TMPDIR")))
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(64, D)).astype(np.float32) * 3
    base = (centers[rng.integers(0, 64, N)] + rng.normal(size=(N, D))).astype(np.float32)
    q1 = (centers[rng.integers(0, 64, NQ)] + rng.normal(size=(NQ, D))).astype(np.float32)
    q2 = (centers[rng.integers(0, 64, NQ)] + rng.normal(size=(NQ, D))).astype(np.float32)
    write_fvecs(tmp / "base.fvecs", base)
    write_fvecs(tmp / "q1.fvecs", q1)
    write_fvecs(tmp / "q2.fvecs", q2)
    keys = [f"user-{i * 7 + 3}" for i in range(NQ)]
    (tmp / "keys.txt").write_text("\n".join(keys) + "\n")
    int_keys = np.arange(NQ, dtype=np.int64) * 1000 + 17
    np.save(tmp / "keys.npy", int_keys)
    subprocess.run([str(BIN / "vecshard-build"), "--base", tmp / "base.fvecs", "--factory", "IVF64,PQ12x4fs,RFlat",
                    "--partitions", "2", "--out", tmp / "v", "--version", "v1"], check=True,
                   stdout=subprocess.DEVNULL)
    man = tmp / "v" / "v1" / "manifest.json"
    common = ["--manifest", man, "--k", K, "--params", "nprobe=16,k_factor=4", "--block", 500]

    rs = RedisServer(tmp)
    rs.start()
    r = rs.client
    try:
        # --- values are right, uninterrupted reference runs ---
        p = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "ref",
                  "--set", "s1", "--json")
        check(p.returncode == 0, f"reference run: {p.stderr}")
        ref1 = dump(r, "ref", "s1")
        check(len(ref1) == NQ and set(ref1) == set(keys), f"reference set holds every key ({len(ref1)})")
        check(r.get("ref:#current") == b"s1", "the finished set is current")
        exact = np.argsort(((q1[:, None, :] - base[None, :, :]) ** 2).sum(-1), axis=1)[:, :K]
        hits, bad_header, unsorted = 0, [], 0
        for i, k in enumerate(keys):
            ids, scores, tag, sim = decode(ref1[k])
            if tag != set_tag("s1") or sim is not False or len(ids) != K:
                bad_header.append(k)
            unsorted += not np.all(np.diff(scores) >= 0)
            hits += len(set(ids.tolist()) & set(exact[i].tolist()))
        check(not bad_header, f"every value has the set's tag, L2 flags and K ids: {bad_header[:3]}")
        check(unsorted == 0, f"scores ascending (L2 distances) in every value: {unsorted} not")
        recall = hits / (NQ * K)
        check(recall >= 0.9, f"recall@{K} of the written neighbours {recall:.3f} >= 0.9")
        p = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.npy", "--prefix", "ref",
                  "--set", "s1int", "--format", "json")
        check(p.returncode == 0, f"int64 keys, JSON values: {p.stderr}")
        refj = dump(r, "ref", "s1int")
        check(set(refj) == {str(x) for x in int_keys}, "int64 keys written as decimal strings")
        same = all(np.array_equal(decode(refj[str(int_keys[i])])[0], decode(ref1[keys[i]])[0]) for i in range(NQ))
        check(same, "JSON values hold the same ids as binary values")
        p = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "ref",
                  "--set", "s1")
        check(p.returncode == 0 and "already complete" in p.stdout, f"rerunning a finished run: {p.stdout}")
        check(r.get("ref:#current") == b"s1", "rerunning a finished run makes its set current again")

        # --- kill -9 mid-run, then resume ---
        args = [*common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "kill", "--set", "s1"]
        p = stopped_run(rs.port, args, 2)
        done = int(r.hget("kill:#meta:s1", "done") or 0)
        held = len(dump(r, "kill", "s1"))
        check(done == 1000, f"progress recorded after 2 blocks: {done}")
        check(held > done, f"Redis holds keys beyond the recorded progress when killed ({held} > {done})")
        check(r.get("kill:#current") is None, "no switch before the run finished")
        p.kill()
        p.wait()
        p = batch(rs.port, *args, "--json")
        check(p.returncode == 0 and '"resumed_from":1000' in p.stdout, f"resumed run: {p.stdout} {p.stderr}")
        killed = dump(r, "kill", "s1")
        check(killed == ref1, "a killed and resumed run wrote exactly what the uninterrupted run wrote")
        check(r.get("kill:#current") == b"s1", "the resumed run switched")

        # --- readers during switches ---
        p = batch(rs.port, *common, "--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--prefix", "ref",
                  "--set", "s2")
        ref2 = dump(r, "ref", "s2")
        expect = {"a": ref1, "b": ref2, "c": ref1, "d": ref2, "e": ref1}
        queries = {"a": "q1", "b": "q2", "c": "q1", "d": "q2", "e": "q1"}
        stop = threading.Event()
        seen, errors = [], []

        def reader(seed):
            rr = Reader(redis.Redis(port=rs.port), prefix="live")
            g = np.random.default_rng(seed)
            got = set()
            while not stop.is_set():
                ks = [keys[j] for j in g.integers(0, NQ, 40)]
                try:
                    vals = rr.get_many(ks)
                except Exception as e:  # noqa: BLE001 - any failure is a test failure
                    errors.append(repr(e))
                    return
                s = rr.current
                if s is None:
                    continue
                got.add(s)
                if len(vals) != len(set(ks)):
                    errors.append(f"missing keys in set {s}: {len(vals)} of {len(set(ks))}")
                for k, (ids, _) in vals.items():
                    if not np.array_equal(ids, decode(expect[s][k])[0]):
                        errors.append(f"key {k} in set {s} holds other values")
                        return
            seen.append((got, rr.retries))

        first = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "live",
                      "--set", "a", "--keep", 1)
        check(first.returncode == 0, f"first live set: {first.stderr}")
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for name in "bcde":
            p = batch(rs.port, *common, "--queries", tmp / f"{queries[name]}.fvecs", "--keys", tmp / "keys.txt",
                      "--prefix", "live", "--set", name, "--keep", 1)
            check(p.returncode == 0, f"live set {name}: {p.stderr}")
        stop.set()
        for t in threads:
            t.join()
        check(not errors, f"readers during switches: {errors[:3]}")
        check(all(len(g) >= 2 for g, _ in seen), f"each reader saw several sets: {[sorted(g) for g, _ in seen]}")
        check(r.lrange("live:#sets", 0, -1) == [b"e"], "keep 1: only the current set remains listed")
        check(not list(r.scan_iter(match="live/d:*")), "keep 1: the previous set's keys are deleted")
        print(f"readers: sets seen {[sorted(g) for g, _ in seen]}, retries {[n for _, n in seen]}")

        # --- Redis killed mid-run ---
        args = [*common, "--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--prefix", "live", "--set", "f"]
        p = stopped_run(rs.port, args, 1)
        rs.kill()
        os.kill(p.pid, signal.SIGCONT)
        out, errt = p.communicate(timeout=60)
        check(p.returncode == 1, f"the run fails when Redis is killed (rc {p.returncode})")
        check("redis" in errt and "current set is unchanged" in errt, f"clear error: {errt.strip()}")
        rs.start()
        r = rs.client
        check(r.get("live:#current") == b"e", "Redis restarted: the previous set is still current")
        check(same_answers(dump(r, "live", "e"), ref1, "e"), "Redis restarted: the current set is intact")
        p = batch(rs.port, *args)
        check(p.returncode == 0, f"rerun after Redis came back: {p.stderr}")
        check(r.get("live:#current") == b"f" and same_answers(dump(r, "live", "f"), ref2, "f"),
              "rerun completed and switched")

        # --- Redis full mid-run ---
        args = [*common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "live", "--set", "g"]
        p = stopped_run(rs.port, args, 1)
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory", used + 64 * 1024)
        os.kill(p.pid, signal.SIGCONT)
        out, errt = p.communicate(timeout=60)
        check(p.returncode == 1 and "OOM" in errt and "RESOURCE_EXHAUSTED" in errt, f"OOM mid-run: {errt.strip()}")
        check(r.get("live:#current") == b"f" and same_answers(dump(r, "live", "f"), ref2, "f"),
              "Redis full: current set untouched")
        r.config_set("maxmemory", used // 2)
        p = batch(rs.port, *common, "--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--prefix", "live",
                  "--set", "h")
        check(p.returncode == 1 and "maxmemory" in p.stderr, f"a run that cannot fit is refused: {p.stderr.strip()}")
        check(not list(r.scan_iter(match="live/h:*")), "the refused run wrote no value")
        r.config_set("maxmemory", 0)
        r.config_set("maxmemory-policy", "allkeys-lru")
        p = batch(rs.port, *args)
        check(p.returncode == 1 and "maxmemory-policy" in p.stderr, f"eviction policy refused: {p.stderr.strip()}")
        r.config_set("maxmemory-policy", "noeviction")
        p = batch(rs.port, *args)
        check(p.returncode == 0 and r.get("live:#current") == b"g", f"resumed after Redis had room: {p.stderr}")

        # --- through a running cluster (2 shards, the coordinator) ---
        cluster(rs, tmp, man, common, keys, ref1)

        # --- bad input ---
        write_fvecs(tmp / "bad_dim.fvecs", q1[:10, :D - 1])
        bad_nan = q1[:700].copy()
        bad_nan[612, 3] = np.nan
        write_fvecs(tmp / "bad_nan.fvecs", bad_nan)
        (tmp / "dup.txt").write_text("\n".join(keys[:NQ - 1] + [keys[5]]) + "\n")
        (tmp / "few.txt").write_text("\n".join(keys[:10]) + "\n")
        (tmp / "k700.txt").write_text("\n".join(keys[:700]) + "\n")
        cases = [
            (["--queries", tmp / "bad_dim.fvecs"], "dimension"),
            (["--queries", tmp / "bad_nan.fvecs", "--keys", tmp / "k700.txt", "--set", "nan"], "row 612"),
            (["--queries", tmp / "q1.fvecs", "--keys", tmp / "dup.txt"], "duplicate key"),
            (["--queries", tmp / "q1.fvecs", "--keys", tmp / "few.txt"], "10 keys for 3000 queries"),
            (["--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--set", "g"], "another run"),
        ]
        for extra, msg in cases:
            p = batch(rs.port, *common, "--prefix", "live", *extra)
            check(p.returncode == 1 and msg in p.stderr, f"bad input ({msg}): rc {p.returncode}, {p.stderr.strip()}")
        check(r.get("live:#current") == b"g", "bad input switched nothing")
        check(not list(r.scan_iter(match="live/nan:*")) and not r.exists("live:#meta:nan"),
              "a NaN in row 612 is refused before anything is written")
        p = batch(rs.port, "--drop", "g", "--prefix", "live")
        check(p.returncode == 1 and "current set" in p.stderr, f"the current set cannot be dropped: {p.stderr}")

        # --- a set dropped while its run writes: --force needed; the run then stops and switches nothing ---
        args = [*common, "--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--prefix", "live", "--set", "w"]
        p = stopped_run(rs.port, args, 2)
        d = batch(rs.port, "--drop", "w", "--prefix", "live")
        check(d.returncode == 1 and "--force" in d.stderr, f"dropping a set being written needs --force: {d.stderr}")
        d = batch(rs.port, "--drop", "w", "--prefix", "live", "--force")
        check(d.returncode == 0, f"--drop --force: {d.stderr}")
        os.kill(p.pid, signal.SIGCONT)
        out, errt = p.communicate(timeout=60)
        check(p.returncode == 1 and "dropped or taken over" in errt, f"the run of a dropped set stops: {errt.strip()}")
        check(r.get("live:#current") == b"g" and not r.exists("live:#meta:w"),
              "a dropped set is neither switched to nor recreated")

        # --- an expire interrupted halfway: rerunning that set's command restarts it, never switches to it half
        # empty ---
        r.hset("live:#meta:f", "state", "deleting")
        half = list(r.scan_iter(match="live/f:*"))[: NQ // 2]
        r.unlink(*half)
        p = batch(rs.port, *common, "--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--prefix", "live",
                  "--set", "f", "--json")
        check(p.returncode == 0 and '"resumed_from":0' in p.stdout, f"a half-deleted set is restarted: {p.stdout}")
        check(r.get("live:#current") == b"f" and same_answers(dump(r, "live", "f"), ref2, "f"),
              "the restarted set is complete and current")

        # --- prefixes never overlap: set "nbrs" of prefix "vs" and every set of prefix "vs:nbrs" ---
        pa = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "vs:nbrs",
                   "--set", "a")
        pb = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--keys", tmp / "keys.txt", "--prefix", "vs",
                   "--set", "nbrs")
        pc = batch(rs.port, *common, "--queries", tmp / "q2.fvecs", "--keys", tmp / "keys.txt", "--prefix", "vs",
                   "--set", "z", "--keep", 1)
        check(pa.returncode == pb.returncode == pc.returncode == 0, f"prefix runs: {pa.stderr} {pb.stderr} {pc.stderr}")
        check(not list(r.scan_iter(match="vs/nbrs:*")), "prefix vs, --keep 1: set nbrs expired")
        check(r.get("vs:nbrs:#current") == b"a" and same_answers(dump(r, "vs:nbrs", "a"), ref1, "a"),
              "prefix vs:nbrs untouched by prefix vs's expiry")
        p = batch(rs.port, *common, "--queries", tmp / "q1.fvecs", "--prefix", "vs/x")
        check(p.returncode == 2 and "--prefix" in p.stderr, f"'/' is refused in a prefix: {p.stderr.strip()}")
    finally:
        rs.stop()
    print(f"test_batch_redis: {check.count} checks, {check.failures} failures")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
