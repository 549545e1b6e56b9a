#!/usr/bin/env bash
# gpu_gemm_splitk.sh — issue 14's TTFT lever, cuBLASLt with K split (cuda_gemm.c's
# CINFER_GEMM_TUNE_SPLITK), in one short device call (~2 min): the Llama-3-8B shape (random
# bf16), then one eager prompt step of N tokens (`bench latency` batch 1, output 2: TTFT) with
# cuBLASLt's heuristic pick (the default) against every eager plan timed at its own row count
# (CINFER_GEMM_TUNE=2) over the heuristic's candidates and their 2-, 3- and 4-way K splits; the
# first round prints each timed GEMM's first and best candidate (µs). Two interleaved rounds,
# N = 300 and 256. At ~300 rows the 128-row tiles of o and down (96) and q|k|v (144) fill
# 0.7-1.1 waves of 132 SMs (docs/benchmarks/gpu-2026-12-06-to-07.md, thirty-fourth session).
# First, while the checkpoint is made, test_cuda_ops' BF16 ops (quick) with the same knobs:
# every GEMM of <= 512 rows then runs the candidate its timing picked, split K included,
# against the CPU (BIN_DIR/test_cuda_ops; skipped when absent).
# usage: tools/gpu_gemm_splitk.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
model_bg llama-3-8b $M8
if [ -x $B/test_cuda_ops ] && step "test_cuda_ops bf16 with split-K picks" 200; then
    run_t 150 ops_splitk env CINFER_GEMM_TUNE=2 CINFER_GEMM_TUNE_SPLITK=1 CINFER_TEST_MODES=bf16 \
        CINFER_TEST_QUICK=1 CINFER_TEST_NO_BENCH=1 $B/test_cuda_ops
    grep -c "split-K candidates" $out/ops_splitk.log | sed 's/^/plans with split-K candidates: /'
fi
model_wait $M8
ttft() { # LABEL N ENV...
    local l=$1 n=$2
    shift 2
    [ "$(left)" -gt 30 ] || return
    timeout 60 env "$@" $B/cinfer bench latency -m $M8 --device cuda --batch-size 1 \
        --input-len $n --output-len 2 --num-iters 5 --max-model-len 4096 2>&1 |
        grep -E "^TTFT|rror|cuda: gemm .*best" | sed "s|^|$l $n |"
}
for r in 1 2; do
    for n in 300 256; do
        ttft heuristic $n X=0
        ttft splitk $n CINFER_GEMM_TUNE=2 CINFER_GEMM_TUNE_SPLITK=1 |
            if [ $r = 1 ]; then cat; else grep TTFT; fi
        ttft splitk-cold $n CINFER_GEMM_TUNE=2 CINFER_GEMM_TUNE_SPLITK=1 CINFER_GEMM_TUNE_COLD=1 |
            grep TTFT
    done
done
echo "done at ${SECONDS} s"
