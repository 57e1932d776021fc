#!/usr/bin/python3
"""test_zones: zone-aware replicas (issue 21) on a real local cluster (deploy/local/cluster.sh up --replicas 2
--zones a,b: replica 0 of each partition in zone a, replica 1 in zone b, the coordinator in zone a).

- Every replica's record carries its zone; `vecshard status --json` shows it.
- The coordinator prefers its own zone: of the searches of a steady load, the zone-a replicas answer at least
  95 % (the rest: hedges, which go to the other zone after the replica's p95).
- Zone a frozen under load: both zone-a shards are stopped (SIGSTOP: their connections stay open and calls
  hang) while a client searches without pause; 300 searches are answered meanwhile (hedges to zone b) and
  not one fails. Then SIGCONT.
- Zone a lost under load: both zone-a shards are killed (-9) at once while a client searches without pause.
  Not one search fails (answers from zone b; partial answers are counted separately and reported), and the
  searches after the loss are answered in full by zone b alone.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, Checks, SearchLoad, cluster_down, cluster_up, install, small_version, wait_for  # noqa: E402

N, D, NQ, K, NLIST = 4000, 16, 32, 10, 8
check = Checks()


def searches_served(port):
    """Search calls a shard answered OK (grpc_server_handled_total on its /metrics)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(r'^grpc_server_handled_total\{[^}]*grpc_method="Search"[^}]*grpc_code="OK"[^}]*\} (\S+)$', body,
                  re.M)
    return float(m.group(1)) if m else 0.0


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-zones-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402  (installed just above)

    _, q, manifest = small_version(tmp, 13, N, D, NQ, NLIST)
    cl = tmp / "cluster"
    # hedges after 1 s: the share of calls that stay in zone a is then the zone preference alone, not
    # p95-based hedges (about 5 % of calls, more on a loaded machine)
    ok, out, state = cluster_up(cl, [manifest], "--replicas", "2", "--zones", "a,b", "--coordinator-args",
                                "--hedge-delay-ms 1000")
    load = None
    try:
        if not check(ok, f"cluster.sh up --zones a,b: {out[-2000:]}"):
            return 1
        addr = state["coordinator_addr"]
        st = subprocess.run([str(BIN / "vecshard"), "status", "--coordinator", addr, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        zones = {m["replica_id"]: m.get("zone") for m in json.loads(st.stdout)["members"]} if st.returncode == 0 \
            else {}
        check(zones == {"p0r0": "a", "p1r0": "a", "p0r1": "b", "p1r1": "b"}, f"the records carry the zones: {zones}")

        ports = {r: state[f"shard_{r}_metrics_port"] for r in ("p0r0", "p0r1", "p1r0", "p1r1")}
        before = {r: searches_served(p) for r, p in ports.items()}
        client = vecshard.Client(addr, timeout=5.0, retries=2)
        for i in range(400):
            client.search(q[i % NQ:i % NQ + 1], k=K, nprobe=NLIST)
        # a shard counts a call after answering it: wait until every call of the 400 is counted
        served = {}

        def counted():
            served.update({r: searches_served(p) - before[r] for r, p in ports.items()})
            return sum(served.values()) >= 800
        wait_for(counted, "the shards count the 800 calls", timeout=30)
        local = served["p0r0"] + served["p1r0"]
        total = sum(served.values())
        print(f"  400 searches from zone a: shard searches by replica {served}")
        check(total >= 800 and local >= 0.95 * total,
              f"the coordinator (zone a) sends to zone a: {local:.0f} of {total:.0f} shard searches ({served})")

        # zone a frozen under load (SIGSTOP: connections stay open, calls hang, nothing is refused)
        load = SearchLoad(client, q, K, nprobe=NLIST)
        wait_for(lambda: load.answered() >= 100, "the load runs")
        zone_a = [int(state[f"proc_{r}_pid"]) for r in ("p0r0", "p1r0")]
        for pid in zone_a:
            os.kill(pid, signal.SIGSTOP)
        try:
            at_stop = load.answered()
            wait_for(lambda: load.answered() >= at_stop + 300, "300 searches while zone a is frozen", timeout=120)
        finally:
            for pid in zone_a:
                os.kill(pid, signal.SIGCONT)
        frozen = load.stop()
        check(not frozen["failed"], f"no search failed while zone a was frozen: {frozen}")
        print(f"  zone a frozen (SIGSTOP) under load: {frozen['ok']} complete, {frozen['partial']} partial, "
              f"failed {frozen['failed']}")

        # zone a lost under load
        load = SearchLoad(client, q, K, nprobe=NLIST)
        wait_for(lambda: load.answered() >= 100, "the load runs")
        for r in ("p0r0", "p1r0"):
            os.kill(int(state[f"proc_{r}_pid"]), signal.SIGKILL)
        at_loss = load.answered()
        wait_for(lambda: load.answered() >= at_loss + 500, "500 searches after zone a's loss", timeout=120)
        stats = load.stop()
        check(not stats["failed"], f"no search failed through the loss of zone a: {stats}")
        print(f"  zone a lost under load: {stats['ok']} complete, {stats['partial']} partial, failed "
              f"{stats['failed']}")
        after = {r: searches_served(ports[r]) for r in ("p0r1", "p1r1")}
        r = client.search(q[:8], k=K, nprobe=NLIST)
        check(not r.coverage.partial, "after the loss, answers are complete (zone b)")
        check(wait_for(lambda: all(searches_served(ports[x]) > after[x] for x in after), "zone b counts them",
                       timeout=30), "... and come from zone b's replicas")
        client.close()
    finally:
        if load is not None:
            load.stop()
        cluster_down(cl)
    return check.finish("test_zones", tmp)


if __name__ == "__main__":
    sys.exit(main())
