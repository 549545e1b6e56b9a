#!/usr/bin/env python3
"""sass_stalls.py — the hot instructions of one kernel from ncu's source page.

usage: ncu -i REPORT --page source --csv --print-source sass > page.csv
       tools/sass_stalls.py page.csv [TOP]

Prints the instructions with the most warp-stall samples (share of all
samples), each with its largest stall reasons, then the samples summed by
opcode: where a kernel's warps wait, instruction by instruction."""
import csv
import sys
from collections import defaultdict


def num(v):
    try:
        return float(str(v).replace(",", ""))
    except ValueError:
        return 0.0


lines = [l for l in open(sys.argv[1]) if not l.startswith("==")]
# the page starts with a "Kernel Name" line; the table's header names "Address"
head = next((i for i, l in enumerate(lines) if l.startswith('"Address"')), 0)
rows = list(csv.DictReader(lines[head:]))
if not rows:
    sys.exit("no rows")
top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
cols = list(rows[0].keys())
allc = next((c for c in cols if c.startswith("Warp Stall Sampling (All")), None)
if allc is None:
    sys.exit("no 'Warp Stall Sampling (All Samples)' column; columns: %s" % cols)
srcc = next((c for c in cols if c in ("Source", "# Source")), cols[1])
reasons = [c for c in cols if c.startswith("stall_") and "(Not Issued)" not in c]
total = sum(num(r[allc]) for r in rows) or 1.0
print("%d instructions, %d samples; stall columns: %s" % (len(rows), total, ", ".join(reasons[:40])))
hot = sorted(range(len(rows)), key=lambda i: -num(rows[i][allc]))[:top]
for i in sorted(hot):
    r = rows[i]
    rs = sorted(((num(r[c]), c) for c in reasons), reverse=True)[:3]
    why = " ".join("%s %.0f%%" % (c.replace("stall_", ""), 100 * v / max(num(r[allc]), 1)) for v, c in rs if v > 0)
    print("%5d %5.2f%%  %-60s %s" % (i, 100 * num(r[allc]) / total, r[srcc].strip()[:60], why))
byop = defaultdict(float)
for r in rows:
    op = r[srcc].strip().split()
    op = [t for t in op if not t.startswith("@")]
    byop[op[0].split(".")[0] if op else "?"] += num(r[allc])
print("by opcode: " + ", ".join("%s %.1f%%" % (k, 100 * v / total) for k, v in sorted(byop.items(), key=lambda kv: -kv[1])[:16]))
