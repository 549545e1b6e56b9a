#!/usr/bin/env bash
# gpu_timeline_quant.sh — one device call: the in-graph timeline of a batch-1
# decode step (tools/gpu_timeline_decode.sh) on the Llama-3-8B shape in bf16
# and quantized (FP8 per channel and INT4 GPTQ g128, each with its LM head),
# under each of VARIANTS ("LABEL ENV=V ...", ";"-separated; default: the
# quantized GEMVs' fusions, "fused X=0", and without, "nofuse
# CINFER_FUSE_TC8=0"), for the checkpoints Q (default "bf16 f8h g4h"; bf16
# without variants unless BF16_VARIANTS=1): where a layer's time goes now
# that it is 5 kernels, as the graph runs it. Each table also goes to $OUT/tl_LABEL.md.
# usage: tools/gpu_timeline_quant.sh TIMELINE_BIN_DIR LLAMA3_TOKENIZER_DIR   (LIMIT, default 560)
set -uo pipefail
. "$(dirname "$0")/gpu_step.bash" "$@"
q=${Q:-bf16 f8h g4h}
ckpts_bg ${q//bf16/}
tl() { # tl LABEL MODEL ENV...
    local n=$1 mm=$2
    shift 2
    [ -f "$mm/config.json" ] && [ "$(left)" -gt 40 ] || { echo "$n: skipped"; return; }
    echo "== $n ($(date +%T), ${SECONDS} s)"
    env "$@" timeout 100 "$(dirname "$0")/gpu_timeline_decode.sh" $B $mm /tmp/tl_$n.csv |
        tee $out/tl_$n.md | head -${TL_ROWS:-24}
}
# WAIT_FOR=FILE: no timing until FILE exists (other GPU work of the call)
while [ -n "${WAIT_FOR:-}" ] && [ ! -f "$WAIT_FOR" ] && [ "$(left)" -gt 100 ]; do sleep 2; done
IFS=';' read -r -a vs <<<"${VARIANTS:-fused X=0; nofuse CINFER_FUSE_TC8=0}"
if [[ " $q " == *" bf16 "* ]]; then
    while [ ! -f $M8/config.json ] && [ "$(left)" -gt 60 ]; do sleep 2; done
    sleep 3
    # BF16_VARIANTS=1: bf16 under each of VARIANTS too (else as it is)
    if [ "${BF16_VARIANTS:-0}" = 1 ]; then
        for v in "${vs[@]}"; do
            read -r -a a <<<"$v"
            tl "bf16_${a[0]}" $M8 "${a[@]:1}"
        done
    else
        tl bf16 $M8 X=0
    fi
fi
while [ ! -f $QD/ALL ] && [ "$(left)" -gt 100 ]; do sleep 2; done
echo "checkpoints at ${SECONDS} s"
for c in $q; do
    [ $c = bf16 ] && continue
    for v in "${vs[@]}"; do
        read -r -a a <<<"$v"
        tl "${c}_${a[0]}" $QD/$c "${a[@]:1}"
    done
done
echo "done at ${SECONDS} s"
