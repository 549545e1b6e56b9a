#!/usr/bin/env bash
# gpu_prefill_diag.sh — questions to the prefill attention kernel in one call:
# the lab's versions DIAG_VER (comma-separated name substrings, default
# "prod,v23,v33") with every lab check; the production line with the cache
# blocks shuffled (as the lab always ran) and in order (LAB_CONTIGUOUS=1: a
# fresh prefill from an unfragmented free list); ncu (--clock-control none)
# on one launch of each target shape: speed of light, memory, warp states.
# (Run on an H100 on 2026-12-06: the block order changes nothing; block 16
# loses in the pipeline, not in DRAM traffic: docs/kernels/prefill_attention.md.)
# usage: tools/gpu_prefill_diag.sh BIN_DIR   (LIMIT, default 300; OUT for the
#   ncu reports, default /tmp; REPS: rounds of the block-order timings, default
#   2; NCU_CONTIG: the block orders ncu sees, default "0 1"; NCU=0: no ncu;
#   TIMINGS=0: no version timings, ORDER=0: no block-order timings)
set -uo pipefail
L=$(cd "${1:?BIN_DIR}" && pwd)/kernel_prefill_attention
limit=${LIMIT:-300}
out=${OUT:-/tmp}
left() { echo $((limit - SECONDS)); }
if [ "${TIMINGS:-1}" = 1 ]; then
    echo "== lab versions ${DIAG_VER:=prod,v23,v33} (every check)"
    LAB_VER=$DIAG_VER timeout 150 $L 2>&1 | grep -E "^==|^(prod|v[0-9])|failures" |
        grep -v "skipped" | cut -c1-100
fi
if [ "${ORDER:-1}" = 1 ]; then
    echo "== timings, production launcher, shuffled then contiguous blocks"
    for rep in $(seq 1 ${REPS:-2}); do
        for c in 0 1; do
            LAB_CASE="target,8 x 4096" LAB_CONTIGUOUS=$c LAB_VER=prod timeout 120 $L 2>&1 |
                awk -v c=$c '/^== /{h=substr($0, 4, 40)} /^prod/ && $4 != "-" {print "contig=" c " | " h " | " $4 " ms " $5 " TFLOP/s"}'
        done
    done
fi
[ "${NCU:-1}" = 1 ] || exit 0
command -v ncu >/dev/null || { echo "no ncu"; exit 0; }
metrics=gpu__time_duration.sum
metrics+=,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
metrics+=,lts__t_sector_hit_rate.pct
metrics+=',regex:smsp__warp_issue_stalled_.*_per_warp_active\.pct'
metrics+=',regex:sm__pipe_tensor.*cycles_active\.avg\.pct_of_peak_sustained_active'
for spec in "target: 8 x 4096 prefill:t16" "block size 32:t32" \
    "hd64 (H32:h64"; do
    c=${spec%:*}
    tag=${spec##*:}
    for contig in ${NCU_CONTIG:-0 1}; do
        [ "$(left)" -lt 40 ] && { echo "ncu $tag: skipped ($(left) s left)"; continue; }
        [ $contig = 1 ] && [ $tag = h64 ] && continue
        LAB_CASE="$c" LAB_VER=prod LAB_CONTIGUOUS=$contig timeout 90 ncu --clock-control none \
            -k regex:wst_kernel --launch-skip 2 --launch-count 1 \
            --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
            --section SchedulerStats --metrics "$metrics" \
            $L >$out/ncu_${tag}_c$contig.txt 2>&1
        echo "ncu $tag contig=$contig rc=$?"
        grep -E "pipe_tensor|dram__bytes_read|dram__throughput|hit_rate|gpu__time|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Hit|Issued Warp|No Eligible" \
            $out/ncu_${tag}_c$contig.txt | head -14
        # the stall reasons above 2 % of a warp's active cycles, largest first
        grep -E "warp_issue_stalled_.*pct" $out/ncu_${tag}_c$contig.txt |
            awk '$NF + 0 >= 2 {print $NF, $1}' | sort -rn | head -10
    done
done
echo "done at ${SECONDS} s"
