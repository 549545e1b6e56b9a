#!/usr/bin/env bash
# Every bad input exits non-zero with ONE line on stderr, "error: ...", that
# names the problem; no crash and no sanitizer report.
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$(cd "$src/models/tinyqwen2-code" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

# expect NAME PATTERN -- cinfer args...   (stdin from /dev/null unless STDIN_FILE is set)
expect() {
    local name=$1 pattern=$2
    shift 3
    local err rc
    err=$("$bin" "$@" <"${STDIN_FILE:-/dev/null}" 2>&1 >/dev/null)
    rc=$?
    local lines
    lines=$(printf '%s\n' "$err" | grep -c .)
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$lines" = 1 ] && [[ $err == error:* ]] &&
        printf '%s' "$err" | grep -q -- "$pattern"; then
        passed=$((passed + 1))
        echo "ok   $name: $err"
    else
        failed=$((failed + 1))
        echo "FAIL $name (exit $rc, $lines lines, want /$pattern/): $err"
    fi
}

# model dir copies with one thing broken
mk() { mkdir -p "$tmp/$1" && cp "$m"/{config.json,tokenizer.json,tokenizer_config.json} "$tmp/$1"/; }

mk truncated
head -c 5000000 "$m/model.safetensors" >"$tmp/truncated/model.safetensors"
expect "truncated safetensors" "model.safetensors" -- generate -m "$tmp/truncated" -p hi -n 1

mk badjson
python3 - "$tmp/badjson/model.safetensors" <<'PY'
import struct, sys
hdr = b'{"model.norm.weight": {"dtype": "BF16", "shape": [256], "data_offsets": [0, 512]'  # unclosed
open(sys.argv[1], "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 512)
PY
expect "header of bad JSON" "JSON" -- generate -m "$tmp/badjson" -p hi -n 1

# rewrite the real header: fn(header dict) -> header dict, keeping the data
rewrite() {
    python3 - "$m/model.safetensors" "$1" "$2" <<'PY'
import json, struct, sys
src, dst, edit = sys.argv[1], sys.argv[2], sys.argv[3]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
exec(edit)
new = json.dumps(h).encode()
new += b" " * ((8 - len(new) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(new)) + new + raw[8 + n:])
PY
}
mk overrun
rewrite "$tmp/overrun/model.safetensors" 'h["model.norm.weight"]["data_offsets"][1] += 10**9; h["model.norm.weight"]["shape"] = [(h["model.norm.weight"]["data_offsets"][1] - h["model.norm.weight"]["data_offsets"][0]) // 2]'
expect "offsets overrun the file" "model.norm.weight" -- generate -m "$tmp/overrun" -p hi -n 1

mk dtype
rewrite "$tmp/dtype/model.safetensors" 'h["model.layers.0.mlp.up_proj.weight"]["dtype"] = "I16"'
expect "tensor of the wrong dtype" "model.layers.0.mlp.up_proj.weight" -- generate -m "$tmp/dtype" -p hi -n 1

mk shape
ln -s "$m/model.safetensors" "$tmp/shape/model.safetensors"
python3 - "$tmp/shape/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["intermediate_size"] = 512
json.dump(c, open(sys.argv[1], "w"))
PY
expect "tensor of the wrong shape" "mlp.gate_proj.weight" -- generate -m "$tmp/shape" -p hi -n 1

mkdir -p "$tmp/noconfig" && cp "$m"/tokenizer*.json "$tmp/noconfig"/ && ln -s "$m/model.safetensors" "$tmp/noconfig/"
expect "missing config.json" "config.json" -- generate -m "$tmp/noconfig" -p hi -n 1

mk arch
ln -s "$m/model.safetensors" "$tmp/arch/model.safetensors"
sed -i 's/Qwen2ForCausalLM/GPT2LMHeadModel/' "$tmp/arch/config.json"
expect "unknown architecture" "GPT2LMHeadModel" -- generate -m "$tmp/arch" -p hi -n 1

mk badtok
echo '{"version": "1.0", "model": {"type": "BPE", "vocab": [' >"$tmp/badtok/tokenizer.json"
ln -s "$m/model.safetensors" "$tmp/badtok/model.safetensors"
expect "invalid tokenizer.json" "tokenizer.json" -- generate -m "$tmp/badtok" -p hi -n 1

expect "invalid UTF-8 prompt" "UTF-8" -- generate -m "$m" -p $'abc\xff\xfe' -n 1
expect "empty prompt" "empty" -- generate -m "$m" -p "" -n 1
expect "-n 0" "-n" -- generate -m "$m" -p hi -n 0
expect "negative temperature" "temperature" -- generate -m "$m" -p hi --temperature -1
expect "top-p out of range" "top-p" -- generate -m "$m" -p hi --top-p 1.5
expect "unknown option" "--bogus" -- generate -m "$m" -p hi --bogus
expect "unknown device" "backend .tpu." -- generate -m "$m" -p hi --device tpu
expect "missing model dir" "nonexistent" -- generate -m "$tmp/nonexistent" -p hi
printf '\xff\xfe' >"$tmp/bad.txt"
STDIN_FILE="$tmp/bad.txt" expect "tokenize invalid UTF-8" "UTF-8" -- tokenize -m "$m"
echo '[1, -4]' >"$tmp/ids.json"
STDIN_FILE="$tmp/ids.json" expect "detokenize negative id" "token id" -- detokenize -m "$m"
echo '"ok"' >"$tmp/lines.jsonl" && echo 'not json' >>"$tmp/lines.jsonl"
STDIN_FILE="$tmp/lines.jsonl" expect "tokenize --jsonl malformed line" "line 2" -- tokenize -m "$m" --jsonl

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
