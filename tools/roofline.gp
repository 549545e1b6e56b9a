# roofline.gp — log-log roofline of the measured kernels (H100 80GB HBM3):
#   gnuplot -e "tsv='docs/kernels/roofline.tsv'; png='docs/img/roofline.png'" tools/roofline.gp
# (tools/roofline.sh fills the derived columns first). Columns: 3 flops,
# 6 label, 7-8 label offset factors, 10 ai (flop/byte), 11 achieved GFLOP/s.
# Ceilings: 3.0 TB/s measured device copy, 787 TFLOP/s bf16 dense.
if (!exists("tsv")) tsv = 'docs/kernels/roofline.tsv'
if (!exists("png")) png = 'docs/img/roofline.png'
bw = 3000.0      # GB/s
peak = 787000.0  # GFLOP/s
roof(x) = x * bw < peak ? x * bw : peak
set terminal pngcairo size 1280,860 font ",11" noenhanced
set output png
set datafile separator "\t"
set datafile commentschars "#"
set logscale xy
set xrange [0.1:8192]
set yrange [1:3e6]
set format y "%.0e"
set format x "%g"
set grid
set key bottom right
set xlabel "arithmetic intensity (flop per byte of HBM traffic)"
set ylabel "achieved GFLOP/s"
set title "cinfer CUDA kernels on an H100 80GB HBM3 (BF16; one point per measured call shape)"
set label 1 "HBM 3.0 TB/s" at 12, 12 * bw * 1.9 rotate by 26 textcolor rgb "#555555"
set label 2 sprintf("bf16 tensor cores %.0f TFLOP/s", peak / 1000) at 400, peak * 1.35 textcolor rgb "#555555"
set samples 2000
plot roof(x) with lines lw 2 lc rgb "black" title "roofline: min(3.0 TB/s x AI, 787 TFLOP/s)", \
     tsv using ($3 > 0 ? $10 : NaN):11 with points pt 7 ps 1.6 lc rgb "#1f77b4" title "measured (production kernel; '(lab)': lab-only candidate)", \
     tsv using ($3 > 0 && $7 >= 1 ? $10 * $7 : NaN):($11 * $8):(strcol(6) eq "-" ? "" : strcol(6)) with labels left notitle, \
     tsv using ($3 > 0 && $7 < 1 ? $10 * $7 : NaN):($11 * $8):(strcol(6) eq "-" ? "" : strcol(6)) with labels right notitle
