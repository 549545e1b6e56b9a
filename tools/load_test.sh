#!/usr/bin/env bash
# load_test.sh — issue 5's acceptance load: C concurrent streaming clients
# for S seconds against `cinfer serve` on the CPU backend, then checks zero
# failed requests, an idle engine with every KV block free, RSS flat after
# warm-up, a clean SIGINT exit (0) and, with --asan, no sanitizer report.
#
#   tools/load_test.sh [--asan] [--duration S] [--concurrency C] [--model DIR] [--aborts]
#
# --aborts: besides the C clients, one more client loops for the whole run
# opening streams (completions / chat, n = 1..3) and hanging up after a
# random 20-800 ms; they count as aborts, never as failures, and the checks
# below (idle engine, every KV block free, RSS flat) must still hold.
#
# The server runs from build-asan/cinfer with --asan (build it with
# `make asan` or `cmake -S . -B build-asan -DCINFER_SANITIZE=ON ...`), else
# build/cinfer; the client is always build/cinfer (`cinfer bench serve`).
# Results land in $OUT (default a temp dir): bench.json, rss.tsv,
# metrics.txt, server.log. Exit status 0 when every check passes.
set -uo pipefail
asan=0 duration=120 conc=64 model=models/tinyqwen2-code aborts=0
while [ $# -gt 0 ]; do
    case $1 in
    --asan) asan=1 ;;
    --duration) duration=$2; shift ;;
    --concurrency) conc=$2; shift ;;
    --model) model=$2; shift ;;
    --aborts) aborts=1 ;;
    *) sed -n '2,18p' "$0"; exit 1 ;;
    esac
    shift
done
client=build/cinfer
server=build/cinfer
[ $asan = 1 ] && server=build-asan/cinfer
for f in "$client" "$server"; do [ -x "$f" ] || { echo "load_test.sh: $f not built" >&2; exit 1; }; done
command -v curl >/dev/null || { echo "load_test.sh: needs curl" >&2; exit 1; }
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
# Sanitizer reports go to the server's stderr; leaks are checked at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

"$server" serve -m "$model" --host 127.0.0.1 --port 0 --threads 2 --max-waiting 256 \
    >"$out/server.log" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null' EXIT
port=""
for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out/server.log")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$out/server.log"; echo "load_test.sh: server did not start" >&2; exit 1; }
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$pid/status; }
metric() { grep "^$1" "$out/metrics.txt" | sed 's/.* //' | head -n 1; }
bench=("$client" bench serve --port "$port" -m "$model" --input-len 32 --output-len 64
    --ignore-eos --temperature 1)

echo "server pid $pid on port $port ($server); warm-up..." >&2
"${bench[@]}" --num-prompts "$conc" --max-concurrency "$conc" >"$out/warmup.txt" 2>&1
printf 't_s\trss_kb\n' >"$out/rss.tsv"
(
    t=0
    while kill -0 $pid 2>/dev/null; do
        printf '%s\t%s\n' $t "$(rss)" >>"$out/rss.tsv"
        sleep 10
        t=$((t + 10))
    done
) &
sampler=$!
aborter=""
if [ $aborts = 1 ]; then
    (
        end=$(($(date +%s) + duration)) i=0
        while [ "$(date +%s)" -lt "$end" ]; do
            i=$((i + 1))
            ms=$((20 + RANDOM % 780)) n=$((1 + i % 3))
            if [ $((i % 2)) = 0 ]; then
                path=/v1/chat/completions
                body="{\"messages\":[{\"role\":\"user\",\"content\":\"abort $i\"}],\"max_tokens\":200,\"n\":$n,\"stream\":true}"
            else
                path=/v1/completions
                body="{\"prompt\":\"def abort_$i(x):\",\"max_tokens\":200,\"n\":$n,\"stream\":true,\"ignore_eos\":true}"
            fi
            curl -s -N -m "$(printf '0.%03d' $ms)" -o /dev/null "http://127.0.0.1:$port$path" \
                -H 'Content-Type: application/json' -d "$body"
            echo x >>"$out/aborts.txt"
        done
    ) &
    aborter=$!
