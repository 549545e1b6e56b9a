#!/usr/bin/env bash
# cinfer serve: logit_bias (+100 forces a token, -100 bans the greedy one,
# logprobs stay raw, bad maps are 400s), the request fields refused with a
# 400 naming them vs the ones accepted and ignored, GET /v1/models/{id},
# /tokenize's max_model_len and return_token_strs, --chat-template FILE (a
# template that changes the prompt; a broken one stops startup in one line).
. "$(dirname "$0")/serve_common.bash"

# ---- --chat-template: a broken file is one clear line and exit 1 ----
printf '{%% for m in messages %%}{{ m.content }\n' >"$tmp/bad.jinja"
"$bin" serve -m "$model" --port 0 --chat-template "$tmp/bad.jinja" >"$tmp/bad.log" 2>&1
rc=$?
check "--chat-template broken: exit 1, one 'error: --chat-template' line" eval \
    '[ $rc = 1 ] && [ "$(grep -c "^error: --chat-template $tmp/bad.jinja" "$tmp/bad.log")" = 1 ] && ! grep -q listening "$tmp/bad.log"'
"$bin" serve -m "$model" --port 0 --chat-template "$tmp/missing.jinja" >"$tmp/bad.log" 2>&1
rc=$?
check "--chat-template missing file: exit 1 naming it" eval \
    '[ $rc = 1 ] && grep -q "^error: --chat-template: $tmp/missing.jinja: No such file" "$tmp/bad.log"'

printf '{%% for m in messages %%}[{{ m.role }}] {{ m.content }}\n{%% endfor %%}{%% if add_generation_prompt %%}[assistant]{%% endif %%}' \
    >"$tmp/t.jinja"
start_server --served-model-name tiny --chat-template "$tmp/t.jinja"
req POST /tokenize '{"messages":[{"role":"user","content":"hi there"}]}'
toks=$(jq -c .tokens "$tmp/body")
req POST /detokenize "{\"tokens\":$toks}"
check "--chat-template: the prompt is the file's rendering" \
    [ "$(jq -r .prompt "$tmp/body")" = "$(printf '[user] hi there\n[assistant]')" ]
req POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
check "--chat-template: chat completions work" [ "$status" = 200 ]

# ---- /tokenize: max_model_len, return_token_strs ----
req POST /tokenize '{"prompt":"hello world"}'
check "tokenize: max_model_len, no token_strs by default" jqb '.max_model_len==2048 and (has("token_strs")|not)'
req POST /tokenize '{"prompt":"hello world","return_token_strs":true}'
check "tokenize: return_token_strs (vocabulary entries, byte-level)" \
    jqb '(.token_strs|length)==(.tokens|length) and (.token_strs|join("")|gsub("\u0120";" "))=="hello world"'
expect_error "tokenize: return_token_strs not a boolean" 400 POST /tokenize '{"prompt":"a","return_token_strs":1}'

# ---- GET /v1/models/{id} ----
req GET /v1/models/tiny
check "GET /v1/models/tiny: the model object" jqb '.id=="tiny" and .object=="model" and .owned_by=="cinfer" and .max_model_len==2048'
expect_error "GET /v1/models/other -> 404" 404 GET /v1/models/other
check "404 names the model" jqb '.error.type=="not_found_error" and (.error.message|contains("other"))'
expect_error "POST /v1/models/tiny -> 405" 405 POST /v1/models/tiny '{}'

