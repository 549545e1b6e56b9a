#!/usr/bin/env bash
# gpu_profile_decode.sh — per-kernel profile of one batch-1 decode step (issue 14): ncu
# (--clock-control none --cache-control none, durations only) over a short eager
# `bench latency`, then tools/ncu_step.py on the last decode step.
# usage: tools/gpu_profile_decode.sh BIN_DIR MODEL_DIR [OUT_CSV] [engine options]
set -uo pipefail
bin=$(cd "${1:?BIN_DIR}" && pwd)
m=${2:?MODEL_DIR}
out=${3:-/tmp/ncu_step.csv}
shift $(($# < 3 ? $# : 3))
command -v ncu >/dev/null || { echo "no ncu on this machine"; exit 1; }
ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
    --log-file "$out" "$bin/cinfer" bench latency -m "$m" --device cuda --batch-size 1 \
    --input-len 128 --output-len 3 --num-iters 1 --num-iters-warmup 0 --max-model-len 4096 \
    --enforce-eager "$@" >/dev/null 2>&1
python3 "$(dirname "$0")/ncu_step.py" "$out"
