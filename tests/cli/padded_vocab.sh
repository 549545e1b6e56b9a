#!/usr/bin/env bash
# A padded vocabulary (Qwen2.5: 152064 embedding rows, 151665 tokens): a
# copy of tinyqwen2-code with 64 zero rows (vocab_size 8256, tokenizer 8192)
# never samples an id >= 8192 (PADDED_SEEDS x PADDED_TOKENS, default 32 seeds x
# 400 tokens, at temperature 5, where the zero logits of the padding would often win), never fails, gives the
# unpadded model's greedy tokens, and decodes a prompt holding id 8200.
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { local n=$1; shift; if "$@"; then passed=$((passed + 1)); echo "ok   $n"; else failed=$((failed + 1)); echo "FAIL $n"; fi; }

python3 "$src/tools/pad_vocab.py" "$m" "$tmp/pad" --extra 64 || exit 1
ns=${PADDED_SEEDS:-32} nt=${PADDED_TOKENS:-400}
for s in $(seq "$ns"); do
    echo "{\"prompt\": \"def f$s(x):\", \"max_tokens\": $nt, \"temperature\": 5, \"seed\": $s, \"ignore_eos\": true}"
done >"$tmp/hot.jsonl"
dev=${CINFER_TEST_DEVICE:+--device $CINFER_TEST_DEVICE}
"$bin" generate -m "$tmp/pad" --prompts-file "$tmp/hot.jsonl" --threads 2 $dev >"$tmp/hot.out" 2>"$tmp/hot.err"
check "temperature 5: the run succeeds" test $? = 0
python3 - "$tmp/hot.out" >"$tmp/hot.sum" <<'PY'
import json, sys
n = bad = err = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    if "error" in o: err += 1; continue
    n += len(o["tokens"]); bad += sum(t >= 8192 for t in o["tokens"])
print(n, bad, err)
PY
read -r ntok nbad nerr <"$tmp/hot.sum"
check "temperature 5: $ns x $nt tokens ($ntok), none >= 8192 ($nbad), no error ($nerr)" \
    test "$ntok/$nbad/$nerr" = "$((ns * nt))/0/0"

for p in "def fibonacci(n):" "import numpy as np" "class Stack:" "for i in range(10):"; do
    echo "{\"prompt\": \"$p\", \"max_tokens\": 64, \"temperature\": 0, \"ignore_eos\": true}"
done >"$tmp/greedy.jsonl"
[ -n "$dev" ] && dev="$dev --dtype float32"
"$bin" generate -m "$m" --prompts-file "$tmp/greedy.jsonl" --threads 2 $dev >"$tmp/g0" 2>/dev/null
"$bin" generate -m "$tmp/pad" --prompts-file "$tmp/greedy.jsonl" --threads 2 $dev >"$tmp/g1" 2>/dev/null
toks() { python3 -c 'import json,sys; print([json.loads(l)["tokens"] for l in open(sys.argv[1])])' "$1"; }
check "greedy: padded model = unpadded model (4 prompts x 64 tokens)" test "$(toks "$tmp/g0")" = "$(toks "$tmp/g1")"
check "greedy: 256 tokens compared" \
    test "$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["tokens"]) for l in open(sys.argv[1])))' "$tmp/g0")" = 256

echo '{"prompt_token_ids": [755, 8200, 1423, 8255, 25], "max_tokens": 8, "temperature": 0}' >"$tmp/unk.jsonl"
"$bin" generate -m "$tmp/pad" --prompts-file "$tmp/unk.jsonl" --threads 2 $dev >"$tmp/unk.out" 2>"$tmp/unk.err"
check "prompt_token_ids with 8200 and 8255: 8 tokens, no error" \
    test "$(python3 -c 'import json,sys; o=json.loads(open(sys.argv[1]).readline()); print(len(o.get("tokens", [])), o.get("error", "none"))' "$tmp/unk.out")" = "8 none"
echo '[755, 8200, 25]' | "$bin" detokenize -m "$tmp/pad" >"$tmp/detok.out" 2>&1
check "detokenize: an unknown id is empty text" test "$(cat "$tmp/detok.out")" = "$(echo '[755, 25]' | "$bin" detokenize -m "$m")"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
