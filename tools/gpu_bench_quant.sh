#!/usr/bin/env bash
# gpu_bench_quant.sh — quantized weights on a GPU (issue 10): the Llama-3-8B
# shape (random bf16 weights, the real 128k Llama-3 tokenizer) quantized by
# tools/quantize_checkpoint.py (round-to-nearest; --jobs: one process per
# core) to compressed-tensors FP8 per-channel and GPTQ INT4 g128 symmetric,
# then side by side in the same run:
#   batch-1 decode (`bench latency`, 128 in / 256 out, CUDA graphs): bf16,
#   FP8 checkpoint, online --quantization fp8, GPTQ INT4, each against the
#   bandwidth roofline of the bytes it streams per token (linears + lm_head
#   + norms; the embedding reads one row);
#   decode at batch 12 / 16 / 64 / 128 / 256 (ms per step): GPTQ INT4 with the
#   warpgroup-MMA GEMM (9-512 rows) and without it (CINFER_QGEMM_MAX_N=0), bf16;
#   offline throughput (1000 x 256 in / 256 out, ignore_eos): bf16 vs FP8 vs INT4.
# GPU_BENCH_AB=1 adds, after the table: batch-1 decode with programmatic
# dependent launch off and on (CINFER_PDL=0/1) for bf16, FP8 and INT4, the
# decode-attention merge kernel vs in-kernel (CINFER_DEC_COMBINE), INT4
# row-major vs tiled (CINFER_QW_TILE), FP8 tensor-core GEMV vs split, INT4
# with each GEMV kernel (CINFER_QGEMV), and test_cuda_quant's GEMV/GEMM bench
# (CINFER_TEST_ONLY_BENCH=1) when BIN_DIR has it; these use one CUDA graph
# (--max-graph-batch-size 1) to skip the capture of larger batches.
# usage: tools/gpu_bench_quant.sh BIN_DIR TOKENIZER_DIR [NUM_PROMPTS]
set -uo pipefail
bin=$(cd "${1:-build}" && pwd)
tok=${2:?llama3 tokenizer dir}
nprompts=${3:-1000}
bw=${GPU_BW:-4.21e12} # measured copy bandwidth of the H200 (bytes/s)
d=/tmp/cinfer-bench
bf=$d/llama-3-8b
mkdir -p $d
[ -f "$bf/config.json" ] || python3 tools/make_random_model.py --shape llama-3-8b --out "$bf" \
    --tokenizer-dir "$tok" >/dev/null || exit 1
jobs=$(nproc)
for f in ct-fp8-channel gptq; do
    [ -f "$d/l8-$f/config.json" ] && continue
    t0=$(date +%s)
    python3 tools/quantize_checkpoint.py "$bf" "$d/l8-$f" --format $f --group 128 --jobs "$jobs" ||
        exit 1
    echo "quantized $f in $(($(date +%s) - t0)) s ($jobs processes)"
done
# bytes a decode step streams: every tensor except the embedding (one row of it)
streamed() {
    python3 - "$1" <<'PY'
import json, os, struct, sys
d, tot = sys.argv[1], 0
for f in os.listdir(d):
    if not f.endswith(".safetensors"):
        continue
    with open(os.path.join(d, f), "rb") as fh:
        h = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    for n, t in h.items():
        if n != "__metadata__" and n != "model.embed_tokens.weight":
            tot += t["data_offsets"][1] - t["data_offsets"][0]
print(tot)
PY
}
lat() { # lat LABEL MODEL [ARGS]: decode tok/s at batch 1
    local label=$1 m=$2
    shift 2
    timeout 300 "$bin/cinfer" bench latency -m "$m" --device cuda --batch-size 1 --input-len 128 \
        --output-len 256 --num-iters 3 --max-model-len 4096 "$@" >/tmp/bq_lat 2>&1 || {
        tail -3 /tmp/bq_lat
        return
    }
    local tps
    tps=$(awk '/^decode tok\/s/ {print $3}' /tmp/bq_lat)
    grep -E "per output|tok/s|forwards" /tmp/bq_lat | sed "s/^/[$label] /"
    echo "$label $tps" >>/tmp/bq_rows
}
rm -f /tmp/bq_rows
lat bf16 "$bf"
lat fp8-ckpt "$d/l8-ct-fp8-channel"
lat fp8-online "$bf" --quantization fp8
lat int4-gptq "$d/l8-gptq"
b_bf=$(streamed "$bf")
b_fp8=$(streamed "$d/l8-ct-fp8-channel")
b_int4=$(streamed "$d/l8-gptq")
python3 - "$bw" "$b_bf" "$b_fp8" "$b_int4" <<'PY'
import sys
bw, bbf, bfp8, bint4 = float(sys.argv[1]), *map(int, sys.argv[2:5])
bytes_of = {"bf16": bbf, "fp8-ckpt": bfp8, "fp8-online": bfp8, "int4-gptq": bint4}
rows = [l.split() for l in open("/tmp/bq_rows")]
base = next((float(r[1]) for r in rows if r[0] == "bf16" and len(r) > 1), None)
print("| weights | GB streamed / token | roofline tok/s | measured tok/s | of roofline | vs bf16 |")
print("|---|---|---|---|---|---|")
for r in rows:
    if len(r) < 2:
        continue
    b, t = bytes_of[r[0]], float(r[1])
    roof = bw / b
    print("| %s | %.2f | %.0f | %.1f | %.0f%% | %s |" % (r[0], b / 1e9, roof, t, 100 * t / roof,
          "%.2fx" % (t / base) if base else "-"))
