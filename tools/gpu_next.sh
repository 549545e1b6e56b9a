#!/usr/bin/env bash
# gpu_next.sh — the prefill attention work for one device call (carry the
# stripped cinfer, kernel_prefill_attention, test_cuda_ops and test_cuda_model
# with their libraries: tools/pack_carry.sh), each step skipped when less
# than it needs is left of LIMIT seconds:
#   1. the lab's target shapes (production, v23 / v33, v40) beside PyTorch
#      SDPA (cuDNN) at hd 128 and 64 (the whole lab output in $OUT/lab.txt);
#   2. the CUDA op and model suites through the production launcher (two
#      producer warps at hd 128 since the twenty-first session), then with
#      CINFER_PREFILL_SPLITP=0;
#   3. serving (Llama-3-8B shape, 256 ± 50 % in / out at 32 req/s and all
#      400 at once, the server's own TTFT) and offline 1000 x 256 / 256,
#      each with the default prefill and with CINFER_PREFILL_SPLITP=0;
#   4. the lab's --quick under compute-sanitizer memcheck and racecheck.
# usage: tools/gpu_next.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
L=$B/kernel_prefill_attention
m=/tmp/cinfer-l8
model_bg llama-3-8b $m
if step "lab" 120; then
    LAB_CASE="ragged,target,8 x 4096" LAB_VER=prod,v23,v33,v40 timeout 150 $L >$out/lab.txt 2>&1
    echo "lab rc=$?"
    grep -E "^==|^(prod|v[0-9])|FAIL|failures" $out/lab.txt | grep -v skipped | cut -c1-100
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -3
fi
if step "production tests" 120; then
    for sp in 1 0; do
        for t in test_cuda_ops test_cuda_model; do
            RUN_T_DIR=/tmp run_t 120 "$t SPLITP=$sp" env CINFER_PREFILL_SPLITP=$sp \
                CINFER_TEST_MODES=bf16 $B/$t
        done
        [ "$(left)" -gt 300 ] || break
    done
fi
model_wait $m
srv() { # srv LABEL SPLITP
    step "serving, $1" 100 || return
    CINFER_PREFILL_SPLITP=$2 OUT=/tmp/srv_$1 MAIN_RATES="32 inf" RANGE_RATIO=0.5 SWEEP=0 \
        timeout 170 bash tools/gpu_serve_bench.sh $B $m 2>&1 | grep -E "^\| (32|inf)|rror|did not"
    grep -o "ttft=[0-9.]*ms" /tmp/srv_$1/server.log | sed -n '17,656p' | tr -dc '0-9.\n' |
        sort -n | awk '{a[NR]=$1} END {if (NR) printf "server-side TTFT at 32 req/s (%d): p50 %.1f, p90 %.1f, p99 %.1f ms\n", NR, a[int(NR*0.5)+1], a[int(NR*0.9)+1], a[int(NR*0.99)+1]}'
}
thr() { # thr LABEL SPLITP
    step "offline, $1" 45 || return
    CINFER_PREFILL_SPLITP=$2 timeout 100 $B/cinfer bench throughput -m $m --device cuda \
        --num-prompts 1000 --input-len 256 --output-len 256 --max-model-len 4096 2>&1 |
        grep -E "output tok/s|rror"
}
srv splitp 1
thr splitp 1
thr one_producer 0
srv one_producer 0
if step "lab --quick under sanitizers" 90; then
    for tool in memcheck racecheck; do
        tl=$(($(left) / 2)); [ $tl -gt 120 ] && tl=120
        timeout $tl compute-sanitizer --tool $tool --error-exitcode 9 $L --quick >/tmp/lab_$tool.txt 2>&1
        echo "$tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|failures' /tmp/lab_$tool.txt | tr '\n' ' ')"
    done
fi
echo "done at ${SECONDS} s"
