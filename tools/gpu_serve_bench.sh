#!/usr/bin/env bash
# gpu_serve_bench.sh — online serving benchmark on a GPU machine: starts
# `cinfer serve --device cuda`, waits for /health, runs `cinfer bench serve`
# (random 256-token prompts, 256 output tokens, ignore_eos) at 4 and 16
# req/s, prints TTFT / TPOT p50 / p99, then a short latency-vs-rate sweep
# (tools/serve_sweep.sh) and, where gnuplot exists, its PNG. About 4-5 min
# for an 8B model on an H100.
#
#   tools/gpu_serve_bench.sh BIN_DIR MODEL_DIR [engine flags for cinfer serve...]
#   e.g. tools/gpu_serve_bench.sh .carry/x/build /tmp/llama-3-8b --kv-cache-tokens 400000
#
# JSON / TSV / PNG files go to $OUT (default a temp dir). Counts can be
# changed with N4 / N16 (prompts at 4 / 16 req/s), SWEEP_RATES, SWEEP_N; DEVICE=cpu
# runs the same on the CPU (a dry run of the script). MAIN_RATES replaces "4 16"
# (another rate r runs 20 r prompts, "inf" NINF = 400 at once), RANGE_RATIO draws
# lengths in len x [1 - R, 1 + R] (issue 14's targets: MAIN_RATES="32 inf"
# RANGE_RATIO=0.5 SWEEP=0), SWEEP=0 skips the sweep.
set -uo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0"
    exit 1
fi
bin=$(cd "$1" && pwd)
model=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
device=${DEVICE:-cuda} n4=${N4:-160} n16=${N16:-400} rates=${SWEEP_RATES:-"2 8 32 inf"} nsweep=${SWEEP_N:-64}
main_rates=${MAIN_RATES:-"4 16"} range=${RANGE_RATIO:-0}
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done

"$bin/cinfer" serve -m "$model" --device "$device" --host 127.0.0.1 --port 0 --max-waiting 1024 "$@" \
    >"$out/server.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; sleep 2; kill -KILL $pid 2>/dev/null' EXIT
port="" t0=$(date +%s)
while [ -z "$port" ] && [ $(($(date +%s) - t0)) -lt 300 ]; do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out/server.log")
    kill -0 $pid 2>/dev/null || break
    sleep 0.5
done
if [ -z "$port" ]; then
    cat "$out/server.log"
    echo "gpu_serve_bench.sh: server did not start" >&2
    exit 1
fi
health() { python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=5)" 2>/dev/null; }
until health; do
    [ $(($(date +%s) - t0)) -lt 300 ] || { echo "gpu_serve_bench.sh: /health never answered" >&2; exit 1; }
    sleep 0.5
done
echo "server up on port $port after $(($(date +%s) - t0)) s"

bench=("$bin/cinfer" bench serve --port "$port" -m "$model" --input-len 256 --output-len 256 --ignore-eos
    --range-ratio "$range")
"${bench[@]}" --num-prompts 16 --max-concurrency 16 >/dev/null 2>&1 # warm-up
metrics() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=5).read().decode())" >"$1" 2>/dev/null; }
jsons=()
for r in $main_rates; do
    case $r in 4) n=$n4 ;; 16) n=$n16 ;; inf) n=${NINF:-400} ;; *) n=$((r * 20)) ;; esac
    metrics "$out/metrics_${r}_0.txt"
    "${bench[@]}" --num-prompts "$n" --request-rate "$r" --json "$out/rate_$r.json" >/dev/null
    metrics "$out/metrics_${r}_1.txt"
    jsons+=("$out/rate_$r.json")
done

python3 - "${jsons[@]}" <<'PY'
import json, sys
print("| rate | requests | failed | req/s | output tok/s | TTFT p50 / p99 (ms) | TPOT p50 / p99 (ms) | ITL p50 / p99 (ms) | e2e p50 (s) |")
print("|---|---|---|---|---|---|---|---|---|")
for f in sys.argv[1:]:
    d = json.load(open(f))
    print("| %s | %d | %d | %.2f | %.0f | %.1f / %.1f | %.2f / %.2f | %.2f / %.2f | %.2f |" % (
        d["request_rate"], d["num_requests"], d["failed"], d["request_throughput"], d["output_throughput"],
        d["median_ttft_ms"], d["p99_ttft_ms"], d["median_tpot_ms"], d["p99_tpot_ms"],
        d["median_itl_ms"], d["p99_itl_ms"], d["median_e2el_ms"] / 1e3))
# the engine thread's time over each rate's run (/metrics before and after):
# forward is the wait for the device (async scheduling), graph steps are
# decode-only, eager steps carry prompt tokens
import os, re
def scrape(f):
    m = {}
    if not os.path.exists(f):
        return m
    for line in open(f):
        g = re.match(r'^(cinfer:[a-z_]+)\{([^}]*)\} (\S+)$', line)
        if g:
            p = re.search(r'phase="([a-z_]+)"', g.group(2))
            m[g.group(1) + (":" + p.group(1) if p else "")] = float(g.group(3))
    return m
rows = []
for f in sys.argv[1:]:
    r = os.path.basename(f)[5:-5]
    a, b = scrape(os.path.join(os.path.dirname(f), "metrics_%s_0.txt" % r)), scrape(os.path.join(os.path.dirname(f), "metrics_%s_1.txt" % r))
    d = lambda k: b.get(k, 0.0) - a.get(k, 0.0)
    gs, es = d("cinfer:graph_steps_total"), d("cinfer:eager_steps_total")
    if gs + es <= 0:
        continue
    ph = lambda p: d("cinfer:engine_time_seconds_total:" + p) * 1e3
    n = gs + es
    rows.append("| %s | %d / %d | %.2f | %.2f | %.3f / %.3f / %.3f | %.1f |" % (
        r, gs, es, ph("forward_graph") / max(gs, 1), ph("forward_eager") / max(es, 1),
        ph("schedule") / n, ph("sample") / n, ph("output") / n, d("cinfer:prompt_tokens_total") / max(es, 1)))
if rows:
    print()
    print("| rate | steps graph / eager | forward ms a graph step | forward ms an eager step | schedule / sample / output ms a step | prompt tokens an eager step |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
PY

[ "${SWEEP:-1}" = 0 ] && exit 0
echo "== sweep: rates $rates, $nsweep prompts each"
CINFER_BIN="$bin/cinfer" "$here/serve_sweep.sh" "$out/sweep" "$rates" --port "$port" -m "$model" \
    --num-prompts "$nsweep" --input-len 256 --output-len 256 --ignore-eos 2>"$out/sweep.log"
if command -v gnuplot >/dev/null; then
    gnuplot -e "tsv='$out/sweep/sweep.tsv'; png='$out/serve_latency_gpu.png'; label='$(basename "$model"), GPU'" \
        "$here/plot_serve.gp" && echo "plot: $out/serve_latency_gpu.png"
else
    echo "no gnuplot here: plot $out/sweep/sweep.tsv elsewhere with tools/plot_serve.gp"
fi
echo "files in $out"
