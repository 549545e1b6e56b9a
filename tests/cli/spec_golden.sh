#!/usr/bin/env bash
# Speculative greedy decoding is exact on the CPU (f32 activations): target
# qwen2-code-28m (../shared) on its 16 golden prompts, without drafts, with
# n-gram lookup and with each smaller model of the family as the draft
# (tinyqwen2-code-draft, tinyqwen2-code): every continuation equals HF's
# greedy one, and the outputs with drafts equal the output without.
set -euo pipefail
cd "${CINFER_SOURCE_DIR:-.}"
BIN=${CINFER_BIN:-build/cinfer}
SH=${CINFER_SHARED_DIR:-../shared}/models
T=$SH/qwen2-code-28m
[ -f "$T/config.json" ] || { echo "SKIP: $T not found"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$T/golden_public.json" >"$tmp/p.jsonl" <<'PY'
import json, sys
for p in json.load(open(sys.argv[1]))["prompts"]:
    n = len(p["greedy_token_ids"])
    print(json.dumps({"prompt_token_ids": p["prompt_token_ids"], "max_tokens": n,
                      "temperature": 0, "ignore_eos": True}))
PY
pass=0 fail=0
ref=""
for cfg in "" "--speculative-method ngram --num-speculative-tokens 4" \
    "--speculative-model $SH/tinyqwen2-code-draft --num-speculative-tokens 4" \
    "--speculative-model $SH/tinyqwen2-code --num-speculative-tokens 4 --max-model-len 2048"; do
    "$BIN" generate -m "$T" --prompts-file "$tmp/p.jsonl" --max-num-seqs 4 --stats $cfg \
        >"$tmp/out.jsonl" 2>"$tmp/err"
    exact=$(python3 - "$T/golden_public.json" "$tmp/out.jsonl" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"]
out = [json.loads(l)["tokens"] for l in open(sys.argv[2])]
print(sum(a == p["greedy_token_ids"] for a, p in zip(out, g)))
PY
)
    acc=$(tail -1 "$tmp/err" | python3 -c "import json,sys; o=json.loads(sys.stdin.read()); print(o.get('spec_draft_tokens',0), o.get('spec_accepted_tokens',0))")
    sum=$(md5sum <"$tmp/out.jsonl" | cut -c1-8)
    [ -z "$ref" ] && ref=$sum
    echo "[${cfg:-no drafts}] $exact/16 golden continuations exact; drafted/accepted $acc; md5 $sum"
    if [ "$exact" = 16 ] && [ "$sum" = "$ref" ] && { [ -z "$cfg" ] || [ "${acc% *}" -gt 0 ]; }; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
