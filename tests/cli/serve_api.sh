#!/usr/bin/env bash
# cinfer serve: every endpoint and the main request parameters, with curl.
# Greedy /v1/completions equals `cinfer generate --temperature 0`; streams
# are well-formed SSE ending in [DONE] and carry the same text; a server
# of the model split over 2 x 2 CPU ranks (-tp 2 -pp 2) answers the same.
. "$(dirname "$0")/serve_common.bash"

start_server --served-model-name tiny

# ---- /health, /v1/models ----
req GET /health
check "GET /health 200" [ "$status" = 200 ]
req GET /v1/models
check "GET /v1/models" eval '[ "$status" = 200 ] && jqb ".object==\"list\" and .data[0].id==\"tiny\" and .data[0].object==\"model\" and .data[0].max_model_len==2048"'

# ---- greedy completion == cinfer generate --temperature 0 ----
prompt='def fibonacci(n):'
want=$("$bin" generate -m "$model" -p "$prompt" -n 24 --temperature 0 --json 2>/dev/null | jq -r .text)
req POST /v1/completions "$(jq -cn --arg p "$prompt" '{model:"tiny",prompt:$p,max_tokens:24,temperature:0}')"
got=$(jq -r '.choices[0].text' "$tmp/body")
check "greedy completion == cinfer generate (${#want} chars)" [ "$status" = 200 -a -n "$want" -a "$got" = "$want" ]
check "completion shape" jqb '(.id|startswith("cmpl-")) and .object=="text_completion" and (.created|type=="number")
    and .model=="tiny" and (.choices|length)==1 and .choices[0].index==0 and .choices[0].logprobs==null
    and (.choices[0].finish_reason=="length" or .choices[0].finish_reason=="stop")
    and .usage.prompt_tokens>0 and .usage.total_tokens==.usage.prompt_tokens+.usage.completion_tokens'
check "max_tokens respected" jqb '.usage.completion_tokens<=24'

# ---- streaming completion: SSE, same text, usage chunk, [DONE] ----
# sse_check FILE: every event is "data: <json>" and the last is [DONE]
sse_check() {
    local f=$1
    grep -v '^$' "$f" >"$tmp/ev" || return 1
    [ "$(tail -n 1 "$tmp/ev")" = "data: [DONE]" ] || return 1
    [ "$(grep -c -v '^data: ' "$tmp/ev")" = 0 ] || return 1
    [ "$(grep -c -x 'data: \[DONE\]' "$tmp/ev")" = 1 ] || return 1
    sed '$d; s/^data: //' "$tmp/ev" >"$tmp/ev.json"
    jq -e . "$tmp/ev.json" >/dev/null 2>&1
}
curl -s -N -m 60 -D "$tmp/hdr" "$base/v1/completions" -H 'Content-Type: application/json' \
    -d "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:24,temperature:0,stream:true,stream_options:{include_usage:true}}')" \
    >"$tmp/sse"
check "stream: text/event-stream" grep -qi '^content-type: text/event-stream' "$tmp/hdr"
check "stream: well-formed SSE ending in [DONE]" sse_check "$tmp/sse"
stext=$(jq -rj 'select(.choices|length>0)|.choices[0].text' "$tmp/ev.json")
check "stream: text == non-streamed text" [ "$stext" = "$want" ]
check "stream: one finish_reason, then a usage chunk" eval \
    '[ "$(jq -s "[.[]|.choices[]?|select(.finish_reason!=null)]|length" "$tmp/ev.json")" = 1 ] &&
     jq -se "last|(.choices|length)==0 and .usage.completion_tokens>0" "$tmp/ev.json" >/dev/null'
check "stream: chunks share one id" eval '[ "$(jq -r .id "$tmp/ev.json" | sort -u | wc -l)" = 1 ]'

