#!/usr/bin/env bash
# gpu_block_size.sh — one device call: the CUDA checks of this session's
# changes, then whether a KV block of 32 tokens should be the CUDA default
# (prefill attention issues half the TMA boxes a tile; fewer block-table
# reads in decode attention), in priority order, each step skipped when less
# than it needs is left of LIMIT seconds:
#   1. test_cuda_fused, test_cuda_model, test_engine (bf16), test_engine_faults,
#      test_spec (f32) on CUDA with the defaults (algorithm tuning on);
#   2. the prefill attention lab (BIN_DIR/kernel_prefill_attention: checks,
#      then block sizes 16 / 32 / 64 at hd 128, 16 / 32 at hd 64) and PyTorch
#      SDPA on the same shapes (bench/kernels/prefill_attention_sdpa.py);
#   3. Llama-3-8B shape (random bf16, made here), --block-size 16 against 32,
#      interleaved: batch 1 and batch 48 latency, offline 1000 x 256/256,
#      serving 256±50 % at 32 req/s;
#   4. compute-sanitizer memcheck of test_cuda_fused.
# usage: tools/gpu_block_size.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
RUN_T_DIR=/tmp # $OUT keeps room for the lab's table
m=/tmp/cinfer-l8
model_bg llama-3-8b $m
if step "checks" 150; then
    run_t 90 fused $B/test_cuda_fused
    run_t 100 model $B/test_cuda_model
    run_t 100 engine env CINFER_TEST_DEVICE=cuda CINFER_TEST_DTYPE=bfloat16 $B/test_engine
    run_t 150 faults env CINFER_TEST_DEVICE=cuda $B/test_engine_faults
    run_t 100 spec env CINFER_TEST_DEVICE=cuda $B/test_spec
fi
if step "prefill attention lab" 100; then
    timeout 150 $B/kernel_prefill_attention >$out/lab.txt 2>&1
    echo "lab rc=$?"
    grep -E "^==|target|hd64|prod |v23|FAIL|failures" $out/lab.txt | head -60
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -8
fi
model_wait $m
lat() { # lat BS BATCH
    timeout 100 $B/cinfer bench latency -m $m --device cuda --batch-size $2 --input-len 256 \
        --output-len 256 --num-iters 3 --max-model-len 4096 --block-size $1 2>&1 |
        grep -E "per output|TTFT|rror" | sed "s|^|bs$1 B$2 |"
}
if step "latency, block size 16 / 32" 120; then
    for b in 16 32 16 32; do lat $b 48; done
    for b in 16 32; do lat $b 1; done
fi
thr() {
    timeout 100 $B/cinfer bench throughput -m $m --device cuda --num-prompts 1000 \
        --input-len 256 --output-len 256 --block-size $1 2>&1 |
        grep -E "output tok/s|rror" | sed "s|^|offline bs$1 |"
}
if step "offline, block size 16 / 32" 80; then
    thr 16
    thr 32
fi
srv() {
    echo "-- serve bs$1"
    OUT=/tmp/srv_$1 MAIN_RATES=32 RANGE_RATIO=0.5 SWEEP=0 timeout 150 \
        bash tools/gpu_serve_bench.sh $B $m --block-size $1 2>&1 | grep -E "^\| 32|rror|did not"
}
if step "serving 32 req/s, block size 16 / 32" 140; then
    srv 16
    srv 32
fi
if step "memcheck test_cuda_fused" 60; then
    run_t $(($(left) - 10)) fused_memcheck compute-sanitizer --tool memcheck --error-exitcode 9 \
        $B/test_cuda_fused
fi
echo "done at ${SECONDS} s"
