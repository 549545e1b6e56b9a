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
B=$(cd "${1:?BIN_DIR}" && pwd)
T=${2:?llama3 tokenizer dir}
limit=${LIMIT:-560}
out=${OUT:-/tmp}
export CINFER_SOURCE_DIR=${CINFER_SOURCE_DIR:-$PWD}
m=/tmp/cinfer-l8
left() { echo $((limit - SECONDS)); }
(
    [ -f $m/config.json ] || python3 tools/make_random_model.py --shape llama-3-8b --out $m \
        --tokenizer-dir "$T" >/tmp/mk.log 2>&1
    touch /tmp/MK
) &
step() { # step NAME NEED_SECONDS: is there time for it?
    if [ "$(left)" -lt "$2" ]; then
        echo "== $1: skipped ($(left) s left)"
        return 1
    fi
    echo "== $1 ($(date +%T), ${SECONDS} s)"
}
run_t() { # run_t LIMIT LOGNAME CMD...: the test's verdict lines
    timeout "$1" "${@:3}" >"$out/$2.log" 2>&1
    echo "$2: rc=$? $(grep -E 'passed|SKIP|ERROR SUMMARY' "$out/$2.log" | tail -2 | tr '\n' ' ')"
    grep -m12 -E "CHECK failed|FAIL" "$out/$2.log"
}
if step "suites with CINFER_GEMM_TUNE=1" 120; then
    run_t 100 model env CINFER_GEMM_TUNE=1 $B/test_cuda_model
    run_t 100 engine env CINFER_GEMM_TUNE=1 CINFER_TEST_DEVICE=cuda CINFER_TEST_DTYPE=bfloat16 \
        $B/test_engine
    run_t 100 plan_ahead env CINFER_GEMM_TUNE=1 CINFER_TEST_DEVICE=cuda \
        CINFER_TEST_DTYPE=bfloat16 $B/test_plan_ahead
fi
while [ ! -f /tmp/MK ] && [ "$(left)" -gt 60 ]; do sleep 2; done
echo "model at ${SECONDS} s: $(tail -1 /tmp/mk.log 2>/dev/null)"
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
