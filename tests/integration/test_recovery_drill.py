#!/usr/bin/python3
"""test_recovery_drill: etcd lost and restored from a snapshot under query load (issue 21, recovery drill).

A local TLS cluster (deploy/local/cluster.sh up: etcd https + RBAC, 2 partitions) serves a steady stream of
searches from a client thread while:
  1. `cluster.sh etcd-snapshot` saves etcd (as root, over TLS);
  2. a second replica of partition 0 (p0r1) starts and registers: it is not in the snapshot;
  3. `cluster.sh etcd-restore` kills etcd (-9: the machine is gone) and restores the snapshot into a fresh
     data directory on the same ports.
(v1 is deployed and activated first, so etcd holds its version record and the active pointer.) Then the
cluster converges with no restart of any vecshard process: the shards' records are all back in the
restored etcd (p0r1's by re-registering: its lease did not exist there), the active version is intact,
users and roles came back with the snapshot (the shards write with their own RBAC users), and the
coordinator follows the restored etcd (a replica p1r1 started after the restore takes over partition 1
when p1r0 is killed: the coordinator could only learn of it from the restored etcd). Not one search failed or came back partial
during the outage and the restore: the coordinator serves from the view it had (docs/reliability.md).
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, SRC, Checks, EtcdGateway, SearchLoad, cluster_down, cluster_up, install, small_version, wait_for  # noqa: E402,E501

N, D, NQ, K, NLIST = 4000, 16, 32, 10, 8
check = Checks()


def etcd_prefix(url, tls, users, prefix):
    """{key: value} under prefix as vecshard-admin (a new token each time: a restore forgets tokens), or None
    while etcd does not answer."""
    try:
        return EtcdGateway(url, tls, "vecshard-admin", (users / "vecshard-admin").read_text()).get_prefix(prefix)
    except (OSError, KeyError):
        return None


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-drill-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402  (installed just above)

    _, q, manifest = small_version(tmp, 11, N, D, NQ, NLIST)
    cl = tmp / "cluster"
    sh = [str(SRC / "deploy" / "local" / "cluster.sh")]
    benv = dict(os.environ, VS_BIN_DIR=str(BIN))
    ok, out, state = cluster_up(cl, [manifest], tls=True)
    extra, load = None, None
    try:
        if not check(ok, f"cluster.sh up: {out[-2000:]}"):
            return 1
        tls = cl / "tls"
        env = dict(re.findall(r"(VECSHARD_\w+)=(\S+)", (cl / "env").read_text()))
        def admin_view(prefix):
            return etcd_prefix(state["etcd_url"], tls, cl / "etcd-users", prefix)
        pre = "/vecshard/local/"
        client = vecshard.Client(state["coordinator_addr"], timeout=5.0, retries=2, tls_ca=tls / "ca.crt",
                                 tls_cert=tls / "client.crt", tls_key=tls / "client.key")

        # the version lifecycle's records (the shards took v1 from --manifest): deployed and active in etcd
        for cmd in (["deploy", str(manifest)], ["activate", "v1"]):
            r = subprocess.run([str(BIN / "vecshard"), *cmd, "--etcd", state["etcd_url"], "--cluster", "local"],
                               env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=120)
            check(r.returncode == 0, f"vecshard {cmd[0]} as vecshard-admin: {r.stdout[-500:]}")
        def active(kv):
            try:
                return json.loads(kv.get(pre + "active", "{}")).get("version")
            except ValueError:
                return None
        check(wait_for(lambda: active(admin_view(pre) or {}) == "v1", "active v1"),
              "v1 is the active version in etcd")

        load = SearchLoad(client, q, K, nprobe=NLIST)
        stats = load.stats
        wait_for(lambda: stats["ok"] >= 50, "the load runs")

        # 1. the snapshot
        snap = tmp / "etcd.snapshot"
        r = subprocess.run(sh + ["etcd-snapshot", "--dir", str(cl), "--snapshot", str(snap)], env=benv,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check(r.returncode == 0 and snap.stat().st_size > 0, f"etcd-snapshot: {r.stdout}")

        # 2. a replica that registers after the snapshot
        def start_replica(p, r):
            shard_env = dict(os.environ, VECSHARD_ETCD_CA=str(tls / "ca.crt"),
                             VECSHARD_ETCD_CERT=str(tls / "etcd-client.crt"),
                             VECSHARD_ETCD_KEY=str(tls / "etcd-client.key"), VECSHARD_ETCD_USER=f"vecshard-shard-{p}",
                             VECSHARD_ETCD_PASSWORD_FILE=str(cl / "etcd-users" / f"vecshard-shard-{p}"))
            return subprocess.Popen([str(BIN / "vecshard-shard"), "--etcd", state["etcd_url"], "--cluster", "local",
                                     "--partition", str(p), "--replica-id", f"p{p}r{r}", "--listen", "127.0.0.1:0",
                                     "--metrics-listen", "none", "--manifest", str(manifest), "--grace-ms", "1000",
                                     "--tls-cert", str(tls / "shard.crt"), "--tls-key", str(tls / "shard.key"),
                                     "--tls-client-ca", str(tls / "ca.crt")],
                                    env=shard_env, stdout=open(tmp / f"p{p}r{r}.log", "w"), stderr=subprocess.STDOUT)
        extra = [start_replica(0, 1)]
        rec01 = pre + "members/0/p0r1"
        check(wait_for(lambda: '"SERVING"' in (admin_view(rec01) or {}).get(rec01, ""),
                       "p0r1 SERVING in etcd", timeout=60), "p0r1 registered after the snapshot")

        # 3. etcd lost and restored; the load keeps running
        before = dict(stats, failed=dict(stats["failed"]))
        t0 = time.monotonic()
        r = subprocess.run(sh + ["etcd-restore", "--dir", str(cl), "--snapshot", str(snap)], env=benv,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        check(r.returncode == 0, f"etcd-restore: {r.stdout[-1500:]}")
        restored_in = time.monotonic() - t0

        # the cluster converges: every record back (p0r1 by re-registering), the active version intact
        want = {pre + "members/0/p0r0", pre + "members/1/p1r0", rec01}

        def converged():
            kv = admin_view(pre)
            return kv is not None and want <= set(kv) and active(kv) == "v1" and pre + "versions/v1" in kv and \
                all('"SERVING"' in kv[k] for k in want)
        check(wait_for(converged, "the restored etcd holds every record and active = v1", timeout=90),
              "converged: p0r0, p1r0 and p0r1 (re-registered) SERVING in the restored etcd, active still v1")
        converged_in = time.monotonic() - t0
        # searches went on through the outage and the restore
        wait_for(lambda: stats["ok"] >= before["ok"] + 200, "searches after the restore", timeout=60)
        load.stop()
        check(not stats["failed"] and stats["partial"] == 0,
              f"no failed or partial search through the etcd loss and restore: {stats}")
        print(f"  searches: {stats['ok']} answered in full ({stats['ok'] - before['ok']} after the snapshot "
              f"and restore), failed {stats['failed']}, partial {stats['partial']}; etcd restored in "
              f"{restored_in:.1f} s, records converged {converged_in:.1f} s after the restore began")

        # the coordinator follows the restored etcd: a replica that registers only there (p1r1) takes over
        # partition 1 when p1r0 is killed
        extra.append(start_replica(1, 1))
        rec11 = pre + "members/1/p1r1"
        check(wait_for(lambda: '"SERVING"' in (admin_view(rec11) or {}).get(rec11, ""),
                       "p1r1 SERVING in the restored etcd", timeout=60), "p1r1 registered in the restored etcd")
        os.kill(int(state["proc_p1r0_pid"]), signal.SIGKILL)

        def full_without_p1r0():
            try:
                return not client.search(q[:4], k=K, nprobe=NLIST).coverage.partial
            except vecshard.VecshardError:
                return False
        check(wait_for(full_without_p1r0, "full answers through p1r1", timeout=60),
              "with p1r0 killed, partition 1 is answered by p1r1, which exists only in the restored etcd: the "
              "coordinator follows it")
        st = subprocess.run([str(BIN / "vecshard"), "status", "--coordinator", state["coordinator_addr"]],
                            env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check("etcd connected" in st.stdout, f"the coordinator is connected to the restored etcd: {st.stdout[:300]}")
        client.close()
    finally:
        if load is not None:
            load.stop()
        for x in extra or []:
            x.kill()
            x.wait()
        cluster_down(cl)
    return check.finish("test_recovery_drill", tmp)


if __name__ == "__main__":
    sys.exit(main())
