#!/usr/bin/env bash
# Quantized checkpoints through the CLI: an AWQ fixture
# (tools/quantize_checkpoint.py) generates the same greedy tokens as the f32
# checkpoint of its dequantized weights, in batch mode (several sequences per
# step); a compressed-tensors FP8 W8A8 one (dynamic per-token activations)
# scores a perplexity just above its weights' (activation rounding), and
# an INT8 W8A8 one the numpy reference's with INT8 activations; tools/hf_quant_ref.py
# reads 4 layouts as their writer's dequantized weights; --quantization fp8 runs a dense checkpoint; a bad
# quantization_config or --quantization value fails with one error line.
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
py=""
for c in python3 /usr/bin/python3; do
    if "$c" -c 'import numpy' 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: python3 with numpy not found (Debian: python3-numpy)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { local n=$1; shift; if "$@"; then passed=$((passed + 1)); echo "ok   $n"; else failed=$((failed + 1)); echo "FAIL $n"; fi; }

for p in "def fibonacci(n):" "import numpy as np" "class Stack:" "for i in range(10):"; do
    echo "{\"prompt\": \"$p\", \"max_tokens\": 32, \"temperature\": 0, \"ignore_eos\": true}"
done >"$tmp/greedy.jsonl"
ids() { "$bin" generate -m "$1" --prompts-file "$tmp/greedy.jsonl" --threads 2 "${@:2}" 2>"$tmp/err" |
    "$py" -c 'import json,sys; print(";".join(",".join(map(str, json.loads(l)["tokens"])) for l in sys.stdin))'; }

for f in awq ct-fp8-channel; do
    "$py" "$src/tools/quantize_checkpoint.py" "$m" "$tmp/$f" --format "$f" --group 64 \
        --dequant-out "$tmp/$f-dq" || exit 1
done
a=$(ids "$tmp/awq") b=$(ids "$tmp/awq-dq")
check "awq: greedy tokens of 4 prompts equal the dequantized f32 checkpoint's" \
    test -n "$a" -a "$a" = "$b"
# W8A8 (dynamic FP8 activations in prefill): the perplexity moves, a little
ppl() { "$bin" perplexity -m "$1" -f "$m/val_text.txt" --threads 2 2>/dev/null |
    sed -n 's/.*ppl=\([0-9.]*\).*/\1/p'; }
pq=$(ppl "$tmp/ct-fp8-channel") pd=$(ppl "$tmp/ct-fp8-channel-dq")
echo "     ct-fp8-channel perplexity: w8a8 $pq, dequantized weights $pd"
check "ct-fp8-channel w8a8: perplexity above the weight-only one, by less than 1%" \
    "$py" -c "import sys; q, d = float('$pq'), float('$pd'); sys.exit(not (d < q < d * 1.01))"
# ... and within 0.5% of tools/ref_ppl.py's (numpy, the same per-token E4M3 rounding)
pr=$("$py" "$src/tools/ref_ppl.py" "$tmp/ct-fp8-channel-dq" "$m/val_text.txt" --act token \
    --cinfer "$bin" 2>/dev/null | sed -n 's/.*ppl=\([0-9.]*\).*/\1/p')
echo "     numpy reference with per-token FP8 activations: $pr"
check "ct-fp8-channel w8a8: perplexity within 0.5% of the numpy W8A8 reference" \
    "$py" -c "import sys; q, r = float('$pq'), float('${pr:-0}'); sys.exit(not abs(q / r - 1) < 0.005)"

# INT8 W8A8 (compressed-tensors int-quantized, dynamic per-token INT8
# activations in prefill), against the numpy reference with the same rounding
"$py" "$src/tools/quantize_checkpoint.py" "$m" "$tmp/ct-int8" --format ct-int8-channel \
    --dequant-out "$tmp/ct-int8-dq" || exit 1
pq=$(ppl "$tmp/ct-int8")
pr=$("$py" "$src/tools/ref_ppl.py" "$tmp/ct-int8-dq" "$m/val_text.txt" --act token-int8 \
    --cinfer "$bin" 2>/dev/null | sed -n 's/.*ppl=\([0-9.]*\).*/\1/p')
echo "     ct-int8-channel perplexity: w8a8 $pq, numpy reference with per-token INT8 activations $pr"
check "ct-int8-channel w8a8: perplexity within 0.5% of the numpy W8A8 INT8 reference" \
    "$py" -c "import sys; q, r = float('${pq:-0}'), float('${pr:-0}'); sys.exit(not abs(q / r - 1) < 0.005)"

# tools/hf_quant_ref.py's own reader of each layout (the transformers reference
# dequantizes with it) gives the writer's dequantized weights bit for bit
for args in "gptq --group 32 --asym --desc-act --lm-head" "ct-w4a16 --group 64 --asym --desc-act" \
    "gptq --bits 8 --group 128" "fp8-block"; do
    n=$(echo "$args" | tr ' ' '_')
    "$py" "$src/tools/quantize_checkpoint.py" "$m" "$tmp/r$n" --format $args \
        --dequant-out "$tmp/r$n-dq" >/dev/null 2>&1
    check "hf_quant_ref.py reads --format $args as the writer's dequantized weights" \
        "$py" "$src/tools/hf_quant_ref.py" --check "$tmp/r$n" "$tmp/r$n-dq"
done

a=$(ids "$m" --quantization fp8)
check "--quantization fp8: 4 x 32 tokens" test "$(echo "$a" | tr ';,' '\n\n' | grep -c .)" = 128

sed -i 's/"version": "gemm"/"version": "gemv"/' "$tmp/awq/config.json"
out=$("$bin" generate -m "$tmp/awq" -p x -n 1 2>&1)
check "awq version gemv: one error line naming the field" \
    test "$(echo "$out" | grep -c .)/$(echo "$out" | grep -c "^error: .*'version'")" = 1/1
out=$("$bin" generate -m "$m" -p x -n 1 --quantization int4 2>&1)
check "--quantization int4: refused in one line" \
    test "$(echo "$out" | grep -c .)/$(echo "$out" | grep -c "^error: .*quantization 'int4'")" = 1/1

echo "quant: $passed passed, $failed failed"
[ "$failed" = 0 ]
