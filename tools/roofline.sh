#!/bin/sh
# roofline.sh — recompute the derived columns of the roofline table
# (ai = flops/bytes, achieved GFLOP/s and GB/s) and draw the chart:
#   tools/roofline.sh [docs/kernels/roofline.tsv [docs/img/roofline.png]]
set -eu
cd "$(dirname "$0")/.."
tsv=${1:-docs/kernels/roofline.tsv}
png=${2:-docs/img/roofline.png}
tmp=$(mktemp)
awk -F'\t' 'BEGIN { OFS = "\t" }
  /^#/ { print; next }
  {
    num = $3 ~ /^[0-9.eE+-]+$/ && $4 ~ /^[0-9.eE+-]+$/ && $5 ~ /^[0-9.eE+-]+$/
    if (num && $4 > 0 && $5 > 0) {
      $10 = sprintf("%.4g", $3 / $4); $11 = sprintf("%.4g", $3 / $5 / 1e9)
      $12 = sprintf("%.4g", $4 / $5 / 1e9)
    } else { $10 = "-"; $11 = "-"; $12 = "-" }
    print
  }' "$tsv" >"$tmp"
cat "$tmp" >"$tsv"
rm -f "$tmp"
gnuplot -e "tsv='$tsv'; png='$png'" tools/roofline.gp
echo "wrote $png"
