#!/usr/bin/env bash
# gpu_kvfp8.sh — the FP8 KV cache (--kv-cache-dtype fp8) on a GPU machine,
# from the repository root after building (cinfer, the tests and the kernel
# lab: cmake --build build --target cinfer cinfer_tests kernel_decode_attention):
#   1. ctest -R cuda (test_cuda_ops holds the FP8 cases: cache-write bytes vs
#      the CPU twin, prefill / decode / generic attention over FP8 pages,
#      copy_blocks; plus the other CUDA suites);
#   2. compute-sanitizer memcheck of test_cuda_ops (quick mode, both modes);
#   3. cinfer perplexity on models/tinyqwen2-code, --device cuda, auto vs fp8
#      (and the CPU's fp8 number next to it);
#   4. cinfer generate --device cuda --kv-cache-dtype fp8 (CUDA graphs on):
#      golden continuations matched and the KV capacity at the same budget;
#   5. the decode attention lab: BF16 vs FP8 cache side by side at batch 64,
#      context 8192, 32 q / 8 kv heads, head_dim 128 (the acceptance shape:
#      FP8 >= 1.7x the BF16 rate), with GB/s and the roofline fraction.
# usage: tools/gpu_kvfp8.sh [BUILD_DIR] (default build); logs in $OUT or ./gpu_kvfp8_logs
set -uo pipefail
b=$(cd "${1:-build}" && pwd)
export CINFER_SOURCE_DIR=${CINFER_SOURCE_DIR:-$PWD}
logs=${OUT:-$PWD/gpu_kvfp8_logs}
mkdir -p "$logs"
m=models/tinyqwen2-code
declare -a rows
row() { rows+=("$(printf '| %-36s | %-8s | %s' "$1" "$2" "$3")"); }
st() { case $1 in 0) echo PASS ;; 77) echo SKIP ;; 124) echo TIMEOUT ;; *) echo "FAIL($1)" ;; esac; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2

echo "== 1. ctest -R cuda"
if [ -f "$b/CTestTestfile.cmake" ]; then
    (cd "$b" && timeout 1200 ctest -R cuda -V) >"$logs/ctest_cuda.log" 2>&1
    rc=$?
else # a directory of carried binaries (gpu_session.sh): the CUDA tests directly
    rc=0
    for t in test_cuda_ops test_cuda_model test_cuda_quant test_cuda_sampling; do
        [ -x "$b/$t" ] || continue
        timeout 600 "$b/$t" >>"$logs/ctest_cuda.log" 2>&1 || rc=$?
    done
fi
grep -E "fp8|passed, |CHECK failed|tests passed|decode attention S=64 ctx=8192" \
    "$logs/ctest_cuda.log" | head -40
row "CUDA tests (ctest -R cuda)" "$(st $rc)" "$(grep -cE 'CHECK failed' "$logs/ctest_cuda.log") failed checks"

echo "== 2. compute-sanitizer memcheck test_cuda_ops (quick)"
if command -v compute-sanitizer >/dev/null; then
    CINFER_TEST_QUICK=1 timeout 900 compute-sanitizer --tool memcheck --leak-check full \
        --error-exitcode 3 "$b/test_cuda_ops" >"$logs/memcheck.log" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|passed, " "$logs/memcheck.log" | tail -3
    row "memcheck test_cuda_ops" "$(st $rc)" "$(grep 'ERROR SUMMARY' "$logs/memcheck.log" | tail -1)"
else
    row "memcheck test_cuda_ops" SKIP "compute-sanitizer not installed"
fi

echo "== 3. perplexity (tinyqwen2-code val_text.txt)"
for dev in cuda cpu; do
    for kv in auto fp8; do
        [ $dev = cpu ] && [ $kv = auto ] && continue # the CPU baseline is 6.0801
        out=$(timeout 600 "$b/cinfer" perplexity -m $m -f $m/val_text.txt --device $dev \
            --kv-cache-dtype $kv 2>"$logs/ppl_${dev}_$kv.err")
        rc=$?
        echo "$dev $kv: $out"
        row "perplexity $dev kv=$kv" "$(st $rc)" "$out"
    done
done

echo "== 4. generate --device cuda --kv-cache-dtype fp8 (CUDA graphs)"
python3 - "$m/golden_public.json" "$logs/golden.jsonl" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"]
open(sys.argv[2], "w").write("".join(json.dumps({"prompt_token_ids": p["prompt_token_ids"],
    "max_tokens": 48, "temperature": 0, "ignore_eos": True}) + "\n" for p in g))
PY
for kv in auto fp8; do
    timeout 300 "$b/cinfer" generate -m $m --device cuda --kv-cache-dtype $kv \
        --prompts-file "$logs/golden.jsonl" --stats --gpu-memory-utilization 0.5 \
        >"$logs/gen_$kv.jsonl" 2>"$logs/gen_$kv.err"
    rc=$?
    res=$(python3 - "$m/golden_public.json" "$logs/gen_$kv.jsonl" "$logs/gen_$kv.err" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"]
outs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
full = sum(o.get("tokens") == p["greedy_token_ids"][:48] for p, o in zip(g, outs))
pref = [next((i for i, (a, b) in enumerate(zip(o.get("tokens", []), p["greedy_token_ids"])) if a != b),
             len(o.get("tokens", []))) for p, o in zip(g, outs)]
st = [json.loads(l) for l in open(sys.argv[3]) if l.startswith("{")]
blocks = st[-1]["num_kv_blocks"] if st else "?"
print(f"goldens {full}/{len(g)} in full, mean prefix {sum(pref) / max(1, len(pref)):.1f}/48, "
      f"kv blocks {blocks}")
PY
)
    grep -h "KV cache" "$logs/gen_$kv.err" | head -1
    echo "kv=$kv: $res"
    row "generate cuda kv=$kv" "$(st $rc)" "$res"
done

echo "== 5. decode attention lab: BF16 vs FP8 KV"
if [ -x "$b/kernel_decode_attention" ]; then
    timeout 900 "$b/kernel_decode_attention" --kvfp8 >"$logs/decode_lab.log" 2>&1
    rc=$?
    grep -E "FAIL|graph replay" "$logs/decode_lab.log" | head -8
    sed -n '/KV cache BF16 (v5) vs FP8/,$p' "$logs/decode_lab.log"
    sp=$(awk '/KV cache BF16 \(v5\) vs FP8/{f=1; next} f && /B=64 ctx=8192 H32\/KV8 hd128/{print $NF; exit}' \
        "$logs/decode_lab.log")
    row "decode lab fp8/bf16 B64 ctx8192" "$(st $rc)" "speedup ${sp:-?} (target >= 1.70x)"
else
    row "decode lab" SKIP "build kernel_decode_attention (-DCINFER_BUILD_LABS=ON or its target)"
fi

echo
echo "| step                                 | status   | result"
printf '%s\n' "${rows[@]}"
