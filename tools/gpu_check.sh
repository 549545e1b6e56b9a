#!/usr/bin/env bash
# gpu_check.sh — one command for a GPU machine: runs the already-built CUDA
# tests, compute-sanitizer (memcheck, then racecheck if time allows) on the
# CUDA op test, times `cinfer generate --device cuda` on tinyqwen2-code,
# and prints a summary table last.
#
# usage: tools/gpu_check.sh [BIN_DIR]   (run from the repository root)
#   BIN_DIR holds cinfer, test_cuda_ops, test_cuda_model, test_engine, test_cuda_quant,
#   test_cuda_fused, test_quant_model (default: build/).
#   Logs go to $OUT (if set) or ./gpu_check_logs.
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
export CINFER_SOURCE_DIR=${CINFER_SOURCE_DIR:-$PWD}
logs=${OUT:-$PWD/gpu_check_logs}
mkdir -p "$logs"
times=$(mktemp -d) # kept out of $logs: the device tool returns at most 8 files
# cuBLASLt: the toolkit's or the one pip installed next to PyTorch
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null); do
    [ -d "$d" ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d
done
declare -a rows
row() { rows+=("$(printf '| %-34s | %-6s | %8s | %s' "$1" "$2" "$3" "$4")"); }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
if ldd "$bin/cinfer" | grep -q "not found"; then
    echo "missing libraries:"; ldd "$bin/cinfer" | grep "not found"
fi

# run NAME TIMEOUT CMD... : runs with a time limit, log to $logs/NAME.log
run() {
    local name=$1 lim=$2
    shift 2
    local t0=$(date +%s%N)
    timeout "$lim" "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)) >"$times/$name.time"
    return $rc
}
status_of() { case $1 in 0) echo PASS ;; 77) echo SKIP ;; 124) echo TIMEOUT ;; *) echo "FAIL($1)" ;; esac; }

# suite NAME LABEL LIMIT LINES PATTERN CMD...: a CUDA test binary, its log
# lines matching PATTERN (at most LINES) and a summary row
suite() {
    local name=$1 label=$2 lim=$3 lines=$4 pat=$5
    shift 5
    echo "== $label"
    run "$name" "$lim" "$@"
    local rc=$?
    grep -E "$pat|passed|CHECK failed|SKIP" "$logs/$name.log" | head -"$lines"
    row "$label" "$(status_of $rc)" "$(cat "$times/$name.time")s" \
        "$(grep -E 'passed, ' "$logs/$name.log" | tail -1)"
}

suite test_cuda_ops test_cuda_ops 240 30 "all ops|attention|gemm" "$bin/test_cuda_ops"
suite test_cuda_model test_cuda_model 240 40 "golden|perplexity|speed|fixture|mismatch|NLL" \
    "$bin/test_cuda_model"
if [ -x "$bin/test_cuda_quant" ]; then
    suite test_cuda_quant test_cuda_quant 240 20 "GEMV" "$bin/test_cuda_quant"
    # quantized fixtures end to end on the GPU vs the CPU twin (needs python3 + numpy)
    CINFER_TEST_DEVICE=cuda suite test_quant_model "test_quant_model (cuda)" 240 20 "on cuda|tiled" \
        "$bin/test_quant_model"
fi
[ -x "$bin/test_cuda_fused" ] &&
    suite test_cuda_fused test_cuda_fused 120 10 "fused matmul" "$bin/test_cuda_fused"
[ -x "$bin/test_cuda_sampling" ] &&
    suite test_cuda_sampling test_cuda_sampling 240 20 "us per call|mismatch|chi" \
        "$bin/test_cuda_sampling"

