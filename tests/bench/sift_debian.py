#!/usr/bin/python3
"""A real 128-d descriptor set from photographs shipped in Debian packages.

SIFT1M (the classic 128-d benchmark) is SIFT descriptors of photographs. It cannot be fetched here, so this
script makes the same kind of data from the photographs and wallpapers Debian ships (the packages are listed
in tests/bench/run_hardness.sh): OpenCV's SIFT (python3-opencv, the 128-d descriptor of Lowe's paper,
values scaled to 0..255 like SIFT1M) run on every image, de-duplicated.

- Images are taken largest file first; an image whose 8x8 average hash is within Hamming distance 4 of
  one seen before is skipped (wallpaper packages ship one picture at several resolutions; keeping them all
  would fill the set with near-copies and make it easier than real data). Images are scaled so the longer
  side is at most --max-side pixels.
- Every 10th distinct image (by order) is a query image, the others base images, so no query descriptor
  comes from a picture in the base (as SIFT1M's queries come from other images).
- Output: OUT/base.fvecs (at most --n descriptors, in image order) and OUT/queries.fvecs (--nq
  descriptors drawn evenly from the query images), and OUT/images.txt (the images used and their counts).
The output is the same for the same package versions and arguments.
"""
import argparse
import hashlib
import multiprocessing
import os
import sys
import time

import cv2
import numpy as np

EXTS = ('.jpg', '.jpeg', '.png', '.webp')


def ahash(gray):
    small = cv2.resize(gray, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    return int(''.join('1' if v else '0' for v in (small > small.mean()).ravel()), 2)


_sift = None
_max_side = 0


def init_worker(per_image, max_side):
    global _sift, _max_side
    cv2.setNumThreads(1)
    _sift = cv2.SIFT_create(nfeatures=per_image)
    _max_side = max_side


def load_gray(p):
    img = cv2.imread(p, cv2.IMREAD_GRAYSCALE)
    return img if img is not None and min(img.shape) >= 64 else None


def hash_of(p):
    img = load_gray(p)
    return None if img is None else ahash(img)


def sift_of(p):
    img = load_gray(p)
    if img is None:
        return None
    f = _max_side / max(img.shape)
    if f < 1:
        img = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    _, desc = _sift.detectAndCompute(img, None)
    return desc


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    rec = np.empty((n, d + 1), dtype=np.float32)
    rec[:, 0] = np.array([d], dtype=np.int32).view(np.float32)[0]
    rec[:, 1:] = x
    tmp = path + '.tmp'
    rec.tofile(tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', required=True, help='output directory')
    ap.add_argument('--n', type=int, default=1000000, help='base descriptors at most (default 1000000)')
    ap.add_argument('--nq', type=int, default=10000, help='query descriptors (default 10000)')
    ap.add_argument('--max-side', type=int, default=2560, help='longer image side in pixels (default 2560)')
    ap.add_argument('--per-image', type=int, default=0, help='descriptors per image at most (default 0: all)')
    ap.add_argument('--jobs', type=int, default=0, help='worker processes (default: one per CPU)')
    ap.add_argument('dirs', nargs='+', help='directories searched for images')
    a = ap.parse_args()
    paths = [os.path.join(r, f) for d in a.dirs for r, _, fs in os.walk(d) for f in fs
             if f.lower().endswith(EXTS)]
    # largest file first, so of the copies of one picture the largest is kept; then by path
    paths.sort(key=lambda p: (-os.path.getsize(p), p))
    if not paths:
        sys.exit('sift_debian: no images under ' + ' '.join(a.dirs))
    t0 = time.time()
    tty = sys.stderr.isatty()
    jobs = a.jobs or os.cpu_count() or 1
    seen, distinct = [], []
    with multiprocessing.Pool(jobs, initializer=init_worker, initargs=(a.per_image, a.max_side)) as pool:
        for p, h in zip(paths, pool.imap(hash_of, paths, chunksize=8)):
            if h is None or any(bin(h ^ s).count('1') <= 4 for s in seen):
                continue
            seen.append(h)
            distinct.append(p)
        base, queries, used = [], [], []
        nbase = nimg = 0
        for i, (p, desc) in enumerate(zip(distinct, pool.imap(sift_of, distinct))):
            if desc is None:
                continue
            is_query = nimg % 10 == 9
            nimg += 1
            (queries if is_query else base).append(desc)
            if not is_query:
                nbase += len(desc)
            used.append('%s %s %d\n' % ('query' if is_query else 'base', p, len(desc)))
            if tty:
                el = time.time() - t0
                rate = (i + 1) / el
                sys.stderr.write('\rsift: %d/%d distinct images, %d base descriptors, %.1f images/s, ETA %.0f s   ' %
                                 (i + 1, len(distinct), nbase, rate, (len(distinct) - i - 1) / rate))
            if nbase >= a.n and sum(len(q) for q in queries) >= a.nq:
                pool.terminate()
                break
    if tty:
        sys.stderr.write('\n')
    xb = np.concatenate(base)[:a.n]
    xq_all = np.concatenate(queries)
    if len(xq_all) < a.nq:
        sys.exit('sift_debian: only %d query descriptors (need %d)' % (len(xq_all), a.nq))
    xq = xq_all[np.linspace(0, len(xq_all) - 1, a.nq).astype(np.int64)]
    os.makedirs(a.out, exist_ok=True)
    write_fvecs(os.path.join(a.out, 'base.fvecs'), xb)
    write_fvecs(os.path.join(a.out, 'queries.fvecs'), xq)
    with open(os.path.join(a.out, 'images.txt'), 'w') as f:
        f.writelines(used)
    digest = hashlib.sha256(xb.tobytes()).hexdigest()[:16]
    print('sift_debian: %d base descriptors from %d images, %d queries from %d images, %.0f s, base sha256 %s' %
          (len(xb), nimg - len(queries), len(xq), len(queries), time.time() - t0, digest))


if __name__ == '__main__':
    main()
