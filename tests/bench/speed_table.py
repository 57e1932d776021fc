#!/usr/bin/python3
"""speed_table.py: the issue-19 comparison table from vecshard-bench JSON lines (tests/bench/run_speed.sh).

For each data set and each recall target (recall@10 >= 0.95 and >= 0.99) it takes, in every round, the
best QPS each side reaches with any of its configurations and settings at or above the target, then
reports each side's best round (and the spread over rounds), the configuration that reached it, its
resident bytes per vector, and our speed as a multiple of the peer's:
  - IVF: ours (every IVF factory we ran) against FAISS (every factory the FAISS peer ran: PQ fast scan,
    RaBitQ fast scan, ...);
  - graph: ours (HNSW{M} and HNSW{M},SQ8) against hnswlib.
Single-query rows (1 thread, 1 query per call: the ann-benchmarks protocol) and batched rows (several
threads, many queries per call) are separate rows ("mode"), never mixed.
A side that never reaches a target is shown as "-", and so is the ratio: nothing is extrapolated.
Usage: speed_table.py FILE.jsonl [...]   (rows carry "round"; the data set is the "dataset" field)"""
import json
import sys

TARGETS = (0.95, 0.99)


def family(row):
    index = row["index"]
    if index.startswith("hnswlib:"):
        return "graph", "hnswlib"
    if index.startswith("faiss"):
        return "ivf", "faiss"
    if index.startswith("HNSW"):
        return "graph", "ours"
    return "ivf", "ours"


def mode(row):
    threads, batch = row.get("threads", 1), row.get("batch", 1)
    return "single" if threads == 1 and batch == 1 else "%d threads, %d per call" % (threads, batch)


def main(paths):
    rows = []
    for path in paths:
        rows += [json.loads(line) for line in open(path) if line.startswith("{")]
    # best[(dataset, mode, kind, side, target)][round] = (qps, row)
    best = {}
    for r in rows:
        if r.get("recall_at_10") is None:
            continue
        kind, side = family(r)
        for t in TARGETS:
            if r["recall_at_10"] + 1e-12 < t:
                continue
            slot = best.setdefault((r["dataset"], mode(r), kind, side, t), {})
            rnd = r.get("round", 1)
            if rnd not in slot or r["qps"] > slot[rnd][0]:
                slot[rnd] = (r["qps"], r)
    nbase = {}
    for r in rows:
        nbase.setdefault(r["dataset"], r.get("n_base"))
    print("| set | mode | kind | recall@10 >= | ours: best QPS (rounds) | ours: config, B/vector | peer: best QPS (rounds) | "
          "peer: config, B/vector | ours / peer |")
    print("|---|---|---|---|---|---|---|---|---|")
    modes = sorted({mode(r) for r in rows}, key=lambda m: (m != "single", m))
    for ds in sorted({r["dataset"] for r in rows}):
        for md, kind, t in [(md, kind, t) for md in modes for kind in ("ivf", "graph") for t in TARGETS]:
            cells = []
            qps = {}
            for side in ("ours", "faiss" if kind == "ivf" else "hnswlib"):
                slot = best.get((ds, md, kind, side, t))
                if not slot:
                    cells += ["-", "-"]
                    continue
                vals = sorted(v[0] for v in slot.values())
                top = max(slot.values(), key=lambda v: v[0])[1]
                qps[side] = vals[-1]
                spread = "%.0f (%s)" % (vals[-1], ", ".join("%.0f" % v[0] for _, v in sorted(slot.items())))
                n = top.get("n_base")
                bpv = "%.0f" % (top["index_bytes"] / n) if n else "?"
                cells += [spread, "%s %s, %s" % (top["index"], top["params"], bpv)]
            sides = list(qps)
            ratio = "%.2fx" % (qps[sides[0]] / qps[sides[1]]) if len(sides) == 2 and "ours" in qps else "-"
            print("| %s | %s | %s | %.2f | %s | %s | %s | %s | %s |" % (ds, md, kind, t, cells[0], cells[1],
                                                                     cells[2], cells[3], ratio))


if __name__ == "__main__":
    main(sys.argv[1:])
