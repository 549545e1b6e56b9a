#!/usr/bin/env bash
# gpu_quant_defer.sh — one device call for issue 10's FP8 batch-1 step: the
# 8-bit tensor-core GEMV's fusions (CINFER_FUSE_TC8: unset = all, the
# deferred RMSNorm with the qkv rope and gate|up SwiGLU epilogues; norm:
# without SwiGLU; 0: none, the kernels before them), on online FP8 and on an
# FP8 checkpoint with its LM head quantized too (compressed-tensors per
# channel, tools/quantize_checkpoint.py --lm-head), bf16 in the same call:
#   1. test_cuda_fused (its deferred pass), test_cuda_quant (no timings),
#      test_quant_model, test_cuda_model and test_engine (float32, bfloat16) on CUDA,
#      while the model is made and quantized;
#   2. `bench latency --batch-size 1 --input-len 128 --output-len 256
#      --num-iters 3 --max-graph-batch-size 1`, interleaved rounds (ROUNDS,
#      default 2; "norm" in the first only), and the greedy text's checksum
#      with and without the fusions.
# Q=int4: the same for INT4 GPTQ g128 with its LM head (the fused INT4
# kernel, cuda_qgemv_int4_fused.cu, and its tc2-shaped build for gate|up,
# CINFER_QFUSE_TC2=1) instead of FP8, and of the checks only
# test_cuda_fused and test_quant_model.
# usage: tools/gpu_quant_defer.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560; Q)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
m=$M8 d=$QD
q=${Q:-fp8}
if [ $q = int4 ]; then ck=$d/g4h; else ck=$d/f8h; fi
ckpts_bg ${ck##*/}
echo "== checks $(date +%T)"
run_t 120 cuda_fused $B/test_cuda_fused
grep -E "deferred|fused matmul vs" "$out/cuda_fused.log"
[ $q = int4 ] || run_t 150 cuda_quant env CINFER_TEST_NO_BENCH=1 $B/test_cuda_quant
[ -x $B/test_quant_model ] && run_t 150 quant_model env CINFER_TEST_DEVICE=cuda $B/test_quant_model
if [ $q != int4 ]; then
    [ -x $B/test_cuda_model ] && run_t 120 cuda_model $B/test_cuda_model
    for dt in float32 bfloat16; do
        [ -x $B/test_engine ] && run_t 150 engine_$dt env CINFER_TEST_DEVICE=cuda CINFER_TEST_DTYPE=$dt $B/test_engine
    done
fi
while [ ! -f $d/ALL ] && [ "$(left)" -gt 200 ]; do sleep 2; done
echo "model + $q checkpoint at ${SECONDS} s: $(tail -qn1 $d/mk.log $ck.log 2>/dev/null | tr '\n' ' ')"
txt() { # txt LABEL MODEL ENV... -- ARGS: greedy text's checksum
    local n=$1 mm=$2 e=()
    shift 2
    while [ "$1" != -- ]; do e+=("$1"); shift; done
    shift
    [ -f "$mm/config.json" ] && [ "$(left)" -gt 40 ] || return
    echo "$n text: $(timeout 60 env "${e[@]}" $B/cinfer generate -m $mm --device cuda \
        --prompt 'def fibonacci(n):' --max-tokens 48 --temperature 0 "$@" 2>/dev/null | md5sum)"
}
echo "== batch-1 decode ($(date +%T))"
for r in $(seq 1 ${ROUNDS:-2}); do
    lat1 bf16 $m X=0 --
    if [ $q != int4 ]; then
        lat1 "fp8 online, none" $m CINFER_FUSE_TC8=0 -- --quantization fp8
        [ $r = 1 ] && lat1 "fp8 online, norm" $m CINFER_FUSE_TC8=norm -- --quantization fp8
        lat1 "fp8 online, all" $m X=0 -- --quantization fp8
    fi
    lat1 "$q+head, none" $ck CINFER_FUSE_TC8=0 --
    [ $r = 1 ] && lat1 "$q+head, norm" $ck CINFER_FUSE_TC8=norm --
    lat1 "$q+head, all" $ck X=0 --
    [ $q = int4 ] && lat1 "$q+head, all, tc2 shape" $ck CINFER_QFUSE_TC2=1 --
done
txt "$q+head, none" $ck CINFER_FUSE_TC8=0 --
txt "$q+head, all" $ck X=0 --
echo "done at ${SECONDS} s"
