#!/usr/bin/env bash
# gpu_bench_context.sh — issue 9's GPU numbers: CUDA graphs at any context
# length and a padded vocabulary, on real-cost random checkpoints (made here
# by tools/make_random_model.py, bf16):
#   1. Llama-3.1-8B shape (max_position_embeddings 131072, llama3 rope
#      scaling) against the same weights with an 8192-token config: batch-1
#      decode, 128 in / 256 out, CUDA graphs; and the 131072 one --enforce-eager;
#   2. the 131072 one at a 30,000-token prompt (TTFT, TPOT);
#   3. Qwen2.5-7B shape (vocab 152064) with a 151665-id tokenizer (the Qwen3
#      tokenizer less its last 4 added tokens, as Qwen2.5 ships it):
#      bench latency and bench throughput.
# usage: tools/gpu_bench_context.sh BIN_DIR LLAMA3_TOKENIZER_DIR QWEN3_TOKENIZER_DIR [NUM_PROMPTS]
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
llama_tok=${2:?llama3 tokenizer dir}
qwen_tok=${3:?qwen3 tokenizer dir}
nprompts=${4:-500}
work=${GPU_BENCH_DIR:-/tmp/cinfer-ctx}
mkdir -p "$work"
lat() { # lat LABEL MODEL ARGS...: one bench latency run, its table prefixed
    local label=$1 model=$2
    shift 2
    timeout 300 "$bin/cinfer" bench latency -m "$model" --device cuda "$@" 2>&1 |
        grep -vE "^loading|^\s*$" | sed "s/^/[$label] /"
}

l31=$work/llama-3.1-8b l8k=$work/llama-3-8b-ctx8192
if [ ! -f "$l31/config.json" ]; then
    t0=$(date +%s)
    python3 tools/make_random_model.py --shape llama-3.1-8b --out "$l31" --tokenizer-dir "$llama_tok" >/dev/null || exit 1
    echo "made $l31 in $(($(date +%s) - t0)) s"
fi
# the same weights with the 8192-token config of Llama-3-8B
mkdir -p "$l8k"
for f in "$l31"/*; do [ "$(basename "$f")" = config.json ] || ln -sf "$f" "$l8k/"; done
python3 - "$l31/config.json" "$l8k/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["max_position_embeddings"] = 8192
c["rope_scaling"] = None
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY
echo "== batch 1, 128 in / 256 out: 8192-context config (graphs), 131072 (graphs), 131072 (--enforce-eager)"
common="--batch-size 1 --input-len 128 --output-len 256 --num-iters 5 --max-num-seqs 256"
lat ctx8192 "$l8k" $common
lat ctx131072 "$l31" $common
lat ctx131072-eager "$l31" $common --enforce-eager
echo "== batch 1, 30,000-token prompt, 128 new tokens (131072 context, graphs)"
lat prompt30k "$l31" --batch-size 1 --input-len 30000 --output-len 128 --num-iters 2 --max-num-seqs 256
echo "== batch 32, 8100 in / 256 out (131072 context: contexts cross 8192, the next graph bound is captured on first use)"
lat b32-8k "$l31" --batch-size 32 --input-len 8100 --output-len 256 --num-iters 1 --max-num-seqs 256
rm -rf "$l31" "$l8k" # disk for the next model

q=$work/qwen2.5-7b
if [ ! -f "$q/config.json" ]; then
    t0=$(date +%s)
    mkdir -p "$work/qtok"
    python3 - "$qwen_tok" "$work/qtok" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1:3]
for fn in os.listdir(src):
    if fn.startswith("tokenizer"): shutil.copy(os.path.join(src, fn), dst)
t = json.load(open(os.path.join(dst, "tokenizer.json")))
t["added_tokens"] = [a for a in t["added_tokens"] if a["id"] < 151665]
json.dump(t, open(os.path.join(dst, "tokenizer.json"), "w"), ensure_ascii=False)
tc = json.load(open(os.path.join(dst, "tokenizer_config.json")))
d = tc.get("added_tokens_decoder", {})
tc["added_tokens_decoder"] = {k: v for k, v in d.items() if int(k) < 151665}
json.dump(tc, open(os.path.join(dst, "tokenizer_config.json"), "w"), ensure_ascii=False)
print("tokenizer ids:", max([a["id"] for a in t["added_tokens"]] + list(t["model"]["vocab"].values())) + 1)
PY
    python3 tools/make_random_model.py --shape qwen2.5-7b --out "$q" --tokenizer-dir "$work/qtok" >/dev/null || exit 1
    echo "made $q in $(($(date +%s) - t0)) s"
fi
echo "== Qwen2.5-7B shape, vocab 152064, 151665-id tokenizer"
lat qwen-b1 "$q" --batch-size 1 --input-len 128 --output-len 256 --num-iters 3 --max-num-seqs 256
timeout 300 "$bin/cinfer" bench throughput -m "$q" --device cuda --num-prompts "$nprompts" \
    --input-len 256 --output-len 256 --max-num-seqs 256 2>&1 | grep -vE "^loading" | sed "s/^/[qwen-throughput] /"
