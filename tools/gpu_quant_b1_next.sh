#!/usr/bin/env bash
# gpu_quant_b1_next.sh — one device call for what issue 10's batch-1 work has
# written and not yet run: the TMA-fed INT4 GEMV (CINFER_QGEMV=ring) and the
# 8-bit tensor-core GEMV's fused prologues (CINFER_FUSE_TC8=1), beside the
# defaults. The Llama-3-8B shape (random bf16, made here unless a warm
# machine kept it) quantized by tools/quantize_checkpoint.py to GPTQ INT4
# g128, with and without the LM head (--lm-head), while the checks run:
#   1. test_cuda_quant (no timings: E4M3 skinny, every GEMV kernel incl. ring)
#      and test_cuda_fused (the TC8 prologues among them);
#   2. once the quantizer is done (it loads the host): test_cuda_quant's
#      INT4 GEMV bench (CINFER_TEST_GEMV_ONLY=int: ring beside tc / tc2);
#   3. `bench latency --batch-size 1 --input-len 128 --output-len 256
#      --num-iters 3 --max-graph-batch-size 1`: bf16; INT4 auto, ring; INT4
#      with its LM head auto, ring; online fp8, with CINFER_FUSE_TC8=1.
# usage: tools/gpu_quant_b1_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
m=$M8 d=$QD
ckpts_bg "g4 --format gptq --group 128" "g4h --format gptq --group 128 --lm-head"
echo "== checks $(date +%T)"
run_t 150 cuda_quant env CINFER_TEST_NO_BENCH=1 $B/test_cuda_quant
grep -m4 "skinny" "$out/cuda_quant.log"
run_t 100 cuda_fused $B/test_cuda_fused
while [ ! -f $d/ALL ] && [ "$(left)" -gt 200 ]; do sleep 2; done
echo "quantized at ${SECONDS} s: $(tail -qn1 $d/g4.log $d/g4h.log 2>/dev/null | tr '\n' ' ')"
echo "== INT4 GEMV bench ($(date +%T))"
CINFER_TEST_GEMV_ONLY=int timeout 90 $B/test_cuda_quant 2>&1 | grep "GEMV.*bf16" | head -40
echo "== batch-1 decode ($(date +%T))"
lat1 bf16 $m X=0 --
lat1 "int4-g128 auto" $d/g4 X=0 --
lat1 "int4-g128 ring" $d/g4 CINFER_QGEMV=ring --
lat1 "int4-g128+head auto" $d/g4h X=0 --
lat1 "int4-g128+head ring" $d/g4h CINFER_QGEMV=ring --
lat1 "fp8 online" $m X=0 -- --quantization fp8
lat1 "fp8 online tc8" $m CINFER_FUSE_TC8=1 -- --quantization fp8
lat1 "int4-g128 auto (again)" $d/g4 X=0 --
lat1 "int4-g128 ring (again)" $d/g4 CINFER_QGEMV=ring --
echo "done at ${SECONDS} s"
