#!/usr/bin/python3
"""test_tls: the local cluster with TLS everywhere (issue 18, security half) and every refusal asserted.

deploy/local/cluster.sh up --writes --redis (TLS is its default) makes a CA with deploy/local/certs.sh; etcd serves https with
client certificates and RBAC users (one per partition for the shards, a read-only coordinator, an admin);
shards serve mutual TLS and answer Search only for the coordinator's certificate; the coordinator serves
mutual TLS to clients and requires bearer tokens (--auth-tokens). A second, unrelated CA stands for an
attacker's certificates.

- Through TLS: a search token's answers are exact at nprobe = nlist (recall 1.0 against numpy), as the
  plain-text cluster's are; `vecshard query` reaches the same answers with $VECSHARD_TLS_* from DIR/env.
- Refused, each asserted: a plain-text client, a client trusting another CA, a client certificate from
  another CA, no client certificate, a wrong token (UNAUTHENTICATED); at a shard: plain text, another CA's
  certificate, and a certificate of the cluster's CA that is not the coordinator's (PERMISSION_DENIED for
  Search, while Info answers it).
- A shard whose certificate another CA signed registers in etcd (its etcd credentials are right) but the
  coordinator never uses it: with the genuine replica of its partition killed, answers are partial
  (that partition missing) and the coordinator's log shows the failed certificate check.
- etcd: a shard's user writes its own membership key but not another partition's or the active version
  (permission denied), the coordinator's user writes nothing, plain http and a TLS client without a
  certificate are refused. Password rotation without a restart: shard 1's password file is replaced and
  the password changed in etcd (its tokens invalidated); after `vecshard deploy v2` (as vecshard-admin,
  settings from DIR/env) the shard writes its record with a new token (vecshard_etcd_authentications_total
  went up).
- The write log: an upsert through TLS (client -> coordinator -> NATS -> shards) is searchable; on NATS
  (TLS, verify) the shards' user may not append to the log, a wrong password, plain text and a client
  without a certificate are refused.
- Redis (TLS-only port, ACL users, default user off): `vecshard batch` writes a set over TLS as
  vecshard-batch, the Python neighbours.Reader reads it with redis-py over TLS as vecshard-reader, which
  may not write; a wrong password, plain text and a missing client certificate are refused.
- Rotation without restart: certs.sh --renew coordinator replaces the coordinator's certificate files and
  the coordinator serves the new certificate (by serial) to new connections within --tls-refresh-s,
  while searches keep being answered.
Env: VS_BIN_DIR, VS_SOURCE_DIR, VS_TEST_TMPDIR."""
import base64
import json
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import grpc
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from vstest import (BIN, SRC, Checks, EtcdGateway as Etcd, cluster_down, cluster_up, install,  # noqa: E402
                    new_token, small_version, wait_for, write_fvecs)

N, D, NQ, K, NLIST = 3000, 16, 20, 10, 8
check = Checks()


def shard_search_request(q, k):
    """vecshard.v1.ShardSearchRequest by hand (dim = 1, queries = 2 packed floats, k = 3)."""
    floats = q.astype("<f4").tobytes()

    def varint(v):
        out = b""
        while True:
            b, v = v & 0x7F, v >> 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out
    return b"\x08" + varint(q.shape[1]) + b"\x12" + varint(len(floats)) + floats + b"\x18" + varint(k)


def grpc_code(target, method, body, creds):
    """The status code of one unary call (raw bytes) over creds (None = plain text)."""
    opts = [("grpc.ssl_target_name_override", "localhost")] if creds else []
    ch = grpc.secure_channel(target, creds, options=opts) if creds else grpc.insecure_channel(target)
    try:
        ch.unary_unary(method)(body, timeout=5)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name
    finally:
        ch.close()


def tls_creds(ca, cert=None, key=None):
    rd = lambda p: pathlib.Path(p).read_bytes()  # noqa: E731
    return grpc.ssl_channel_credentials(rd(ca), rd(key) if key else None, rd(cert) if cert else None)


def served_serial(addr, tls):
    """The serial of the certificate the server at addr presents to a new connection."""
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    ctx.load_cert_chain(str(tls / "client.crt"), str(tls / "client.key"))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            der = t.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


