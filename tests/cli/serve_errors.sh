#!/usr/bin/env bash
# cinfer serve: error paths answer with OpenAI-style JSON errors and the
# right status; disconnects abort work; a stalled client does not block
# others; queue limit, timeout, auth, body limit; SIGTERM with requests in
# flight exits 0.
. "$(dirname "$0")/serve_common.bash"

start_server

# ---- 400: malformed JSON, wrong types, bad values ----
expect_error "malformed JSON" 400 POST /v1/completions '{"prompt": "x",'
expect_error "body is not an object" 400 POST /v1/completions '["x"]'
expect_error "empty body" 400 POST /v1/completions ''
expect_error "missing prompt" 400 POST /v1/completions '{"max_tokens":2}'
expect_error "prompt: number" 400 POST /v1/completions '{"prompt":5}'
expect_error "prompt: empty string" 400 POST /v1/completions '{"prompt":""}'
expect_error "prompt: mixed list" 400 POST /v1/completions '{"prompt":["a",[1,2],3.5]}'
expect_error "max_tokens: string" 400 POST /v1/completions '{"prompt":"x","max_tokens":"10"}'
expect_error "max_tokens: 0" 400 POST /v1/completions '{"prompt":"x","max_tokens":0}'
expect_error "max_tokens: float" 400 POST /v1/completions '{"prompt":"x","max_tokens":1.5}'
expect_error "temperature: string" 400 POST /v1/completions '{"prompt":"x","temperature":"hot"}'
expect_error "temperature: negative" 400 POST /v1/completions '{"prompt":"x","temperature":-1}'
expect_error "top_p: 2" 400 POST /v1/completions '{"prompt":"x","top_p":2}'
expect_error "n: 0" 400 POST /v1/completions '{"prompt":"x","n":0}'
expect_error "stream: string" 400 POST /v1/completions '{"prompt":"x","stream":"yes"}'
expect_error "stop: number" 400 POST /v1/completions '{"prompt":"x","stop":7}'
expect_error "logprobs: 30" 400 POST /v1/completions '{"prompt":"x","logprobs":30}'
expect_error "token id out of vocabulary" 400 POST /v1/completions '{"prompt":[1,2,99999999],"max_tokens":2}'
long=$(head -c 30000 /dev/zero | tr '\0' 'a' | sed 's/aaaa/ab c /g')
expect_error "prompt longer than the context" 400 POST /v1/completions "{\"prompt\":\"$long\",\"max_tokens\":2}"
expect_error "messages: missing" 400 POST /v1/chat/completions '{"model":"tinyqwen2-code"}'
expect_error "messages: not a list" 400 POST /v1/chat/completions '{"messages":"hi"}'
expect_error "messages: no role" 400 POST /v1/chat/completions '{"messages":[{"content":"hi"}]}'
expect_error "top_logprobs without logprobs" 400 POST /v1/chat/completions '{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}'
expect_error "tokenize: prompt not a string" 400 POST /tokenize '{"prompt":[1]}'
expect_error "detokenize: bad ids" 400 POST /detokenize '{"tokens":[1,"a"]}'
expect_error "detokenize: id out of range" 400 POST /detokenize '{"tokens":[99999999]}'
printf '{"prompt":"\xff\xfe bad utf-8","max_tokens":2}' >"$tmp/badutf8"
req POST /v1/completions "$(cat "$tmp/badutf8")"
status=$(curl -s -m 30 -o "$tmp/body" -w '%{http_code}' "$base/v1/completions" --data-binary @"$tmp/badutf8")
check "invalid UTF-8 body -> 400 JSON error" eval '[ "$status" = 400 ] && jqb ".error.code==400"'

# ---- 404 / 405 ----
expect_error "unknown model" 404 POST /v1/completions '{"model":"gpt-17","prompt":"x"}'
expect_error "unknown model (chat)" 404 POST /v1/chat/completions '{"model":"gpt-17","messages":[{"role":"user","content":"x"}]}'
expect_error "unknown path" 404 GET /v2/nothing
expect_error "GET /v1/completions" 405 GET /v1/completions
expect_error "POST /v1/models" 405 POST /v1/models '{}'
expect_error "DELETE /health" 405 DELETE /health ""
req GET /health
check "server still healthy after the errors" [ "$status" = 200 ]

# ---- a client that sends half a request and stalls does not block others ----
exec 7<>/dev/tcp/127.0.0.1/"$port"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt":' >&7
t0=$(date +%s%N)
req POST /v1/completions '{"prompt":"def f():","max_tokens":8,"temperature":0}'
t1=$(date +%s%N)
check "stalled half request: others served ($(((t1 - t0) / 1000000)) ms)" eval '[ "$status" = 200 ] && jqb ".usage.completion_tokens>0"'
exec 7>&-

