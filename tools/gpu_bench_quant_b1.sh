#!/usr/bin/env bash
# gpu_bench_quant_b1.sh — issue 10's batch-1 quantized decode in one short
# call, A/B against an older binary: the Llama-3-8B shape (random bf16
# weights, the real Llama-3 tokenizer) made on the machine and quantized by
# tools/quantize_checkpoint.py (round-to-nearest, --jobs 8 each, two or three at
# a time in the background while the checks run): GPTQ INT4 g128, GPTQ INT4 g128
# desc_act, 8-bit GPTQ g128, per-tensor fp8 (AutoFP8), GPTQ INT4 g128 and
# per-tensor fp8 with the LM head quantized too (--lm-head); every one written
# before the first timing. Then `bench latency
# --batch-size 1 --input-len 128 --output-len 256 --num-iters 3
# --max-graph-batch-size 1` for bf16, each format (NEW, and OLD where given,
# interleaved: the first runs of a call read lower) and online fp8; with
# RUNS=2 (default) INT4 runs twice per binary.
# Before the benches (BIN_DIR's test binaries, when present): test_cuda_quant
# (no timings) and under compute-sanitizer memcheck, test_quant_model with
# CINFER_TEST_DEVICE=cuda, test_cuda_fused; then test_cuda_quant's INT4 / INT8
# GEMV bench (CINFER_TEST_GEMV_ONLY=int) for NEW and OLD's test_cuda_quant.
# usage: tools/gpu_bench_quant_b1.sh BIN_DIR TOKENIZER_DIR [OLD_BIN_DIR]
set -uo pipefail
B=$(cd "${1:?BIN_DIR}" && pwd)
T=${2:?llama3 tokenizer dir}
X=${3:+$(cd "$3" && pwd)}
runs=${RUNS:-2}
export CINFER_SOURCE_DIR=${CINFER_SOURCE_DIR:-$PWD}
d=/tmp/cinfer-q1
mkdir -p $d
(
    [ -f $d/l8/config.json ] || python3 tools/make_random_model.py --shape llama-3-8b \
        --out $d/l8 --tokenizer-dir "$T" >$d/mk.log 2>&1
    touch $d/BF16
    q() { [ -f $d/$1/config.json ] || python3 tools/quantize_checkpoint.py $d/l8 $d/$1 "${@:2}" \
        --jobs 8 >$d/$1.log 2>&1; touch $d/$1.ok; }
    q g4 --format gptq --group 128 &
    q g4a --format gptq --group 128 --desc-act
    wait
    q g8 --format gptq --bits 8 --group 128 &
    q g4h --format gptq --group 128 --lm-head &
    q f8t --format fp8-tensor &
    q f8h --format fp8-tensor --lm-head
    wait
    touch $d/ALL
) >/dev/null 2>&1 &
t() { # t LIMIT CMD...: one line of result
    local t0
    t0=$(date +%s)
    timeout "$1" "${@:2}" >/tmp/q1_t.log 2>&1
    echo "rc=$? $(($(date +%s) - t0))s: $(grep -E 'passed|SKIP|ERROR SUMMARY' /tmp/q1_t.log |
        tail -2 | tr '\n' ' ')"
    grep -m8 "CHECK failed" /tmp/q1_t.log
}
echo "== checks $(date +%T)"
if [ -x $B/test_cuda_quant ]; then
    t 150 env CINFER_TEST_NO_BENCH=1 $B/test_cuda_quant
    t 150 env CINFER_TEST_NO_BENCH=1 compute-sanitizer --tool memcheck --error-exitcode 9 \
        $B/test_cuda_quant
fi
[ -x $B/test_quant_model ] && t 120 env CINFER_TEST_DEVICE=cuda $B/test_quant_model
[ -x $B/test_cuda_fused ] && t 90 $B/test_cuda_fused
echo "== GEMV bench $(date +%T)"
for v in ${X:+X} B; do
    eval bd=\$$v
    [ -x $bd/test_cuda_quant ] || continue
    CINFER_TEST_GEMV_ONLY=int timeout 90 $bd/test_cuda_quant 2>&1 |
        grep "GEMV.*bf16, \(auto\|split\)" | sed "s/^/$v /"
done
lat() { # lat LABEL BIN_DIR MODEL [ARGS]
    local n=$1 bd=$2 m=$3
    shift 3
    timeout 150 $bd/cinfer bench latency -m $m --device cuda --batch-size 1 --input-len 128 \
        --output-len 256 --num-iters 3 --max-model-len 4096 --max-graph-batch-size 1 "$@" 2>&1 |
        grep -E "^decode tok/s|rror" | sed "s|^|$n |"
}
w() { while [ ! -f $d/$1 ]; do sleep 2; done; }
# no timing while the quantizer runs: its 16+ processes on the host read as
# 250-440 tok/s for one INT4 binary (2026-12-05)
w ALL
echo "== batch-1 decode $(date +%T) (X = old, B = new)"
lat "bf16 B" $B $d/l8
for _ in $(seq "$runs"); do
    [ -n "$X" ] && lat "int4-g128 X" $X $d/g4
    lat "int4-g128 B" $B $d/g4
done
[ -n "$X" ] && lat "int4-g128-desc_act X" $X $d/g4a
lat "int4-g128-desc_act B" $B $d/g4a
[ -n "$X" ] && lat "gptq8-g128 X" $X $d/g8
lat "gptq8-g128 B" $B $d/g8
lat "int4-g128+lm_head B" $B $d/g4h
lat "fp8-tensor B" $B $d/f8t
lat "fp8-tensor+lm_head B" $B $d/f8h
lat "fp8-online B" $B $d/l8 --quantization fp8
lat "bf16 B" $B $d/l8
echo "== done $(date +%T)"
