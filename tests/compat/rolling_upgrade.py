#!/usr/bin/python3
"""rolling_upgrade: a rolling binary upgrade under load, from the previous release to this tree (issue 21).

A local cluster of the previous release's binaries ($VS_PREV_BIN_DIR: etcd, 2 partitions x 2 replicas and 2
coordinators, plain text: the previous release has no TLS) serves a client that searches without pause
through both coordinators (gRPC round_robin over the two addresses, retries on UNAVAILABLE as the Python
client does). Then every process is replaced, one at a time, by this tree's binary ($VS_BIN_DIR) with the
same command line: SIGTERM (drain: the shard leaves etcd, the coordinator finishes its calls), wait for the
exit, start the new binary, wait until it serves, next. Shards first (replica 0 of each partition, then
replica 1), coordinators last.

Checks: not one search fails (partial answers are counted separately and reported); every process runs
this tree's binary at the end; answers are complete at the end. Run by tests/compat/rolling_upgrade.sh,
which builds both releases. Env: VS_BIN_DIR, VS_PREV_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from vstest import BIN, SRC, Checks, SearchLoad, cluster_down, install, small_version, wait_for  # noqa: E402

K, NLIST = 10, 8
PREV = pathlib.Path(os.environ["VS_PREV_BIN_DIR"])
check = Checks()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    st = pathlib.Path(f"/proc/{pid}/stat")
    return st.exists() and st.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-upgrade-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402  (installed just above)

    _, q, manifest = small_version(tmp, 17, nlist=NLIST)
    cl = tmp / "cluster"
    up = subprocess.run([str(SRC / "deploy" / "local" / "cluster.sh"), "up", "--insecure", "--dir", str(cl),
                         "--manifest", str(manifest), "--replicas", "2", "--timeout", "60"],
                        env=dict(os.environ, VS_BIN_DIR=str(PREV)), stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)
    procs, load, extra = {}, None, []
    try:
        if not check(up.returncode == 0, f"cluster.sh up with the previous release: {up.stdout[-1500:]}"):
            return 1
        state = dict(re.findall(r"^(\w+)=(.*)$", (cl / "state").read_text(), re.M))
        # each process's command line, as cluster.sh logged it ("== name: cmd args")
        for name in ("p0r0", "p0r1", "p1r0", "p1r1", "coordinator"):
            line = (cl / f"{name}.log").read_text().splitlines()[0]
            argv = shlex.split(line.split(": ", 1)[1])
            while argv and (argv[0] == "env" or "=" in argv[0]):  # cluster.sh's `env VAR=... binary ...`
                argv.pop(0)
            procs[name] = {"argv": argv, "pid": int(state[f"proc_{name}_pid"])}
        # a second coordinator of the previous release: the same flags, its own ports
        argv = [a for a in procs["coordinator"]["argv"]]
        argv[argv.index("--port-file") + 1] = str(cl / "coordinator2.ports")
        c2 = subprocess.Popen(argv, stdout=open(cl / "coordinator2.log", "w"), stderr=subprocess.STDOUT)
        extra.append(c2)
        procs["coordinator2"] = {"argv": argv, "pid": c2.pid}
        ports = cl / "coordinator2.ports"
        wait_for(lambda: ports.exists() and "grpc=" in ports.read_text(), "the second coordinator listens")
        addr2 = "127.0.0.1:" + re.search(r"grpc=(\d+)", ports.read_text()).group(1)
        addrs = [state["coordinator_addr"], addr2]
        client = vecshard.Client("ipv4:" + ",".join(addrs), timeout=5.0, retries=3,
                                 options=[("grpc.lb_policy_name", "round_robin")])
        wait_for(lambda: not client.search(q[:2], k=K, nprobe=NLIST).coverage.partial, "both coordinators serve")
        load = SearchLoad(client, q, K, nprobe=NLIST)
        wait_for(lambda: load.answered() >= 200, "the load runs")

        def serving(name):
            """The process answers: a coordinator's full-coverage health, a shard's Info through Status."""
            target = addrs[0] if name == "coordinator" else addr2 if name == "coordinator2" else None
            if target:
                r = subprocess.run([str(BIN / "vecshard"), "health", "--coordinator", target, "--service",
                                    "full-coverage"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return r.returncode == 0
            st = subprocess.run([str(BIN / "vecshard"), "status", "--coordinator", addrs[0], "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            return st.returncode == 0 and re.search(rf'"replica_id":\s*"{name}"[^}}]*"state":\s*"SERVING"',
                                                      st.stdout) is not None

        order = ["p0r0", "p1r0", "p0r1", "p1r1", "coordinator", "coordinator2"]
        t0 = time.monotonic()
        for name in order:
            p = procs[name]
            before = load.answered()
            os.kill(p["pid"], signal.SIGTERM)
            wait_for(lambda: not alive(p["pid"]), f"{name} (previous release) exits after SIGTERM", timeout=60)
            argv = [str(BIN / pathlib.Path(p["argv"][0]).name)] + p["argv"][1:]
            if name.startswith("coordinator"):  # the clients know its address: the new one takes the same
                argv[argv.index("--listen") + 1] = addrs[0 if name == "coordinator" else 1]
                pathlib.Path(argv[argv.index("--port-file") + 1]).unlink(missing_ok=True)  # the new one's
            new = subprocess.Popen(argv, stdout=open(cl / f"{name}.new.log", "w"), stderr=subprocess.STDOUT)
            extra.append(new)
            p["pid"] = new.pid
            check(wait_for(lambda: serving(name), f"the new {name} serves", timeout=90),
                  f"{name} upgraded and serving")
            if name.startswith("coordinator"):
                # the procedure: the next coordinator goes only once this one takes the clients' traffic
                # again (their channels reconnect after a backoff), as a rollout waits for readiness
                pf = pathlib.Path(argv[argv.index("--port-file") + 1])
                wait_for(lambda: pf.exists() and "metrics=" in pf.read_text(), f"the new {name}'s port file")
                mport = re.search(r"metrics=(\d+)", pf.read_text()).group(1)

                def searches():
                    body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
                    m = re.search(r"^vecshard_coordinator_searches_total (\S+)$", body, re.M)
                    return float(m.group(1)) if m else 0.0
                check(wait_for(lambda: searches() >= 50, f"the new {name} answers the load", timeout=60),
                      f"the clients' traffic reaches the new {name}")
            wait_for(lambda: load.answered() >= before + 100, f"searches after upgrading {name}", timeout=60)
            failed = sum(load.stats["failed"].values())
            print(f"  {name}: upgraded; failed searches so far {failed}")
        stats = load.stop()
        check(not stats["failed"], f"no search failed during the rolling upgrade: {stats}")
        print(f"  rolling upgrade of 4 shards and 2 coordinators in {time.monotonic() - t0:.1f} s under load: "
              f"{stats['ok']} complete, {stats['partial']} partial, failed {stats['failed']}")
        for name, p in procs.items():
            exe = os.readlink(f"/proc/{p['pid']}/exe")
            check(exe.startswith(str(BIN.resolve())), f"{name} runs this tree's binary: {exe}")
        c3 = vecshard.Client(addrs[0], timeout=5.0)
        check(not c3.search(q[:4], k=K, nprobe=NLIST).coverage.partial, "complete answers after the upgrade")
        c3.close()
        client.close()
    finally:
        if load is not None:
            load.stop()
        for p in extra:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
        cluster_down(cl)
    return check.finish("rolling_upgrade", tmp)


if __name__ == "__main__":
    sys.exit(main())
