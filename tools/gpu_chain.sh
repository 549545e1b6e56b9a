#!/usr/bin/env bash
# gpu_chain.sh — the decode_chain kernel lab in one device call
# (bench/kernels/decode_chain.cu, docs/kernels/decode_chain.md): the whole
# run (its checks, then the stand-in chains at INT4 / FP8 / bf16 bytes and
# the INT4 GEMV chain, kernels against one persistent kernel), then its
# --quick run under compute-sanitizer memcheck and racecheck.
# usage: tools/gpu_chain.sh [LAB_BINARY]   (default build/kernel_decode_chain;
#        a stripped copy travels in .carry/, it needs only the driver)
set -uo pipefail
lab=${1:-build/kernel_decode_chain}
[ -x "$lab" ] || { echo "gpu_chain: no lab binary at $lab"; exit 1; }
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
timeout 180 "$lab"
echo "rc=$?"
for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool (--quick)"
    timeout 120 compute-sanitizer --tool $tool "$lab" --quick 2>&1 | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|check|FAIL|error" | head -20
done
