#!/usr/bin/env bash
# gpu_gemm_buckets.sh — eager GEMM algorithms by token-count bucket
# (cuda_gemm.c, CINFER_GEMM_BUCKETS=1, opt-in) in one device call:
#   1. test_cuda_ops bf16 --quick with the buckets on (its bucket case
#      checks the timed algorithms against the CPU) and test_engine on CUDA;
#   2. the 8B layer GEMMs at mixed-step token counts (bench_cuda_gemm): the
#      heuristic's first (CINFER_GEMM_TUNE=0), the buckets, every plan timed (=2);
#   3. serving 256 ± 50 % at 32 req/s (gpu_prefill_first.sh's servers, each
#      with gpu_serve_bench.sh's step table): buckets on / off, mixed steps,
#      then the same with --prefill-first.
# usage: tools/gpu_gemm_buckets.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
B=$(cd "${1:?BIN_DIR}" && pwd)
T=${2:?llama3 tokenizer dir}
limit=${LIMIT:-560}
m=/tmp/cinfer-l8
[ -f $m/config.json ] || python3 tools/make_random_model.py --shape llama-3-8b --out $m \
    --tokenizer-dir "$T" >/tmp/mk.log 2>&1 &
echo "== checks ($(date +%T))"
CINFER_GEMM_BUCKETS=1 CINFER_TEST_MODES=bf16 CINFER_TEST_QUICK=1 timeout 150 $B/test_cuda_ops >/tmp/ops.log 2>&1
echo "test_cuda_ops bf16 quick: rc=$? $(grep -E 'passed' /tmp/ops.log | tail -1)"
grep -m8 -E "FAIL|CHECK" /tmp/ops.log
if [ -x $B/test_engine ]; then
    CINFER_GEMM_BUCKETS=1 CINFER_TEST_DEVICE=cuda timeout 150 $B/test_engine >/tmp/eng.log 2>&1
    echo "test_engine cuda: rc=$? $(grep -E 'passed' /tmp/eng.log | tail -1)"
fi
echo "== GEMMs ($(date +%T))"
for t in 0 1 2; do
    CINFER_GEMM_BUCKETS=1 CINFER_GEMM_TUNE=$t timeout 90 $B/bench_cuda_gemm 2>&1
done
wait
on=CINFER_GEMM_BUCKETS=1 off=CINFER_GEMM_BUCKETS=0 pf=--prefill-first
SERVERS="buckets $on; nobuckets $off; buckets_pf $on $pf; nobuckets_pf $off $pf" RATES=32 \
    LIMIT=$((limit - SECONDS)) "$(dirname "$0")/gpu_prefill_first.sh" "$B" "$T"
