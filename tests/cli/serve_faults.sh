#!/usr/bin/env bash
# cinfer serve with injected engine faults (CINFER_FAULT_INJECT, see
# src/engine/fault.h): a request whose detokenization fails gets a 500
# server_error (an error chunk when streaming) while concurrent requests
# complete; a failed forward fails that step's requests with 500 and the
# next requests all succeed; /metrics counts them under
# finished_reason="error"; the KV cache is empty afterwards.
. "$(dirname "$0")/serve_common.bash"

export CINFER_FAULT_INJECT="detok:seed=77"
start_server --max-num-seqs 8
unset CINFER_FAULT_INJECT

metric() { curl -s -m 10 "$base/metrics" | awk -v n="$1" 'index($0, n) == 1 {print $2}'; }

# requests 1..4 run together; request 3 carries the faulty seed
pids=""
for i in 1 2 3 4; do
    seed=$((i == 3 ? 77 : i))
    curl -s -m 60 -o "$tmp/r$i" -w '%{http_code}' "$base/v1/completions" \
        -H 'Content-Type: application/json' \
        -d "{\"prompt\":\"def f$i(x):\",\"max_tokens\":24,\"temperature\":0.8,\"seed\":$seed,\"ignore_eos\":true}" \
        >"$tmp/s$i" &
    pids="$pids $!"
done
wait $pids
for i in 1 2 4; do
    check "request $i unaffected by another's fault: 200, 24 tokens" \
        test "$(cat "$tmp/s$i")/$(jq -r '.usage.completion_tokens' "$tmp/r$i")" = "200/24"
done
check "faulty request: 500" test "$(cat "$tmp/s3")" = 500
check "faulty request: type server_error" test "$(jq -r '.error.type' "$tmp/r3")" = server_error
check "faulty request: message names the fault" grep -q "injected detok fault" "$tmp/r3"

# streaming: the faulty request ends with an error chunk
curl -s -N -m 60 "$base/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt":"x = ","max_tokens":8,"seed":77,"stream":true}' >"$tmp/stream"
check "streaming fault: an error chunk" grep -q '"type":"server_error"' "$tmp/stream"

errs=$(metric 'cinfer:request_success_total{model_name="tinyqwen2-code",finished_reason="error"}')
check "metrics: 2 choices finished with error (got $errs)" test "$errs" = 2
check "KV cache empty afterwards" test "$(metric 'cinfer:kv_cache_usage_perc')" = 0
stop_server

# a forward fault in step 3 (the first request's second decode) ends that
# request; afterwards every request succeeds
export CINFER_FAULT_INJECT="forward:step=3:count=1"
start_server
unset CINFER_FAULT_INJECT
n500=0 n200=0
for i in $(seq 30); do
    st=$(curl -s -m 60 -o "$tmp/f$i" -w '%{http_code}' "$base/v1/completions" \
        -H 'Content-Type: application/json' \
        -d "{\"prompt\":\"import os$i\",\"max_tokens\":4,\"temperature\":0,\"ignore_eos\":true}")
    case $st in 200) n200=$((n200 + 1)) ;; 500) n500=$((n500 + 1)) ;; esac
done
check "forward fault: the first request failed with 500, the 29 after it succeeded" \
    test "$n500/$n200/$(jq -r .error.code "$tmp/f1")" = "1/29/500"
errs=$(metric 'cinfer:request_success_total{model_name="tinyqwen2-code",finished_reason="error"}')
check "metrics: 1 choice finished with error (got $errs)" test "$errs" = 1
check "KV cache empty afterwards" test "$(metric 'cinfer:kv_cache_usage_perc')" = 0

stop_server
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
