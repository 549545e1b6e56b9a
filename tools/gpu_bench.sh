#!/usr/bin/env bash
# gpu_bench.sh — end-to-end benchmarks on a GPU machine with a random-weight
# Llama-3-8B-shaped checkpoint (bf16, made here by tools/make_random_model.py):
# batch-1 latency (128-token prompt, 256 new tokens) and offline throughput
# (random 256-token prompts, 256 new tokens, ignore_eos).
#
# usage: tools/gpu_bench.sh BIN_DIR TOKENIZER_DIR [NUM_PROMPTS]
#   TOKENIZER_DIR: a Llama-3 tokenizer (vocab 128256), e.g. shared/tokenizers/llama3
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
tokdir=${2:?tokenizer dir}
nprompts=${3:-1000}
model=${GPU_BENCH_MODEL:-/tmp/llama-3-8b}
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done
if [ ! -f "$model/config.json" ]; then
    t0=$(date +%s)
    python3 tools/make_random_model.py --shape llama-3-8b --out "$model" --tokenizer-dir "$tokdir" || exit 1
    echo "made $model in $(($(date +%s) - t0)) s"
fi
prompt=$(python3 -c "print(' '.join(['the quick brown fox jumps over the lazy dog']*13))")
echo "== latency: batch 1, ~128-token prompt, 256 new tokens"
timeout 300 "$bin/cinfer" generate -m "$model" --device cuda -p "$prompt" -n 256 --temperature 0 \
    --ignore-eos --json --kv-cache-tokens 4096 | python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); t = d["timings"]
print("prompt %d tokens, generated %d: load %.1f s, TTFT(prefill) %.1f ms, decode %.1f tok/s" % (
    len(d["prompt_tokens"]), len(d["tokens"]), t["load_s"], 1000 * t["prefill_s"], t["decode_tokens_per_s"]))'
echo "== throughput: $nprompts prompts x 256 in / 256 out"
timeout 300 "$bin/cinfer" bench throughput -m "$model" --device cuda --num-prompts "$nprompts" \
    --input-len 256 --output-len 256 --kv-cache-tokens 400000 --max-num-seqs 256
