"""The vecshard client: numpy in and out over gRPC, deadlines, retries on retryable statuses, typed errors.

Vectors never go through a per-element Python loop: a request's packed float32 field is the array's raw
little-endian bytes appended to the serialised message (protobuf accepts a message's fields in any order),
and a response's repeated fields become arrays in one conversion each.
"""
import os
import time
import uuid
from typing import List, NamedTuple, Optional

import grpc
import numpy as np

from vecshard.v1 import common_pb2, coordinator_pb2

__all__ = ["Client", "Coverage", "SearchResult", "WriteResult", "VecshardError", "RETRYABLE", "PRIORITIES"]

# Statuses a call may be retried on: the server says it could not serve now (UNAVAILABLE: no replica, no
# log acknowledgement; RESOURCE_EXHAUSTED is load shedding or a full log, which retrying does not cure).
# CANCELLED too: this client never cancels its own calls (it gives them deadlines), so a CANCELLED comes
# from the other side, e.g. a coordinator shutting down cancels calls that had reached it but not started
# (a rolling upgrade); every call is safe to repeat (searches read, writes carry their write_id).
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class Coverage(NamedTuple):
    partitions_total: int
    partitions_answered: int
    partial: bool
    reasons: List[str]


class SearchResult(NamedTuple):
    ids: np.ndarray        # (nq, k) int64, best first, -1 where fewer than k were found
    distances: np.ndarray  # (nq, k) float32: L2 squared distances (smaller is better) or similarities
    index_version: str
    coverage: Coverage
    request_id: str
    group_values: Optional[np.ndarray] = None  # (nq, k) int64 with group_by: each result's value, else None


class WriteResult(NamedTuple):
    log_seq: int      # the write's position in the log: pass it as min_log_seq to read your write
    duplicate: bool   # the log had this write_id already (a retry): log_seq is the first copy's
    write_id: str


class VecshardError(Exception):
    """A failed call: code is the grpc.StatusCode, details the server's message, coverage the answer's
    coverage when the server said how much of the cluster it reached (else None). retry_after: with
    RESOURCE_EXHAUSTED (the cluster shed the request for overload, or the client is over its quota), the
    seconds the server asks the client to wait before trying again (else None). Such a call is not retried
    by the client: retrying at once would add to the overload."""

    def __init__(self, code, details, coverage=None, retry_after=None):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.coverage = coverage
        self.retry_after = retry_after


PRIORITIES = {"online": 0, "batch": 1, "recall": 2, "canary": 3}


def _retry_after(e):
    """The server's vs-retry-after-ms hint of a failed call, in seconds, or None."""
    try:
        for key, value in e.trailing_metadata() or ():
            if key == "vs-retry-after-ms":
                return int(value) / 1000.0
    except (AttributeError, ValueError, TypeError):
        pass
    return None


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _packed_floats(field, arr):
    """The wire bytes of a packed repeated float field holding arr (float32, C order)."""
    raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
    return _varint(field << 3 | 2) + _varint(len(raw)) + raw


def _matrix(x, name):
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: want a (n, dim) array of floats, got shape {np.shape(x)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: NaN or infinite values")
    return a


def _ids(x, name):
    a = np.atleast_1d(np.asarray(x))
    if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name}: want a non-empty 1-D array of integer ids")
    if (a < 0).any() or (a.dtype.kind == "u" and (a > np.iinfo(np.int64).max).any()):
        raise ValueError(f"{name}: ids must be in 0..2^63-1")
    return a.astype(np.int64, copy=False)


