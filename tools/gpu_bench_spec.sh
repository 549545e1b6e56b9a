#!/usr/bin/env bash
# gpu_bench_spec.sh — speculative decoding on a GPU machine.
#   1. exactness (CUDA, float32): test_spec (n-gram and a model drafting for
#      itself, mixed batch) and the 16 golden prompts of tinyqwen2-code with
#      tinyqwen2-code-draft as the draft: every token equal to HF's greedy one;
#   2. speed: tinyqwen2-code inflated to a 6.9B Llama-3-8B-class shape
#      (inflate_qwen2.py: the same function at 7B cost), bf16, batch 1
#      (--max-num-seqs 1), greedy, 256 new tokens on each of the 16 golden
#      prompts: no drafts, n-gram, and the draft model at several K, from
#      `generate --prompts-file --stats` (output tok/s after loading);
#   1b. the sampling distribution with vs without speculation (chi-square,
#      tools/spec_chisq.py) on CUDA;
#   3. batch 64 offline (`bench throughput`), drafts on with
#      --speculative-disable-by-batch-size 8 against off.
# usage: tools/gpu_bench_spec.sh BIN_DIR CARRY_DIR   (CARRY_DIR: inflate_qwen2.py, tinyqwen2-code-draft/)
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
carry=${2:?carry dir}
draft=$carry/tinyqwen2-code-draft
m=models/tinyqwen2-code
big=/tmp/tq-7b
golden() { # golden MAX_TOKENS: the 16 golden prompts as prompts-file lines
    python3 -c "
import json, sys
g = json.load(open('$m/golden_public.json'))
for p in g['prompts']:
    print(json.dumps({'prompt_token_ids': p['prompt_token_ids'], 'max_tokens': $1, 'temperature': 0, 'ignore_eos': True}))"
}
stat() { tail -1 "$1" | python3 -c "
import json, sys
o = json.loads(sys.stdin.read())
acc = o.get('spec_accepted_tokens', 0); ver = o.get('spec_verify_steps', 0); dr = o.get('spec_draft_tokens', 0)
print('%.1f tok/s, %.2f s' % (o['output_tokens_per_s'], o['elapsed_s']) +
      ('; %d verify steps, %d drafted, %d accepted (%.0f%%), %.2f tokens/step, by position %s' % (
          ver, dr, acc, 100.0 * acc / max(dr, 1), 1 + acc / max(ver, 1),
          [round(a / max(ver, 1), 2) for a in o.get('spec_accepted_by_position', [])]) if ver else ''))"
}

echo "== test_spec --device cuda (float32)"
CINFER_TEST_DEVICE=cuda timeout 120 "$bin/test_spec" 2>&1 | tail -6
echo "== sampling distribution, CUDA bf16 (tools/spec_chisq.py: 5 prompts x 2,000 seeded samples)"
for a in "ngram" "draft --speculative-model $draft"; do
    for tp in 1.0 0.9; do
        echo "-- $a, top-p $tp"
        timeout 120 python3 tools/spec_chisq.py --bin "$bin/cinfer" --common "--device cuda" \
            --top-p $tp --spec "--speculative-method $a --num-speculative-tokens 4" | tail -7
    done
done
echo "== golden prompts, CUDA float32, target tinyqwen2-code, draft tinyqwen2-code-draft (K=4)"
golden 48 >/tmp/g48.jsonl
for cfg in "" "--num-speculative-tokens 4 --speculative-model $draft --max-model-len 2048" \
    "--num-speculative-tokens 4"; do
    "$bin/cinfer" generate -m $m --device cuda --dtype float32 --prompts-file /tmp/g48.jsonl $cfg \
        >/tmp/f32.jsonl 2>/dev/null
    python3 - "$m/golden_public.json" /tmp/f32.jsonl "${cfg:-plain}" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"]
out = [json.loads(l)["tokens"] for l in open(sys.argv[2])]
print("[%s] %d/16 golden greedy continuations exact" % (sys.argv[3][-40:], sum(a == p["greedy_token_ids"] for a, p in zip(out, g))))
PY
done

if [ ! -f $big/config.json ]; then
    t0=$(date +%s)
    python3 "$carry/inflate_qwen2.py" $m $big --hidden 4096 --heads 64 --kv-heads 8 \
        --intermediate 14336 --layers 32 >/dev/null || exit 1
    echo "inflated $big in $(($(date +%s) - t0)) s ($(du -sh $big | cut -f1))"
fi
echo "== batch 1, bf16, 6.9B-class target (tinyqwen2-code inflated), 16 golden prompts x 256 tokens"
golden 256 >/tmp/g256.jsonl
b1_cfgs=("" "--num-speculative-tokens 4" "--num-speculative-tokens 8"
    "--num-speculative-tokens 4 --speculative-model $draft"
    "--num-speculative-tokens 6 --speculative-model $draft"
    "--num-speculative-tokens 8 --speculative-model $draft")
[ -n "${SPEC_QUICK:-}" ] && b1_cfgs=("" "--num-speculative-tokens 8"
    "--num-speculative-tokens 8 --speculative-model $draft")
for cfg in "${b1_cfgs[@]}"; do
    timeout 200 "$bin/cinfer" generate -m $big --device cuda --prompts-file /tmp/g256.jsonl \
        --max-num-seqs 1 --stats $cfg >/tmp/b1.jsonl 2>/tmp/b1.err
    echo "[${cfg:-no speculation}] $(stat /tmp/b1.err) $(md5sum </tmp/b1.jsonl | cut -c1-8)"
done
echo "== batch 64 offline, 6.9B-class target: 256 prompts x 128 in / 128 out"
for cfg in "" "--num-speculative-tokens 4 --speculative-disable-by-batch-size 8" \
    "--num-speculative-tokens 4 --speculative-model $draft --speculative-disable-by-batch-size 8" \
    "--num-speculative-tokens 4 --speculative-model $draft" "" \
    "--num-speculative-tokens 4 --speculative-model $draft --speculative-disable-by-batch-size 8"; do
    timeout 200 "$bin/cinfer" bench throughput -m $big --device cuda --num-prompts 256 \
        --input-len 128 --output-len 128 --max-num-seqs 64 $cfg 2>&1 | grep -E "output tok/s|elapsed" |
        sed "s|^|[${cfg:-off}] |"
done
