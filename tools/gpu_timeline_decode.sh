#!/usr/bin/env bash
# gpu_timeline_decode.sh — the in-graph kernel timeline of one batch-1 decode step (issues 10,
# 14): a -DCINFER_TIMELINE=ON build of cinfer runs `bench latency` (graphs and PDL on, as
# measured), writes its last forward's records (src/backend/cuda/timeline.cu) and
# tools/timeline_step.py groups them. Unlike gpu_profile_decode.sh (ncu: kernels one at a time,
# ~20 % above the real step), the times are the step's own.
# usage: tools/gpu_timeline_decode.sh TIMELINE_BIN_DIR MODEL_DIR [OUT_CSV] [engine options]
#   BATCH=48 INPUT=384: a serving-shaped step instead (issue 14's ITL: ~46 sequences at
#   32 req/s, contexts ~400), graphs up to the default sizes; OUTPUT=1: the last forward is
#   the prompt's own eager step (INPUT=300: a --prefill-first TTFT step; each cuBLASLt GEMM
#   is the row "ci_tl_gemm", grid x = its output rows / 1024 + 1)
set -uo pipefail
bin=$(cd "${1:?TIMELINE_BIN_DIR}" && pwd)
m=${2:?MODEL_DIR}
out=${3:-/tmp/timeline.csv}
shift $(($# < 3 ? $# : 3))
rm -f "$out"
bs=${BATCH:-1}
g=()
[ "$bs" = 1 ] && g=(--max-graph-batch-size 1)
CINFER_TIMELINE_OUT=$out "$bin/cinfer" bench latency -m "$m" --device cuda --batch-size "$bs" \
    --input-len "${INPUT:-128}" --output-len "${OUTPUT:-64}" --num-iters 1 --max-model-len 4096 "${g[@]}" \
    "$@" 2>&1 | grep -E "^decode tok/s|timeline|rror"
[ -s "$out" ] && python3 "$(dirname "$0")/timeline_step.py" "$out"
