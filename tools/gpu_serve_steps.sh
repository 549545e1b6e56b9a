#!/usr/bin/env bash
# gpu_serve_steps.sh — where a serving step's time goes (issue 14's TTFT /
# ITL at 32 req/s), one device call:
#   1. cuBLASLt's layer GEMMs of the Llama-3-8B shape at mixed-step and
#      decode token counts (bench_cuda_gemm), the
#      heuristic's first algorithm against the fastest of 8 timed
#      (CINFER_GEMM_TUNE=2): what tuning eager plans would buy;
#   2. tools/gpu_prefill_first.sh at 32 req/s: default mixed steps and
#      --prefill-first, each with its step table (/metrics before and after:
#      steps by kind, the engine's wait for the device per graph / eager
#      step, host phases per step).
# usage: tools/gpu_serve_steps.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
B=$(cd "${1:?BIN_DIR}" && pwd)
T=${2:?llama3 tokenizer dir}
limit=${LIMIT:-560}
echo "== GEMMs ($(date +%T))"
for t in 0 2; do
    CINFER_GEMM_TUNE=$t timeout 90 $B/bench_cuda_gemm 2>&1
done
RATES=32 LIMIT=$((limit - SECONDS)) "$(dirname "$0")/gpu_prefill_first.sh" "$B" "$T"