# ---- logit_bias ----
prompt='def fibonacci(n):'
tok=$(curl -s -m 30 "$base/tokenize" -d '{"prompt":" banana","add_special_tokens":false}' | jq '.tokens[0]')
req POST /v1/completions "$(jq -cn --arg p "$prompt" --arg t "$tok" '{prompt:$p,max_tokens:6,temperature:0,logprobs:0,logit_bias:{($t):100}}')"
want=$(curl -s -m 30 "$base/detokenize" -d "{\"tokens\":[$tok,$tok,$tok,$tok,$tok,$tok]}" | jq -r .prompt)
check "logit_bias +100 (greedy): every token is $tok" [ "$status" = 200 -a "$(jq -r '.choices[0].text' "$tmp/body")" = "$want" ]
check "logit_bias: logprobs are of the raw logits (not ~0)" jqb '.choices[0].logprobs.token_logprobs[0] < -1'
req POST /v1/chat/completions "$(jq -cn --arg t "$tok" '{messages:[{role:"user",content:"hi"}],max_tokens:4,temperature:1.0,top_p:0.9,seed:3,logit_bias:{($t):100}}')"
want4=$(curl -s -m 30 "$base/detokenize" -d "{\"tokens\":[$tok,$tok,$tok,$tok]}" | jq -r .prompt)
check "logit_bias +100 (chat, sampled): every token is $tok" [ "$status" = 200 -a "$(jq -r '.choices[0].message.content' "$tmp/body")" = "$want4" ]
req POST /v1/completions "$(jq -cn --arg p "$prompt" '{prompt:$p,max_tokens:1,temperature:0,logprobs:1}')"
first=$(jq -r '.choices[0].logprobs.tokens[0]' "$tmp/body")
ftok=$(curl -s -m 30 "$base/tokenize" -d "$(jq -cn --arg p "$first" '{prompt:$p,add_special_tokens:false}')" | jq '.tokens[0]')
req POST /v1/completions "$(jq -cn --arg p "$prompt" --arg t "$ftok" '{prompt:$p,max_tokens:1,temperature:0,logprobs:1,logit_bias:{($t):-100}}')"
check "logit_bias -100 bans the greedy token '$first'" eval '[ "$status" = 200 ] && [ "$(jq -r ".choices[0].logprobs.tokens[0]" "$tmp/body")" != "$first" ]'
expect_error "logit_bias: id out of the vocabulary" 400 POST /v1/completions '{"prompt":"a","logit_bias":{"99999999":5}}'
expect_error "logit_bias: bias > 100" 400 POST /v1/completions '{"prompt":"a","logit_bias":{"5":101}}'
check "logit_bias error names the field" jqb '.error.param=="logit_bias"'
expect_error "logit_bias: key not an id" 400 POST /v1/completions '{"prompt":"a","logit_bias":{"x":1}}'
expect_error "logit_bias: not an object" 400 POST /v1/chat/completions '{"messages":[{"role":"user","content":"a"}],"logit_bias":[1]}'

# ---- refused fields: a 400 naming the field; their defaults pass ----
refuse() { # refuse PATH FIELD JSON-VALUE
    local body
    if [ "$1" = /v1/completions ]; then body='{"prompt":"a","max_tokens":1}'; else
        body='{"messages":[{"role":"user","content":"a"}],"max_tokens":1}'; fi
    req POST "$1" "$(jq -c --argjson v "$3" ". + {\"$2\": \$v}" <<<"$body")"
    if [ "$status" = 400 ] && jqb ".error.param==\"$2\""; then ok "$1 $2=$3 -> 400 ($(jq -c .error.message "$tmp/body"))"; else
        fail "$1 $2=$3: $status $(head -c 200 "$tmp/body")"; fi
}
accept() {
    local body
    if [ "$1" = /v1/completions ]; then body='{"prompt":"a","max_tokens":1}'; else
        body='{"messages":[{"role":"user","content":"a"}],"max_tokens":1}'; fi
    req POST "$1" "$(jq -c --argjson v "$3" ". + {\"$2\": \$v}" <<<"$body")"
    check "$1 $2=$3 accepted" [ "$status" = 200 ]
}
refuse /v1/completions suffix '"x"'
accept /v1/completions suffix '""'
refuse /v1/completions best_of 3
accept /v1/completions best_of 1
refuse /v1/chat/completions functions '[{"name":"f"}]'
refuse /v1/chat/completions function_call '"auto"'
refuse /v1/chat/completions echo true
refuse /v1/completions use_beam_search true
refuse /v1/completions include_stop_str_in_output true
accept /v1/chat/completions response_format '{"type":"json_object"}'
accept /v1/chat/completions response_format '{"type":"text"}'
refuse /v1/chat/completions tool_choice '"required"'  # without tools: 400
accept /v1/chat/completions tool_choice '"auto"'
refuse /v1/chat/completions add_special_tokens true
accept /v1/completions add_special_tokens true
refuse /v1/chat/completions modalities '["text","audio"]'
for f in user metadata store service_tier; do
    accept /v1/chat/completions $f "$(case $f in metadata) echo '{"k":"v"}' ;; store) echo false ;; *) echo '"x"' ;; esac)"
done
accept /v1/completions user '"u1"'

stop_server
finish
