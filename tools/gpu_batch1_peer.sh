#!/usr/bin/env bash
# gpu_batch1_peer.sh — issue 14's batch-1 line and hd 64 kernel line for a
# call short of device time (~320 s): the Llama-3-8B shape (random bf16) is
# made in the background while the prefill attention's production launcher
# and PyTorch SDPA (cuDNN) time the causal 8 x 4096 shapes; then batch-1 bf16
# decode (`bench latency`, gpu_step.bash's lat1), the compiled-PyTorch peer
# (tools/peer_compiled_decode.py, gpt-fast's recipe) and cinfer again, all
# in the same call. gpu_accept.sh does all of issue 14's lines when a call
# has ~560 s.
# usage: tools/gpu_batch1_peer.sh BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
model_bg llama-3-8b $M8
{
    step "prefill attention, production launcher" 200 && prefill_lines
    model_wait $M8
    step "batch-1 decode, cinfer / compiled PyTorch / cinfer" 60
    lat1 bf16 $M8 X=0 --
    [ "$(left)" -gt 100 ] && peer1 $(($(left) - 40))
    lat1 bf16 $M8 X=0 --
    echo "done at ${SECONDS} s"
} 2>&1 | tee $out/batch1_peer.txt
