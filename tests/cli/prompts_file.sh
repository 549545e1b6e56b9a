#!/usr/bin/env bash
# `cinfer generate --prompts-file`: one JSON line per input line, in input
# order; greedy results equal the golden continuations; a malformed line and
# invalid requests give {"error": ...} for that line only; n > 1 samples;
# stop strings; --stats on stderr (prefix-cache hits for a shared prefix).
set -euo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$m/golden_public.json" "$tmp/in.jsonl" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"]
lines = []
for p in g[:4]:
    lines.append(json.dumps({"prompt": p["prompt"], "max_tokens": 12, "temperature": 0, "ignore_eos": True}))
lines.append("{not json")
lines.append(json.dumps({"prompt_token_ids": [1, 2, 99999], "max_tokens": 4}))
lines.append(json.dumps({"prompt": "x", "max_tokens": 0}))
lines.append(json.dumps({"prompt": "x", "top_p": 1.5}))
lines.append(json.dumps({"prompt": "x", "temperature": -1}))
lines.append(json.dumps({"prompt_token_ids": g[0]["prompt_token_ids"], "max_tokens": 12, "temperature": 0,
                         "n": 3, "ignore_eos": True}))
lines.append(json.dumps({"prompt": g[0]["prompt"], "max_tokens": 30, "temperature": 0, "stop": " fib"}))
lines.append(json.dumps({"prompt": "class A:", "max_tokens": 5, "temperature": 0.8, "seed": 1, "n": 2}))
long = "def helper_function(argument_one, argument_two):\n    return argument_one + argument_two\n" * 4
for i in range(3):
    lines.append(json.dumps({"prompt": long + f"# variant {i}\n", "max_tokens": 3, "temperature": 0}))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
PY
"$bin" generate -m "$m" --prompts-file "$tmp/in.jsonl" --stats --max-num-seqs 8 --max-num-batched-tokens 64 \
    --kv-cache-tokens 4096 >"$tmp/out.jsonl" 2>"$tmp/err.txt"
cat "$tmp/out.jsonl"
cat "$tmp/err.txt"
python3 - "$m/golden_public.json" "$tmp/out.jsonl" "$tmp/err.txt" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"]
out = [json.loads(l) for l in open(sys.argv[2])]
stats = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
ok = fail = 0
def check(c, what):
    global ok, fail
    if c: ok += 1
    else:
        fail += 1
        print("FAIL", what)
check(len(out) == 15, "one line per input")
for i in range(4):
    check(out[i]["tokens"] == g[i]["greedy_token_ids"][:12], f"golden {i}")
    check(out[i]["finish_reason"] == "length", f"reason {i}")
for i, word in [(4, "JSON"), (5, "99999"), (6, "max_tokens"), (7, "top_p"), (8, "temperature")]:
    check("error" in out[i] and word in out[i]["error"], f"error line {i}: {out[i]}")
s = out[9]["samples"]
check(len(s) == 3 and all(x["tokens"] == g[0]["greedy_token_ids"][:12] for x in s), "n=3 greedy")
full = g[0]["greedy_text"]
check(out[10]["finish_reason"] == "stop" and out[10]["text"] == full[:full.index(" fib")], f"stop: {out[10]}")
check(len(out[11]["samples"]) == 2, "n=2 sampled")
for k in ("num_preemptions", "prefix_cache_queried_tokens", "prefix_cache_hit_tokens",
          "peak_kv_blocks_used", "num_kv_blocks"):
    check(k in stats, f"stats {k}")
check(stats["prefix_cache_hit_tokens"] > 0, "prefix cache hits")
check(stats["num_kv_blocks"] == 256, "kv blocks")
print(f"{ok} passed, {fail} failed")
sys.exit(1 if fail else 0)
PY
