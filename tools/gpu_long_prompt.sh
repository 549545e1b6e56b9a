#!/usr/bin/env bash
# gpu_long_prompt.sh — one device call: what the KV block size does to a long
# prompt (where prefill attention is most of the time: the kernel takes 16
# TMA boxes a 128-key tile at block 16, 8 at block 32), and where the time
# to first token goes when serving at 32 req/s.
#   1. Llama-3.1-8B shape (random bf16, 131072 positions, made here): one
#      32,000-token prompt then 64 tokens (`bench latency --batch-size 1
#      --input-len 32000 --output-len 64 --num-iters 1`), --block-size 16 and
#      32 interleaved, twice each: TTFT and decode time per token at 32k;
#   2. serving 256±50 % in/out at 32 req/s on the same checkpoint
#      (tools/gpu_serve_bench.sh), the client's TTFT beside the server's own
#      (its access log: ttft=, from the request's arrival to its first token
#      leaving the engine) and the engine's step counts (/metrics);
#   3. offline 1000 x 256/256 with async scheduling and with --plan-ahead.
# usage: tools/gpu_long_prompt.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
m=/tmp/cinfer-l31
model_bg llama-3.1-8b $m
model_wait $m
long() { # long BS
    timeout 120 $B/cinfer bench latency -m $m --device cuda --batch-size 1 --input-len 32000 \
        --output-len 64 --num-iters 1 --max-model-len 32768 --block-size $1 2>&1 |
        grep -E "TTFT|per output|rror" | sed "s|^|32k bs$1 |"
}
if step "32k prompt, block size 16 / 32" 120; then
    for b in 16 32 16 32; do
        [ "$(left)" -gt 40 ] && long $b
    done
fi
if step "serving 32 req/s" 90; then
    OUT=/tmp/srv MAIN_RATES=32 RANGE_RATIO=0.5 SWEEP=0 timeout 150 \
        bash tools/gpu_serve_bench.sh $B $m 2>&1 | grep -E "^\| 32|rror|did not"
    # the server's own TTFT of the measured requests (the last 640 in its log)
    grep -o "ttft=[0-9.]*ms" /tmp/srv/server.log | tail -640 | tr -dc '0-9.\n' | sort -n |
        awk '{a[NR]=$1} END {if (NR) printf "server-side TTFT (%d requests): p50 %.1f ms, p90 %.1f ms, p99 %.1f ms\n", NR, a[int(NR*0.5)+1], a[int(NR*0.9)+1], a[int(NR*0.99)+1]}'
fi
thr() {
    timeout 100 $B/cinfer bench throughput -m $m --device cuda --num-prompts 1000 \
        --input-len 256 --output-len 256 --max-model-len 4096 "$@" 2>&1 |
        grep -E "output tok/s|rror" | sed "s|^|offline $* |"
}
if step "offline, async / plan-ahead" 80; then
    thr --async-scheduling
    [ "$(left)" -gt 40 ] && thr --plan-ahead
fi
echo "done at ${SECONDS} s"
