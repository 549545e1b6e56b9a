#!/usr/bin/env bash
# gpu_next.sh — the prefill attention work for one device call (carry the
# stripped kernel_prefill_attention, test_cuda_ops and test_cuda_model with
# their libraries, tools/pack_carry.sh, and OLD_LAB: the previous commit's
# lab), each step skipped when less than it needs is left of LIMIT seconds:
#   1. the lab's target shapes, production, v23 / v33 and v41 (8-byte
#      epilogue stores; LAB_VER chooses others), this build against
#      OLD_LAB REPS times (default 2), interleaved, beside PyTorch SDPA
#      (cuDNN) at hd 128 / 64;
#   2. every lab check (ragged batches, blocks shuffled and in order);
#   3. the CUDA op and model suites through the production launcher;
#   4. the lab's --quick under compute-sanitizer memcheck and racecheck
#      (OLD_SAN=1: OLD_LAB's too), racecheck's reported line pairs counted.
# OLD_LABEL names OLD_LAB's lines (default "old"; e.g. "qinfo" for the
# branch wip/prefill-qinfo's lab, .carry/qinfo.txz).
# usage: OLD_LAB=PATH tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
L=$B/kernel_prefill_attention
lab() { # lab BINARY LABEL
    LAB_CASE="target,8 x 4096" LAB_VER=${LAB_VER:-prod,v23,v33,v41} timeout 100 $1 2>&1 |
        grep -E "^==|^(prod|v[0-9])|FAIL" | grep -v skipped | sed -E "s/^(prod|v[0-9]+)/$2 \1/" | cut -c1-100
}
if step "lab, new and old" 150; then
    for rep in $(seq 1 ${REPS:-2}); do
        lab $L new
        [ -x "${OLD_LAB:-}" ] && lab $OLD_LAB ${OLD_LABEL:-old}
    done
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -3
fi
if step "lab checks" 60; then
    LAB_CASE=ragged timeout 100 $L >$out/lab_checks.txt 2>&1
    echo "lab checks rc=$? $(grep -cE 'FAIL' $out/lab_checks.txt) FAIL lines; $(grep -E 'failures' $out/lab_checks.txt)"
fi
if step "production tests" 100; then
    for t in test_cuda_ops test_cuda_model; do
        [ -x $B/$t ] && RUN_T_DIR=/tmp run_t 120 $t env CINFER_TEST_MODES=bf16 $B/$t
    done
fi
labs=$L
[ "${OLD_SAN:-0}" = 1 ] && [ -x "${OLD_LAB:-}" ] && labs="$L $OLD_LAB"
for L in $labs; do
if step "$(basename $L) --quick under sanitizers" 60; then
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 120 ] && tl=120
        timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 --print-limit 10000 $L --quick \
            >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
        # each reported pair of source lines once, with its count
        grep -E "Race reported|Potential .* hazard|Read access|Write access|Write Thread|Read Thread" /tmp/lab_$tool.txt |
            grep -o "[a-z_]*\.cuh*:[0-9]*" | paste - - | sort | uniq -c | sort -rn | head -12
        head -c 200000 /tmp/lab_$tool.txt >$out/$(basename $L)_$tool.txt
    done
fi
done
echo "done at ${SECONDS} s"