def file_serial(path):
    return subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(path)], stdout=subprocess.PIPE,
                          text=True).stdout.strip()


def nats_try(url, tls, user, password, cert="client", use_tls=True, subject=None):
    """Speaks NATS's text protocol to the server at url (tls://host:port): CONNECT as user (TLS with
    certificate `cert` of tls, or none), PUB one byte to subject when given, PING. Returns what the server
    said (its -ERR lines and PONG), or the exception that ended the connection."""
    host, port = url.split("://")[1].rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        f = s.makefile("rb")
        f.readline()  # INFO {...}
        if use_tls:
            ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
            if cert:
                ctx.load_cert_chain(str(tls / f"{cert}.crt"), str(tls / f"{cert}.key"))
            s = ctx.wrap_socket(s, server_hostname="localhost")
            f = s.makefile("rb")
        conn = {"verbose": False, "pedantic": False, "tls_required": use_tls, "user": user, "pass": password}
        msg = b"CONNECT " + json.dumps(conn).encode() + b"\r\n"
        if subject:
            msg += f"PUB {subject} 1\r\nx\r\n".encode()
        s.sendall(msg + b"PING\r\n")
        said = []
        while True:
            ln = f.readline().decode(errors="replace").strip()
            if not ln:
                break
            said.append(ln)
            if ln == "PONG" or "Authorization Violation" in ln:
                break
        s.close()
        return " | ".join(said) or "closed"
    except (OSError, ssl.SSLError) as e:
        return f"refused: {type(e).__name__}: {e}"


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vs-tls-", dir=os.environ.get("VS_TEST_TMPDIR")))
    sys.path.insert(0, str(install(tmp)))
    import vecshard  # noqa: E402  (installed just above)

    base, q, _ = small_version(tmp, 5, N, D, NQ, NLIST)
    small_version(tmp, 5, N, D, NQ, NLIST, version="v2")  # the same data (same seed), deployed later
    write_fvecs(tmp / "q.fvecs", q)
    d = ((q[:, None, :].astype(np.float64) - base[None, :, :]) ** 2).sum(-1)
    exact = np.argsort(d, axis=1, kind="stable")[:, :K]
    tok, line = new_token("search", "tls-client")
    tokw, linew = new_token("write", "tls-writer")
    toka, linea = new_token("admin", "tls-batch")  # vecshard batch --coordinator pins the version with Status
    (tmp / "tokens").write_text(line + "\n" + linew + "\n" + linea + "\n")
    other = tmp / "other-ca"  # an unrelated CA: the attacker's certificates
    subprocess.run([str(SRC / "deploy" / "local" / "certs.sh"), str(other)], check=True)

    cl = tmp / "cluster"
    ok, out, state = cluster_up(cl, [tmp / "idx" / "v1" / "manifest.json"], "--writes", "--redis", "--coordinator-args",
                                f"--auth-tokens {tmp / 'tokens'} --tls-refresh-s 1", tls=True)
    extra = None
    try:
        if not check(ok, f"cluster.sh up with TLS: {out[-3000:]}"):
            return 1
        tls = cl / "tls"
        addr, etcd_url = state["coordinator_addr"], state["etcd_url"]
        check(etcd_url.startswith("https://"), f"etcd serves https: {etcd_url}")
        env = dict(re.findall(r"(VECSHARD_\w+)=(\S+)", (cl / "env").read_text()))
        check(env.get("VECSHARD_TLS_CA") == str(tls / "ca.crt"), f"DIR/env sets the tools' TLS: {env}")

        # the probes' plain-HTTP port (kubelet cannot probe a TLS gRPC port): /readyz mirrors health
        for who in ("coordinator", "shard_p0r0"):
            body = urllib.request.urlopen(f"http://127.0.0.1:{state[who + '_metrics_port']}/readyz",
                                          timeout=5).read().decode()
            check(body.strip() == "SERVING", f"{who} /readyz: {body!r}")

        # ---- through TLS: exact answers at nprobe = nlist ----
        c = vecshard.Client(addr, timeout=10.0, token=tok, tls_ca=tls / "ca.crt", tls_cert=tls / "client.crt",
                            tls_key=tls / "client.key")
        r = c.search(q, k=K, nprobe=NLIST)
        hits = sum(len(set(r.ids[i].tolist()) & set(exact[i].tolist())) for i in range(NQ))
        check(hits == NQ * K and not r.coverage.partial,
              f"recall@{K} through mutual TLS + token: {hits / (NQ * K):.4f} (want 1.0)")
        vq = subprocess.run([str(BIN / "vecshard"), "query", "--coordinator", addr, "--queries", tmp / "q.fvecs",
                             "--k", str(K), "--nprobe", str(NLIST)],
                            env=dict(os.environ, **env, VECSHARD_TOKEN=tok), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
        check(vq.returncode == 0 and re.search(rf"QPS\s+\S+ \({NQ} answered", vq.stdout),
              f"vecshard query with DIR/env: {vq.stdout[-600:]}")
        os.environ.update(env)
        with vecshard.Client.from_env(addr, timeout=10.0, token=tok) as ce:
            check(ce.search(q[:2], k=K).ids.shape == (2, K), "Client.from_env reads $VECSHARD_TLS_*")
        for k_ in env:
            os.environ.pop(k_, None)

        # ---- a fresh write through TLS (coordinator -> NATS -> shards, each hop authenticated) ----
        with vecshard.Client(addr, timeout=10.0, token=tokw, tls_ca=tls / "ca.crt", tls_cert=tls / "client.crt",
                             tls_key=tls / "client.key") as cw:
            fresh = (q[0] + 1e-3).reshape(1, D).astype(np.float32)
            wr = cw.upsert([N + 7], fresh)
            got = cw.search(q[:1], k=1, nprobe=NLIST, min_log_seq=wr.log_seq)
            check(int(got.ids[0, 0]) == N + 7, f"a write through TLS is searchable: {got.ids[0, :3]}")

        # ---- NATS: TLS, users, permissions ----
        nurl = state["nats_url"]
        npw = lambda u: (cl / "nats-users" / u).read_text().strip()  # noqa: E731
        subj = "vs.local.writes"
        said = nats_try(nurl, tls, "vecshard-shard", npw("vecshard-shard"), cert="shard", subject=subj)
        check("Permissions Violation" in said and "PONG" in said,
              f"NATS: the shards' user may not append to the log: {said}")
        said = nats_try(nurl, tls, "vecshard-coordinator", npw("vecshard-coordinator"), cert="coordinator",
                        subject="$JS.API.STREAM.DELETE.VS_local")
        check("Permissions Violation" in said and "PONG" in said,
              f"NATS: the coordinator's user may not delete the log (it may append: the write above): {said}")
        said = nats_try(nurl, tls, "vecshard-coordinator", "wrong", cert="coordinator")
        check("Authorization Violation" in said, f"NATS: a wrong password is refused: {said}")
        said = nats_try(nurl, tls, "vecshard-coordinator", npw("vecshard-coordinator"), use_tls=False)
        check("PONG" not in said, f"NATS: plain text is refused: {said}")
        said = nats_try(nurl, tls, "vecshard-coordinator", npw("vecshard-coordinator"), cert=None)
        check("PONG" not in said, f"NATS: a client without a certificate is refused: {said}")

        # ---- Redis: batch neighbours over TLS with ACL users ----
        import redis
        raddr = state["redis_addr"]
        b = subprocess.run([str(BIN / "vecshard"), "batch", "--redis", raddr, "--coordinator", addr, "--queries",
                            tmp / "q.fvecs", "--k", str(K), "--params", f"nprobe={NLIST}", "--quiet"],
                           env=dict(os.environ, **env, VECSHARD_TOKEN=toka), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=120)
        check(b.returncode == 0 and f"{NQ} keys" in b.stdout, f"vecshard batch over TLS as vecshard-batch: {b.stdout}")
        rpw = lambda u: (cl / "redis-users" / u).read_text().strip()  # noqa: E731
        rhost, rport = raddr.rsplit(":", 1)

        def rclient(user, password, use_tls=True, cert="redis-client"):
            kw = dict(ssl=True, ssl_ca_certs=str(tls / "ca.crt"), ssl_certfile=str(tls / f"{cert}.crt"),
                      ssl_keyfile=str(tls / f"{cert}.key")) if use_tls else {}
            return redis.Redis(host=rhost, port=int(rport), username=user, password=password, socket_timeout=5, **kw)
        rd = rclient("vecshard-reader", rpw("vecshard-reader"))
        from vecshard.neighbours import Reader
        got = Reader(rd, prefix="vs:nbrs").get(0)
        # query 0's neighbours: the fresh write upserted next to it above, then the built ones
        check(got is not None and got[0][:K].tolist() == [N + 7] + exact[0][:K - 1].tolist(),
              f"the Python reader reads the set over TLS as vecshard-reader: {got}")

        def redis_outcome(fn):
            try:
                fn()
                return "OK"
            except redis.exceptions.ResponseError as e:
                return f"refused: {e}"
            except (redis.exceptions.ConnectionError, redis.exceptions.AuthenticationError, OSError) as e:
                return f"refused: {type(e).__name__}: {e}"
        said = redis_outcome(lambda: rd.set("vs:nbrs:#current", "evil"))
        check("NOPERM" in said or "permission" in said.lower(), f"Redis: the reader user may not write: {said}")
        said = redis_outcome(lambda: rclient("vecshard-batch", "wrong").ping())
        check(said.startswith("refused"), f"Redis: a wrong password is refused: {said}")
        said = redis_outcome(lambda: rclient("vecshard-batch", rpw("vecshard-batch"), use_tls=False).ping())
        check(said.startswith("refused"), f"Redis: plain text is refused: {said}")
        said = redis_outcome(lambda: redis.Redis(host=rhost, port=int(rport), ssl=True, ssl_ca_certs=str(tls / "ca.crt"),
                                                 username="vecshard-batch", password=rpw("vecshard-batch"),
                                                 socket_timeout=5).ping())
        check(said.startswith("refused"), f"Redis: a client without a certificate is refused: {said}")
        said = redis_outcome(lambda: rclient(None, None).get("vs:nbrs:#current"))
        check(said.startswith("refused"), f"Redis: the default user is off: {said}")
        rd.close()

        # ---- refused at the coordinator ----
        def code_of(**kw):
            try:
                with vecshard.Client(addr, timeout=5.0, retries=0, **kw) as x:
                    x.search(q[:1], k=K)
                return "OK"
            except vecshard.VecshardError as e:
                return e.code.name
        check(code_of(token=tok) == "UNAVAILABLE", "a plain-text client is refused")
        check(code_of(token=tok, tls_ca=other / "ca.crt", tls_cert=other / "client.crt",
                      tls_key=other / "client.key") == "UNAVAILABLE", "a client trusting another CA is refused")
        check(code_of(token=tok, tls_ca=tls / "ca.crt", tls_cert=other / "client.crt",
                      tls_key=other / "client.key") == "UNAVAILABLE",
              "a client certificate from another CA is refused")
        check(code_of(token=tok, tls_ca=tls / "ca.crt") == "UNAVAILABLE", "a client without a certificate is refused")
        check(code_of(token="vst_" + "0" * 64, tls_ca=tls / "ca.crt", tls_cert=tls / "client.crt",
                      tls_key=tls / "client.key") == "UNAUTHENTICATED", "a wrong token over TLS is UNAUTHENTICATED")

        # ---- refused at a shard ----
        shard = state["shard_p0r0_addr"]
        body = shard_search_request(q[:1], K)
        search = "/vecshard.v1.Shard/Search"
        check(grpc_code(shard, search, body, tls_creds(tls / "ca.crt", tls / "coordinator.crt",
                                                        tls / "coordinator.key")) == "OK",
              "a shard answers the coordinator's certificate")
        check(grpc_code(shard, search, body, None) == "UNAVAILABLE", "a shard refuses plain text")
        check(grpc_code(shard, search, body, tls_creds(tls / "ca.crt", other / "coordinator.crt",
                                                        other / "coordinator.key")) == "UNAVAILABLE",
              "a shard refuses a coordinator certificate from another CA")
        client_creds = tls_creds(tls / "ca.crt", tls / "client.crt", tls / "client.key")
        check(grpc_code(shard, search, body, client_creds) == "PERMISSION_DENIED",
              "a shard refuses Search to a certificate of its CA that is not the coordinator's")
        check(grpc_code(shard, "/vecshard.v1.Shard/Info", b"", client_creds) == "OK",
              "... and answers it Info")

        # ---- etcd: TLS and roles ----
        pw = lambda u: (cl / "etcd-users" / u).read_text().strip()  # noqa: E731
        s0 = Etcd(etcd_url, tls, "vecshard-shard-0", pw("vecshard-shard-0"))
        pre = "/vecshard/local/"
        check(s0.put(pre + "members/0/test-own", "x") == "OK", "shard 0's user writes under members/0/")
        check("permission denied" in s0.put(pre + "members/1/p1r0", "{}"),
              "shard 0's user may not write partition 1's membership")
        check("permission denied" in s0.put(pre + "active", "v-evil"), "shard 0's user may not activate a version")
        co = Etcd(etcd_url, tls, "vecshard-coordinator", pw("vecshard-coordinator"))
        check("permission denied" in co.put(pre + "versions/evil", "{}"), "the coordinator's user writes nothing")
        anon = Etcd(etcd_url, tls)
        check(anon.put(pre + "active", "v-evil") != "OK", "etcd refuses a write without a user")
        try:
            Etcd(etcd_url, tls, cert=False).put(pre + "active", "v-evil")
            no_cert = "accepted"
        except (ssl.SSLError, urllib.error.URLError, ConnectionError, OSError) as e:
            no_cert = f"refused ({type(e).__name__})"
        check(no_cert.startswith("refused"), f"etcd refuses a TLS client without a certificate: {no_cert}")
        try:
            urllib.request.urlopen(etcd_url.replace("https://", "http://") + "/v3/kv/range",
                                   data=b'{"key":"Lw=="}', timeout=5)
            plain = "accepted"
        except urllib.error.HTTPError as e:  # only TLS's own refusal counts, not an etcd error reply
            body = e.read().decode(errors="replace")
            plain = f"refused ({body.strip()})" if "HTTPS server" in body else f"HTTP {e.code}: {body[:200]}"
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            plain = f"refused ({type(e).__name__})"
        check(plain.startswith("refused"), f"etcd refuses plain http: {plain}")

        # ---- etcd password rotation without a restart: shard 1's password changes (file first, then etcd,
        # which invalidates the user's tokens); a version deployed now (as vecshard-admin, from DIR/env) makes
        # the shard write its record: its client must answer the 401 by re-reading the file ----
        def auths(who):
            body = urllib.request.urlopen(f"http://127.0.0.1:{state[who + '_metrics_port']}/metrics",
                                          timeout=5).read().decode()
            m = re.search(r"^vecshard_etcd_authentications_total (\S+)$", body, re.M)
            return float(m.group(1)) if m else 0.0
        a0 = auths("shard_p1r0")
        pwfile = cl / "etcd-users" / "vecshard-shard-1"
        (cl / "etcd-users" / ".new").write_text("rotated-" + os.urandom(12).hex() + "\n")
        os.replace(cl / "etcd-users" / ".new", pwfile)
        root = Etcd(etcd_url, tls, "root", pw("root"))
        r_ = root.post("/v3/auth/user/changepw", {"name": "vecshard-shard-1", "password": pwfile.read_text().strip()})
        check("header" in r_, f"root changes shard 1's etcd password: {r_}")
        dep = subprocess.run([str(BIN / "vecshard"), "deploy", str(tmp / "idx" / "v2" / "manifest.json"), "--etcd",
                              etcd_url, "--cluster", "local"], env=dict(os.environ, **env), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=120)
        check(dep.returncode == 0, f"vecshard deploy as vecshard-admin over TLS: {dep.stdout[-500:]}")
        rec1 = base64.b64encode((pre + "members/1/p1r0").encode()).decode()

        def v2_ready(key):
            kv = co.post("/v3/kv/range", {"key": key}).get("kvs", [])
            return kv and '"v2"' in base64.b64decode(kv[0]["value"]).decode() and \
                "READY" in base64.b64decode(kv[0]["value"]).decode()
        check(wait_for(lambda: v2_ready(rec1), "p1r0's record shows v2", timeout=60) and auths("shard_p1r0") > a0,
              f"after the password rotation the shard wrote its record with a new token, no restart "
              f"(authentications {a0} -> {auths('shard_p1r0')})")
        # every other user's token predates the auth store's change ("revision of auth store is old"):
        # shard 0 must renew its own too, and the coordinator keep following
        rec0 = base64.b64encode((pre + "members/0/p0r0").encode()).decode()
        check(wait_for(lambda: v2_ready(rec0), "p0r0's record shows v2", timeout=60),
              "shard 0 (another user) wrote its record after the auth store changed")

        def v2_answers():
            try:
                return c.search(q[:2], k=K, nprobe=NLIST, index_version="v2").index_version == "v2"
            except vecshard.VecshardError:
                return False
        check(wait_for(v2_answers, "the coordinator answers with v2", timeout=60),
              "the coordinator follows etcd after the auth store changed: it answers with v2")

        # ---- a shard with a foreign certificate is never used ----
        ports = tmp / "evil.ports"
        shard_env = dict(os.environ, VECSHARD_ETCD_CA=str(tls / "ca.crt"),
                         VECSHARD_ETCD_CERT=str(tls / "etcd-client.crt"),
                         VECSHARD_ETCD_KEY=str(tls / "etcd-client.key"), VECSHARD_ETCD_USER="vecshard-shard-0",
                         VECSHARD_ETCD_PASSWORD_FILE=str(cl / "etcd-users" / "vecshard-shard-0"))
        log = open(tmp / "evil.log", "w")
        extra = subprocess.Popen([str(BIN / "vecshard-shard"), "--etcd", etcd_url, "--cluster", "local",
                                  "--partition", "0", "--replica-id", "p0-evil", "--listen", "127.0.0.1:0",
                                  "--metrics-listen", "none", "--port-file", str(ports), "--manifest",
                                  str(tmp / "idx" / "v1" / "manifest.json"), "--tls-cert", str(other / "shard.crt"),
                                  # trusts the cluster's CA for clients: only the coordinator's check of the
                                  # shard's own certificate can keep it out
                                  "--tls-key", str(other / "shard.key"), "--tls-client-ca", str(tls / "ca.crt")],
                                 env=shard_env, stdout=log, stderr=subprocess.STDOUT)
        rec_key = base64.b64encode((pre + "members/0/p0-evil").encode()).decode()
        check(wait_for(lambda: co.post("/v3/kv/range", {"key": rec_key}).get("count") == "1",
                       "the foreign shard registers in etcd", timeout=30),
              "the foreign shard registered in etcd (its etcd credentials are right)")
        os.kill(int(state["proc_p0r0_pid"]), signal.SIGKILL)
        coord_log = cl / "coordinator.log"

        def partial_without_p0():
            try:
                rr = c.search(q[:4], k=K, nprobe=NLIST)
            except vecshard.VecshardError:
                return False
            return rr.coverage.partial and rr.coverage.partitions_answered == 1
        check(wait_for(partial_without_p0, "answers partial once p0r0 is gone", timeout=30),
              "with the genuine replica of partition 0 killed, answers are partial: the foreign shard serves nothing")
        check(wait_for(lambda: "certificate verify failed" in coord_log.read_text(),
                       "the coordinator logs the failed certificate check", timeout=30),
              "the coordinator's log shows the foreign shard's certificate refused")

        # ---- rotation without restart ----
        before = served_serial(addr, tls)
        subprocess.run([str(SRC / "deploy" / "local" / "certs.sh"), str(tls), "--renew", "coordinator"], check=True)
        new = file_serial(tls / "coordinator.crt")
        check(before != new and before.startswith("serial="), f"renewed: {before} -> {new}")
        check(wait_for(lambda: served_serial(addr, tls) == new, "the renewed certificate served", timeout=30),
              "the coordinator serves the renewed certificate to new connections without a restart")
        with vecshard.Client(addr, timeout=10.0, token=tok, tls_ca=tls / "ca.crt", tls_cert=tls / "client.crt",
                             tls_key=tls / "client.key") as c2:
            check(c2.search(q[:2], k=K).ids.shape == (2, K), "a new client is answered after the rotation")
        c.close()
    finally:
        if extra is not None:
            extra.kill()
            extra.wait()
        cluster_down(cl)
    return check.finish("test_tls", tmp)


if __name__ == "__main__":
    sys.exit(main())