fi
echo "load: $conc concurrent streaming clients for $duration s$([ $aborts = 1 ] && echo ', plus aborting clients')..." >&2
"${bench[@]}" --num-prompts 1024 --max-concurrency "$conc" --duration "$duration" \
    --json "$out/bench.json"
bench_rc=$?
[ -n "$aborter" ] && wait $aborter
[ $aborts = 1 ] && echo "aborted streams: $(wc -l <"$out/aborts.txt")" >&2
kill $sampler 2>/dev/null
wait $sampler 2>/dev/null
printf '%s\t%s\n' end "$(rss)" >>"$out/rss.tsv"

# The engine may still be freeing the last requests: wait for idle.
for _ in $(seq 100); do
    curl -s -m 10 "http://127.0.0.1:$port/metrics" >"$out/metrics.txt"
    [ "$(metric 'cinfer:num_requests_running')" = 0 ] && [ "$(metric 'cinfer:kv_cache_usage_perc')" = 0 ] && break
    sleep 0.1
done
running=$(metric 'cinfer:num_requests_running') waiting=$(metric 'cinfer:num_requests_waiting')
kv=$(metric 'cinfer:kv_cache_usage_perc') blocks=$(metric 'cinfer:num_kv_blocks')

kill -INT $pid
rc=""
for _ in $(seq 600); do
    kill -0 $pid 2>/dev/null || { wait $pid; rc=$?; break; }
    sleep 0.1
done
trap - EXIT
[ -n "$rc" ] || { kill -KILL $pid; rc=killed; }
san=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer' "$out/server.log")

first=$(awk 'NR == 2 {print $2}' "$out/rss.tsv") last=$(awk 'END {print $2}' "$out/rss.tsv")
growth=$(awk -v a="$first" -v b="$last" 'BEGIN {printf "%.1f", a ? 100 * (b - a) / a : 0}')
echo "---- load_test.sh ($([ $asan = 1 ] && echo ASan+UBSan server || echo release server))"
jq -r '"requests \(.num_requests), completed \(.completed), failed \(.failed), \(.duration | . * 10 | round / 10) s, \(.request_throughput | . * 100 | round / 100) req/s, \(.output_throughput | round) output tok/s",
    "TTFT p50/p99 \(.median_ttft_ms | round)/\(.p99_ttft_ms | round) ms, TPOT p50/p99 \(.median_tpot_ms | . * 10 | round / 10)/\(.p99_tpot_ms | . * 10 | round / 10) ms"' "$out/bench.json"
echo "RSS kB every 10 s: $(awk 'NR > 1 {printf "%s ", $2}' "$out/rss.tsv")(growth after warm-up ${growth}%)"
echo "after: running $running, waiting $waiting, KV usage $kv of $blocks blocks"
echo "server exit status $rc on SIGINT; sanitizer reports: $san"
failed=$(jq .failed "$out/bench.json" 2>/dev/null)
ok=1
[ "$bench_rc" = 0 ] && [ "$failed" = 0 ] || { echo "FAIL: failed requests"; ok=0; }
[ "$running" = 0 ] && [ "$waiting" = 0 ] && [ "$kv" = 0 ] || { echo "FAIL: engine not idle / KV not free"; ok=0; }
awk -v g="$growth" 'BEGIN {exit !(g < 5)}' || { echo "FAIL: RSS grew ${growth}%"; ok=0; }
[ "$rc" = 0 ] || { echo "FAIL: server exit status $rc"; ok=0; }
[ "$san" = 0 ] || { echo "FAIL: sanitizer output in $out/server.log"; grep -m 5 -E 'ERROR|runtime error' "$out/server.log"; ok=0; }
echo "results in $out"
[ $ok = 1 ] && echo PASS
[ $ok = 1 ]
