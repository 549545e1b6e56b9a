#!/usr/bin/env bash
# gpu_bench_batch1.sh — issue 14's batch-1 acceptance in one run: the
# Llama-3-8B shape (random bf16 weights, the real Llama-3 tokenizer), cinfer
# `bench latency` at batch 1 (128 in / 256 out, CUDA graphs) RUNS times, and
# the compiled-PyTorch peer (tools/peer_compiled_decode.py: torch.compile
# "reduce-overhead" + a static KV cache, gpt-fast's recipe) on the same
# weights, against the bandwidth roofline (16.06 GB per token / GPU_BW).
# Extra cinfer binaries (A/B) come after BIN as NAME=PATH.
# usage: tools/gpu_bench_batch1.sh BIN TOKENIZER_DIR [NAME=BIN ...]
set -uo pipefail
bin=${1:?cinfer binary}
tok=${2:?llama3 tokenizer dir}
shift 2
runs=${RUNS:-2}
bw=${GPU_BW:-4.21e12}
m=/tmp/cinfer-bench/llama-3-8b
mkdir -p /tmp/cinfer-bench
[ -f "$m/config.json" ] || python3 tools/make_random_model.py --shape llama-3-8b --out "$m" \
    --tokenizer-dir "$tok" >/dev/null || exit 1
roof=$(python3 -c "print(f'{$bw / 16.06e9:.1f}')")
lat() {
    "$2" bench latency -m "$m" --device cuda --batch-size 1 --input-len 128 --output-len 256 \
        --num-iters 3 --max-model-len 4096 --max-graph-batch-size 1 2>&1 |
        awk -v n="$1" -v r="$roof" '/^decode tok\/s/ {printf "%-12s decode tok/s %7.1f  (%.1f%% of %s)\n", n, $3, 100 * $3 / r, r}'
}
for i in $(seq "$runs"); do
    lat cinfer "$bin"
    for ab in "$@"; do lat "${ab%%=*}" "${ab#*=}"; done
done
timeout 400 python3 tools/peer_compiled_decode.py "$m" --input-len 128 --output-len 256 2>&1 |
    grep -E "^peer" | sed 's/^/peer: /'
