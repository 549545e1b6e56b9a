#!/usr/bin/env bash
# gpu_gemm_tune.sh — one device call deciding whether cuBLASLt algorithm
# tuning (CINFER_GEMM_TUNE=1, cuda_gemm.c) becomes the default: the GPU
# suites with it on, then A/B timings interleaved in the same call on the
# Llama-3-8B shape (random bf16 weights made here, the real Llama-3
# tokenizer; nothing else runs on the host while they time):
#   1. test_cuda_model, test_engine (bf16) and test_plan_ahead (bf16) on CUDA
#      with CINFER_GEMM_TUNE=1;
#   2. `bench latency` batch 48, 256 in / 256 out: off, on, off, on;
#   3. serving 256±50 % in/out at 32 req/s (tools/gpu_serve_bench.sh): off, on;
#   4. offline 1000 x 256/256 (`bench throughput`): off, on.
# Each step is skipped when less than it needs is left of LIMIT seconds.
# usage: tools/gpu_gemm_tune.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
m=/tmp/cinfer-l8
model_bg llama-3-8b $m
if step "suites with CINFER_GEMM_TUNE=1" 120; then
    run_t 100 model env CINFER_GEMM_TUNE=1 $B/test_cuda_model
    run_t 100 engine env CINFER_GEMM_TUNE=1 CINFER_TEST_DEVICE=cuda CINFER_TEST_DTYPE=bfloat16 \
        $B/test_engine
    run_t 100 plan_ahead env CINFER_GEMM_TUNE=1 CINFER_TEST_DEVICE=cuda \
        CINFER_TEST_DTYPE=bfloat16 $B/test_plan_ahead
fi
model_wait $m
lat() { # lat TUNE
    timeout 120 env CINFER_GEMM_TUNE=$1 $B/cinfer bench latency -m $m --device cuda --batch-size 48 \
        --input-len 256 --output-len 256 --num-iters 3 --max-model-len 4096 2>&1 |
        grep -E "per output|decode tok/s|rror" | sed "s|^|B48 tune=$1 |"
}
if step "batch 48" 120; then
    for t in 0 1 0 1; do lat $t; done
fi
srv() { # srv TUNE
    echo "-- serve tune=$1"
    CINFER_GEMM_TUNE=$1 OUT=/tmp/srv_$1 MAIN_RATES=32 RANGE_RATIO=0.5 SWEEP=0 timeout 150 \
        bash tools/gpu_serve_bench.sh $B $m 2>&1 | grep -E "^\| 32|rror|did not"
}
if step "serving 32 req/s" 140; then
    srv 0
    srv 1
fi
thr() { # thr TUNE
    timeout 120 env CINFER_GEMM_TUNE=$1 $B/cinfer bench throughput -m $m --device cuda \
        --num-prompts 1000 --input-len 256 --output-len 256 2>&1 |
        grep -E "output tok/s|rror" | sed "s|^|offline tune=$1 |"
}
if step "offline 1000 x 256/256" 90; then
    thr 0
    [ "$(left)" -gt 45 ] && thr 1
fi
echo "done at ${SECONDS} s"
