#!/usr/bin/env bash
# gpu_skinny.sh — one device call for the skinny decode GEMM
# (cuda_gemm_skinny.cu, CINFER_SKINNY) and the plan-ahead step loop, in
# priority order, each step guarded by what is left of LIMIT seconds:
#   1. test_cuda_ops CINFER_TEST_MODES=skinny: parity of both tile heights
#      with the CPU, call counts, bit-identical reruns, then the GEMM times
#      of the Llama-3-8B projections at 16/48/64/128 rows (skinny 256-row,
#      128-row tiles, cuBLASLt);
#   2. `bench latency` at batch 48 on the Llama-3-8B shape (random bf16
#      weights made here, the real Llama-3 tokenizer): cuBLASLt, skinny,
#      skinny 256-row tiles;
#   3. serving, 256±50% in/out at 32 req/s (issue 14's target): default,
#      skinny up to 128 rows, --plan-ahead with CINFER_AHEAD_READY=1;
#   4. test_cuda_quant (no timings; its E4M3 skinny block), batch 48 with
#      online fp8 (W8A8 per token x channel) with and without skinny;
#   5. test_engine and test_plan_ahead on CUDA (skinny on, ready marks on);
#   6. compute-sanitizer memcheck of step 1 (CINFER_TEST_QUICK=1).
# usage: tools/gpu_skinny.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
m=/tmp/cinfer-l8
model_bg llama-3-8b $m
if step "skinny ops" 60; then
    run_t 150 skinny_ops env CINFER_TEST_MODES=skinny $B/test_cuda_ops
    grep -E "gemm n=|skinny|worst" "$out/skinny_ops.log" | head -80
fi
model_wait $m
lat() { # lat LABEL ENV... -- ARGS: batch-48 decode
    local n=$1 e=()
    shift
    while [ "$1" != -- ]; do e+=("$1"); shift; done
    shift
    timeout 120 env "${e[@]}" $B/cinfer bench latency -m $m --device cuda --batch-size 48 \
        --input-len 128 --output-len 256 --num-iters 2 --max-model-len 4096 "$@" 2>&1 |
        grep -E "per output|tok/s|rror|skinny" | sed "s|^|$n |"
}
if step "batch 48 (bf16)" 100; then
    lat "B48 cublaslt" X=0 --
    lat "B48 skinny" CINFER_SKINNY=64 --
    lat "B48 skinny256" CINFER_SKINNY=64 CINFER_SKINNY_ROWS=256 --
fi
srv() { # srv LABEL ENV... -- ARGS
    local n=$1 e=()
    shift
    while [ "$1" != -- ]; do e+=("$1"); shift; done
    shift
    echo "-- serve $n"
    env "${e[@]}" OUT=/tmp/srv_$n MAIN_RATES=32 RANGE_RATIO=0.5 SWEEP=0 timeout 150 \
        bash tools/gpu_serve_bench.sh $B $m "$@" 2>&1 | grep -E "^\| 32|rror|did not"
}
if step "serving 32 req/s" 180; then
    srv default X=0 --
    srv skinny128 CINFER_SKINNY=128 --
    [ "$(left)" -gt 150 ] && srv ahead_ready CINFER_AHEAD_READY=1 -- --plan-ahead
fi
if step "test_cuda_quant (E4M3 skinny)" 100; then
    run_t 120 cuda_quant env CINFER_TEST_NO_BENCH=1 $B/test_cuda_quant
    grep -E "skinny" "$out/cuda_quant.log" | head
fi
if step "batch 48 fp8 online" 70; then
    lat "B48 fp8" X=0 -- --quantization fp8
    lat "B48 fp8 skinny" CINFER_SKINNY=64 -- --quantization fp8
fi
if step "engine on CUDA" 100; then
    run_t 90 engine env CINFER_TEST_DEVICE=cuda CINFER_SKINNY=128 $B/test_engine
    run_t 90 plan_ahead env CINFER_TEST_DEVICE=cuda CINFER_AHEAD_READY=1 $B/test_plan_ahead
fi
if step "memcheck skinny ops" 60; then
    run_t $(($(left) - 10)) memcheck env CINFER_TEST_MODES=skinny CINFER_TEST_QUICK=1 \
        compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_cuda_ops
fi
echo "done at ${SECONDS} s"
