#!/usr/bin/env bash
# cinfer bench serve against cinfer serve: Poisson arrivals and a concurrency
# cap, chat, a time-limited run; the JSON report must be consistent (every
# request succeeded, exact token totals with ignore_eos, ordered
# percentiles). A wrong port and a wrong API key must come back as failed
# requests with exit status 1, not a crash.
. "$(dirname "$0")/serve_common.bash"

start_server --max-num-seqs 16
I=32 O=16 N=24

bench() { # bench NAME [bench serve args...]: JSON -> $tmp/NAME.json, exit status -> $rc
    local name=$1
    shift
    "$bin" bench serve --port "$port" -m "$model" --seed 1 --json "$tmp/$name.json" "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
}
jqf() { jq -e "$2" "$tmp/$1.json" >/dev/null 2>&1; } # jqf NAME FILTER

# Percentiles ordered, latencies positive, TTFT before the end of the request.
ordered='([("ttft","tpot","itl","e2el") as $m | .["median_\($m)_ms"] >= 0 and
  .["median_\($m)_ms"] <= .["p90_\($m)_ms"] and .["p90_\($m)_ms"] <= .["p99_\($m)_ms"] and
  .["p99_\($m)_ms"] <= .["max_\($m)_ms"] and .["mean_\($m)_ms"] <= .["max_\($m)_ms"]] | all)
  and .median_ttft_ms > 0 and .median_ttft_ms < .median_e2el_ms and .max_ttft_ms <= .max_e2el_ms'

for mode in "rate --request-rate 20" "conc --max-concurrency 8"; do
    set -- $mode
    name=$1
    shift
    bench "$name" --num-prompts $N --input-len $I --output-len $O --ignore-eos "$@"
    check "$name: exit 0" [ "$rc" = 0 ]
    check "$name: $N completed, 0 failed" jqf "$name" ".completed == $N and .failed == 0 and .num_requests == $N and .errors == []"
    check "$name: tokens $((N * I)) in, $((N * O)) out" \
        jqf "$name" ".total_input_tokens == $((N * I)) and .total_output_tokens == $((N * O))"
    check "$name: throughputs consistent" jqf "$name" \
        '.duration > 0 and ((.request_throughput * .duration - .completed) | fabs) < 1e-6 and
         ((.output_throughput * .duration - .total_output_tokens) | fabs) < 1e-6'
    check "$name: percentiles ordered, TTFT < e2e" jqf "$name" "$ordered"
    check "$name: table printed" grep -q "Successful requests: *$N" "$tmp/$name.out"
done
check "conc: max_concurrency recorded" jqf conc '.max_concurrency == 8 and .request_rate == "inf"'
check "rate: request_rate recorded" jqf rate '.request_rate == 20 and .max_concurrency == null'

bench chat --endpoint /v1/chat/completions --num-prompts 8 --input-len 16 --output-len 8 \
    --ignore-eos --max-concurrency 4
check "chat: 8 completed, 64 tokens out" jqf chat '.completed == 8 and .failed == 0 and .total_output_tokens == 64'

bench soak --num-prompts 4 --max-concurrency 4 --duration 2 --input-len 8 --output-len 8 --ignore-eos
check "duration: keeps issuing for 2 s, all succeed" jqf soak \
    '.num_requests > 4 and .completed == .num_requests and .failed == 0 and .duration >= 2'

stop_server
dead_port=$port

# Wrong API key: every request fails with 401; reported, exit status 1.
start_server --api-key sekrit
bench badkey --num-prompts 6 --input-len 8 --output-len 4 --api-key wrong
check "bad key: exit 1" [ "$rc" = 1 ]
check "bad key: 6 failed with HTTP 401" jqf badkey \
    '.completed == 0 and .failed == 6 and (.errors[0].message | startswith("HTTP 401")) and .errors[0].count == 6'
bench goodkey --num-prompts 4 --input-len 8 --output-len 4 --api-key sekrit
check "good key: 4 completed" jqf goodkey '.completed == 4 and .failed == 0'
stop_server

# Nothing listening: connection failures, exit status 1.
port=$dead_port
bench noserver --num-prompts 5 --input-len 8 --output-len 4
check "no server: exit 1" [ "$rc" = 1 ]
check "no server: 5 failed, connection errors" jqf noserver \
    '.completed == 0 and .failed == 5 and (.errors[0].message | startswith("connection failed"))'

# Argument errors are reported, not crashes.
"$bin" bench serve --request-rate -1 >/dev/null 2>"$tmp/err"
check "bad --request-rate rejected" grep -q "request-rate" "$tmp/err"
finish
