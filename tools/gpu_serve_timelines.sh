#!/usr/bin/env bash
# gpu_serve_timelines.sh — the serving-shaped steps' in-graph timelines (issue 14) in one short
# device call (~150 s): the Llama-3-8B shape (random bf16) unless made, then with a
# -DCINFER_TIMELINE=ON build (tools/gpu_timeline_decode.sh, tools/timeline_step.py):
#   1. a decode step at batch 48, contexts ~400 (32 req/s of 256 +- 50 % holds ~46 sequences):
#      where the ITL step's ~5.6 ms go beside its 3.8 ms of weights (H200);
#   2. a prompt's own eager step of 300 tokens (a --prefill-first TTFT step): its GEMMs (each
#      cuBLASLt call a row "ci_tl_gemm") against the small kernels and the gaps.
# Each timeline's CSV and table go to $OUT (default /tmp).
# usage: tools/gpu_serve_timelines.sh TIMELINE_BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
d=$(dirname "$0")
. $d/gpu_step.bash "$@" # B: the timeline build's directory
model_bg llama-3-8b $M8
model_wait $M8
echo "== batch 48, input 384 ($(date +%T))"
# every prompt in one prefill step (48 x 384 tokens), so the 48 sequences decode in lockstep
# and the last forward is a batch-48 step (with the default budget of 8192 tokens the prompts
# took three steps and the last forward held only the 8 sequences that started last)
BATCH=48 INPUT=384 timeout 150 $d/gpu_timeline_decode.sh $B $M8 $out/t48.csv \
    --max-num-batched-tokens 18432 | tee $out/t48.txt
echo "== one eager step of 300 prompt tokens ($(date +%T))"
INPUT=300 OUTPUT=1 timeout 120 $d/gpu_timeline_decode.sh $B $M8 $out/tp.csv | tee $out/tp.txt
