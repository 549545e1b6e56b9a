#!/usr/bin/env bash
# `cinfer generate` flags: --stop (repeatable; the text ends before the stop
# string, finish_reason stop), -p - and -f FILE (same prompt tokens and text
# as -p TEXT), --repetition-penalty / --presence-penalty / --frequency-penalty
# (change greedy output; equal to the same fields in a --prompts-file line,
# and used as that mode's defaults), --chat --system (the prompt is the chat
# template's rendering, as render-chat prints it; --chat-template FILE's
# when given), bad values name the flag; --tensor-parallel-size 2 / 4 give
# the same greedy text.
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() {
    local name=$1
    shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi
}
gen() { "$bin" generate -m "$m" --temperature 0 --json "$@" 2>"$tmp/err"; }
p='def fibonacci(n):'

base=$(gen -p "$p" -n 40 --ignore-eos)
btext=$(jq -r .text <<<"$base")
check "greedy baseline contains ' fib'" eval '[[ "$btext" == *" fib"* ]]'
want=${btext%%" fib"*} # the text before the first ' fib'
got=$(gen -p "$p" -n 40 --ignore-eos --stop " fib" --stop "@@never@@")
check "--stop: text ends before the first stop string" [ "$(jq -r .text <<<"$got")" = "$want" ]
check "--stop: finish_reason stop" [ "$(jq -r .finish_reason <<<"$got")" = stop ]

printf '%s' "$p" >"$tmp/prompt.txt"
check "-f FILE == -p TEXT" [ "$(gen -f "$tmp/prompt.txt" -n 40 --ignore-eos | jq -c '[.prompt_tokens,.text]')" = "$(jq -c '[.prompt_tokens,.text]' <<<"$base")" ]
check "-p - (stdin) == -p TEXT" [ "$(gen -p - -n 40 --ignore-eos <"$tmp/prompt.txt" | jq -c '[.prompt_tokens,.text]')" = "$(jq -c '[.prompt_tokens,.text]' <<<"$base")" ]
gen -p "$p" -f "$tmp/prompt.txt" >/dev/null
check "-p and -f together: refused" grep -q "not both" "$tmp/err"

for flag in "--repetition-penalty 1.5" "--presence-penalty 1.5" "--frequency-penalty 1.5"; do
    # shellcheck disable=SC2086
    pen=$(gen -p "$p" -n 40 --ignore-eos $flag)
    check "$flag changes the greedy tokens" [ "$(jq -c .tokens <<<"$pen")" != "$(jq -c .tokens <<<"$base")" ]
    field=$(sed 's/^--//; s/-/_/g; s/ .*//' <<<"$flag")
    val=${flag#* }
    jq -cn --arg p "$p" --arg f "$field" --argjson v "$val" \
        '{prompt:$p,max_tokens:40,temperature:0,ignore_eos:true} + {($f):$v}' >"$tmp/one.jsonl"
    check "$flag == \"$field\" in a --prompts-file line" \
        [ "$("$bin" generate -m "$m" --prompts-file "$tmp/one.jsonl" 2>/dev/null | jq -r .text)" = "$(jq -r .text <<<"$pen")" ]
    jq -cn --arg p "$p" '{prompt:$p,max_tokens:40,temperature:0,ignore_eos:true}' >"$tmp/one.jsonl"
    # shellcheck disable=SC2086
    check "$flag is the --prompts-file default" \
        [ "$("$bin" generate -m "$m" --prompts-file "$tmp/one.jsonl" $flag 2>/dev/null | jq -r .text)" = "$(jq -r .text <<<"$pen")" ]
done
gen -p "$p" --repetition-penalty 0 >/dev/null
check "--repetition-penalty 0: refused by name" grep -q -- "--repetition-penalty must be > 0" "$tmp/err"
gen -p "$p" --frequency-penalty -3 >/dev/null
check "--frequency-penalty -3: refused by name" grep -q -- "--frequency-penalty must be in" "$tmp/err"

# --chat --system: the prompt tokens are the rendered template's
jq -cn '{messages:[{role:"system",content:"Be terse."},{role:"user",content:"hello there"}],add_generation_prompt:true}' |
    "$bin" render-chat -m "$m" >"$tmp/rendered.txt"
chat=$(gen --chat --system "Be terse." -p "hello there" -n 4)
ref=$(gen -f "$tmp/rendered.txt" -n 4)
check "--chat --system: prompt == render-chat's rendering" \
    [ "$(jq -c .prompt_tokens <<<"$chat")" = "$(jq -c .prompt_tokens <<<"$ref")" -a -n "$(jq -c .prompt_tokens <<<"$ref")" ]
check "--chat: the rendered prompt has the system text" grep -q "Be terse." "$tmp/rendered.txt"
printf '{%% for m in messages %%}<{{ m.role }}>{{ m.content }}{%% endfor %%}<bot>' >"$tmp/t.jinja"
printf '<system>S1<user>hey<bot>' >"$tmp/t.txt"
check "--chat --chat-template FILE: the file's rendering" \
    [ "$(gen --chat --chat-template "$tmp/t.jinja" --system S1 -p hey -n 2 | jq -c .prompt_tokens)" = "$(gen -f "$tmp/t.txt" -n 2 | jq -c .prompt_tokens)" ]
printf '{%% if %%}' >"$tmp/bad.jinja"
gen --chat --chat-template "$tmp/bad.jinja" -p hey >/dev/null
check "--chat-template that does not compile: one error line" eval '[ "$(grep -c "^error: chat template" "$tmp/err")" = 1 ]'
gen --system x -p hi >/dev/null
check "--system without --chat: refused" grep -q "need --chat" "$tmp/err"

# --tensor-parallel-size (-tp): the model split over CPU rank threads, the
# same greedy text; a size that does not divide the heads is one line
for tp in 2 4; do
    check "-tp $tp: same greedy text" [ "$(gen -p "$p" -n 40 --ignore-eos -tp $tp --threads $tp | jq -r .text)" = "$btext" ]
done
check "-pp 3: same greedy text" [ "$(gen -p "$p" -n 40 --ignore-eos -pp 3 --threads 3 | jq -r .text)" = "$btext" ]
check "-tp 2 -pp 2: same greedy text" [ "$(gen -p "$p" -n 40 --ignore-eos -tp 2 -pp 2 --threads 4 | jq -r .text)" = "$btext" ]
gen -p "$p" -n 4 -pp 7 >/dev/null
check "-pp 7 (6 layers): one error line" eval '[ "$(grep -c "exceeds num_hidden_layers 6" "$tmp/err")" = 1 ]'
gen -p "$p" -n 4 -tp 3 >/dev/null
check "-tp 3 (4 heads): one error line naming the field" eval '[ "$(grep -c "does not divide num_attention_heads 4" "$tmp/err")" = 1 ]'
# on GPUs one per rank (NCCL): more ranks than GPUs is one line at startup
ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
ntp=$((ngpu + 1 > 2 ? ngpu + 1 : 2))
gen -p "$p" -n 4 --device cuda -tp $ntp >/dev/null
check "--device cuda -tp $ntp ($ngpu GPUs): one error line naming the GPUs" eval '[ "$(grep -c "needs $ntp cuda devices" "$tmp/err")" = 1 ]'

echo "passed $passed, failed $failed"
[ "$failed" = 0 ]
