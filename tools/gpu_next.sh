#!/usr/bin/env bash
# gpu_next.sh — the work still to run on a GPU in one device call (carry the
# stripped cinfer, kernel_prefill_attention, test_cuda_ops and test_cuda_model
# with their libraries: tools/pack_carry.sh), each step skipped when less
# than it needs is left of LIMIT seconds:
#   1. the CUDA model suite through the prefill launcher with
#      CINFER_PREFILL_PX=2 (a quarter of the softmax's exponentials on the FMA
#      pipe at hd 64; tinyqwen2-code is hd 64: its goldens through that path);
#   2. tools/gpu_prefill_diag.sh: v36-v38 (exp2 on the FMA pipe) beside v33 /
#      v23 and the production line, the production line with shuffled and
#      contiguous cache blocks, ncu on one launch of each target shape;
#   3. the lab's --quick under compute-sanitizer memcheck and racecheck.
# usage: tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560;
#   SAN_S: seconds kept for step 3, default 70)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
L=$B/kernel_prefill_attention
if step "prefill diag (no ncu)" 60; then
    NCU=0 REPS=1 LIMIT=$(($(left) - 40)) OUT=$out bash tools/gpu_prefill_diag.sh $B
fi
if step "production model test, CINFER_PREFILL_PX=2" 40; then
    RUN_T_DIR=/tmp run_t 40 test_cuda_model env CINFER_PREFILL_PX=2 CINFER_TEST_MODES=bf16 $B/test_cuda_model
fi
if step "lab --quick under sanitizers" 50; then
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 60 ] && tl=60
        LAB_VER=v33,v36,v37,v38,prod timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 $L --quick >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
    done
fi
if step "ncu" 60; then
    TIMINGS=0 NCU_CONTIG=0 LIMIT=$(left) OUT=$out bash tools/gpu_prefill_diag.sh $B
fi
echo "done at ${SECONDS} s"
