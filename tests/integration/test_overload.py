#!/usr/bin/python3
"""test_overload: overload control (issue 21) on a real local cluster whose shards take 30 ms per call
(--debug-delay-ms 30, 2 workers each), so queues form at a load this machine can generate.

- Per-client quotas tied to the identity: a coordinator with --auth-tokens and --client-quota alice=20:20.
  100 concurrent searches as alice: about the burst plus 20/s pass, the rest is RESOURCE_EXHAUSTED naming the
  quota, each with a retry-after hint (the Python client's VecshardError.retry_after) of at most a second;
  100 searches as bob (no quota), 20 at a time: none refused for a quota (at least 90 pass; a loaded machine
  may shed a few for overload).
- Priorities: open-loop online and batch traffic (vecshard query --rate, --priority batch) at once. The
  replica queues hold more than the shards serve, so waiting partition calls are shed: the batch ones (after
  a quarter of --max-queue-ms) and almost never the online ones, which leave first. Online traffic keeps
  its answers (at most 5 % shed: a loaded machine adds waits), batch traffic is shed (over 20 %, and 5x
  online's share), and the
  coordinator counts vecshard_coordinator_shed_total{reason="replica_queue",priority="batch"}.
- The shard's own queue: 20 concurrent Shard/Search calls straight to a shard (2 workers, 30 ms each) with
  the vs-timeout-us metadata: the calls that waited past --max-queue-ms (50) for a worker are refused with
  RESOURCE_EXHAUSTED, the trailer vs-retry-after-ms and a message saying how long they waited; the shard
  counts them (vecshard_shard_shed_total{reason="queue"}). The same burst without the metadata (a client
  that does not say its timeout) is served in full: nothing is refused on a guess.
- The coordinator's entry queue: a call whose vs-timeout-us says it was sent with 32 s while its deadline
  says 2 s has, by the coordinator's reckoning, waited 30 s for a worker; the coordinator answered other
  calls during that time, so it is refused before any work (reason "queue"). A call claiming 0.3 s of wait
  from a coordinator idle for 0.4 s (nothing answered meanwhile: no queue) is served.
- The adaptive concurrency limit: partition 0's only replica frozen (SIGSTOP) under 400 online
  calls/s: requests pile up until the coordinator's limit, the later ones are refused at once (reason
  limit) instead of waiting out the pause; nothing fails otherwise, and after SIGCONT traffic is served.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import concurrent.futures
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import (BIN, Checks, cluster_down, cluster_up, install, new_token, small_version,  # noqa: E402
                    wait_for, write_fvecs)

N, D, NQ, K, NLIST = 4000, 16, 64, 10, 8
check = Checks()


def metric(port, pattern):
    """Sum of the /metrics samples whose line matches pattern (a regex over the series)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^" + pattern + r" (\S+)$", body, re.M))


def burst(fn, n, workers):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(lambda i: fn(i), range(n)))


