#!/usr/bin/env bash
# gpu_prefill_first.sh — one device call: serving with the default mixed
# steps against --prefill-first (docs/engine.md) on the Llama-3-8B shape
# (random bf16, made here; the real Llama-3 tokenizer): 256±50 % in/out at
# 32 req/s and all 400 at once (tools/gpu_serve_bench.sh, MAIN_RATES="32
# inf"), the client's latencies and the server's own TTFT (its access log)
# for the 32 req/s requests.
# SERVERS="LABEL ENV=V [serve flags]; ..." replaces the two servers (default
# "default X=1; prefill_first X=1 --prefill-first"), e.g. an A/B of a switch;
# ENV BIN=DIR runs that server from DIR's cinfer (an A/B of two binaries).
# usage: tools/gpu_prefill_first.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 400)
set -uo pipefail
B=$(cd "${1:?BIN_DIR}" && pwd)
T=${2:?llama3 tokenizer dir}
limit=${LIMIT:-400}
m=/tmp/cinfer-l8
[ -f $m/config.json ] || python3 tools/make_random_model.py --shape llama-3-8b --out $m \
    --tokenizer-dir "$T" 2>&1 | tail -1
srv() { # srv LABEL ENV=V [serve flags]
    local n=$1 e=$2 b=$B
    shift 2
    case $e in BIN=*) b=$(cd "${e#BIN=}" && pwd) e=X=1 ;; esac
    [ $((limit - SECONDS)) -gt 70 ] || { echo "-- $n: skipped"; return; }
    echo "-- serve $n ($(date +%T), ${SECONDS} s)"
    env $e OUT=/tmp/srv_$n MAIN_RATES="${RATES:-32 inf}" RANGE_RATIO=0.5 SWEEP=0 timeout $((limit - SECONDS < 200 ? limit - SECONDS : 200)) \
        bash tools/gpu_serve_bench.sh $b $m "$@" 2>&1 | grep -E "^\| (32|inf)|rror|did not"
    # the server's own TTFT of the 640 requests at 32 req/s (after the 16 of the warm-up)
    grep -o "ttft=[0-9.]*ms" /tmp/srv_$n/server.log | sed -n '17,656p' | tr -dc '0-9.\n' |
        sort -n | awk '{a[NR]=$1} END {if (NR) printf "server-side TTFT at 32 req/s (%d): p50 %.1f, p90 %.1f, p99 %.1f ms\n", NR, a[int(NR*0.5)+1], a[int(NR*0.9)+1], a[int(NR*0.99)+1]}'
}
IFS=';' read -r -a servers <<<"${SERVERS:-default X=1; prefill_first X=1 --prefill-first}"
for v in "${servers[@]}"; do
    srv $v
done
echo "done at ${SECONDS} s"