# ---- client disconnect aborts the request and frees its KV blocks ----
metric() { curl -s -m 10 "$base/metrics" | sed -n "s/^$1{[^}]*} //p" | head -n 1; }
metric_label() { curl -s -m 10 "$base/metrics" | grep "^cinfer:" | grep -F "$1" | sed "s/.* //"; }
aborts0=$(metric_label 'finished_reason="abort"')
curl -s -N -m 1 -o /dev/null "$base/v1/completions" \
    -d '{"prompt":"def f():","max_tokens":1900,"ignore_eos":true,"stream":true}'
curl -s -m 1 -o /dev/null "$base/v1/completions" -d '{"prompt":"class A:","max_tokens":1900,"ignore_eos":true}'
idle=""
for _ in $(seq 100); do
    if [ "$(metric 'cinfer:num_requests_running')" = 0 ] && [ "$(metric 'cinfer:kv_cache_usage_perc')" = 0 ]; then
        idle=1
        break
    fi
    sleep 0.1
done
aborts1=$(metric_label 'finished_reason="abort"')
check "disconnects abort both requests (aborts $aborts0 -> $aborts1) and free the KV cache" \
    eval '[ -n "$idle" ] && [ "$aborts1" -ge $((aborts0 + 2)) ]'

stop_server INT

# ---- limits: auth, body size, queue, timeout ----
# timeout 0.2 s: a 1900-token request needs >= 0.5 s even on a fast machine (3.7k tok/s)
start_server --api-key sekret --max-num-seqs 1 --max-waiting 1 --request-timeout 0.2 --max-body-bytes 65536
expect_error "no Authorization" 401 POST /v1/completions '{"prompt":"x"}'
expect_error "wrong key" 401 POST /v1/completions '{"prompt":"x"}' -H 'Authorization: Bearer sekreT'
expect_error "wrong scheme" 401 GET /v1/models "" -H 'Authorization: Basic sekret'
req POST /v1/completions '{"prompt":"x","max_tokens":2}' -H 'Authorization: Bearer sekret'
check "right key -> 200" [ "$status" = 200 ]
req GET /health
check "/health needs no key" [ "$status" = 200 ]
head -c 100000 /dev/zero | tr '\0' 'a' >"$tmp/big"
status=$(curl -s -m 30 -o "$tmp/b413" -w '%{http_code}' -H 'Authorization: Bearer sekret' "$base/v1/completions" \
    --data-binary @"$tmp/big")
check "body over --max-body-bytes -> 413 with a JSON error" \
    eval '[ "$status" = 413 ] && jq -e ".error.code == 413" "$tmp/b413" >/dev/null'
# the same, chunked (no Content-Length): answered by the server once read
status=$(curl -s -m 30 -o "$tmp/b413" -w '%{http_code}' -H 'Authorization: Bearer sekret' \
    -H 'Transfer-Encoding: chunked' "$base/v1/completions" --data-binary @"$tmp/big")
check "chunked body over --max-body-bytes -> 413 with a JSON error" \
    eval '[ "$status" = 413 ] && jq -e ".error.code == 413" "$tmp/b413" >/dev/null'

# 1 running + 1 waiting allowed: of 4 concurrent long requests, some get 503
pids=""
for i in 1 2 3 4; do
    curl -s -m 30 -o "$tmp/q$i" -w '%{http_code}' -H 'Authorization: Bearer sekret' "$base/v1/completions" \
        -d '{"prompt":"def f():","max_tokens":1900,"ignore_eos":true}' >"$tmp/s$i" &
    pids="$pids $!"
done
wait $pids
codes=$(cat "$tmp"/s? | tr '\n' ' ')
n503=$(cat "$tmp"/s? | grep -o 503 | wc -l)
check "queue full -> 503 ($codes)" eval '[ "$n503" -ge 1 ] && [ "$n503" -le 2 ] && grep -q "overloaded" "$tmp"/q?'
expect_error "request timeout -> 504" 504 POST /v1/completions '{"prompt":"def g():","max_tokens":1900,"ignore_eos":true}' \
    -H 'Authorization: Bearer sekret'

# ---- SIGTERM with a request in flight: exits 0 ----
curl -s -N -m 30 -o /dev/null -H 'Authorization: Bearer sekret' "$base/v1/completions" \
    -d '{"prompt":"def f():","max_tokens":1900,"ignore_eos":true,"stream":true}' &
cpid=$!
sleep 0.5
stop_server
for _ in $(seq 100); do kill -0 $cpid 2>/dev/null || break; sleep 0.1; done
check "in-flight client released by shutdown" eval '! kill -0 $cpid 2>/dev/null'
kill $cpid 2>/dev/null
wait $cpid 2>/dev/null

finish