echo "== compute-sanitizer memcheck test_cuda_ops (quick)"
if command -v compute-sanitizer >/dev/null; then
    CINFER_TEST_QUICK=1 run memcheck 300 compute-sanitizer --tool memcheck --leak-check full \
        --error-exitcode 9 "$bin/test_cuda_ops"; rc=$?
    tail -4 "$logs/memcheck.log"
    row "memcheck test_cuda_ops" "$(status_of $rc)" "$(cat "$times/memcheck.time")s" \
        "$(grep -E 'ERROR SUMMARY' "$logs/memcheck.log" | tail -1)"
    for t in test_cuda_quant test_cuda_sampling; do
        [ -x "$bin/$t" ] || continue
        echo "== compute-sanitizer memcheck $t"
        CINFER_TEST_QUICK=1 run memcheck_$t 300 compute-sanitizer --tool memcheck --leak-check full \
            --error-exitcode 9 "$bin/$t"; rc=$?
        tail -3 "$logs/memcheck_$t.log"
        row "memcheck $t" "$(status_of $rc)" "$(cat "$times/memcheck_$t.time")s" \
            "$(grep -E 'ERROR SUMMARY' "$logs/memcheck_$t.log" | tail -1)"
    done
    if [ "${GPU_CHECK_RACECHECK:-1}" = 1 ]; then
        # Hazards inside cuBLASLt's own GEMM kernels (nvjet_*: NVIDIA's closed
        # code; 4 reported on 2026-11-23) are counted apart from ours; leaving
        # those kernels out with --kernel-name-exclude crashed the sanitizer.
        echo "== compute-sanitizer racecheck test_cuda_ops (quick, bf16)"
        CINFER_TEST_QUICK=1 CINFER_TEST_MODES=${GPU_CHECK_RACECHECK_MODES:-bf16} run racecheck 300 \
            compute-sanitizer --tool racecheck \
            --error-exitcode 9 "$bin/test_cuda_ops"; rc=$?
        tail -4 "$logs/racecheck.log"
        ours=$(grep -E "Race reported between" "$logs/racecheck.log" | grep -vc "nvjet_")
        lib=$(grep -E "Race reported between" "$logs/racecheck.log" | grep -c "nvjet_")
        ok=$(grep -cE "test_cuda_ops: [0-9]+ passed, 0 failed" "$logs/racecheck.log")
        if [ "$rc" = 9 ] && [ "$ours" = 0 ] && [ "$ok" = 1 ]; then rc=0; fi
        row "racecheck test_cuda_ops" "$(status_of $rc)" "$(cat "$times/racecheck.time")s" \
            "$ours hazards in cinfer kernels, $lib in cuBLASLt nvjet kernels"
    fi
else
    row "compute-sanitizer" SKIP - "not installed"
fi

echo "== cinfer generate --device cuda (tinyqwen2-code, 256 tokens, greedy)"
m=$CINFER_SOURCE_DIR/models/tinyqwen2-code
for dev in cuda cpu; do
    run "generate_$dev" 120 "$bin/cinfer" generate -m "$m" -p "def fibonacci(n):" -n 256 --temperature 0 \
        --ignore-eos --json --device "$dev"; rc=$?
    tps=$(python3 -c 'import json,sys; t=json.loads([l for l in open(sys.argv[1]) if l.startswith("{")][-1])["timings"]; print("prefill %.0f tok/s, decode %.1f tok/s, load %.2fs" % (t["prefill_tokens_per_s"], t["decode_tokens_per_s"], t["load_s"]))' "$logs/generate_$dev.log" 2>/dev/null || tail -1 "$logs/generate_$dev.log")
    echo "$dev: $tps"
    row "generate --device $dev" "$(status_of $rc)" "$(cat "$times/generate_$dev.time")s" "$tps"
done
# F32 mode (--dtype float32) must give the CPU's greedy tokens
run generate_cuda_f32 120 "$bin/cinfer" generate -m "$m" --dtype float32 \
    -p "def fibonacci(n):" -n 256 --temperature 0 --ignore-eos --json --device cuda; rc=$?
same=$(python3 - "$logs" <<'PY' 2>/dev/null
import json, sys
ld = lambda f: json.loads([l for l in open(sys.argv[1] + f) if l.startswith("{")][-1])["tokens"]
a, b = ld("/generate_cuda_f32.log"), ld("/generate_cpu.log")
k = 0
while k < min(len(a), len(b)) and a[k] == b[k]: k += 1
print("%d/%d tokens identical to cpu" % (k, len(b)))
PY
)
echo "cuda f32 vs cpu: $same"
row "generate --device cuda (f32)" "$(status_of $rc)" "$(cat "$times/generate_cuda_f32.time")s" "$same"
# CUDA graphs (default) against eager: the same kernels, so the same tokens
run generate_cuda_eager 120 "$bin/cinfer" generate -m "$m" --enforce-eager \
    -p "def fibonacci(n):" -n 256 --temperature 0 --ignore-eos --json --device cuda; rc=$?
