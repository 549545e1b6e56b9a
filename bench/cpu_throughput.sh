#!/usr/bin/env bash
# CPU offline throughput (issue 3): `cinfer bench throughput` on tinyqwen2-code
# and on a ~100M-parameter random Llama, plus a shared-prefix workload with
# prefix caching on vs off. Prints a markdown table.
#
#   bash bench/cpu_throughput.sh [LLAMA_100M_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
big=${1:-build/bench-models/llama-100m}
bin=./build/cinfer
[ -x "$bin" ] || make
if [ ! -f "$big/model.safetensors" ]; then
    python3 tools/make_random_model.py --shape llama-100m --out "$big" \
        --tokenizer-dir ../shared/tokenizers/mistral >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shared prefix: 64 requests = one 448-token prefix + 64 distinct tokens each
python3 - "$tmp/shared.jsonl" <<'PY'
import json, random, sys
rng = random.Random(0)
prefix = [rng.randrange(100, 8000) for _ in range(448)]
with open(sys.argv[1], "w") as f:
    for i in range(64):
        f.write(json.dumps({"prompt_token_ids": prefix + [rng.randrange(100, 8000) for _ in range(64)],
                            "max_tokens": 32}) + "\n")
PY
row() { # label, args...
    local label=$1
    shift
    "$bin" bench throughput "$@" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("| %s | %d | %.2f | %.0f | %.0f | %.0f | %.0f%% | %d | %d |" % (sys.argv[1], d["num_requests"],
      d["requests_per_s"], d["input_tokens_per_s"], d["output_tokens_per_s"], d["total_tokens_per_s"],
      100 * d["peak_kv_usage"], d["num_preemptions"], d["prefix_cache_hit_tokens"]))' "$label"
}
echo "| workload | requests | req/s | input tok/s | output tok/s | total tok/s | peak KV | preemptions | prefix hit tokens |"
echo "|---|---|---|---|---|---|---|---|---|"
row "tinyqwen2-code, 128 in / 64 out" -m models/tinyqwen2-code --num-prompts 128 --input-len 128 --output-len 64
row "llama-100m, 128 in / 32 out" -m "$big" --num-prompts 32 --input-len 128 --output-len 32
row "tinyqwen2-code, shared 448-token prefix, caching on" -m models/tinyqwen2-code --dataset "$tmp/shared.jsonl"
row "tinyqwen2-code, shared 448-token prefix, caching off" -m models/tinyqwen2-code --dataset "$tmp/shared.jsonl" --no-prefix-caching
