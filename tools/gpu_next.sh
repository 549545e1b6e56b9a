#!/usr/bin/env bash
# gpu_next.sh — the prefill attention work for one device call (carry the
# stripped cinfer, kernel_prefill_attention, test_cuda_ops and test_cuda_model
# with their libraries: tools/pack_carry.sh), each step skipped when less
# than it needs is left of LIMIT seconds:
#   1. the lab (every version's checks, the ragged cases also with the cache
#      blocks in order for v39's wide boxes; timings) beside PyTorch SDPA
#      (cuDNN) at hd 128 and 64;
#   2. v39 (a tile of consecutive cache blocks in one TMA box per 64
#      columns) and v40 (K and V from two producer warps) against v23 / v33
#      and the production line with the blocks in order (LAB_CONTIGUOUS=1),
#      and production with CINFER_PREFILL_WIDE=1 (step 1 times them all with
#      the blocks shuffled);
#   3. the CUDA op and model suites through the production launcher, then
#      with CINFER_PREFILL_WIDE=1 (test_cuda_ops' odd sequences hold runs of
#      consecutive blocks, its even ones shuffled blocks: both paths);
#   4. the lab's --quick under compute-sanitizer memcheck and racecheck
#      (blocks shuffled and in order);
#   5. tools/gpu_prefill_diag.sh's ncu of one launch of each target shape.
# usage: tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
L=$B/kernel_prefill_attention
if step "lab" 150; then
    timeout 200 $L >$out/lab.txt 2>&1
    echo "lab rc=$?"
    grep -E "^==|v23|v3[3-9]|prod|FAIL|failures" $out/lab.txt | grep -v skipped | head -90
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -3
fi
if step "wide boxes, blocks in order" 120; then
    for w in 0 1; do
        CINFER_PREFILL_WIDE=$w LAB_CONTIGUOUS=1 LAB_CASE="target,8 x 4096" LAB_VER=v23,v33,v39,v40,prod \
            timeout 120 $L 2>&1 | grep -E "^==|^(prod|v[0-9])" | grep -v skipped |
            sed "s/^prod/prod WIDE=$w/" | cut -c1-100
    done
fi
if step "production tests" 150; then
    for w in 0 1; do
        for t in test_cuda_ops test_cuda_model; do
            [ -x $B/$t ] && RUN_T_DIR=/tmp run_t 150 $t env CINFER_PREFILL_WIDE=$w CINFER_TEST_MODES=bf16 $B/$t
        done
    done
fi
if step "lab --quick under sanitizers" 90; then
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 120 ] && tl=120
        timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 $L --quick >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
    done
fi
if step "ncu" 60; then
    TIMINGS=0 ORDER=0 NCU_CONTIG="0 1" LIMIT=$(left) OUT=$out bash tools/gpu_prefill_diag.sh $B
fi
echo "done at ${SECONDS} s"
