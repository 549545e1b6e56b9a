#!/usr/bin/env bash
# gpu_wpb_ab.sh — one device call for the GEMVs' warp-owned-blocks builds (CINFER_QGEMV_WPB,
# docs/kernels/qmatmul.md; issue 10): the quantized CUDA tests (they run the builds wherever
# the shape allows), the gate|up GEMV benches with the switch off / 1 / 2, then batch-1 decode
# of the FP8 and INT4 checkpoints (with their LM heads) beside bf16
# (tools/gpu_ab_quant.sh, interleaved rounds; VARIANTS, default off / 1). On an H200 also
# issue 14's hd 64 prefill with the cache blocks shuffled and in order, and the decode-chain
# lab's stage chains (kernel_decode_chain, if in BIN_DIR).
# usage: tools/gpu_wpb_ab.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
here=$(dirname "$0")
. "$here/gpu_step.bash" "$@"
nvidia-smi --query-gpu=name --format=csv,noheader
ckpts_bg f8h g4h
echo "== checks ($(date +%T))"
run_t 120 cuda_fused $B/test_cuda_fused
run_t 120 cuda_quant env CINFER_TEST_NO_BENCH=1 $B/test_cuda_quant
echo "== gate|up GEMV benches, n = 1 (${SECONDS} s)"
for d in 0 1 2 0 1; do
    echo "wpb=$d: $(CINFER_QGEMV_WPB=$d CINFER_TEST_GEMV_ONLY='28672x4096 fused' timeout 30 \
        $B/test_cuda_quant 2>&1 | grep -E '^ +(fp8|int4)' |
        sed 's/GEMV 28672x4096 g128, n=1 gate|up (bf16, . copies)://' | tr -s ' ' | tr '\n' ' ')"
done
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    echo "== hd 64 prefill, blocks shuffled / in order (${SECONDS} s)"
    for c in 0 1; do
        LAB_CONTIGUOUS=$c LAB_CASE=hd64 LAB_VER=prod timeout 60 $B/kernel_prefill_attention 2>&1 |
            grep -E "^==|^prod" | cut -c1-90 | sed "s/^/in order=$c /"
    done
    # the decode-chain lab's stand-in stages at INT4 / FP8 / bf16 bytes: the ceiling a chain of
    # per-stage kernels reaches on this GPU (docs/kernels/decode_chain.md; H100 only so far)
    [ -x $B/kernel_decode_chain ] && timeout 150 $B/kernel_decode_chain 2>&1 |
        grep -E "^decode_chain|^copy|^\| (INT4|FP8|bf16|v4)|FAIL" | cut -c1-120
fi
echo "== batch 1 (${SECONDS} s)"
CHECKS=0 Q="fp8 int4" VARIANTS="${VARIANTS:-base X=0; wpb1 CINFER_QGEMV_WPB=1}" \
    LIMIT=$((limit - SECONDS)) "$here/gpu_ab_quant.sh" "$B" "$T"
