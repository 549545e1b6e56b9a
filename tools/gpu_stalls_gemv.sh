#!/usr/bin/env bash
# gpu_stalls_gemv.sh — where the FP8 batch-1 gate|up GEMV's warps wait (issue 10): the
# in-graph timeline has the fused gate|up (deferred norm, SwiGLU epilogue, multi-block)
# streaming 2.79 TB/s where the same kernel's LM head (plain, one block a CTA) and bf16's
# gate|up stream 3.10-3.12 (docs/kernels/qmatmul.md). ncu (--clock-control none) on one
# launch of each in an eager batch-1 decode of the Llama-3-8B shape's FP8 + head checkpoint:
# DRAM / L2 rates, the stall reasons above 2 % of a warp's cycles, then the hot SASS
# instructions (tools/sass_stalls.py on the source page).
# usage: tools/gpu_stalls_gemv.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, OUT as gpu_step.bash)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
command -v ncu >/dev/null || { echo "no ncu on this machine"; exit 0; }
ckpts_bg f8h
while [ ! -f $QD/ALL ] && [ "$(left)" -gt 60 ]; do sleep 2; done
[ -f $QD/f8h/config.json ] || { echo "no checkpoint"; exit 1; }
metrics=gpu__time_duration.sum
metrics+=,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
metrics+=,lts__t_sector_hit_rate.pct,sm__warps_active.avg.pct_of_peak_sustained_active
metrics+=',regex:smsp__warp_issue_stalled_.*_per_warp_active\.pct'
# the gate|up build (EPI 3, multi-block) and the LM head (f32 out), skipping the first
# decode step's launches (32 a step of the gate|up; the head once)
# (ncu's demangled names may spell template arguments "(int)3, (bool)1")
for spec in 'gateup:, (\(int\))?3, (\(bool\))?(true|1)>:40' 'head:float, (\(int\))?8,:1'; do
    IFS=: read -r tag pat skip <<<"$spec"
    step "ncu $tag" 60 || continue
    timeout 150 ncu --clock-control none --kernel-name-base demangled \
        -k "regex:qgemv_fp8tc_kernel<.*$pat" --launch-skip "$skip" --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section SchedulerStats --section SourceCounters --metrics "$metrics" \
        -o /tmp/ncu_$tag -f "$B/cinfer" bench latency -m $QD/f8h --device cuda --batch-size 1 \
        --input-len 128 --output-len 4 --num-iters 1 --num-iters-warmup 0 \
        --max-model-len 4096 --enforce-eager >/tmp/ncu_$tag.log 2>&1
    echo "ncu $tag rc=$?"
    grep -E "==PROF==|==ERROR==|==WARNING==" /tmp/ncu_$tag.log | head -5
    ncu -i /tmp/ncu_$tag.ncu-rep --page details >$out/ncu_$tag.txt 2>&1
    grep -E "dram__|hit_rate|gpu__time|Duration|Memory Throughput|Issued Warp|No Eligible|warps_active" \
        $out/ncu_$tag.txt | head -12
    grep -E "warp_issue_stalled_.*pct" $out/ncu_$tag.txt |
        awk '$NF + 0 >= 2 {print $NF, $1}' | sort -rn | head -10
    ncu -i /tmp/ncu_$tag.ncu-rep --page source --csv --print-source sass >/tmp/src_$tag.csv 2>/dev/null &&
        python3 "$(dirname "$0")/sass_stalls.py" /tmp/src_$tag.csv 12 | tee $out/stalls_$tag.txt | tail -16
done
echo "done at ${SECONDS} s"
