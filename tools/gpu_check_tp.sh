#!/usr/bin/env bash
# gpu_check_tp.sh — tensor / pipeline parallelism on a machine of several
# GPUs (issue 15; NCCL, one GPU per rank): greedy tokens of tinyqwen2-code's
# golden prompts at TP 2 (and 4, and PP 2, and TP 2 x PP 2 where the GPUs
# allow) against TP 1, in F32 parity mode (CINFER_CUDA_DTYPE=float32) and in
# BF16; then, if a Llama-3-8B-shaped checkpoint is at $L8, batch-1 decode and
# offline throughput at TP 1 / 2 / 4 side by side. NVLink multicast stays off
# (NCCL_NVLS_ENABLE=0: the device tool's KINDS.md).
#
# usage: tools/gpu_check_tp.sh [BIN_DIR]   (run from the repository root; BIN_DIR holds cinfer)
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
export NCCL_NVLS_ENABLE=0
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64
m=models/tinyqwen2-code
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
echo "GPUs: $ngpu"
prompts=$(mktemp)
python3 -c "
import json; g = json.load(open('$m/golden_public.json'))
for p in g['prompts'][:8]: print(json.dumps({'prompt_token_ids': p['prompt_token_ids']}))
" > "$prompts" 2>/dev/null || jq -c '.prompts[:8][] | {prompt_token_ids}' "$m/golden_public.json" > "$prompts"

toks() { # toks DTYPE TP PP -> one line of greedy ids per prompt
    CINFER_CUDA_DTYPE=$1 timeout 300 "$bin/cinfer" generate -m "$m" --device cuda -tp "$2" -pp "$3" \
        --prompts-file "$prompts" -n 24 --temperature 0 --ignore-eos --json 2>"/tmp/tp_err_$1_$2_$3" |
        jq -c '.tokens' 2>/dev/null
}
for dt in float32 bfloat16; do
    ref=$(toks $dt 1 1)
    for tp_pp in "2 1" "4 1" "1 2" "2 2"; do
        set -- $tp_pp
        [ $(($1 * $2)) -le "$ngpu" ] || continue
        got=$(toks $dt "$1" "$2")
        if [ -n "$ref" ] && [ "$got" = "$ref" ]; then r=same; else r="DIFFERENT ($(tail -1 /tmp/tp_err_${dt}_$1_$2))"; fi
        echo "| $dt | TP $1 x PP $2 | greedy tokens vs TP 1: $r |"
    done
done

if [ -n "${L8:-}" ] && [ -d "$L8" ]; then
    for tp in 1 2 4; do
        [ "$tp" -le "$ngpu" ] || continue
        timeout 200 "$bin/cinfer" bench latency -m "$L8" --device cuda -tp $tp --batch-size 1 \
            --input-len 128 --output-len 256 --num-iters 3 > /tmp/tp_lat_$tp 2>&1
        timeout 300 "$bin/cinfer" bench throughput -m "$L8" --device cuda -tp $tp \
            --num-prompts 1000 --input-len 256 --output-len 256 > /tmp/tp_thr_$tp 2>&1
        echo "| TP $tp | $(grep -E '^decode tok/s' /tmp/tp_lat_$tp | tr -s ' ') | $(grep -E 'output tok/s' /tmp/tp_thr_$tp | tr -s ' ') |"
    done
fi
