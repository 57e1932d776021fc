#!/usr/bin/python3
"""fake_coordinator: a stand-in for vecshard-coordinator in tests of the admin CLI and deploy/local/cluster.sh,
written on Debian's python3-grpcio with message classes from our descriptor set (no generated stubs).

It takes the real coordinator's flags (--listen, --cluster, --etcd or --shards, --manifest, --active,
--port-file, ...; unknown ones are ignored), follows membership by polling etcd's JSON gateway, and answers
vecshard.v1.Coordinator/Search by sending the batch to one SERVING replica of every partition of the version
(params passed through) and merging the top-k (L2: smaller first; ip/cosine: larger first; ties by id).
Status and grpc.health.v1 Check (SERVING once every partition of the active version has a SERVING member)
are served too. It does no hedging, no centroid routing and no metrics: it is a test double, not a product.

Fault injection for the CLI's counting (never used by cluster.sh itself):
  --fake-fail-every N      every Nth Search answers UNAVAILABLE "injected failure"
  --fake-partial-every N   every Nth Search leaves out the last partition and says partial
  --fake-alt-version NAME  every other Search response is labelled with index version NAME
The descriptor set comes from $VS_PROTO_DESC (build/protos/vecshard.desc)."""
import base64
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, message_factory


def parse_args(argv):
    a = {"listen": "0.0.0.0:50050", "cluster": "default", "etcd": None, "shards": [], "manifest": [],
         "active": None, "port_file": None, "grace_ms": 10000, "fail_every": 0, "partial_every": 0,
         "alt_version": None}
    i = 0
    while i < len(argv):
        f = argv[i]
        v = argv[i + 1] if i + 1 < len(argv) else None
        if f in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        key = {"--listen": "listen", "--cluster": "cluster", "--etcd": "etcd", "--active": "active",
               "--port-file": "port_file", "--fake-alt-version": "alt_version"}.get(f)
        if key:
            a[key] = v
        elif f == "--manifest":
            a["manifest"].append(v)
        elif f == "--shards":
            a["shards"] += [s for s in v.split(",") if s]
        elif f == "--grace-ms":
            a["grace_ms"] = int(v)
        elif f == "--fake-fail-every":
            a["fail_every"] = int(v)
        elif f == "--fake-partial-every":
            a["partial_every"] = int(v)
        elif f.startswith("--") and v is not None and not v.startswith("--"):
            pass  # a real coordinator flag this double ignores (--metrics-listen, --threads, ...)
        else:
            i -= 1
        i += 2
    return a


