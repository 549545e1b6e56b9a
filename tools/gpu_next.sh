#!/usr/bin/env bash
# gpu_next.sh — the work still to run on a GPU in one device call (carry the
# stripped cinfer, kernel_prefill_attention, test_cuda_ops and test_cuda_model
# with their libraries: tools/pack_carry.sh), each step skipped when less
# than it needs is left of LIMIT seconds:
#   1. the prefill lab's v36-v38 (a share of the softmax's exponentials on the
#      FMA pipe) beside v33 / v23 and the production line, every lab check;
#   2. the CUDA model and op suites through the launcher with
#      CINFER_PREFILL_PX=2 (tinyqwen2-code is hd 64: its goldens through it);
#   3. the lab's --quick under compute-sanitizer memcheck and racecheck;
#   4. tools/gpu_prefill_diag.sh's block-order timings and ncu.
# usage: tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
L=$B/kernel_prefill_attention
if step "exp2 A/B" 60; then
    NCU=0 ORDER=0 LIMIT=$(left) OUT=$out bash tools/gpu_prefill_diag.sh $B
fi
if step "production tests, CINFER_PREFILL_PX=2" 60; then
    for t in test_cuda_model test_cuda_ops; do
        RUN_T_DIR=/tmp run_t 60 $t env CINFER_PREFILL_PX=2 CINFER_TEST_MODES=bf16 $B/$t
    done
fi
if step "lab --quick under sanitizers" 50; then
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 45 ] && tl=45
        LAB_VER=v33,v36,v37,v38,prod timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 $L --quick >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
    done
fi
if step "block order, ncu" 40; then
    TIMINGS=0 REPS=1 NCU_CONTIG=0 LIMIT=$(left) OUT=$out bash tools/gpu_prefill_diag.sh $B
fi
echo "done at ${SECONDS} s"