# ---- prompt forms, n, stop, echo, logprobs, seed ----
req POST /v1/completions '{"prompt":["def a():","class B:"],"max_tokens":4,"temperature":0}'
check "prompt: list of strings -> 2 choices" eval '[ "$status" = 200 ] && jqb "(.choices|length)==2 and .choices[1].index==1"'
ids=$(curl -s -m 30 "$base/tokenize" -d "$(jq -cn --arg p "$prompt" '{prompt:$p}')" | jq -c .tokens)
req POST /v1/completions "{\"prompt\":$ids,\"max_tokens\":24,\"temperature\":0}"
check "prompt: token ids == text prompt" [ "$status" = 200 -a "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ]
req POST /v1/completions '{"prompt":"import os\n","max_tokens":6,"n":2,"temperature":1,"seed":7}'
check "n=2 -> 2 choices" eval '[ "$status" = 200 ] && jqb "(.choices|length)==2 and ([.choices[].index]|sort)==[0,1]"'
r1=$(jq -c '[.choices[].text]' "$tmp/body")
req POST /v1/completions '{"prompt":"import os\n","max_tokens":6,"n":2,"temperature":1,"seed":7}'
check "seed: same seed, same samples" [ "$(jq -c '[.choices[].text]' "$tmp/body")" = "$r1" ]
stop=${want:2:3}
req POST /v1/completions "$(jq -cn --arg p "$prompt" --arg s "$stop" '{prompt:$p,max_tokens:24,temperature:0,stop:[$s]}')"
check "stop string ends the text before it" eval '[ "$status" = 200 ] && jqb ".choices[0].finish_reason==\"stop\"" &&
    [ "$(jq -r ".choices[0].text" "$tmp/body")" = "${want%%"$stop"*}" ]'
req POST /v1/completions "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:3,temperature:0,echo:true}')"
check "echo prepends the prompt" eval '[ "$status" = 200 ] && jqb ".choices[0].text|startswith(\"def fibonacci(n):\")"'
req POST /v1/completions "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:4,temperature:0,logprobs:2}')"
check "logprobs: tokens, token_logprobs, top_logprobs, text_offset" eval '[ "$status" = 200 ] && jqb ".choices[0].logprobs as \$l |
    (\$l.tokens|length)==4 and (\$l.token_logprobs|length)==4 and (\$l.top_logprobs|length)==4 and
    (\$l.text_offset|length)==4 and (\$l.token_logprobs|all(.<=0)) and (\$l.top_logprobs[0]|length)>=2"'
check "logprobs: tokens join to the text" eval '[ "$(jq -rj ".choices[0].logprobs.tokens[]" "$tmp/body")" = "$(jq -r ".choices[0].text" "$tmp/body")" ]'
req POST /v1/completions "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:3,temperature:0,echo:true,logprobs:1,n:2}')"
check "echo + logprobs: prompt tokens lead (first null), tokens join to the text" eval '[ "$status" = 200 ] &&
    jqb "(.choices|length)==2 and all(.choices[]; .logprobs.token_logprobs[0]==null and .logprobs.text_offset[0]==0
         and (.logprobs.tokens|join(\"\"))==.text and (.text|startswith(\"def fibonacci(n):\")))"'
nonstream=$(jq -c '.choices[0].logprobs' "$tmp/body")
nstext=$(jq -r '.choices[0].text' "$tmp/body")
curl -s -N -m 60 "$base/v1/completions" -H 'Content-Type: application/json' \
    -d "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:3,temperature:0,echo:true,logprobs:1,n:2,stream:true}')" \
    >"$tmp/esse"
check "stream echo + logprobs: well-formed SSE" sse_check "$tmp/esse"
est=$(jq -rj "select(.choices[0].index==0)|.choices[0].text" "$tmp/ev.json")
elp=$(jq -sc '[.[]|.choices[0]|select(.index==0)|.logprobs|select(.!=null)]|
    {tokens:(map(.tokens)|add),token_logprobs:(map(.token_logprobs)|add),
     top_logprobs:(map(.top_logprobs)|add),text_offset:(map(.text_offset)|add)}' "$tmp/ev.json")
nlp=$(jq -c '{tokens,token_logprobs,top_logprobs,text_offset}' <<<"$nonstream")
check "stream echo + logprobs: joined chunks == the non-streamed choice (text, logprobs)" \
    eval '[ "$est" = "$nstext" ] && [ "$elp" = "$nlp" ]'
req POST /v1/completions '{"prompt":[[5],[5,6]],"max_tokens":2,"temperature":0,"echo":true,"logprobs":0}'
check "echo + logprobs: one-token prompts too" eval '[ "$status" = 200 ] &&
    jqb "all(.choices[]; .logprobs.token_logprobs[0]==null and (.logprobs.tokens|join(\"\"))==.text)"'
req POST /v1/completions '{"prompt":"x = ","max_tokens":5,"temperature":0.8,"top_p":0.9,"top_k":20,"min_p":0.05,
    "presence_penalty":0.5,"frequency_penalty":0.5,"repetition_penalty":1.1,"ignore_eos":true,"priority":1,
    "some_unknown_field":{"a":1},"user":"u"}'
check "all sampling parameters accepted, unknown fields ignored" eval '[ "$status" = 200 ] && jqb ".usage.completion_tokens==5"'
req POST /v1/completions '{"prompt":"x = ","max_completion_tokens":3,"temperature":0}'
check "max_completion_tokens" eval '[ "$status" = 200 ] && jqb ".usage.completion_tokens<=3"'

# ---- chat ----
msgs='[{"role":"system","content":"You write code."},{"role":"user","content":"def add(a, b):"}]'
req POST /v1/chat/completions "{\"model\":\"tiny\",\"messages\":$msgs,\"max_tokens\":12,\"temperature\":0}"
check "chat: shape" eval '[ "$status" = 200 ] && jqb "(.id|startswith(\"chatcmpl-\")) and .object==\"chat.completion\" and
    .choices[0].message.role==\"assistant\" and (.choices[0].message.content|type==\"string\") and .usage.prompt_tokens>0"'
ctext=$(jq -r '.choices[0].message.content' "$tmp/body")
req POST /tokenize "{\"messages\":$msgs}"
check "chat template applied (ChatML prompt tokens)" eval '[ "$status" = 200 ] && jqb ".count>10"'
curl -s -N -m 60 "$base/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"messages\":$msgs,\"max_tokens\":12,\"temperature\":0,\"stream\":true}" >"$tmp/csse"
check "chat stream: well-formed SSE ending in [DONE]" sse_check "$tmp/csse"
check "chat stream: role first, then content == non-streamed" eval \
    '[ "$(jq -rs ".[0].choices[0].delta.role" "$tmp/ev.json")" = assistant ] &&
     [ "$(jq -rj ".choices[0].delta.content // empty" "$tmp/ev.json")" = "$ctext" ] &&
     jq -se "all(.object==\"chat.completion.chunk\")" "$tmp/ev.json" >/dev/null'
req POST /v1/chat/completions "{\"messages\":$msgs,\"max_tokens\":3,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":3,\"n\":2}"
check "chat: n=2, logprobs.content with top_logprobs" eval '[ "$status" = 200 ] && jqb "(.choices|length)==2 and
    (.choices[0].logprobs.content|length)==.usage.completion_tokens/2 and (.choices[0].logprobs.content[0].top_logprobs|length)==3"'
req POST /v1/chat/completions '{"messages":[{"role":"user","content":[{"type":"text","text":"hi "},{"type":"text","text":"there"}]}],"max_tokens":2}'
check "chat: content as text parts" [ "$status" = 200 ]

# ---- tokenize / detokenize ----
req POST /tokenize '{"prompt":"hello world"}'
toks=$(jq -c .tokens "$tmp/body")
check "tokenize" eval '[ "$status" = 200 ] && jqb ".count==(.tokens|length) and .count>0"'
req POST /detokenize "{\"tokens\":$toks}"
check "detokenize round trip" eval '[ "$status" = 200 ] && jqb ".prompt==\"hello world\""'

# ---- metrics ----
req GET /metrics
for name in 'cinfer:num_requests_running' 'cinfer:num_requests_waiting' 'cinfer:kv_cache_usage_perc' \
    'cinfer:prefix_cache_hit_rate' 'cinfer:num_preemptions_total' 'cinfer:time_to_first_token_seconds_bucket' \
    'cinfer:time_per_output_token_seconds_count' 'cinfer:e2e_request_latency_seconds_sum' \
    'cinfer:prompt_tokens_total' 'cinfer:generation_tokens_total' 'cinfer:request_success_total{model_name="tiny",finished_reason="length"}'; do
    check "metrics: $name" grep -qF "$name" "$tmp/body"
done
check "metrics: counted the finished requests" eval \
    '[ "$(sed -n "s/^cinfer:e2e_request_latency_seconds_count{[^}]*} //p" "$tmp/body")" -ge 10 ]'
check "metrics: generation tokens counted" eval \
    '[ "$(sed -n "s/^cinfer:generation_tokens_total{[^}]*} //p" "$tmp/body")" -gt 24 ]'
# the engine's time by phase: on the CPU every forward is eager (no graphs)
phase() { sed -n "s/^cinfer:engine_time_seconds_total{[^}]*phase=\"$1\"} //p" "$tmp/body"; }
check "metrics: engine time by phase (eager forwards $(phase forward_eager) s, graph $(phase forward_graph) s, schedule $(phase schedule) s)" \
    awk -v e="$(phase forward_eager)" -v g="$(phase forward_graph)" -v s="$(phase schedule)" \
    -v o="$(phase output)" 'BEGIN { exit !(e > 0 && g == 0 && s > 0 && o > 0) }'

# ---- concurrency: 12 clients at once (mixed streaming), greedy results unchanged by batching ----
pids=""
for i in $(seq 12); do
    if [ $((i % 3)) = 0 ]; then
        curl -s -N -m 120 "$base/v1/completions" -d "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:24,temperature:0,stream:true}')" \
            | sed -n 's/^data: \({.*\)/\1/p' | jq -rj '.choices[0].text' >"$tmp/c$i" &
    else
        curl -s -m 120 "$base/v1/completions" -d "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:24,temperature:0}')" \
            | jq -rj '.choices[0].text' >"$tmp/c$i" &
    fi
    pids="$pids $!"
done
wait $pids
same=0
for i in $(seq 12); do [ "$(cat "$tmp/c$i")" = "$want" ] && same=$((same + 1)); done
check "12 concurrent clients: all greedy texts equal ($same/12)" [ "$same" = 12 ]

# ---- keep-alive: several requests over one connection ----
curl -s -m 60 -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects} ' "$base/health" "$base/v1/models" "$base/health" >"$tmp/conns"
check "keep-alive: 3 requests, 1 connection" eval '[ "$(tr -d " \n" <"$tmp/conns")" = 100 ]'

stop_server

# ---- the model split over 2 x 2 CPU ranks (tensor x pipeline parallel):
# the same greedy text, alone and for 4 concurrent clients ----
start_server --served-model-name tiny -tp 2 -pp 2
req POST /v1/completions "$(jq -cn --arg p "$prompt" '{model:"tiny",prompt:$p,max_tokens:24,temperature:0}')"
check "-tp 2 -pp 2: greedy completion == cinfer generate" [ "$status" = 200 -a "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ]
pids=""
for i in 1 2 3 4; do
    curl -s -m 60 -H 'Content-Type: application/json' --data-binary \
        "$(jq -cn --arg p "$prompt" '{model:"tiny",prompt:$p,max_tokens:24,temperature:0}')" \
        "$base/v1/completions" | jq -rj '.choices[0].text' >"$tmp/p$i" &
    pids="$pids $!"
done
wait $pids
same=0
for i in 1 2 3 4; do [ "$(cat "$tmp/p$i")" = "$want" ] && same=$((same + 1)); done
check "-tp 2 -pp 2: 4 concurrent clients, same greedy text ($same/4)" [ "$same" = 4 ]
stop_server

# 6 concurrent streamed requests to a server started with flags $2..: each
# gets the greedy text once, every token once (check named $1)
six_streams() {
    local name=$1 pids="" same=0
    shift
    start_server --served-model-name tiny "$@"
    for i in 1 2 3 4 5 6; do
        curl -s -N -m 60 -H 'Content-Type: application/json' --data-binary \
            "$(jq -cn --arg p "$prompt" '{model:"tiny",prompt:$p,max_tokens:24,temperature:0,stream:true}')" \
            "$base/v1/completions" >"$tmp/a$i" &
        pids="$pids $!"
    done
    wait $pids
    for i in 1 2 3 4 5 6; do
        got=$(grep '^data: {' "$tmp/a$i" | sed 's/^data: //' | jq -rj '.choices[0].text // empty')
        [ "$got" = "$want" ] && same=$((same + 1))
    done
    check "$name: 6 concurrent streams, the greedy text each ($same/6)" [ "$same" = 6 ]
}

# ---- async scheduling (the CUDA default; here on the CPU): a step that gives a
# request its first token streams its outputs before the next plan
# (cinfer_early_outputs) ----
six_streams --async-scheduling --async-scheduling
stop_server

# ---- plan-ahead scheduling: each step planned and launched while the one
# before runs; /metrics counts the steps launched ahead ----
six_streams --plan-ahead --plan-ahead
ahead=$(curl -s "$base/metrics" | awk '/^cinfer:ahead_steps_total/ {print int($2)}')
check "--plan-ahead: /metrics counts steps launched ahead ($ahead)" [ "${ahead:-0}" -gt 0 ]
stop_server

# ---- prefill first: new prompts in steps of their own (the startup line says so) ----
six_streams --prefill-first --prefill-first
check "--prefill-first: the startup line names it" grep -q "prefill_first=on" "$tmp/server.log"
stop_server
finish