def _filter(spec):
    """A vecshard.v1.Filter from {field: condition} (or a list of (field, condition) pairs, to put two
    conditions on one field): a list, set, array or single int is `field in values` (integer fields); a
    (lo, hi) tuple is the inclusive range lo <= field <= hi, None for an open side."""
    if spec is None:
        return None
    items = spec.items() if isinstance(spec, dict) else spec
    conds = []
    for field, cond in items:
        if isinstance(cond, tuple):
            if len(cond) != 2:
                raise ValueError(f"filter on {field!r}: a range is a (lo, hi) tuple")
            lo = -np.inf if cond[0] is None else float(cond[0])
            hi = np.inf if cond[1] is None else float(cond[1])
            conds.append(common_pb2.FieldCondition(field=field, range=common_pb2.Range(lo=lo, hi=hi)))
        else:
            vals = np.atleast_1d(np.asarray(list(cond) if isinstance(cond, (set, frozenset)) else cond))
            if vals.ndim != 1 or vals.size == 0 or not np.issubdtype(vals.dtype, np.integer):
                raise ValueError(f"filter on {field!r}: want integer values (or a (lo, hi) range)")
            conds.append(common_pb2.FieldCondition(field=field, any_of=vals.astype(np.int64).tolist()))
    return common_pb2.Filter(all_of=conds)


def _group_by(g):
    if g is None:
        return None
    field, size = (g, 1) if isinstance(g, str) else g
    return common_pb2.GroupBy(field=field, size=int(size))


def _columns(attributes, n):
    """AttributeColumns from {field: array of n values}: integer arrays for integer fields, floating ones
    for float fields."""
    cols = []
    for field, values in (attributes or {}).items():
        a = np.atleast_1d(np.asarray(values))
        if a.ndim != 1 or a.size != n:
            raise ValueError(f"attribute {field!r}: want {n} values, got shape {a.shape}")
        if np.issubdtype(a.dtype, np.integer):
            cols.append(common_pb2.AttributeColumn(field=field, int_values=a.astype(np.int64).tolist()))
        elif np.issubdtype(a.dtype, np.floating):
            cols.append(common_pb2.AttributeColumn(field=field, float_values=a.astype(np.float32).tolist()))
        else:
            raise ValueError(f"attribute {field!r}: want integers or floats, got {a.dtype}")
    return cols


