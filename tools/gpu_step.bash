# gpu_step.bash — the prelude the one-call device scripts share (sourced:
# `. "$(dirname "$0")/gpu_step.bash" "$@"`, arguments BIN_DIR and the Llama-3
# tokenizer dir). Sets B (binaries), T (tokenizer), limit (LIMIT seconds,
# default 560), out (OUT, default /tmp; run_t's logs go to RUN_T_DIR, default
# out: the device tool returns at most 8 files), CINFER_SOURCE_DIR, and:
#   left                      seconds left of limit
#   step NAME NEED            prints the step's header; false (and says so)
#                             when fewer than NEED seconds are left
#   run_t LIMIT NAME CMD...   runs a test with a time limit, prints its
#                             verdict lines and first failures
#   lat1 LABEL MODEL ENV... -- ARGS
#                             batch-1 `bench latency` (128 in / 256 out,
#                             3 iterations, graphs of batch 1) with ENV set,
#                             its decode tok/s line labelled
#   ckpt_names "fp8 int4"     the checkpoint NAMEs below for those (f8h g4h)
#   ckpts_bg "NAME ARGS" ...  in the background: the Llama-3-8B shape in
#                             $M8 (random bf16) unless there, then each
#                             checkpoint $QD/NAME (tools/quantize_checkpoint.py
#                             ARGS) in turn unless there, then $QD/ALL; a NAME
#                             alone: f8h (FP8 per channel) or g4h (INT4 GPTQ
#                             g128), each with its LM head
#   offline1 MODEL LABEL ARGS `bench throughput` 1000 x 256 in / 256 out
#                             (random prompts, ignore_eos) with ARGS, its
#                             output tok/s echoed and left in OFF_V
#   model_bg SHAPE DIR        makes DIR (tools/make_random_model.py) in the
#                             background unless it exists; model_wait DIR
#                             waits for it while more than 60 s are left
#   prefill_lines             issue 14's prefill attention lines: the
#                             production launcher at the causal 8 x 4096
#                             shapes, then PyTorch SDPA (cuDNN) at hd 128 / 64
#   peer1 SECONDS             the compiled-PyTorch batch-1 peer
#                             (tools/peer_compiled_decode.py, gpt-fast's
#                             recipe) on $M8, SECONDS at most
B=$(cd "${1:?BIN_DIR}" && pwd) || {
    echo "gpu_step: no binaries at $1 ($(ls -d "$(dirname "$1")"/* 2>/dev/null | tr '\n' ' '))"
    exit 1
}
M8=/tmp/cinfer-l8 QD=/tmp/cinfer-q
T=${2:?llama3 tokenizer dir}
limit=${LIMIT:-560}
out=${OUT:-/tmp}
export CINFER_SOURCE_DIR=${CINFER_SOURCE_DIR:-$PWD}
left() { echo $((limit - SECONDS)); }
step() {
    if [ "$(left)" -lt "$2" ]; then
        echo "== $1: skipped ($(left) s left)"
        return 1
    fi
    echo "== $1 ($(date +%T), ${SECONDS} s)"
}
run_t() {
    local log=${RUN_T_DIR:-$out}/$2.log
    timeout "$1" "${@:3}" >"$log" 2>&1
    echo "$2: rc=$? $(grep -E 'passed|SKIP|ERROR SUMMARY' "$log" | tail -2 | tr '\n' ' ')"
    grep -m12 -E "CHECK failed|FAIL" "$log"
}
model_bg() {
    (
        [ -f "$2/config.json" ] || python3 tools/make_random_model.py --shape "$1" --out "$2" \
            --tokenizer-dir "$T" >"$2.log" 2>&1
        touch "$2.ready"
    ) &
}
model_wait() {
    while [ ! -f "$1.ready" ] && [ "$(left)" -gt 60 ]; do sleep 2; done
    echo "model $1 at ${SECONDS} s: $(tail -1 "$1.log" 2>/dev/null)"
}
prefill_lines() {
    LAB_CASE="target,8 x 4096" LAB_VER=prod timeout 100 $B/kernel_prefill_attention 2>&1 |
        grep -E "^==|^prod" | cut -c1-100
    timeout 90 python3 bench/kernels/prefill_attention_sdpa.py 128 64 2>&1 | tail -2
}
peer1() {
    timeout "$1" python3 tools/peer_compiled_decode.py $M8 --input-len 128 --output-len 256 2>&1 |
        grep -E "^peer" | sed 's/^/gpt-fast-style /'
}
lat1() {
    local n=$1 mm=$2 e=()
    shift 2
    while [ "$1" != -- ]; do e+=("$1"); shift; done
    shift
    [ -f "$mm/config.json" ] || { echo "$n: no $mm"; return; }
    [ "$(left)" -gt 45 ] || { echo "$n: skipped"; return; }
    timeout 100 env "${e[@]}" $B/cinfer bench latency -m $mm --device cuda --batch-size 1 \
        --input-len 128 --output-len 256 --num-iters 3 --max-model-len 4096 \
        --max-graph-batch-size 1 "$@" 2>&1 | grep -E "^decode tok/s|rror" | sed "s|^|$n |"
}
offline1() {
    local mm=$1 label=$2
    shift 2
    OFF_V=
    step "offline, $label" 45 || return
    OFF_V=$(timeout 120 $B/cinfer bench throughput -m $mm --device cuda --num-prompts 1000 \
        --input-len 256 --output-len 256 --max-model-len 4096 "$@" 2>&1 |
        awk '/output tok\/s/ {print $NF}')
    echo "$label: ${OFF_V:-failed} output tok/s"
}
ckpt_names() { # ckpt_names "fp8 int4": the checkpoints ckpts_bg makes for them (f8h g4h)
    local q=${1//fp8/f8h}
    echo ${q//int4/g4h}
}
ckpts_bg() {
    mkdir -p $QD
    rm -f $QD/ALL # a warm machine's earlier call may have left it, with other checkpoints
    (
        flock 9 # one maker at a time: a second call waits, then finds them made
        [ -f $M8/config.json ] || python3 tools/make_random_model.py --shape llama-3-8b \
            --out $M8 --tokenizer-dir "$T" >$QD/mk.log 2>&1
        for c in "$@"; do
            set -- $c
            case "$*" in
            f8h) set -- f8h --format ct-fp8-channel --lm-head ;;
            g4h) set -- g4h --format gptq --group 128 --lm-head ;;
            esac
            [ -f $QD/$1/config.json ] || python3 tools/quantize_checkpoint.py $M8 $QD/$1 \
                "${@:2}" --jobs 12 >$QD/$1.log 2>&1
        done
        touch $QD/ALL
    ) 9>$QD/.lock &
}
