"""vecshard: the Python client of a vecshard cluster (coordinator/client/python in the repository).

    import numpy as np, vecshard
    with vecshard.Client("127.0.0.1:50051") as c:
        r = c.search(np.random.rand(2, 128).astype(np.float32), k=10, nprobe=16)
        print(r.ids, r.distances, r.coverage.partial)

vecshard.neighbours reads the batch neighbours `vecshard batch` writes into Redis; it needs neither gRPC
nor the generated stubs, so the search client is imported on first use (PEP 562).
"""
__all__ = ["Client", "Coverage", "SearchResult", "WriteResult", "VecshardError", "RETRYABLE"]
__version__ = "0.6.0"


def __getattr__(name):
    if name in __all__:
        from vecshard import client

        return getattr(client, name)
    raise AttributeError(f"module 'vecshard' has no attribute {name!r}")
