"""vecshard.neighbours: reads the batch neighbours `vecshard batch` wrote into Redis (docs/protocol.md,
"Batch neighbours in Redis").

    import redis
    from vecshard.neighbours import Reader
    reader = Reader(redis.Redis(host="127.0.0.1", port=6379), prefix="vs:nbrs")
    ids, scores = reader.get("user-42")            # one round trip once the current set is cached
    many = reader.get_many(["user-1", "user-2"])   # one MGET, every value from the same set

The read protocol: the name of the current set is cached; a read is one GET (or MGET) of
`<prefix>/<set>:<key>` (keys may be str or bytes). On a miss the current set is read again: if it changed (a new set was switched
in and the old one expired), the whole read is retried on the new set, so a read never mixes two sets;
if it did not change, the key is not in the set. Every value carries its set's tag, checked on decode.
Needs only an object with get() and mget() (redis-py's Redis).
"""
import json
import struct

import numpy as np

MAGIC = b"VSN1"
HEADER = struct.Struct("<4sIII")
FLAG_SIMILARITY = 1


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def set_tag(name):
    """The tag every value of set `name` carries: CRC32C of the name's bytes."""
    c = 0xFFFFFFFF
    for b in name.encode():
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class MixedSetError(Exception):
    """A value of another set than the one read (never raised by a correct writer)."""


def decode(value):
    """A binary value -> (ids int64[n], scores float32[n], tag, similarity); a JSON value -> (ids, scores,
    set name, None)."""
    if value[:1] == b"{":
        d = json.loads(value)
        return np.array(d["ids"], dtype=np.int64), np.array(d["scores"], dtype=np.float32), d["set"], None
    if len(value) < HEADER.size:
        raise ValueError(f"not a vecshard neighbours value ({len(value)} bytes)")
    magic, n, tag, flags = HEADER.unpack_from(value)
    if magic != MAGIC or len(value) != HEADER.size + 12 * n:
        raise ValueError(f"not a vecshard neighbours value ({len(value)} bytes)")
    ids = np.frombuffer(value, dtype="<i8", count=n, offset=HEADER.size)
    scores = np.frombuffer(value, dtype="<f4", count=n, offset=HEADER.size + 8 * n)
    return ids, scores, tag, bool(flags & FLAG_SIMILARITY)


class Reader:
    """Reads one key's or many keys' neighbours from the current set (see the module's doc)."""

    def __init__(self, redis_client, prefix="vs:nbrs", max_retries=8):
        self.r = redis_client
        self.prefix = prefix
        self.max_retries = max_retries
        self.current = None
        self.retries = 0  # reads retried because the current set changed under them

    def refresh(self):
        """Reads the current set's name (None when there is none); returns it."""
        cur = self.r.get(f"{self.prefix}:#current")
        self.current = cur.decode() if cur is not None else None
        return self.current

    def _check(self, s, raw):
        ids, scores, tag, _ = decode(raw)
        if tag != (s if isinstance(tag, str) else set_tag(s)):
            raise MixedSetError(f"value of another set than {s}")
        return ids, scores

    def get_many(self, keys):
        """{key: (ids, scores)} for every key of the current set; keys it does not hold are left out. Every
        value comes from one set; the set read is in self.current afterwards."""
        keys = list(keys)
        s = self.current or self.refresh()
        for _ in range(self.max_retries):
            if s is None:
                return {}
            head = f"{self.prefix}/{s}:".encode()
            vals = self.r.mget([head + (k if isinstance(k, bytes) else str(k).encode()) for k in keys]) if keys else []
            if all(v is not None for v in vals):
                return {k: self._check(s, v) for k, v in zip(keys, vals)}
            newer = self.refresh()
            if newer == s:  # the set did not change: the misses are keys it does not hold
                return {k: self._check(s, v) for k, v in zip(keys, vals) if v is not None}
            self.retries += 1
            s = newer
        raise RuntimeError(f"the current set changed {self.max_retries} times during one read")

    def get(self, key):
        """(ids, scores) of one key in the current set, or None when the set does not hold it."""
        return self.get_many([key]).get(key)
