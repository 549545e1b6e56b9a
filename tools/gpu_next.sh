#!/usr/bin/env bash
# gpu_next.sh — the prefill attention work for one device call (carry the
# stripped kernel_prefill_attention, test_cuda_ops and test_cuda_model with
# their libraries, tools/pack_carry.sh, and MORE_LABS: other builds of the
# lab, e.g. the branches wip/prefill-qinfo / -qsync / -qpost, packed as
# .carry/qinfo.txz / qsync.txz / qpost.txz), each step skipped when less
# than it needs is left of LIMIT seconds:
#   1. the lab's target shapes, production, v23 / v33 and v41 (8-byte
#      epilogue stores; LAB_VER chooses others), this build and each of
#      MORE_LABS in turn, REPS rounds (default 2), beside PyTorch SDPA
#      (cuDNN) at hd 128 / 64;
#   2. every lab check (ragged batches, blocks shuffled and in order), this
#      build and MORE_LABS;
#   3. the CUDA op and model suites through the production launcher;
#   4. each lab's --quick under compute-sanitizer memcheck and racecheck,
#      racecheck's reported line pairs counted.
# usage: MORE_LABS="PATH:LABEL ..." tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR
#   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
labs="$B/kernel_prefill_attention:main"
for x in ${MORE_LABS:-}; do
    [ -x "${x%%:*}" ] && labs+=" $x"
done
lab() { # lab BINARY LABEL
    LAB_CASE="target,8 x 4096" LAB_VER=${LAB_VER:-prod,v23,v33,v41} timeout 100 $1 2>&1 |
        grep -E "^==|^(prod|v[0-9])|FAIL" | grep -v skipped | sed -E "s/^(prod|v[0-9]+)/$2 \1/" | cut -c1-100
}
if step "lab timings: $labs" 150; then
    for rep in $(seq 1 ${REPS:-2}); do
        for x in $labs; do
            [ "$(left)" -gt 60 ] && lab ${x%%:*} ${x##*:}
        done
    done 2>&1 | tee $out/lab_times.txt
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -3 | tee -a $out/lab_times.txt
fi
for x in $labs; do
    step "lab checks, ${x##*:}" 40 || continue
    LAB_CASE=ragged timeout 100 ${x%%:*} >/tmp/checks_${x##*:}.txt 2>&1
    echo "rc=$? $(grep -cE 'FAIL' /tmp/checks_${x##*:}.txt) FAIL lines; $(grep -E 'failures' /tmp/checks_${x##*:}.txt)"
done
if step "production tests" 100; then
    for t in test_cuda_ops test_cuda_model; do
        [ -x $B/$t ] && RUN_T_DIR=/tmp run_t 120 $t env CINFER_TEST_MODES=bf16 $B/$t
    done
fi
for x in $labs; do
    step "${x##*:} --quick under sanitizers" 50 || continue
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 100 ] && tl=100
        timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 --print-limit 10000 ${x%%:*} --quick \
            >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
        # each reported pair of source lines once, with its count
        grep -E "Race reported|Potential .* hazard|Read access|Write access|Write Thread|Read Thread" /tmp/lab_$tool.txt |
            grep -o "[a-z_]*\.cuh*:[0-9]*" | paste - - | sort | uniq -c | sort -rn | head -8
        [ $tool = racecheck ] && head -c 100000 /tmp/lab_$tool.txt >$out/race_${x##*:}.txt
    done
done
echo "done at ${SECONDS} s"
