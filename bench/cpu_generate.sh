#!/usr/bin/env bash
# CPU end-to-end benchmark (issue 2): a ~100M-parameter Llama-shaped random
# checkpoint (bf16), prefill of a 512-token prompt and 128 decode steps, next
# to the machine's measured memory bandwidth. Prints a markdown table.
#
#   bash bench/cpu_generate.sh [MODEL_DIR] [THREADS]
# MODEL_DIR defaults to build/bench-models/llama-100m (made with
# tools/make_random_model.py if missing, with ../shared/tokenizers/mistral).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-build/bench-models/llama-100m}
threads=${2:-0}
bin=./build/cinfer
[ -x "$bin" ] || make
[ -x build/bench_cpu_bandwidth ] || make
if [ ! -f "$model/model.safetensors" ]; then
    python3 tools/make_random_model.py --shape llama-100m --out "$model" \
        --tokenizer-dir ../shared/tokenizers/mistral >&2
fi
bw=$(./build/bench_cpu_bandwidth 512 8 2>/dev/null)
echo "$bw" >&2
read_gbs=$(echo "$bw" | awk '/^read/ && $(NF-1) > v {v=$(NF-1)} END {print v}')
copy_gbs=$(echo "$bw" | awk '/^memcpy/ {print $7}')
weights=$(python3 -c "import json,struct,sys; f=open(sys.argv[1]+'/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); print(sum(v['data_offsets'][1]-v['data_offsets'][0] for k,v in h.items() if k!='__metadata__'))" "$model")
params=$((weights / 2))
# a prompt of exactly 512 tokens: repeat a sentence, then cut the ids
prompt=$(python3 -c "print(' '.join(['the quick brown fox jumps over the lazy dog']*80))")
ids=$(printf '%s' "$prompt" | $bin tokenize -m "$model" --no-special)
prompt512=$(python3 - "$ids" "$model" "$bin" <<'PY'
import json, subprocess, sys
ids = json.loads(sys.argv[1])[:512]
print(subprocess.run([sys.argv[3], "detokenize", "-m", sys.argv[2]], input=json.dumps(ids),
                     capture_output=True, text=True, check=True).stdout)
PY
)
best_pf=0 best_dec=0 ntok=0
for run in 1 2 3; do
    out=$($bin generate -m "$model" -p "$prompt512" -n 128 --temperature 0 --ignore-eos \
        --threads "$threads" --json)
    read -r ntok pf dec <<<"$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); t=d['timings']; print(len(d['prompt_tokens']), t['prefill_tokens_per_s'], t['decode_tokens_per_s'])" "$out")"
    best_pf=$(python3 -c "print(max($best_pf, $pf))")
    best_dec=$(python3 -c "print(max($best_dec, $dec))")
done
python3 - <<PY
params, weights = $params, $weights
pf, dec, read_bw, copy_bw, ntok = $best_pf, $best_dec, float("$read_gbs"), float("$copy_gbs"), $ntok
stream = dec * weights / 1e9
print(f"| model | params | prompt | prefill tok/s | prefill GFLOP/s | decode tok/s | decode weight stream GB/s | memcpy GB/s (copied) | read GB/s (all threads) | decode / read roofline |")
print(f"|---|---|---|---|---|---|---|---|---|---|")
print(f"| llama-100m bf16 | {params/1e6:.1f}M | {ntok} | {pf:.1f} | {pf*2*params/1e9:.1f} | {dec:.1f} | {stream:.2f} | {copy_bw:.2f} | {read_bw:.2f} | {100*stream/read_bw:.0f}% |")
PY
