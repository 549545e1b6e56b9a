#!/usr/bin/env bash
# gpu_bench_structured.sh — the cost of structured outputs on a GPU (issue 12):
# the Llama-3-8B shape (random bf16 weights, the real 128k Llama-3 tokenizer),
# 64 prompts at once (--max-num-seqs 64), 128 new tokens each, unconstrained
# (ignore_eos) against every sequence constrained by a 10-property JSON schema
# (strings, bounded integers, booleans, enums, numbers: an agent-style schema;
# with a random model most outputs stay inside a string until max_tokens, so
# the batch stays near 64). Strings with maxLength are not used here: each
# position of a bounded string is its own matcher state, a cold mask on first
# sight (docs/structured_outputs.md). Reports ms per engine step and per output token, and the
# time of the forward (with the masks filled meanwhile), sampling and output, side by side, twice each.
# usage: tools/gpu_bench_structured.sh BIN_DIR TOKENIZER_DIR
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
tok=${2:?llama3 tokenizer dir}
model=/tmp/cinfer-bench/llama-3-8b
[ -f "$model/config.json" ] || python3 tools/make_random_model.py --shape llama-3-8b --out "$model" \
    --tokenizer-dir "$tok" >/dev/null || exit 1
python3 - <<'PY'
import json
kinds = [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 1000000},
         {"type": "boolean"}, {"type": "string", "enum": ["red", "green", "blue"]},
         {"type": "number"}]
props = {"field_%d" % i: kinds[i % 5] for i in range(10)}
schema = {"type": "object", "properties": props, "required": list(props),
          "additionalProperties": False}
with open("/tmp/sb_free.jsonl", "w") as f, open("/tmp/sb_json.jsonl", "w") as g:
    for i in range(64):
        base = {"prompt": "Record %d as JSON:" % i, "max_tokens": 128, "temperature": 1.0, "seed": i}
        f.write(json.dumps(dict(base, ignore_eos=True)) + "\n")
        g.write(json.dumps(dict(base, json_schema=schema)) + "\n")
PY
for rep in 1 2; do
    for kind in free json; do
        timeout 200 "$bin/cinfer" generate -m "$model" --device cuda --max-num-seqs 64 \
            --prompts-file /tmp/sb_$kind.jsonl --max-model-len 4096 --stats >/tmp/sb_out.jsonl 2>/tmp/sb_err || {
            tail -3 /tmp/sb_err; exit 1; }
        tail -1 /tmp/sb_err | python3 -c "
import json, sys
o = json.loads(sys.stdin.read())
out = [json.loads(l) for l in open('/tmp/sb_out.jsonl')]
length = sum(1 for x in out if x.get('finish_reason') == 'length')
ok = 0
for x in out:
    try:
        json.loads(x['text']); ok += 1
    except Exception:
        pass
st = o['num_steps']
print('[%s, run %s] %d steps, %.3f ms/step, %.3f ms/output token; forward %.3f ms/step (masks filled '
      'meanwhile %.3f), sample %.3f, schedule %.3f, output %.3f; %d tokens, %d/64 hit max_tokens, '
      '%d/64 parse as JSON' % (
      '$kind', '$rep', st, 1e3 * o['elapsed_s'] / st, 1e3 * o['elapsed_s'] / o['generation_tokens'],
      1e3 * o['time_forward_s'] / st, 1e3 * o['time_masks_s'] / st,
      1e3 * o['time_sample_s'] / st, 1e3 * o['time_schedule_s'] / st, 1e3 * o['time_output_s'] / st,
      o['generation_tokens'], length, ok))"
    done
done