def query(addr, qfile, token, rate, seconds, *extra):
    """vecshard query in the open loop; returns the Popen (its stdout: the --json report)."""
    env = dict(os.environ, VECSHARD_TOKEN=token)
    return subprocess.Popen([str(BIN / "vecshard"), "query", "--coordinator", addr, "--queries", str(qfile),
                             "--k", str(K), "--nprobe", str(NLIST), "--rate", str(rate), "--concurrency", "2000",
                             "--limit", str(int(rate * seconds)), "--timeout-ms", "5000", "--json", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-overload-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import grpc  # noqa: E402
    import numpy as np  # noqa: E402
    import vecshard  # noqa: E402  (installed just above)
    from vecshard.v1 import shard_pb2  # noqa: E402

    _, q, manifest = small_version(tmp, 21, N, D, NQ, NLIST)
    qfile = tmp / "many.fvecs"
    write_fvecs(qfile, np.tile(q, (40, 1)))
    alice, alice_line = new_token("search", "alice")
    bob, bob_line = new_token("search", "bob")
    tokens = tmp / "tokens"
    tokens.write_text(f"{alice_line}\n{bob_line}\n")
    cl = tmp / "cluster"
    ok, out, state = cluster_up(cl, [manifest], "--shard-threads", "2", "--shard-args", "--debug-delay-ms 30",
                                "--coordinator-args", f"--auth-tokens {tokens} --client-quota alice=20:20")
    t_up = time.monotonic()  # cluster.sh's last call to the coordinator has been answered
    try:
        if not check(ok, f"cluster.sh up: {out[-2000:]}"):
            return 1
        addr = state["coordinator_addr"]
        cport = state["coordinator_metrics_port"]
        from vecshard.v1 import coordinator_pb2  # noqa: E402
        cch = grpc.insecure_channel(addr)
        csearch = cch.unary_unary("/vecshard.v1.Coordinator/Search")
        creq = coordinator_pb2.SearchRequest(dim=D, k=K, queries=q[0].tolist()).SerializeToString()
        auth = ("authorization", f"Bearer {bob}")

        def claims_wait(wait_s):
            """A search whose vs-timeout-us (2 s + wait_s) and deadline (2 s) say it waited wait_s for a worker."""
            try:
                csearch(creq, timeout=2.0, metadata=(auth, ("vs-timeout-us", str(int((2.0 + wait_s) * 1e6)))))
                return ("OK", "")
            except grpc.RpcError as e:
                return (e.code().name, e.details())
        # A coordinator idle for the whole wait a call claims has no queue: a slow start, a paused process or
        # a sanitizer build is never taken for overload. The precondition is elapsed idle time itself: 0.4 s
        # since cluster.sh's last call, and the call claims 0.3 s (6x the 50 ms limit).
        idle = 0.4 - (time.monotonic() - t_up)
        if idle > 0:
            time.sleep(idle)
        got = claims_wait(0.3)
        check(got[0] == "OK", f"an idle coordinator does not refuse a call for its wait: {got}")

        # ---- per-client quotas ----
        ca = vecshard.Client(addr, timeout=10.0, retries=0, token=alice)
        cb = vecshard.Client(addr, timeout=10.0, retries=0, token=bob)

        def one(c):
            def f(i):
                try:
                    c.search(q[i % NQ], k=K, nprobe=NLIST)
                    return None
                except vecshard.VecshardError as e:
                    return e
            return f
        t0 = time.monotonic()
        got = burst(one(ca), 100, 50)
        elapsed = time.monotonic() - t0
        passed = sum(e is None for e in got)
        refused = [e for e in got if e is not None]
        quota = [e for e in refused if "over its quota" in e.details]
        # (on a loaded machine a few calls may also be shed for overload: RESOURCE_EXHAUSTED, other reasons)
        print(f"  alice (quota 20/s, burst 20): {passed} of 100 passed in {elapsed:.2f} s, {len(quota)} refused "
              f"for the quota, {len(refused) - len(quota)} for overload")
        check(passed <= 20 + 20 * elapsed + 1 and passed + len(refused) - len(quota) >= 20,
              f"alice gets her burst and her rate, no more: {passed} in {elapsed:.2f} s")
        check(quota and all(e.code == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused),
              f"the rest is RESOURCE_EXHAUSTED naming the quota: {refused[:2]}")
        check(quota and all(e.retry_after is not None and 0 < e.retry_after <= 1.0 for e in quota),
              f"each refusal says when to retry: {sorted({e.retry_after for e in quota})[:5]}")
        got = burst(one(cb), 100, 20)
        bob_refused = [e for e in got if e is not None]
        check(sum(e is None for e in got) >= 90 and not any("quota" in e.details for e in bob_refused) and
              all(e.code == grpc.StatusCode.RESOURCE_EXHAUSTED for e in bob_refused),
              f"bob (no quota) is not limited: {bob_refused[:2]}")
        check(metric(cport, r'vecshard_coordinator_shed_total\{reason="quota",priority="online"\}') == len(quota),
              "the coordinator counts the quota refusals")
        ca.close()
        cb.close()

        # ---- priorities: online ahead of batch ----
        on = query(addr, qfile, bob, 300, 5)
        ba = query(addr, qfile, bob, 300, 5, "--priority", "batch")
        reports = {}
        for name, p in (("online", on), ("batch", ba)):
            o, e = p.communicate(timeout=120)
            reports[name] = json.loads(o) if o.strip() else {"error": e}
        share = {}
        for name, r in reports.items():
            calls = r.get("calls", 0)
            shed = r.get("calls_shed", 0)
            share[name] = shed / calls if calls else 1.0
            others = {k: v for k, v in r.get("failed_by_status", {}).items() if k != "RESOURCE_EXHAUSTED"}
            check(calls > 0 and not others, f"{name}: refusals are only RESOURCE_EXHAUSTED: {r}")
            print(f"  {name}: {calls} calls, {shed} shed ({100 * share[name]:.1f} %), answered p99 "
                  f"{r.get('answered_latency_ms', {}).get('p99')} ms")
        check(share["online"] <= 0.05, f"online traffic keeps its answers (shed {100 * share['online']:.1f} %)")
        check(share["batch"] > 0.2 and share["batch"] >= 5 * share["online"],
              f"batch traffic is shed first ({100 * share['batch']:.1f} % vs online {100 * share['online']:.1f} %)")
        check(metric(cport, r'vecshard_coordinator_shed_total\{reason="replica_queue",priority="batch"\}') > 0,
              "the coordinator counts batch calls shed from the replica queues")

        # ---- the shard's queue ----
        sch = grpc.insecure_channel(state["shard_p0r0_addr"])
        search = sch.unary_unary("/vecshard.v1.Shard/Search")
        req = shard_pb2.ShardSearchRequest(dim=D, k=K, queries=q[0].tolist()).SerializeToString()

        def direct(with_md):
            def f(i):
                md = (("vs-timeout-us", "5000000"),) if with_md else ()
                try:
                    search(req, timeout=5.0, metadata=md)
                    return ("OK", None, "")
                except grpc.RpcError as e:
                    trail = dict(e.trailing_metadata() or ())
                    return (e.code().name, trail.get("vs-retry-after-ms"), e.details())
            return f
        sport = state["shard_p0r0_metrics_port"]
        shard_shed = r'vecshard_shard_shed_total\{reason="queue",priority="online"\}'
        shed_before = metric(sport, shard_shed)
        got = burst(direct(True), 20, 20)
        codes = [g[0] for g in got]
        shed = [g for g in got if g[0] == "RESOURCE_EXHAUSTED"]
        print(f"  20 calls at once to a shard (2 workers, 30 ms each): {codes.count('OK')} served, {len(shed)} refused")
        check(codes.count("OK") >= 2 and shed and codes.count("OK") + len(shed) == 20,
              f"the shard serves what its queue allows and refuses the rest: {codes}")
        check(shed and all(s[1] and int(s[1]) >= 10 and "waited" in s[2] for s in shed),
              f"refusals carry vs-retry-after-ms and say how long they waited: {shed[:2]}")
        check(metric(sport, shard_shed) - shed_before == len(shed), "the shard counts them")
        got = burst(direct(False), 20, 20)
        check(all(g[0] == "OK" for g in got), f"without vs-timeout-us nothing is refused: {[g[0] for g in got]}")
        sch.close()

        # ---- the coordinator's entry queue ----
        coord_queue = r'vecshard_coordinator_shed_total\{reason="queue",priority="online"\}'
        queue_before = metric(cport, coord_queue)
        # a coordinator that answered calls during the claimed wait (the sections above): refused before work
        got = claims_wait(30.0)
        check(got[0] == "RESOURCE_EXHAUSTED" and "for a worker" in got[1],
              f"a busy coordinator refuses a call that waited 30 s for a worker: {got}")
        check(metric(cport, coord_queue) - queue_before == 1, "... and counted (reason queue)")
        cch.close()

        # ---- the adaptive concurrency limit: a shard frozen under load ----
        # partition 0's only replica is stopped (SIGSTOP) under 400 online calls/s: requests pile up on it
        # until the coordinator's concurrency limit is reached, and the ones after are refused at once
        # (reason limit) instead of queueing for the whole pause; once it resumes, traffic is served again
        limit_shed = r'vecshard_coordinator_shed_total\{reason="limit",priority="online"\}'
        lim_before = metric(cport, limit_shed)
        searches = r"vecshard_coordinator_searches_total"
        n0 = metric(cport, searches)
        fz = query(addr, qfile, bob, 400, 6)
        wait_for(lambda: metric(cport, searches) >= n0 + 200, "the load runs", timeout=60)
        pid = int(state["proc_p0r0_pid"])
        os.kill(pid, signal.SIGSTOP)
        try:
            # frozen until the coordinator refuses at its limit (the behaviour under test), 30 s at most
            wait_for(lambda: metric(cport, limit_shed) > lim_before, "refusals at the limit while frozen",
                     timeout=30)
            limit_during = metric(cport, r"vecshard_coordinator_concurrency_limit")
        finally:
            os.kill(pid, signal.SIGCONT)
        o, e = fz.communicate(timeout=120)
        r = json.loads(o) if o.strip() else {"error": e}
        others = {k: v for k, v in r.get("failed_by_status", {}).items() if k != "RESOURCE_EXHAUSTED"}
        refused = metric(cport, limit_shed) - lim_before
        print(f"  shard frozen under 400 calls/s: {r.get('calls')} calls, {r.get('calls_shed')} refused "
              f"(limit: {refused:.0f}), other failures {others}; limit {limit_during}")
        check(r.get("calls", 0) > 0 and not others, f"a frozen shard costs refusals only, no other failure: {r}")
        check(refused > 0, "requests beyond the concurrency limit were refused at once while the shard was frozen")
        check(r.get("queries_answered", 0) >= 0.3 * r.get("calls", 1),
              f"traffic is served again once the shard resumes: {r.get('queries_answered')} of {r.get('calls')}")
    finally:
        cluster_down(cl)
    return check.finish("test_overload", tmp)


if __name__ == "__main__":
    sys.exit(main())
