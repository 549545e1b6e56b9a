#!/usr/bin/env bash
# gpu_serve_timelines.sh — the serving-shaped steps' in-graph timelines (issue 14) in one short
# device call (~150 s): the Llama-3-8B shape (random bf16) unless made, then with a
# -DCINFER_TIMELINE=ON build (tools/gpu_timeline_decode.sh, tools/timeline_step.py):
#   1. a decode step at batch 48, contexts ~400 (32 req/s of 256 +- 50 % holds ~46 sequences):
#      where the ITL step's ~5.6 ms go beside its 3.8 ms of weights (H200);
#   2. a prompt's own eager step of 300 tokens (a --prefill-first TTFT step): its GEMMs (each
#      cuBLASLt call a row "ci_tl_gemm") against the small kernels and the gaps.
# Each timeline's CSV and table go to $OUT (default /tmp).
# usage: tools/gpu_serve_timelines.sh TIMELINE_BIN_DIR LLAMA3_TOKENIZER_DIR
set -uo pipefail
tb=$(cd "${1:?TIMELINE_BIN_DIR}" && pwd)
T=${2:?llama3 tokenizer dir}
out=${OUT:-/tmp}
m=/tmp/cinfer-l8
[ -f $m/config.json ] || python3 tools/make_random_model.py --shape llama-3-8b --out $m \
    --tokenizer-dir "$T" 2>&1 | tail -1
d=$(dirname "$0")
echo "== batch 48, input 384 ($(date +%T))"
BATCH=48 INPUT=384 timeout 150 $d/gpu_timeline_decode.sh $tb $m $out/t48.csv | tee $out/t48.txt
echo "== one eager step of 300 prompt tokens ($(date +%T))"
INPUT=300 OUTPUT=1 timeout 120 $d/gpu_timeline_decode.sh $tb $m $out/tp.csv | tee $out/tp.txt
