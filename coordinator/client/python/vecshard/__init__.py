"""vecshard: the Python client of a vecshard cluster (coordinator/client/python in the repository).

    import numpy as np, vecshard
    with vecshard.Client("127.0.0.1:50051") as c:
        r = c.search(np.random.rand(2, 128).astype(np.float32), k=10, nprobe=16)
        print(r.ids, r.distances, r.coverage.partial)
"""
from vecshard.client import RETRYABLE, Client, Coverage, SearchResult, VecshardError, WriteResult

__all__ = ["Client", "Coverage", "SearchResult", "WriteResult", "VecshardError", "RETRYABLE"]
__version__ = "0.5.0"
