#!/usr/bin/python3
"""MLE local intrinsic dimensionality (Levina & Bickel; Amsaleg et al.) of a data set at its queries.

For each of the first --nq queries: the exact L2 distances r_1 <= ... <= r_k to its k nearest base
vectors (ids from the ground truth file), then LID = -1 / mean_i log(r_i / r_k). Prints one JSON line with
the median and mean over queries (ann-benchmarks' "Role of LID" study reports the same statistic).
Usage: lid.py BASE.fvecs QUERIES.fvecs GT.ivecs [--k 100] [--nq 1000]
"""
import argparse
import json

import numpy as np


def read_vecs(path, dtype):
    raw = np.memmap(path, dtype=np.int32, mode='r')
    d = int(raw[0])
    return np.memmap(path, dtype=dtype, mode='r').reshape(-1, d + 1)[:, 1:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('base')
    ap.add_argument('queries')
    ap.add_argument('gt')
    ap.add_argument('--k', type=int, default=100)
    ap.add_argument('--nq', type=int, default=1000)
    a = ap.parse_args()
    xb = read_vecs(a.base, np.float32)
    xq = read_vecs(a.queries, np.float32)
    gt = read_vecs(a.gt, np.int32)
    if gt.shape[1] < a.k:
        raise SystemExit('lid.py: ground truth has %d neighbours per query, need %d' % (gt.shape[1], a.k))
    lids = []
    for i in range(min(a.nq, len(xq))):
        ids = np.asarray(gt[i, :a.k])
        r = np.sqrt(((np.asarray(xb[ids], dtype=np.float64) - xq[i]) ** 2).sum(axis=1))
        r = np.sort(r)
        r = r[r > 0]  # an exact duplicate carries no scale information
        if len(r) < 2 or r[-1] <= 0:
            continue
        m = np.mean(np.log(r / r[-1]))
        if m < 0:
            lids.append(-1.0 / m)
    lids = np.array(lids)
    print(json.dumps({'k': a.k, 'queries': len(lids), 'lid_median': round(float(np.median(lids)), 2),
                      'lid_mean': round(float(np.mean(lids)), 2)}))


if __name__ == '__main__':
    main()