class Coordinator:
    def __init__(self, args, msgs):
        self.a = args
        self.m = msgs
        self.lock = threading.Lock()
        self.members = {}  # key -> record
        self.etcd_ok = False
        self.versions = {}  # version -> manifest
        for path in args["manifest"]:
            man = json.load(open(path))
            self.versions[man["version"]] = man
        self.active = args["active"] or (json.load(open(args["manifest"][-1]))["version"]
                                         if args["manifest"] else "")
        for i, s in enumerate(args["shards"]):
            p, addr = s.split("=", 1)
            self.members["static/%d" % i] = {"partition": int(p), "replica_id": "static-%d" % i, "address": addr,
                                             "state": "SERVING", "versions": [{"version": v, "state": "READY"}
                                                                             for v in self.versions]}
        self.channels = {}
        self.calls = 0
        self.stopping = threading.Event()

    def poll_etcd(self):
        url = self.a["etcd"].split(",")[0].rstrip("/") + "/v3/kv/range"
        prefix = ("/vecshard/%s/members/" % self.a["cluster"]).encode()
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = json.dumps({"key": base64.b64encode(prefix).decode(),
                           "range_end": base64.b64encode(end).decode()}).encode()
        while not self.stopping.is_set():
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=2) as r:
                    kvs = json.load(r).get("kvs", [])
                members = {base64.b64decode(kv["key"]).decode(): json.loads(base64.b64decode(kv["value"]))
                           for kv in kvs}
                with self.lock:
                    self.members = members
                    self.etcd_ok = True
            except Exception:
                with self.lock:
                    self.etcd_ok = False
            self.stopping.wait(0.2)

    def replica_for(self, version, partition):
        with self.lock:
            for key in sorted(self.members):
                m = self.members[key]
                if m.get("partition") == partition and m.get("state") == "SERVING" and any(
                        v.get("version") == version and v.get("state") == "READY" for v in m.get("versions", [])):
                    return m["address"]
        return None

    def stub(self, address):
        with self.lock:
            if address not in self.channels:
                ch = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20),
                                                             ("grpc.max_send_message_length", 64 << 20)])
                self.channels[address] = ch.unary_unary(
                    "/vecshard.v1.Shard/Search", request_serializer=self.m["vecshard.v1.ShardSearchRequest"]
                    .SerializeToString, response_deserializer=self.m["vecshard.v1.ShardSearchResponse"].FromString)
            return self.channels[address]

    def search(self, req, ctx):
        with self.lock:
            self.calls += 1
            n = self.calls
        version = req.index_version or self.active
        man = self.versions.get(version)
        if man is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "index version %r is not served" % version)
        if self.a["fail_every"] and n % self.a["fail_every"] == 0:
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "injected failure")
        nparts = len(man["partitions"])
        if req.dim == 0 or len(req.queries) % req.dim:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "queries are not a whole number of dim")
        nq, k = len(req.queries) // req.dim, req.k
        parts = list(range(nparts))
        partial = bool(self.a["partial_every"] and n % self.a["partial_every"] == 0 and nparts > 1)
        if partial:
            parts = parts[:-1]
        reasons = ["partition %d: left out (injected)" % (nparts - 1)] if partial else []
        answers = []
        timeout = ctx.time_remaining()
        for p in parts:
            addr = self.replica_for(version, p)
            if addr is None:
                ctx.abort(grpc.StatusCode.UNAVAILABLE, "partition %d: no live replica" % p)
            sreq = self.m["vecshard.v1.ShardSearchRequest"](dim=req.dim, queries=req.queries, k=k,
                                                             index_version=version)
            if req.HasField("params"):
                sreq.params.CopyFrom(req.params)
            sreq.partition.id = p
            try:
                answers.append(self.stub(addr)(sreq, timeout=timeout))
            except grpc.RpcError as e:
                ctx.abort(e.code(), "partition %d: %s" % (p, e.details()))
        larger_better = man.get("metric", "l2") != "l2"
        resp = self.m["vecshard.v1.SearchResponse"](nq=nq, k=k)
        for q in range(nq):
            cand = []
            for a in answers:
                for j in range(q * k, q * k + k):
                    if a.ids[j] >= 0:
                        cand.append((-a.distances[j] if larger_better else a.distances[j], a.ids[j], a.distances[j]))
            cand.sort()
            cand = cand[:k]
            resp.ids.extend([c[1] for c in cand] + [-1] * (k - len(cand)))
            pad = float("-inf") if larger_better else float("inf")
            resp.distances.extend([c[2] for c in cand] + [pad] * (k - len(cand)))
        resp.index_version = self.a["alt_version"] if self.a["alt_version"] and n % 2 == 0 else version
        resp.coverage.partitions_total = nparts
        resp.coverage.partitions_answered = len(parts)
        resp.coverage.partial = partial
        resp.coverage.reasons.extend(reasons)
        return resp

    def status(self, req, ctx):
        r = self.m["vecshard.v1.StatusResponse"](cluster=self.a["cluster"], active_version=self.active,
                                                 etcd_connected=self.etcd_ok)
        with self.lock:
            for key in sorted(self.members):
                m = self.members[key]
                r.members.add(replica_id=m.get("replica_id", ""), address=m.get("address", ""),
                              partition=m.get("partition", 0), state=m.get("state", ""),
                              versions=[v["version"] for v in m.get("versions", []) if v.get("state") == "READY"])
        return r

    def serving(self):
        man = self.versions.get(self.active)
        return man is not None and all(self.replica_for(self.active, p["id"]) for p in man["partitions"])

    def health(self, req, ctx):
        if req.service not in ("", "vecshard.v1.Coordinator"):
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return self.m["grpc.health.v1.HealthCheckResponse"](status=1 if self.serving() else 2)


def main():
    args = parse_args(sys.argv[1:])
    fds = descriptor_pb2.FileDescriptorSet()
    with open(os.environ["VS_PROTO_DESC"], "rb") as f:
        fds.ParseFromString(f.read())
    msgs = message_factory.GetMessages(list(fds.file))
    c = Coordinator(args, msgs)
    if args["etcd"]:
        threading.Thread(target=c.poll_etcd, daemon=True).start()

    def unary(fn, req, resp):
        return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=msgs[req].FromString,
                                                   response_serializer=msgs[resp].SerializeToString)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("vecshard.v1.Coordinator", {
            "Search": unary(c.search, "vecshard.v1.SearchRequest", "vecshard.v1.SearchResponse"),
            "Status": unary(c.status, "vecshard.v1.StatusRequest", "vecshard.v1.StatusResponse")}),
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": unary(c.health, "grpc.health.v1.HealthCheckRequest", "grpc.health.v1.HealthCheckResponse")}),
    ))
    port = server.add_insecure_port(args["listen"])
    if port == 0:
        print("fake_coordinator: cannot listen on %s" % args["listen"], file=sys.stderr)
        sys.exit(1)
    server.start()
    print("fake_coordinator: listening on port %d" % port, file=sys.stderr, flush=True)
    if args["port_file"]:
        with open(args["port_file"] + ".tmp", "w") as f:
            f.write("grpc=%d\nmetrics=0\n" % port)
        os.rename(args["port_file"] + ".tmp", args["port_file"])
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.2):
        pass
    c.stopping.set()
    server.stop(args["grace_ms"] / 1000.0).wait()
    print("fake_coordinator: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
