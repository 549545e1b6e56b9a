#!/usr/bin/env bash
# gpu_offline_ab.sh — issue 10's and 14's offline points in one device call:
# `cinfer bench throughput` 1000 x 256 in / 256 out (random prompts,
# ignore_eos) on the Llama-3-8B shape (random bf16 weights made here),
# ROUNDS interleaved rounds (default 2) of
#   bf16                       (issue 14: >= 16,000 output tok/s)
#   --quantization fp8         (online W8A8 per channel; issue 10: >= 1.35x bf16)
#   --quantization fp8 --kv-cache-dtype fp8   (the same with the FP8 KV cache)
# then the ratios of the medians. Carry the stripped cinfer and its libraries
# (tools/pack_carry.sh) and the Llama-3 tokenizer.
# usage: tools/gpu_offline_ab.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
m=/tmp/cinfer-l8
model_bg llama-3-8b $m
model_wait $m
declare -A res
run() { # run LABEL [flags]
    offline1 $m "$@"
    [ -n "$OFF_V" ] && res[$1]+="$OFF_V "
}
for r in $(seq 1 ${ROUNDS:-2}); do
    run bf16
    run fp8 --quantization fp8
    run fp8_kvfp8 --quantization fp8 --kv-cache-dtype fp8
done
med() { echo $1 | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
b=$(med "${res[bf16]:-}")
for l in bf16 fp8 fp8_kvfp8; do
    v=$(med "${res[$l]:-}")
    [ -n "$v" ] && [ -n "$b" ] && awk -v l=$l -v v=$v -v b=$b 'BEGIN {printf "| %s | %.1f | %.3fx |\n", l, v, v / b}'
done
echo "done at ${SECONDS} s"