same=$(python3 - "$logs" <<'PY' 2>/dev/null
import json, sys
ld = lambda f: json.loads([l for l in open(sys.argv[1] + f) if l.startswith("{")][-1])
a, b = ld("/generate_cuda.log"), ld("/generate_cuda_eager.log")
k = 0
while k < min(len(a["tokens"]), len(b["tokens"])) and a["tokens"][k] == b["tokens"][k]: k += 1
print("%d/%d tokens identical to graphs; eager decode %.1f tok/s vs graphs %.1f" % (
    k, len(a["tokens"]), b["timings"]["decode_tokens_per_s"], a["timings"]["decode_tokens_per_s"]))
PY
)
echo "eager vs graphs: $same"
row "generate --enforce-eager" "$(status_of $rc)" "$(cat "$times/generate_cuda_eager.time")s" "$same"

# the engine suite (batch invariance, prefix cache, preemption, sampling,
# abort) on the GPU, float32 (parity mode) and bfloat16
if [ -x "$bin/test_engine" ]; then
    for dt in float32 bfloat16; do
        echo "== test_engine --device cuda ($dt)"
        CINFER_TEST_DEVICE=cuda CINFER_TEST_DTYPE=$dt run "test_engine_$dt" 300 "$bin/test_engine"; rc=$?
        grep -E "CHECK failed|passed|SKIP|differ" "$logs/test_engine_$dt.log" | head -12
        row "test_engine cuda $dt" "$(status_of $rc)" "$(cat "$times/test_engine_$dt.time")s" \
            "$(grep -E 'passed, ' "$logs/test_engine_$dt.log" | tail -1)"
    done
    # plan-ahead scheduling: two steps in flight, input ids read on the device,
    # the ready mark in every graph
    echo "== test_engine --device cuda (float32, plan-ahead)"
    CINFER_TEST_DEVICE=cuda CINFER_TEST_ASYNC=2 CINFER_AHEAD_READY=2 run test_engine_ahead 300 \
        "$bin/test_engine"; rc=$?
    grep -E "CHECK failed|passed|plan-ahead" "$logs/test_engine_ahead.log" | head -12
    row "test_engine cuda plan-ahead" "$(status_of $rc)" "$(cat "$times/test_engine_ahead.time")s" \
        "$(grep -E 'passed, ' "$logs/test_engine_ahead.log" | tail -1)"
fi
# all-or-nothing steps under injected faults, and a padded vocabulary, on the GPU
if [ -x "$bin/test_engine_faults" ]; then
    echo "== test_engine_faults --device cuda"
    CINFER_TEST_DEVICE=cuda run test_engine_faults 300 "$bin/test_engine_faults"; rc=$?
    grep -E "CHECK failed|passed" "$logs/test_engine_faults.log" | head -8
    row "test_engine_faults cuda" "$(status_of $rc)" "$(cat "$times/test_engine_faults.time")s" \
        "$(grep -E 'passed, ' "$logs/test_engine_faults.log" | tail -1)"
    CINFER_TEST_DEVICE=cuda CINFER_TEST_ASYNC=2 run test_engine_faults_ahead 300 \
        "$bin/test_engine_faults"; rc=$?
    grep -E "CHECK failed|passed" "$logs/test_engine_faults_ahead.log" | head -8
    row "test_engine_faults cuda plan-ahead" "$(status_of $rc)" \
        "$(cat "$times/test_engine_faults_ahead.time")s" \
        "$(grep -E 'passed, ' "$logs/test_engine_faults_ahead.log" | tail -1)"
fi
echo "== padded vocabulary --device cuda"
CINFER_TEST_DEVICE=cuda CINFER_BIN=$bin/cinfer run padded_vocab 300 bash tests/cli/padded_vocab.sh; rc=$?
grep -E "^ok|^FAIL" "$logs/padded_vocab.log"
row "padded vocab cuda" "$(status_of $rc)" "$(cat "$times/padded_vocab.time")s" \
    "$(tail -1 "$logs/padded_vocab.log")"
python3 - "$logs" <<'PY' 2>/dev/null
import json, sys
ld = lambda f: json.loads([l for l in open(sys.argv[1] + f) if l.startswith("{")][-1])["tokens"]
a, b = ld("/generate_cuda.log"), ld("/generate_cpu.log")
k = 0
while k < min(len(a), len(b)) and a[k] == b[k]: k += 1
print("cuda (bf16) vs cpu (f32) greedy tokens: first %d of %d identical" % (k, len(a)))
PY

echo
echo "== summary"
printf '| %-34s | %-6s | %8s | %s\n' check result time detail
printf '|%s|%s|%s|%s\n' "------------------------------------" "--------" "----------" "-------"
for r in "${rows[@]}"; do echo "$r"; done
