#!/usr/bin/env python3
"""ncu_step.py — one decode step's kernels from an ncu CSV (tools/gpu_profile_decode.sh).

Reads `ncu --csv --metrics gpu__time_duration.sum` output, splits it into forwards (a forward
starts with the embedding's gather_rows followed by an rmsnorm), and prints the last forward's
kernels grouped by name and grid, largest first. ncu runs kernels one at a time, so the sum is
above the step time of a CUDA graph with programmatic dependent launches.
usage: tools/ncu_step.py NCU_CSV
"""
import collections
import csv
import re
import sys

rows = []
with open(sys.argv[1]) as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    short = re.sub(r"\(.*", "", r["Kernel Name"]).replace("void ", "")
    rows.append((short, r["Grid Size"], r["Block Size"], float(r["Metric Value"].replace(",", ""))))
starts = [i for i, r in enumerate(rows)
          if "gather_rows" in r[0] and i + 1 < len(rows) and "rmsnorm" in rows[i + 1][0]]
if not starts:
    sys.exit("no forward found (embedding gather + rmsnorm)")
print("forwards: %d, kernels: %d" % (len(starts), len(rows)))
for s, e in zip(starts, starts[1:] + [len(rows)]):
    print("  forward at kernel %d: %d kernels, %.1f us" % (s, e - s, sum(r[3] for r in rows[s:e]) / 1e3))
step = rows[starts[-1]:]
agg = collections.OrderedDict()
for n, g, b, t in step:
    a = agg.setdefault((n, g, b), [0, 0.0])
    a[0] += 1
    a[1] += t
tot = sum(r[3] for r in step)
print("| kernel | grid | block | count | us | us each | share |")
print("|---|---|---|---|---|---|---|")
for (n, g, b), (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print("| %s | %s | %s | %d | %.1f | %.2f | %.1f%% |" % (n[:60], g, b, c, t / 1e3, t / c / 1e3,
                                                          100 * t / tot))
print("total %.1f us" % (tot / 1e3))
