#!/usr/bin/env bash
# gpu_next.sh — the work still to run on a GPU in one device call
# (carry the stripped cinfer, kernel_prefill_attention, test_cuda_ops and
# test_cuda_model with their libraries, and the Llama-3 tokenizer), each
# step skipped when less than it needs is left of LIMIT seconds; the
# Llama-3-8B random checkpoint of step 3 is written in the background from
# the start:
#   1. the prefill attention lab (checks, timings: v23 / v33 / v34 / v35 /
#      prod) and SDPA at hd 128 and 64 in the same call;
#   2. production (three warpgroups with the ILP softmax at hd 64 since the
#      nineteenth session): test_cuda_ops (bf16) and test_cuda_model
#      (tinyqwen2-code is hd 64: its goldens through that path), and the
#      lab's prod lines with the old two (CINFER_PREFILL_NC3=0);
#   3. tools/gpu_prefill_first.sh: serving at RATES (default 32 req/s and
#      all at once) with the default mixed steps against --prefill-first;
#   4. the lab's --quick under compute-sanitizer memcheck and racecheck (the
#      three-warpgroup ring of v33-v35 is new).
# usage: tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560;
#   PF=0: no step 3, no checkpoint)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
L=$B/kernel_prefill_attention
m=/tmp/cinfer-l8
[ "${PF:-1}" = 1 ] && model_bg llama-3-8b $m
if step "lab" 150; then
    timeout 200 $L >$out/lab.txt 2>&1
    echo "lab rc=$?"
    grep -E "^==|v23|v3[345]|prod|FAIL|failures" $out/lab.txt | head -90
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -3
fi
if step "production tests" 120; then
    for t in test_cuda_ops test_cuda_model; do
        [ -x $B/$t ] && RUN_T_DIR=/tmp run_t 150 $t env CINFER_TEST_MODES=bf16 $B/$t
    done
fi
if step "lab prod with NC3=0" 330; then
    CINFER_PREFILL_NC3=0 timeout 150 $L 2>&1 | grep -E "^==.*hd64|prod|failures" | head -20
fi
if [ "${PF:-1}" = 1 ] && step "prefill first" 150; then
    model_wait $m
    LIMIT=$(($(left) - 60)) bash tools/gpu_prefill_first.sh $B "$T"
fi
if step "lab --quick under sanitizers" 90; then
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 120 ] && tl=120
        timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 $L --quick >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
    done
fi
echo "done at ${SECONDS} s"
