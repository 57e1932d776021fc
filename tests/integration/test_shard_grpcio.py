#!/usr/bin/python3
"""test_shard_grpcio: drives vecshard-shard with an independent gRPC implementation, Debian's
python3-grpcio, with message classes built from our descriptor set (no protoc, no generated stubs).

Checks: Health/Check flips to SERVING, Health/Watch streams SERVING and then NOT_SERVING on SIGTERM;
Search with nprobe = nlist on an IVF-Flat partition equals numpy's exact top-k on that partition's
vectors; bad requests get INVALID_ARGUMENT / NOT_FOUND with a message; an unknown method gets
UNIMPLEMENTED; SIGTERM exits 0.
Usage: test_shard_grpcio.py BIN_DIR TESTS_BIN_DIR DESCRIPTOR_SET TMPDIR"""
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, message_factory

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("CHECK failed:", what, flush=True)


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = raw[0]
    return raw.reshape(-1, d + 1)[:, 1:].view(np.float32).copy()


def main():
    bin_dir, tests_bin, desc_path, tmp = sys.argv[1:5]
    os.makedirs(tmp, exist_ok=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(desc_path, "rb") as f:
        fds.ParseFromString(f.read())
    msgs = message_factory.GetMessages(list(fds.file))
    Req = msgs["vecshard.v1.ShardSearchRequest"]
    Resp = msgs["vecshard.v1.ShardSearchResponse"]
    HReq = msgs["grpc.health.v1.HealthCheckRequest"]
    HResp = msgs["grpc.health.v1.HealthCheckResponse"]

    manifest = subprocess.check_output(
        [os.path.join(tests_bin, "vecshard-test-version"), tmp, "py1", "IVF8,Flat", "l2", "3000", "24", "2", "30",
         "11"], text=True).strip()
    vdir = os.path.dirname(manifest)
    base = read_fvecs(os.path.join(vdir, "base.fvecs"))
    queries = read_fvecs(os.path.join(vdir, "queries.fvecs"))
    port_file = os.path.join(tmp, "ports")
    if os.path.exists(port_file):
        os.unlink(port_file)  # a previous run's ports are not ours
    log = open(os.path.join(tmp, "shard.log"), "w")
    proc = subprocess.Popen(
        [os.path.join(bin_dir, "vecshard-shard"), "--listen", "127.0.0.1:0", "--metrics-listen", "none",
         "--manifest", manifest, "--partition", "1", "--replica-id", "py", "--port-file", port_file,
         "--grace-ms", "2000"], stdout=log, stderr=log)
    try:
        t0 = time.time()
        while not os.path.exists(port_file) and time.time() - t0 < 10:
            time.sleep(0.02)
        ports = dict(line.split("=") for line in open(port_file).read().split())
        ch = grpc.insecure_channel("127.0.0.1:" + ports["grpc"])
        check_rpc = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=HReq.SerializeToString,
                                   response_deserializer=HResp.FromString)
        status = None
        while time.time() - t0 < 20:
            status = check_rpc(HReq(service=""), timeout=2).status
            if status == 1:
                break
            time.sleep(0.02)
        check(status == 1, "health SERVING after load, got %s" % status)

        search = ch.unary_unary("/vecshard.v1.Shard/Search", request_serializer=Req.SerializeToString,
                                response_deserializer=Resp.FromString)
        k = 10
        r = search(Req(dim=24, queries=queries.ravel().tolist(), k=k, params={"nprobe": 8}), timeout=5)
        ids = np.array(r.ids).reshape(-1, k)
        dist = np.array(r.distances, dtype=np.float32).reshape(-1, k)
        # the oracle: exact L2 over partition 1 (odd ids), in float64
        part_ids = np.arange(len(base))[np.arange(len(base)) % 2 == 1]
        d2 = ((queries.astype(np.float64)[:, None, :] - base[part_ids].astype(np.float64)[None, :, :]) ** 2).sum(-1)
        want = part_ids[np.argsort(d2, axis=1, kind="stable")[:, :k]]
        check(r.nq == len(queries) and r.k == k, "response shape")
        check(r.index_version == "py1" and r.partition == 1, "version/partition %s/%d" % (r.index_version, r.partition))
        check((ids == want).mean() >= 0.999, "ids equal numpy exact top-%d (%.4f agree)" % (k, (ids == want).mean()))
        check(np.allclose(dist, np.sort(d2, axis=1)[:, :k], rtol=1e-4, atol=1e-4), "distances equal numpy's")

        def code_of(req):
            try:
                search(req, timeout=5)
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                return e.code(), e.details()

        q = queries[0].tolist()
        for what, req, want_code in [
                ("wrong dim", Req(dim=23, queries=q[:23], k=5), grpc.StatusCode.INVALID_ARGUMENT),
                ("k = 0", Req(dim=24, queries=q, k=0), grpc.StatusCode.INVALID_ARGUMENT),
                ("NaN", Req(dim=24, queries=[float("nan")] + q[1:], k=5), grpc.StatusCode.INVALID_ARGUMENT),
                ("unknown version", Req(dim=24, queries=q, k=5, index_version="nope"), grpc.StatusCode.NOT_FOUND),
                ("wrong partition", Req(dim=24, queries=q, k=5, partition={"id": 0}), grpc.StatusCode.NOT_FOUND)]:
            code, details = code_of(req)
            check(code == want_code and details, "%s: %s %r" % (what, code, details))
        # message size: 6 MB (above gRPC's 4 MiB default) reaches the shard, which refuses the batch size;
        # 70 MB is above the server's 64 MiB cap and is refused by gRPC itself
        big = Req(dim=24, queries=[0.5] * (24 * 62500), k=5)
        code, details = code_of(big)
        check(code == grpc.StatusCode.INVALID_ARGUMENT and "limit" in details, "6 MB batch: %s %r" % (code, details))
        huge = Req(dim=24, queries=[0.5] * (24 * 730000), k=5)
        code, details = code_of(huge)
        check(code == grpc.StatusCode.RESOURCE_EXHAUSTED, "70 MB message: %s %r" % (code, details))
        raw = ch.unary_unary("/vecshard.v1.Shard/Search")
        try:
            raw(b"\xff\xff\xff", timeout=5)
            check(False, "malformed bytes accepted")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, "malformed: %s" % e.code())
        try:
            ch.unary_unary("/vecshard.v1.Shard/Nope")(b"", timeout=5)
            check(False, "unknown method answered")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNIMPLEMENTED, "unknown method: %s" % e.code())

        # Watch: SERVING now, NOT_SERVING once SIGTERM starts the drain, then the stream ends
        watch = ch.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=HReq.SerializeToString,
                                response_deserializer=HResp.FromString)
        seen = []
        stream = watch(HReq(service=""), timeout=15)
        first = next(stream)
        seen.append(first.status)

        def drain():
            try:
                for m in stream:
                    seen.append(m.status)
            except grpc.RpcError as e:
                seen.append(str(e.code()))

        t = threading.Thread(target=drain)
        t.start()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        t.join(10)
        check(seen[:2] == [1, 2], "Watch saw %s (want SERVING then NOT_SERVING)" % seen)
        rc = proc.wait(10)
        check(rc == 0, "exit status %s after SIGTERM" % rc)
        ch.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if failures:
        print(open(os.path.join(tmp, "shard.log")).read()[-3000:])
    print("%s: %d failures" % ("FAIL" if failures else "ok", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
