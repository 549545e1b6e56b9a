#!/usr/bin/env bash
# gpu_session.sh — one device call: binaries built on the CPU machine are
# carried as .carry/bin.tgz (stripped cinfer + CUDA tests, with the
# OpenBLAS/gfortran runtime they link), tokenizers as .carry/tok.tgz. Runs
#   1. tools/make_fixtures.py for the sliding-window fixtures (transformers
#      goldens; returned as $OUT/swa.tar);
#   2. tools/gpu_check.sh (CUDA tests incl. the SWA goldens, sanitizers,
#      generate parity, engine suite, faults, padded vocabulary);
#   3. tools/gpu_bench_context.sh (issue 9's benchmarks).
# Logs: $OUT/session.log (this), $OUT/check_logs.tgz. Steps: GPU_SESSION_STEPS
# (default "fixtures check bench").
set -uo pipefail
steps=${GPU_SESSION_STEPS:-fixtures check bench}
x=/tmp/carry
mkdir -p "$x" && tar xzf .carry/bin.tgz -C "$x" && tar xzf .carry/tok.tgz -C "$x" || exit 1
export LD_LIBRARY_PATH=$x/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CINFER_SOURCE_DIR=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
date -u
case " $steps " in *" fixtures "*)
    echo "== SWA fixtures (transformers)"
    t0=$(date +%s)
    PYTHONUNBUFFERED=1 timeout 240 python3 tools/make_fixtures.py --only mistral_swa,qwen2_swa \
        --out tests/data 2>&1 | tail -25
    tar cf "${OUT:-/tmp}/swa.tar" tests/data/mistral_swa tests/data/qwen2_swa
    echo "fixtures: $(($(date +%s) - t0)) s"
    ;;
esac
case " $steps " in *" check "*)
    echo "== gpu_check"
    OUT=/tmp/check_logs GPU_CHECK_RACECHECK=1 bash tools/gpu_check.sh "$x/bin" 2>&1 | tail -40
    tar czf "${OUT:-/tmp}/check_logs.tgz" -C /tmp check_logs
    ;;
esac
case " $steps " in *" bench "*)
    echo "== gpu_bench_context"
    bash tools/gpu_bench_context.sh "$x/bin" "$x/tok/llama3" "$x/tok/qwen3" 500
    ;;
esac
date -u
