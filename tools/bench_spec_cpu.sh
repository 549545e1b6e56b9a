#!/usr/bin/env bash
# bench_spec_cpu.sh — speculative decoding on the CPU, side by side in one run:
# target qwen2-code-28m (../shared), greedy, batch 1 (--max-num-seqs 1),
# 128 new tokens on each of its 16 golden prompts (EOS ends a prompt early),
# without drafts, with n-gram lookup and with tinyqwen2-code-draft, K=3/4/6.
# Prints a markdown table: tok/s, speed-up, tokens per verify step,
# acceptance by draft position, and the time per step split into forward
# (verify, with the draft's K/V mirror), draft proposals, sampling and the rest.
# usage: tools/bench_spec_cpu.sh [BIN] [THREADS]
set -euo pipefail
BIN=${1:-build/cinfer}
TH=${2:-$(nproc)}
SH=${CINFER_SHARED_DIR:-../shared}/models
T=$SH/qwen2-code-28m D=$SH/tinyqwen2-code-draft
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -c "
import json
for p in json.load(open('$T/golden_public.json'))['prompts']:
    print(json.dumps({'prompt': p['prompt'], 'max_tokens': 128, 'temperature': 0}))" >"$tmp/p.jsonl"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $TH threads, $(date -u '+%F %R') UTC, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| configuration | tok/s | vs off | tokens/step | acceptance by position | ms/step: forward / draft / sample / rest |"
echo "|---|---|---|---|---|---|"
base=""
for cfg in "" "--speculative-method ngram --num-speculative-tokens 3" \
    "--speculative-method ngram --num-speculative-tokens 4" \
    "--speculative-method ngram --num-speculative-tokens 6" \
    "--speculative-model $D --num-speculative-tokens 3" \
    "--speculative-model $D --num-speculative-tokens 4" \
    "--speculative-model $D --num-speculative-tokens 6"; do
    "$BIN" generate -m "$T" --prompts-file "$tmp/p.jsonl" --stats --max-num-seqs 1 -t "$TH" $cfg \
        >"$tmp/out.jsonl" 2>"$tmp/err"
    name=${cfg:-no speculation}
    name=${name//$D/draft}
    tail -1 "$tmp/err" | python3 -c "
import json, sys
o = json.loads(sys.stdin.read()); base = '$base'
tps = o['output_tokens_per_s']; steps = max(o['num_steps'], 1)
ver = o.get('spec_verify_steps', 0)
acc = ' '.join('%.2f' % (a / ver) for a in o.get('spec_accepted_by_position', [])) if ver else ''
tps_step = 1 + o.get('spec_accepted_tokens', 0) / ver if ver else 1
ms = lambda k: 1000 * o[k] / steps
rest = 1000 * o['elapsed_s'] / steps - ms('time_forward_s') - ms('time_draft_s') - ms('time_sample_s')
print('| %s | %.1f | %s | %.2f | %s | %.2f / %.2f / %.2f / %.2f |' % ('$name', tps,
      '%.2fx' % (tps / float(base)) if base else '1.00x', tps_step, acc, ms('time_forward_s'),
      ms('time_draft_s'), ms('time_sample_s'), rest))"
    [ -z "$base" ] && base=$(tail -1 "$tmp/err" | python3 -c "import json,sys; print(json.loads(sys.stdin.read())['output_tokens_per_s'])")
done
