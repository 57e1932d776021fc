#!/usr/bin/python3
"""plot.py: recall@10 vs QPS (log scale) from vecshard-bench JSON lines, one PNG per input file, the
Pareto frontier of each index drawn as a line (as ann-benchmarks does), plus a markdown table of the best
QPS each index reaches at recall@10 >= 0.90, 0.95 and 0.99 on stdout.
Usage: plot.py FILE.jsonl [...]   (writes FILE.png beside each)"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def frontier(points):
    """Pareto frontier: the points no other point beats on both recall and QPS, by recall."""
    best = []
    for r, q, p in sorted(points, key=lambda t: (-t[0], -t[1])):
        if not best or q > best[-1][1]:
            best.append((r, q, p))
    return sorted(best)


def main(paths):
    for path in paths:
        rows = [json.loads(line) for line in open(path) if line.startswith("{")]
        if not rows:
            continue
        by_index = {}
        for r in rows:
            if r.get("recall_at_10") is None:
                continue
            by_index.setdefault(r["index"], []).append((r["recall_at_10"], r["qps"], r["params"]))
        fig, ax = plt.subplots(figsize=(8, 5.5))
        for name, pts in sorted(by_index.items()):
            f = frontier(pts)
            style = "--" if ":" in name else "-"
            ax.plot([p[0] for p in f], [p[1] for p in f], style, marker="o", markersize=3, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (1 thread, 1 query per call)")
        ax.set_title(rows[0]["dataset"])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        png = path.rsplit(".", 1)[0] + ".png"
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        print(f"\n{rows[0]['dataset']} ({png})\n")
        print("| index | build s | bytes | QPS @0.90 | QPS @0.95 | QPS @0.99 |")
        print("|---|---|---|---|---|---|")
        for name, pts in sorted(by_index.items()):
            meta = next(r for r in rows if r["index"] == name)
            cells = []
            for target in (0.90, 0.95, 0.99):
                ok = [p for p in pts if p[0] >= target]
                if ok:
                    b = max(ok, key=lambda p: p[1])
                    cells.append(f"{b[1]:,.0f} ({b[2]})")
                else:
                    cells.append("-")
            print(f"| {name} | {meta['build_s']:.1f} | {int(meta['index_bytes']):,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
