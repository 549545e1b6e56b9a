# plot_serve.gp — TTFT and TPOT (p50, p99) vs request rate from the TSV of
# tools/serve_sweep.sh:
#   gnuplot -e "tsv='OUT/sweep.tsv'; png='latency.png'; label='tinyqwen2-code, CPU'" tools/plot_serve.gp
# The x axis is categorical (one tick per swept rate, "inf" included), so a
# doubling sweep reads like a log axis.
if (!exists("tsv")) tsv = 'sweep.tsv'
if (!exists("png")) png = 'serve_latency.png'
if (!exists("label")) label = ''
set terminal pngcairo size 1200,480 font ",11" noenhanced
set output png
set datafile separator "\t"
set key autotitle columnhead top left
set grid
set logscale y
set xlabel "request rate (req/s, Poisson)"
set multiplot layout 1,2 title "cinfer bench serve: latency vs request rate".(label ne '' ? " — ".label : '')
set title "time to first token"
set ylabel "TTFT (ms)"
plot tsv using 0:6:xtic(1) with linespoints lw 2 pt 7 title "p50", \
     ''  using 0:7 with linespoints lw 2 pt 5 title "p99"
set title "time per output token"
set ylabel "TPOT (ms)"
plot tsv using 0:8:xtic(1) with linespoints lw 2 pt 7 title "p50", \
     ''  using 0:9 with linespoints lw 2 pt 5 title "p99"
unset multiplot
