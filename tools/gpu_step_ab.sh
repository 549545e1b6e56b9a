#!/usr/bin/env bash
# gpu_step_ab.sh — one device call for the batch-1 step's switches (the
# defaults since the twenty-sixth session, 2026-12-06):
#   CINFER_QGEMV_MB       0 off, 1 the 8-bit GEMV and INT4's fused one with
#                         several 16-row blocks a CTA, 3 INT4's only, 4
#                         (default) INT4's and the 8-bit SwiGLU (gate|up)
#                         build (kernels/qmatmul.md)
#   CINFER_DEFER_BATCH    1 (default) the deferred norm's staging two vectors
#                         a thread at once, norm weights prefetched before
#                         the PDL wait; 0 one vector at a time (same values)
#   CINFER_DEC_CLUSTER    1 (default) the decode attention's splits merged in
#                         a thread-block cluster, 0 by their last CTA
#                         (kernels/decode_attention.md)
#   1. GEMV=1: test_cuda_quant's GEMV bench (no model), FP8 one group a row
#      (as the FP8 per-channel checkpoints), n = 1, MB 0 and 1, twice;
#   1b. FUSED=1 (default): test_cuda_quant's gate|up bench (the layer's
#      fused GEMV, deferred norm + SwiGLU epilogue, beside the plain GEMV of
#      the same weight; FP8 one scale a row, INT4 g128) under each of
#      FUSED_VARS (default: CINFER_DEFER_BATCH=0 and =1), twice;
#   2. while the Llama-3-8B shape and its FP8 / INT4 + head checkpoints are
#      made: DEC=1: test_cuda_ops, bf16, its decode attention bench with the
#      cluster off and on (its checks force both merges);
#   3. test_cuda_fused, test_cuda_quant (each runs the MB builds forced; the
#      fused suite both stagings);
#   4. batch-1 decode of each checkpoint (Q, default "fp8 int4") under
#      VARIANTS (default: new = the defaults, bat = CINFER_DEFER_BATCH=1),
#      and OLD_CINFER's binary when given, ROUNDS interleaved
#      (gpu_ab_quant.sh).
# usage: tools/gpu_step_ab.sh BIN_DIR LLAMA3_TOKENIZER_DIR [OLD_CINFER]   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
q=${Q:-fp8 int4}
ckpts_bg $(ckpt_names "$q") # started now; gpu_ab_quant.sh's own call waits for this one
if [ "${GEMV:-0}" = 1 ]; then
    echo "== GEMV bench ($(date +%T))"
    for r in 1 2; do
        for v in 0 1; do
            echo "-- MB $v"
            CINFER_QGEMV_MB=$v CINFER_TEST_GEMV_GROUP=0 CINFER_TEST_GEMV_ONLY="fp8" timeout 40 \
                $B/test_cuda_quant 2>&1 | grep -E "GEMV.*(auto|tc,)"
        done
    done
fi
if [ "${FUSED:-1}" = 1 ]; then # the layer's gate|up: fused (norm + SwiGLU) against plain
    echo "== gate|up bench, fused and plain ($(date +%T))"
    for r in 1 2; do
        for v in ${FUSED_VARS:-CINFER_DEFER_BATCH=0 CINFER_DEFER_BATCH=1}; do
            echo "-- $v"
            env $v CINFER_TEST_GEMV_ONLY=fused timeout 40 \
                $B/test_cuda_quant 2>&1 | grep -E "gate\|up|failed"
        done
    done
fi
if [ "${DEC:-0}" = 1 ]; then
    echo "== decode attention bench, bf16 ($(date +%T))"
    for c in 0 1; do # the suite's checks force each merge themselves
        echo "-- cluster $c"
        CINFER_DEC_CLUSTER=$c CINFER_TEST_MODES=bf16 timeout 150 $B/test_cuda_ops 2>&1 |
            grep -E "decode attention S=|passed"
    done
fi
Q=$q TESTS="${TESTS:-test_cuda_fused test_cuda_quant}" \
    VARIANTS="${VARIANTS:-new X=0; one CINFER_DEFER_BATCH=0}" \
    LIMIT=$(left) "$(dirname "$0")/gpu_ab_quant.sh" "$@"