PY
if [ "${GPU_BENCH_AB:-0}" = 1 ]; then
    echo "== batch 1, programmatic dependent launch off / on"
    for p in 0 1; do
        CINFER_PDL=$p lat "bf16-pdl$p" "$bf" --max-graph-batch-size 1
        CINFER_PDL=$p lat "fp8-online-pdl$p" "$bf" --quantization fp8 --max-graph-batch-size 1
        CINFER_PDL=$p lat "int4-pdl$p" "$d/l8-gptq" --max-graph-batch-size 1
    done
    echo "== batch 1, decode-attention split merge in the kernel / as its own kernel"
    CINFER_DEC_COMBINE=1 lat "bf16-merge-kernel" "$bf" --max-graph-batch-size 1
    lat "bf16-merge-in-kernel" "$bf" --max-graph-batch-size 1
    echo "== batch 1, INT4 row-major / tiled (CINFER_QW_TILE)"
    CINFER_QW_TILE=0 lat "int4-rowmajor" "$d/l8-gptq" --max-graph-batch-size 1
    CINFER_QW_TILE=1 lat "int4-tiled" "$d/l8-gptq" --max-graph-batch-size 1
    echo "== batch 1, FP8 tensor-core GEMV / split"
    lat "fp8-ckpt-auto" "$d/l8-ct-fp8-channel" --max-graph-batch-size 1
    CINFER_QGEMV=split lat "fp8-ckpt-split" "$d/l8-ct-fp8-channel" --max-graph-batch-size 1
    echo "== batch 1, INT4 with each GEMV kernel"
    for k in auto tc tc2 split vec; do
        CINFER_QGEMV=$k lat "int4-$k" "$d/l8-gptq" --max-graph-batch-size 1
    done
    if [ -x "$bin/test_cuda_quant" ]; then
        echo "== GEMV (n = 1), W8A8 GEMM and INT4 GEMM kernels"
        CINFER_TEST_ONLY_BENCH=1 timeout 300 "$bin/test_cuda_quant" | grep -E "GEMV|GEMM"
    fi
fi
echo "== decode batches: INT4 with / without the INT4 GEMM (CINFER_QGEMM_MAX_N=0), bf16"
latb() { # latb LABEL MODEL BATCH [ENV...]: ms per decode step
    local label=$1 m=$2 bs=$3
    shift 3
    env "$@" timeout 300 "$bin/cinfer" bench latency -m "$m" --device cuda --batch-size "$bs" \
        --input-len 128 --output-len 256 --num-iters 3 --max-model-len 4096 >/tmp/bq_latb 2>&1 ||
        { tail -3 /tmp/bq_latb; return; }
    grep -E "per output|^decode tok/s" /tmp/bq_latb | tr '\n' ' ' | sed "s/^/[$label] /"
    echo
}
for bs in 12 16 64 128 256; do
    latb "int4-b$bs" "$d/l8-gptq" "$bs" X=1
    latb "int4-b$bs-without-gemm" "$d/l8-gptq" "$bs" CINFER_QGEMM_MAX_N=0
    latb "bf16-b$bs" "$bf" "$bs" X=1
done
[ "$nprompts" -gt 0 ] || exit 0
echo "== offline: $nprompts x 256 in / 256 out, bf16 vs FP8 checkpoint vs INT4"
for m in "$bf" "$d/l8-ct-fp8-channel" "$d/l8-gptq"; do
    timeout 300 "$bin/cinfer" bench throughput -m "$m" --device cuda --num-prompts "$nprompts" \
        --input-len 256 --output-len 256 --max-num-seqs 256 2>&1 | grep -E "tok/s" |
        sed "s|^|[$(basename "$m")] |"
done
