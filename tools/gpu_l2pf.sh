#!/usr/bin/env bash
# gpu_l2pf.sh — one short device call: the prefetch op's A/B (CINFER_L2PF_MB,
# docs/kernels/qmatmul.md) at batch 1 on the quantized Llama-3-8B shape:
# test_cuda_fused while the checkpoints (Q: "fp8", "int4" or both; default
# fp8) are made, then `bench latency` batch 1 (gpu_step.bash's lat1) with
# the default against CINFER_L2PF_MB=N for each N of MB (default 16),
# ROUNDS interleaved rounds (default 2).
# usage: tools/gpu_l2pf.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
read -r -a ck <<<"$(ckpt_names "${Q:-fp8}")"
ckpts_bg "${ck[@]}"
run_t 120 cuda_fused env CINFER_TEST_NO_BENCH=1 $B/test_cuda_fused
while [ ! -f $QD/ALL ] && [ "$(left)" -gt 60 ]; do sleep 2; done
echo "checkpoints at ${SECONDS} s: $(tail -qn1 $QD/*.log 2>/dev/null | tr '\n' ' ')"
for r in $(seq "${ROUNDS:-2}"); do
    for c in "${ck[@]}"; do
        lat1 "$c new" $QD/$c X=0 --
        for mb in ${MB:-16}; do lat1 "$c pf$mb" $QD/$c CINFER_L2PF_MB=$mb --; done
    done
done
echo "done at ${SECONDS} s"
