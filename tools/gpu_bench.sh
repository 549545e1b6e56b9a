#!/usr/bin/env bash
# gpu_bench.sh — end-to-end benchmarks on a GPU machine with a random-weight
# Llama-3-8B-shaped checkpoint (bf16, made here by tools/make_random_model.py):
# `cinfer bench latency` at batch 1 (128-token prompt, 256 new tokens; with
# CUDA graphs and with --enforce-eager), 64 and 256, and offline throughput
# (random 256-token prompts, 256 new tokens, ignore_eos; the engine's default
# step sizes unless GPU_BENCH_FLAGS sets them). GPU_BENCH_HF=1 adds
# the Hugging Face transformers eager baseline (tools/hf_baseline.py);
# GPU_BENCH_FLAGS passes engine flags to the throughput run.
#
# usage: tools/gpu_bench.sh BIN_DIR TOKENIZER_DIR [NUM_PROMPTS]
#   TOKENIZER_DIR: a Llama-3 tokenizer (vocab 128256), e.g. shared/tokenizers/llama3
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
tokdir=${2:?tokenizer dir}
nprompts=${3:-1000}
GPU_BENCH_FLAGS=${GPU_BENCH_FLAGS:-}
model=${GPU_BENCH_MODEL:-/tmp/llama-3-8b}
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done
if [ ! -f "$model/config.json" ]; then
    t0=$(date +%s)
    python3 tools/make_random_model.py --shape llama-3-8b --out "$model" --tokenizer-dir "$tokdir" || exit 1
    echo "made $model in $(($(date +%s) - t0)) s"
fi
echo "== latency: batch 1, 128-token prompt, 256 new tokens (CUDA graphs, then --enforce-eager)"
for mode in graphs eager; do
    extra=""
    [ $mode = eager ] && extra=--enforce-eager
    timeout 300 "$bin/cinfer" bench latency -m "$model" --device cuda --batch-size 1 --input-len 128 \
        --output-len 256 --num-iters 3 --max-num-seqs 256 $extra 2>&1 | sed "s/^/[$mode] /"
done
echo "== latency: batch 64 and 256, 128 in / 256 out"
for b in 64 256; do
    timeout 300 "$bin/cinfer" bench latency -m "$model" --device cuda --batch-size $b --input-len 128 \
        --output-len 256 --num-iters 1 --max-num-seqs 256 2>&1 | grep -E "TTFT|per output|tok/s" | sed "s/^/[batch $b] /"
done
echo "== throughput: $nprompts prompts x 256 in / 256 out"
timeout 300 "$bin/cinfer" bench throughput -m "$model" --device cuda --num-prompts "$nprompts" \
    --input-len 256 --output-len 256 $GPU_BENCH_FLAGS 2>&1 | grep -v "^bench"
if [ "${GPU_BENCH_HF:-0}" = 1 ]; then
    echo "== Hugging Face transformers (eager attention, bf16), same shapes"
    python3 tools/hf_baseline.py "$model" --batch-sizes 64 ${OUT:+--json $OUT/hf.json} 2>&1 | grep "^HF"
fi
