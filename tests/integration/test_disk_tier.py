#!/usr/bin/python3
"""test_disk_tier: shards with --refine-on-disk (issue 20) on real local clusters (deploy/local/cluster.sh),
an IVF32,PQ8x4fs,RFlat version of 20,000 x 32 vectors in 2 hash partitions.

- The same 64 queries (k 10, nprobe 8, k_factor 4) through a cluster whose shards read refine vectors from
  disk and one whose shards hold them in memory: equal ids and distances, bit for bit.
- The disk cluster's shard counts its reads: one batch of reads per query it answered
  (vecshard_shard_refine_disk_fetches_total), reads and bytes; the scrub checks each refine section once
  the version is loaded (vecshard_shard_refine_unverified_versions goes to 0, scrub_verified_total to 1)
  and records it beside the file (part-0.vsidx.verified).
- A restarted shard on the same file takes the section as verified from that record: nothing unverified and
  nothing read at once. After the file's mtime changes, the record no longer matches and the section is read.
- One byte of partition 0's refine section flipped under the serving shard: its scrub (reading the section
  again every 1.8 s here) finds the bad CRC, the version goes FAILED with the reason in the log
  (scrub_failures_total 1), and the coordinator answers partially from partition 1 instead of serving
  distances computed from damaged vectors; the record is removed. A shard loading the damaged file into
  memory refuses it.
(That a --refine-on-disk load does not read the section at all is test_refine_disk's.)
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import os
import pathlib
import re
import struct
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import BIN, Checks, cluster_down, cluster_up, install, wait_for, write_fvecs  # noqa: E402

N, D, NQ, K = 20000, 32, 64, 10
check = Checks()


def metric(port, pattern):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^" + pattern + r" (\S+)$", body, re.M))


def section(path, tag):
    """(offset, length) of an index file's section (shard/index/ifile.h: the table at the u64 at byte 48,
    its entry count the u32 at byte 28, entries of 64 bytes: tag[16], offset u64, length u64)."""
    b = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack_from("<I", b, 28)
    (table,) = struct.unpack_from("<Q", b, 48)
    for i in range(n):
        e = table + 64 * i
        if b[e:e + 16].rstrip(b"\0").decode() == tag:
            return struct.unpack_from("<QQ", b, e + 16)
    raise KeyError(tag)


def search_all(vecshard, addr, q):
    c = vecshard.Client(addr, timeout=10.0)
    out = [c.search(q[i], k=K, nprobe=8, k_factor=4) for i in range(len(q))]
    c.close()
    return out


def full_or_not(vecshard, addr, q):
    """'complete', 'partial' or the error's status name of one search."""
    c = vecshard.Client(addr, timeout=10.0, retries=0)
    try:
        r = c.search(q, k=K, nprobe=8)
        return "partial" if r.coverage.partial else "complete"
    except vecshard.VecshardError as e:
        return e.code.name
    finally:
        c.close()


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-disktier-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import numpy as np  # noqa: E402
    import vecshard  # noqa: E402  (installed just above)

    rng = np.random.default_rng(20)
    centres = rng.standard_normal((64, D)).astype(np.float32) * 3
    base = (centres[rng.integers(0, 64, N)] + rng.standard_normal((N, D))).astype(np.float32)
    q = (centres[rng.integers(0, 64, NQ)] + rng.standard_normal((NQ, D))).astype(np.float32)
    write_fvecs(tmp / "base.fvecs", base)
    subprocess.run([str(BIN / "vecshard-build"), "--base", tmp / "base.fvecs", "--factory", "IVF32,PQ8x4fs,RFlat",
                    "--partitions", "2", "--out", tmp / "idx", "--version", "v1", "--target-recall", "0",
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)
    manifest = tmp / "idx" / "v1" / "manifest.json"

    disk, mem = tmp / "disk", tmp / "mem"
    try:
        ok, out, sd = cluster_up(disk, [manifest], "--shard-args",
                                "--refine-on-disk --scrub-mb-per-s 256 --scrub-interval-h 0.0005")
        if not check(ok, f"cluster.sh up (refine on disk): {out[-2000:]}"):
            return 1
        ok, out, sm = cluster_up(mem, [manifest])
        if not check(ok, f"cluster.sh up (in memory): {out[-2000:]}"):
            return 1
        a = search_all(vecshard, sd["coordinator_addr"], q)
        b = search_all(vecshard, sm["coordinator_addr"], q)
        same = sum(x.ids.tobytes() == y.ids.tobytes() and x.distances.tobytes() == y.distances.tobytes()
                   for x, y in zip(a, b))
        print(f"  {same} of {NQ} answers equal between refine on disk and in memory")
        check(same == NQ and all(x.ids.shape == (1, K) and not x.coverage.partial for x in a),
              "answers from disk equal answers from memory")
        p0 = sd["shard_p0r0_metrics_port"]
        fetches = metric(p0, "vecshard_shard_refine_disk_fetches_total")
        reads = metric(p0, "vecshard_shard_refine_disk_reads_total")
        kib = metric(p0, "vecshard_shard_refine_disk_bytes_total") / 1024
        print(f"  partition 0: {fetches:.0f} queries read from disk, {reads:.0f} reads, {kib:.0f} KiB")
        check(fetches >= NQ and reads >= fetches and metric(p0, "vecshard_shard_refine_disk_errors_total") == 0,
              "the shard reads each query's candidates from disk, without a failed read")
        check(metric(sm["shard_p0r0_metrics_port"], "vecshard_shard_refine_disk_fetches_total") == 0,
              "the in-memory shard reads nothing from disk")
        wait_for(lambda: metric(p0, "vecshard_shard_scrub_verified_total") >= 1, "the scrub checks the section",
                 timeout=30)
        check(metric(p0, "vecshard_shard_refine_unverified_versions") == 0 and
              metric(p0, "vecshard_shard_scrub_failures_total") == 0, "the refine section verified intact")
        part0 = tmp / "idx" / "v1" / "part-0.vsidx"
        marker = pathlib.Path(str(part0) + ".verified")
        check(marker.exists() and marker.read_text().startswith("vecshard-refine-verified/1 "),
              "the scrub records the verified section beside the file")

        # a restarted shard (another cluster on the same files, a scrub interval of a day) takes the section
        # as verified from the record: nothing unverified and nothing read by its scrub, at once
        again = tmp / "again"
        try:
            ok, out, sa = cluster_up(again, [manifest], "--shard-args", "--refine-on-disk --scrub-interval-h 24")
            if check(ok, f"cluster.sh up (restart): {out[-2000:]}"):
                pa = sa["shard_p0r0_metrics_port"]
                check(metric(pa, "vecshard_shard_refine_unverified_versions") == 0 and
                      metric(pa, "vecshard_shard_scrub_verified_total") == 0,
                      "a restart remembers the verified section without reading it again")
                check("verified" in (again / "p0r0.log").read_text(errors="replace"),
                      "the restarted shard logs when the section was verified")
        finally:
            cluster_down(again)
        # a file changed since (here only its mtime): the record no longer matches, the section is read again
        st = part0.stat()
        os.utime(part0, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        again2 = tmp / "again2"
        try:
            ok, out, sa = cluster_up(again2, [manifest], "--shard-args", "--refine-on-disk --scrub-interval-h 24")
            if check(ok, f"cluster.sh up (file touched): {out[-2000:]}"):
                pa = sa["shard_p0r0_metrics_port"]
                wait_for(lambda: metric(pa, "vecshard_shard_scrub_verified_total") >= 1,
                         "a touched file's section is read again", timeout=30)
        finally:
            cluster_down(again2)

        # one flipped byte in partition 0's refine section, under the serving shard (its scrub reads the
        # section again every 1.8 s here, --scrub-interval-h 0.0005)
        off, length = section(part0, "refine.flat")
        with open(part0, "r+b") as f:
            f.seek(off + length // 2)
            b = f.read(1)
            f.seek(off + length // 2)
            f.write(bytes([b[0] ^ 0x40]))
        wait_for(lambda: metric(p0, "vecshard_shard_scrub_failures_total") >= 1, "the scrub finds the bad CRC",
                 timeout=30)
        check(metric(p0, "vecshard_shard_versions_failed") == 1, "the version went FAILED on partition 0")
        got = wait_for(lambda: (lambda r: r if r != "complete" else None)(
            full_or_not(vecshard, sd["coordinator_addr"], q[0])),
            "the coordinator stops using partition 0's failed version", timeout=30)
        print(f"  after the scrub failed partition 0: {got}")
        check(got in ("partial", "UNAVAILABLE"), f"partition 0 is no longer answered from damaged vectors: {got}")
        log = (disk / "p0r0.log").read_text(errors="replace")
        check("scrub" in log and "'refine.flat' fails its CRC32C check" in log,
              "the shard's log names the failed check")
        check(not marker.exists(), "the failed section's record is removed")
    finally:
        cluster_down(disk)
        cluster_down(mem)

    # the damaged file: a shard loading it into memory refuses it (it checks every section at load)
    bad_mem = tmp / "bad-mem"
    try:
        ok, out, _ = cluster_up(bad_mem, [manifest], timeout=10)
        log = (bad_mem / "p0r0.log").read_text(errors="replace") if (bad_mem / "p0r0.log").exists() else ""
        check(not ok and "'refine.flat' fails its CRC32C check" in log,
              f"a shard loading it into memory refuses the file: {log[-600:]}")
    finally:
        cluster_down(bad_mem)
    return 0


if __name__ == "__main__":
    rc = main()
    sys.exit(check.finish("test_disk_tier") if rc == 0 else 1)
