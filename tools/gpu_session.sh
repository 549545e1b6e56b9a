#!/usr/bin/env bash
# gpu_session.sh — one device call: binaries built on the CPU machine are
# carried as .carry/bin.tgz (stripped cinfer + CUDA tests, with the
# OpenBLAS/gfortran runtime they link), tokenizers as .carry/tok.tgz. Runs
#   1. tools/make_fixtures.py for the sliding-window fixtures (transformers
#      goldens; returned as $OUT/swa.tar);
#   2. tools/gpu_check.sh (CUDA tests incl. the SWA goldens, sanitizers,
#      generate parity, engine suite, faults, padded vocabulary);
#   3. tools/gpu_bench_context.sh (issue 9's benchmarks);
#   4. "peer": tools/hf_baseline.py (transformers) at batch 1 on the
#      Llama-3.1-8B-shaped checkpoint;
#   5. "spec": tools/gpu_bench_spec.sh (speculative decoding: exactness and
#      speed; .carry/spec.tgz holds inflate_qwen2.py and the draft model);
#   quant: tools/gpu_bench_quant.sh (FP8 / INT4 checkpoints vs bf16: batch-1 decode, offline);
#   batch1: tools/gpu_bench_batch1.sh (bf16 batch 1 with the torch.compile peer, issue 14);
#   structured: tools/gpu_bench_structured.sh;
#   6. "extra": test_swa on CUDA (SWA goldens through the engine), the padded
#      vocabulary on CUDA, and `serve` startup with engine flags.
#   7. "kvfp8": tools/gpu_kvfp8.sh on the carried binaries (the FP8 KV cache:
#      CUDA tests, memcheck, perplexity and goldens with --kv-cache-dtype fp8,
#      the decode attention lab BF16 vs FP8 at batch 64, context 8192; the
#      lab binary kernel_decode_attention must be carried in bin/).
# Logs: $OUT/session.log (this), $OUT/check_logs.tgz. Steps: GPU_SESSION_STEPS
# (default "fixtures check bench extra").
set -uo pipefail
steps=${GPU_SESSION_STEPS:-fixtures check bench extra}
x=/tmp/carry
mkdir -p "$x" && tar xzf .carry/bin.tgz -C "$x" || exit 1
[ -f .carry/tok.tgz ] && tar xzf .carry/tok.tgz -C "$x"
[ -f .carry/spec.tgz ] && tar xzf .carry/spec.tgz -C "$x"
export LD_LIBRARY_PATH=$x/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CINFER_SOURCE_DIR=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
date -u
case " $steps " in *" fixtures "*)
    echo "== SWA fixtures (transformers)"
    t0=$(date +%s)
    PYTHONUNBUFFERED=1 timeout 240 python3 tools/make_fixtures.py --only mistral_swa,qwen2_swa \
        --out tests/data 2>&1 | tail -25
    tar cf "${OUT:-/tmp}/swa.tar" tests/data/mistral_swa tests/data/qwen2_swa
    echo "fixtures: $(($(date +%s) - t0)) s"
    ;;
esac
case " $steps " in *" check "*)
    echo "== gpu_check"
    OUT=/tmp/check_logs GPU_CHECK_RACECHECK=${GPU_CHECK_RACECHECK:-1} bash tools/gpu_check.sh "$x/bin" 2>&1 | tail -40
    tar czf "${OUT:-/tmp}/check_logs.tgz" -C /tmp check_logs
    ;;
esac
case " $steps " in *" bench "*)
    echo "== gpu_bench_context"
    bash tools/gpu_bench_context.sh "$x/bin" "$x/tok/llama3" "$x/tok/qwen3" 500
    ;;
esac
case " $steps " in *" spec "*)
    echo "== gpu_bench_spec"
    bash tools/gpu_bench_spec.sh "$x/bin" "$x/spec"
    ;;
esac
case " $steps " in *" kvfp8 "*)
    echo "== gpu_kvfp8"
    OUT=/tmp/kvfp8_logs bash tools/gpu_kvfp8.sh "$x/bin" 2>&1 | tail -60
    ;;
esac
case " $steps " in *" structured "*)
    echo "== gpu_bench_structured"
    bash tools/gpu_bench_structured.sh "$x/bin" "$x/tok/llama3"
    ;;
esac
case " $steps " in *" quant "*)
    echo "== gpu_bench_quant"
    bash tools/gpu_bench_quant.sh "$x/bin" "$x/tok/llama3" "${GPU_QUANT_PROMPTS:-1000}"
    ;;
esac
case " $steps " in *" batch1 "*)
    echo "== gpu_bench_batch1 (issue 14: batch-1 bf16 with the compiled-PyTorch peer)"
    bash tools/gpu_bench_batch1.sh "$x/bin/cinfer" "$x/tok/llama3"
    ;;
esac
case " $steps " in *" peer "*)
    echo "== peer: HF transformers eager bf16 on the Llama-3.1-8B-shaped checkpoint, batch 1"
    l31=/tmp/cinfer-ctx/llama-3.1-8b
    [ -f "$l31/config.json" ] || python3 tools/make_random_model.py --shape llama-3.1-8b \
        --out "$l31" --tokenizer-dir "$x/tok/llama3" >/dev/null
    timeout 240 python3 tools/hf_baseline.py "$l31" --batch-sizes 1 2>&1 | grep "^HF"
    ;;
esac
case " $steps " in *" nvtx "*)
    echo "== NVTX ranges under Nsight Systems"
    if command -v nsys >/dev/null; then
        timeout 120 nsys profile -o /tmp/cinfer_nvtx --force-overwrite true --trace cuda,nvtx \
            "$x/bin/cinfer" generate -m models/tinyqwen2-code --device cuda -p "def f(x):" -n 32 \
            >/dev/null 2>&1
        timeout 60 nsys stats --report nvtx_sum /tmp/cinfer_nvtx.nsys-rep 2>&1 | tail -12
    else
        echo "nsys not installed: skipped"
    fi
    ;;
esac
case " $steps " in *" extra "*)
    echo "== test_swa --device cuda (float32)"
    CINFER_TEST_DEVICE=cuda timeout 120 "$x/bin/test_swa" 2>&1 | tail -6
    echo "== test_structured --device cuda (grammar masks through the CUDA sample op)"
    [ -x "$x/bin/test_structured" ] && CINFER_TEST_DEVICE=cuda timeout 120 "$x/bin/test_structured" 2>&1 | tail -4
    echo "== padded vocabulary --device cuda"
    PADDED_SEEDS=64 PADDED_TOKENS=1000 CINFER_TEST_DEVICE=cuda CINFER_BIN=$x/bin/cinfer timeout 200 bash tests/cli/padded_vocab.sh
    echo "== serve: engine flags on cuda"
    m=models/tinyqwen2-code
    for flags in "" "--dtype float32 --enforce-eager --gpu-memory-utilization 0.5"; do
        "$x/bin/cinfer" serve -m $m --device cuda --port 0 $flags >/tmp/serve.log 2>&1 &
        pid=$!
        for _ in $(seq 150); do grep -q listening /tmp/serve.log && break; sleep 0.2; done
        echo "flags: '$flags'; GPU memory used: $(nvidia-smi --query-gpu=memory.used --format=csv,noheader)"
        grep "cinfer serve" /tmp/serve.log
        kill $pid; wait $pid
    done
    "$x/bin/cinfer" serve -m $m --device cuda --dtype bogus; echo "exit $?"
    "$x/bin/cinfer" serve -m $m --device cuda --gpu-memory-utilization 2; echo "exit $?"
    ;;
esac
date -u
