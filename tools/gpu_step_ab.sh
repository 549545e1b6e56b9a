#!/usr/bin/env bash
# gpu_step_ab.sh — one device call for the batch-1 step's two switches of
# 2026-12-06, both off by default until measured:
#   CINFER_QGEMV_MB=1     the 8-bit GEMV and INT4's fused one with several
#                         16-row blocks a CTA (one wave, the rolling loads
#                         running across a block's end; kernels/qmatmul.md)
#   CINFER_DEC_CLUSTER=1  the decode attention's splits merged in a
#                         thread-block cluster (kernels/decode_attention.md)
#   1. test_cuda_quant's GEMV bench (no model), FP8 one group a row (as the
#      FP8 per-channel checkpoints), n = 1, without and with MB, twice;
#   2. test_cuda_fused, test_cuda_quant, test_cuda_ops (each runs its new
#      path forced) while the Llama-3-8B shape and its FP8 / INT4 + head
#      checkpoints are made;
#   3. batch-1 decode of each checkpoint (Q, default "fp8 int4") under
#      VARIANTS (default: off, mb, clu), ROUNDS interleaved (gpu_ab_quant.sh).
# usage: tools/gpu_step_ab.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
q=${Q:-fp8 int4}
ckpts_bg $(ckpt_names "$q") # started now; gpu_ab_quant.sh's own call waits for this one
echo "== GEMV bench ($(date +%T))"
for r in 1 2; do
    for v in 0 1; do
        echo "-- MB $v"
        CINFER_QGEMV_MB=$v CINFER_TEST_GEMV_GROUP=0 CINFER_TEST_GEMV_ONLY="fp8" timeout 40 \
            $B/test_cuda_quant 2>&1 | grep -E "GEMV.*(auto|tc,)"
    done
done
Q=$q TESTS="test_cuda_fused test_cuda_quant test_cuda_ops" \
    VARIANTS="${VARIANTS:-off X=0; mb CINFER_QGEMV_MB=1; clu CINFER_DEC_CLUSTER=1}" \
    LIMIT=$(left) "$(dirname "$0")/gpu_ab_quant.sh" "$@"
