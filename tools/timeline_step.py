#!/usr/bin/env python3
"""timeline_step.py — one forward's kernels from a CINFER_TIMELINE_OUT CSV (a -DCINFER_TIMELINE=ON
build; src/backend/cuda/timeline.cu), grouped by kernel and grid, largest first; a kernel and
grid that follow different kernels (one GEMV for the o and down projections) get a row for each
predecessor, "name (after prev)".

Each row's dur_ns is the time from the kernel's CTA 0 passing its wait (its predecessor complete)
to the next kernel's doing so: what the kernel costs the step as it runs in the graph, launch gaps
and PDL overlap included; a cuBLASLt GEMM gets the row of the marker launched just before it,
"ci_tl_gemm" with grid x = its output rows / 1024 + 1 (timeline.cu); any other kernel launched
outside ci_cu_launch adds its time to the row before it. The last row has no successor (its time
is unknown) and is left out of the sums.
usage: tools/timeline_step.py TIMELINE_CSV [--order]   (--order: every row, in order)
"""
import collections
import csv
import re
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit("no records (was the build made with -DCINFER_TIMELINE=ON?)")
    def short(r):
        return re.sub(r"\(.*", "", r["kernel"]).replace("void ", "")

    # a kernel and grid that follow several different kernels (the o and down
    # projections' GEMV) get a row per predecessor: "name (after prev)"
    # (a predecessor seen once, the first layer's, does not count)
    prevs = collections.defaultdict(collections.Counter)
    for p, r in zip([None] + rows[:-1], rows):
        prevs[(short(r), r["grid"], r["threads"])][short(p) if p else ""] += 1
    agg = collections.OrderedDict()
    total = 0
    for p, r in zip([None] + rows[:-1], rows):
        d = int(r["dur_ns"])
        if d < 0:
            continue
        name = short(r)
        if sum(c > 1 for c in prevs[(name, r["grid"], r["threads"])].values()) > 1 and p:
            name += " (after %s)" % re.sub(r"<.*", "", short(p))
        a = agg.setdefault((name, r["grid"], r["threads"]), [0, 0])
        a[0] += 1
        a[1] += d
        total += d
    if "--order" in sys.argv:
        print("| # | start us | us | grid | threads | kernel |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            d = int(r["dur_ns"])
            print("| %s | %.2f | %s | %s | %s | %s |" % (
                r["index"], int(r["start_ns"]) / 1e3, "%.2f" % (d / 1e3) if d >= 0 else "-",
                r["grid"], r["threads"], r["kernel"][:70]))
    print("kernels: %d, step (first record to last): %.1f us" % (len(rows), total / 1e3))
    print("| kernel | grid | threads | count | us | us each | share |")
    print("|---|---|---|---|---|---|---|")
    for (n, g, t), (c, d) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print("| %s | %s | %s | %d | %.1f | %.2f | %.1f%% |" % (n[:90], g, t, c, d / 1e3, d / c / 1e3,
                                                              100.0 * d / total if total else 0))


if __name__ == "__main__":
    main()
