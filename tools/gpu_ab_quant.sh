#!/usr/bin/env bash
# gpu_ab_quant.sh — one device call: the quantized batch-1 step under
# several settings (and, given OLD_CINFER, a baseline binary) side by side,
# after the quantized kernels' CUDA tests:
#   1. test_cuda_fused, test_cuda_quant (no timings; not with Q=int4),
#      test_quant_model on CUDA, while the Llama-3-8B shape is made and
#      quantized (Q: fp8 = FP8 per channel, int4 = INT4 GPTQ g128, each with
#      its LM head; default both);
#   2. `bench latency` batch 1 (gpu_step.bash's lat1), ROUNDS interleaved
#      rounds (default 2): bf16, then per checkpoint each of VARIANTS
#      ("LABEL ENV=V ...", separated by ";"; default "new X=0") and the
#      OLD binary (bf16 too).
# BF16_VARIANTS=1: bf16 under each of VARIANTS too. CHECKS=0 skips step 1's tests; TESTS="test_cuda_ops ..." runs those
# instead (each under run_t with CINFER_TEST_NO_BENCH=1, no arguments).
# usage: tools/gpu_ab_quant.sh BIN_DIR LLAMA3_TOKENIZER_DIR [OLD_CINFER]   (LIMIT, default 560)
#   e.g. Q=int4 VARIANTS="bf16dec X=0; f16dec CINFER_QFUSE_F16=1" tools/gpu_ab_quant.sh ...
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
old=${3:-}
q=${Q:-fp8 int4}
read -r -a ck <<<"$(ckpt_names "$q")"
ckpts_bg "${ck[@]}"
if [ "${CHECKS:-1}" = 1 ] && [ -n "${TESTS:-}" ]; then
    echo "== checks $(date +%T)"
    for t in $TESTS; do run_t 150 ${t#test_} env CINFER_TEST_NO_BENCH=1 $B/$t; done
elif [ "${CHECKS:-1}" = 1 ]; then
    echo "== checks $(date +%T)"
    run_t 150 cuda_fused $B/test_cuda_fused
    grep -E "deferred" "$out/cuda_fused.log"
    [ "$q" = int4 ] || run_t 150 cuda_quant env CINFER_TEST_NO_BENCH=1 $B/test_cuda_quant
    run_t 150 quant_model env CINFER_TEST_DEVICE=cuda $B/test_quant_model
fi
while [ ! -f $QD/ALL ] && [ "$(left)" -gt 200 ]; do sleep 2; done
echo "checkpoints at ${SECONDS} s: $(tail -qn1 $QD/*.log 2>/dev/null | tr '\n' ' ')"
lat_old() { # lat_old LABEL MODEL: lat1 with the OLD binary
    local nb=$B
    B=$(mktemp -d) && ln -s "$old" $B/cinfer
    lat1 "$1" "$2" X=0 --
    rm -rf $B
    B=$nb
}
IFS=';' read -r -a vs <<<"${VARIANTS:-new X=0}"
echo "== batch-1 decode ($(date +%T))"
for r in $(seq 1 ${ROUNDS:-2}); do
    if [ "${BF16_VARIANTS:-0}" = 1 ]; then # bf16 under each of VARIANTS too
        for v in "${vs[@]}"; do
            read -r -a a <<<"$v"
            lat1 "bf16 ${a[0]}" $M8 "${a[@]:1}" --
        done
    else
        lat1 bf16 $M8 X=0 --
    fi
    [ -n "$old" ] && lat_old "bf16 old" $M8
    for c in "${ck[@]}"; do
        for v in "${vs[@]}"; do
            read -r -a a <<<"$v"
            lat1 "$c ${a[0]}" $QD/$c "${a[@]:1}" --
        done
        [ -n "$old" ] && lat_old "$c old" $QD/$c
    done
done
echo "done at ${SECONDS} s"