class Client:
    """A connection to a vecshard coordinator (host:port).

    timeout: seconds per call, retries included (a deadline, as gRPC's; None = none); retries: further attempts on a
    retryable status (UNAVAILABLE, CANCELLED), after retry_backoff seconds doubling each time, never past the
    deadline. Writes are retried under the same write_id, which the log deduplicates, so a retry is never
    applied twice. Thread-safe: one Client may serve many threads (one gRPC channel).

    token: the bearer token of a coordinator started with --auth-tokens. tls_ca: a PEM file of the roots
    the coordinator's certificate must chain to (set: TLS; the host of target, or tls_server_name, must be
    in its SAN); tls_cert + tls_key: PEM files of the client certificate for a coordinator that asks for one
    (--tls-client-ca). Client.from_env reads them as the vecshard tools do."""

    def __init__(self, target: str, *, timeout: Optional[float] = 1.0, retries: int = 2,
                 retry_backoff: float = 0.02, options=None, token: Optional[str] = None,
                 tls_ca: Optional[str] = None, tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 tls_server_name: Optional[str] = None):
        self.target = target
        self._closed = False
        # a coordinator started with --auth-tokens wants "authorization: Bearer <token>" on every call
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        # answers of large batches exceed gRPC's default 4 MiB: the server allows 64 MiB (docs/protocol.md)
        opts = {"grpc.max_receive_message_length": 64 << 20, "grpc.max_send_message_length": 64 << 20,
                # reconnect to a restarted coordinator within ~0.1-2 s, not gRPC's default 1-120 s: with
                # several coordinators (round_robin over their addresses), a rolling upgrade must not find
                # the channel still backing off from the previous restart
                "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 2000}
        if tls_server_name:
            opts["grpc.ssl_target_name_override"] = tls_server_name
        opts.update(dict(options or []))
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if tls_cert is not None and tls_ca is None:
            raise ValueError("a client certificate (tls_cert) needs tls_ca")
        if tls_ca is not None:
            def read(path):
                with open(path, "rb") as f:
                    return f.read()
            creds = grpc.ssl_channel_credentials(root_certificates=read(tls_ca),
                                                 private_key=read(tls_key) if tls_key else None,
                                                 certificate_chain=read(tls_cert) if tls_cert else None)
            self._channel = grpc.secure_channel(target, creds, options=list(opts.items()))
        else:
            self._channel = grpc.insecure_channel(target, options=list(opts.items()))
        ident = lambda b: b  # noqa: E731  (requests are serialised here, responses parsed below)
        self._search = self._channel.unary_unary("/vecshard.v1.Coordinator/Search", request_serializer=ident,
                                                 response_deserializer=coordinator_pb2.SearchResponse.FromString)
        self._upsert = self._channel.unary_unary("/vecshard.v1.Coordinator/Upsert", request_serializer=ident,
                                                 response_deserializer=coordinator_pb2.WriteResponse.FromString)
        self._delete = self._channel.unary_unary("/vecshard.v1.Coordinator/Delete", request_serializer=ident,
                                                 response_deserializer=coordinator_pb2.WriteResponse.FromString)
        self._status = self._channel.unary_unary(
            "/vecshard.v1.Coordinator/Status", request_serializer=ident,
            response_deserializer=coordinator_pb2.StatusResponse.FromString)

    @classmethod
    def from_env(cls, target: str, **kwargs):
        """A Client configured as the vecshard tools are: $VECSHARD_TOKEN, $VECSHARD_TLS_CA (set: TLS),
        $VECSHARD_TLS_CERT, $VECSHARD_TLS_KEY, $VECSHARD_TLS_SERVER_NAME (`. build/cluster/env` after
        deploy/local/cluster.sh up sets them). Keyword arguments override the environment."""
        env = {"token": "VECSHARD_TOKEN", "tls_ca": "VECSHARD_TLS_CA", "tls_cert": "VECSHARD_TLS_CERT",
               "tls_key": "VECSHARD_TLS_KEY", "tls_server_name": "VECSHARD_TLS_SERVER_NAME"}
        for arg, var in env.items():
            if arg not in kwargs and os.environ.get(var):
                kwargs[arg] = os.environ[var]
        return cls(target, **kwargs)

    def close(self):
        self._closed = True  # calls failing from now on are not retried (CANCELLED: "Channel closed")
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, stub, payload, timeout):
        t = self.timeout if timeout is None else timeout
        deadline = None if t is None else time.monotonic() + t  # None: no deadline
        backoff = self.retry_backoff
        for attempt in range(self.retries + 1):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise VecshardError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the call")
            # vs-timeout-us: the timeout as sent, so the server can tell how long the call queued; rounded
            # down to what gRPC's grpc-timeout header carries exactly (it rounds up: 10 ms units from 1 s...)
            md = self._metadata
            if left is not None:
                ms = max(int(left * 1000), 1)
                unit = 1 if ms < 1000 else 10 if ms < 10000 else 100 if ms < 100000 else 1000 if ms < 1000000 else 10000
                left = max(ms - ms % unit, 1) / 1000.0
                md = (md or ()) + (("vs-timeout-us", str(int(round(left * 1e6)))),)
            try:
                return stub(payload, timeout=left, metadata=md)
            except grpc.RpcError as e:
                code = e.code()
                late = deadline is not None and deadline - time.monotonic() <= backoff
                if code not in RETRYABLE or attempt == self.retries or late or self._closed:
                    raise VecshardError(code, e.details(), retry_after=_retry_after(e)) from None
                time.sleep(backoff)
                backoff *= 2
        raise AssertionError("unreachable")

    def search(self, queries, k: int = 10, *, nprobe: int = 0, ef_search: int = 0, k_factor: float = 0.0,
               quantizer_ef_search: int = 0, model_version: str = "", index_version: str = "",
               min_coverage: float = 0.0, min_log_seq: int = 0, request_id: str = "", exclude_ids=None,
               filter=None, group_by=None, filter_exact_threshold: float = 0.0, priority: str = "online",
               timeout: Optional[float] = None) -> SearchResult:
        """The k nearest items of each query row. queries: (nq, dim) or (dim,) floats. Search parameters
        as FAISS names them (0 = the version's defaults). exclude_ids: ids never returned, for every query
        of the call (up to 10,000; e.g. what this user has seen). A partial answer (some partition
        unreachable) is returned with coverage.partial set, unless min_coverage asks for more (then
        UNAVAILABLE). filter: only items whose attributes satisfy every condition, e.g.
        {"market": [3, 7], "price": (None, 9.5)} (a list of values, or a (lo, hi) range). group_by: "seller"
        or ("seller", 3): at most that many results per value (the result's group_values then holds each
        result's value). priority: "online" (default), "batch", "recall" or "canary": under overload the
        cluster sheds the others first (VecshardError RESOURCE_EXHAUSTED with retry_after)."""
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {sorted(PRIORITIES)}, not {priority!r}")
        q = _matrix(queries, "queries")
        excl = [] if exclude_ids is None or np.size(exclude_ids) == 0 else _ids(exclude_ids, "exclude_ids").tolist()
        req = coordinator_pb2.SearchRequest(
            dim=q.shape[1], k=k, model_version=model_version, index_version=index_version,
            min_coverage=min_coverage, request_id=request_id, min_log_seq=min_log_seq, exclude_ids=excl,
            filter=_filter(filter), group_by=_group_by(group_by), priority=PRIORITIES[priority],
            params=common_pb2.SearchParams(nprobe=nprobe, ef_search=ef_search, k_factor=k_factor,
                                           quantizer_ef_search=quantizer_ef_search,
                                           filter_exact_threshold=filter_exact_threshold))
        resp = self._call(self._search, req.SerializeToString() + _packed_floats(2, q), timeout)
        nq, kk = resp.nq, resp.k
        ids = np.fromiter(resp.ids, dtype=np.int64, count=nq * kk).reshape(nq, kk)
        dist = np.fromiter(resp.distances, dtype=np.float32, count=nq * kk).reshape(nq, kk)
        c = resp.coverage
        groups = (np.fromiter(resp.group_values, dtype=np.int64, count=nq * kk).reshape(nq, kk)
                  if len(resp.group_values) else None)
        return SearchResult(ids, dist, resp.index_version,
                            Coverage(c.partitions_total, c.partitions_answered, c.partial, list(c.reasons)),
                            resp.request_id, groups)

    def upsert(self, ids, vectors, *, attributes=None, model_version: str = "", write_id: str = "",
               timeout: Optional[float] = None) -> WriteResult:
        """Inserts or replaces items (ids: n ints >= 0, each once; vectors: (n, dim) floats). One call is
        one log message (about 1 MB at most). Searchable within about a second; pass the result's log_seq
        as min_log_seq to a search that must see it. attributes: {field: n values} (integers for integer
        fields, floats for float fields); fields not given are missing for these items."""
        i = _ids(ids, "ids")
        x = _matrix(vectors, "vectors")
        if x.shape[0] != i.size:
            raise ValueError(f"{i.size} ids for {x.shape[0]} vectors")
        req = coordinator_pb2.UpsertRequest(ids=i.tolist(), dim=x.shape[1], model_version=model_version,
                                            write_id=write_id or uuid.uuid4().hex,
                                            attributes=_columns(attributes, i.size))
        resp = self._call(self._upsert, req.SerializeToString() + _packed_floats(3, x), timeout)
        return WriteResult(resp.log_seq, resp.duplicate, resp.write_id)

    def delete(self, ids, *, write_id: str = "", timeout: Optional[float] = None) -> WriteResult:
        """Hides items by id (ids that exist nowhere are recorded too: a later version may hold them)."""
        i = _ids(ids, "ids")
        req = coordinator_pb2.DeleteRequest(ids=i.tolist(), write_id=write_id or uuid.uuid4().hex)
        resp = self._call(self._delete, req.SerializeToString(), timeout)
        return WriteResult(resp.log_seq, resp.duplicate, resp.write_id)

    def status(self, timeout: Optional[float] = None):
        """The coordinator's Status (vecshard.v1.StatusResponse): members, versions, etcd connection."""
        return self._call(self._status, coordinator_pb2.StatusRequest().SerializeToString(), timeout)
