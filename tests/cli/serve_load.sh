#!/usr/bin/env bash
# cinfer serve under a small bounded load: 64 requests, 12 at a time, mixing
# completions / chat, streaming / not, n=1..3, and clients that hang up
# early. Afterwards every request is accounted for, nothing is left running,
# the KV cache is empty and the server still answers and exits 0.
. "$(dirname "$0")/serve_common.bash"

start_server --max-num-seqs 8 --max-waiting 64

one() { # one I: request number I
    local i=$1 body path=/v1/completions maxt=-m150 stream=false n=$((1 + $1 % 3))
    [ $((i % 2)) = 0 ] && stream=true
    [ $((i % 7)) = 3 ] && maxt=-m0.3 # hangs up early
    if [ $((i % 3)) = 0 ]; then
        path=/v1/chat/completions
        body="{\"messages\":[{\"role\":\"user\",\"content\":\"req $i\"}],\"max_tokens\":$((8 + i % 24)),\"n\":$n,\"stream\":$stream,\"seed\":$i}"
    else
        body="{\"prompt\":\"def f$i(x):\",\"max_tokens\":$((8 + i % 24)),\"n\":$n,\"stream\":$stream,\"seed\":$i,\"ignore_eos\":true}"
    fi
    code=$(curl -s -N $maxt -o "$tmp/r$i" -w '%{http_code}' "$base$path" -H 'Content-Type: application/json' -d "$body")
    echo "$i $code $maxt $stream" >"$tmp/code$i"
}
export -f one
export base tmp
seq 64 | xargs -P 12 -I{} bash -c 'one {}'

complete() { # complete STREAM FILE
    if [ "$1" = true ]; then
        [ "$(grep -v '^$' "$2" | tail -n 1)" = "data: [DONE]" ]
    else
        jq -e '.choices|length>0' "$2" >/dev/null 2>&1
    fi
}
ok200=0 early=0 bad=0
for i in $(seq 64); do
    read -r _ code maxt stream <"$tmp/code$i"
    if [ "$maxt" = -m0.3 ]; then
        early=$((early + 1))
    elif [ "$code" = 200 ] && complete "$stream" "$tmp/r$i"; then
        ok200=$((ok200 + 1))
    else
        bad=$((bad + 1))
        echo "bad response $i ($code): $(head -c 200 "$tmp/r$i")"
    fi
done
check "load: $ok200 complete responses, $early early hang-ups, $bad bad" [ "$bad" = 0 -a $((ok200 + early)) = 64 ]

metric() { curl -s -m 10 "$base/metrics" | sed -n "s/^$1{[^}]*} //p" | head -n 1; }
idle=""
for _ in $(seq 100); do
    if [ "$(metric 'cinfer:num_requests_running')" = 0 ] && [ "$(metric 'cinfer:num_requests_waiting')" = 0 ] &&
        [ "$(metric 'cinfer:kv_cache_usage_perc')" = 0 ] && [ "$(metric 'cinfer:http_requests_in_flight')" = 0 ]; then
        idle=1
        break
    fi
    sleep 0.1
done
check "load: afterwards nothing running or waiting, KV cache empty" [ -n "$idle" ]
req POST /v1/completions '{"prompt":"def f():","max_tokens":4}'
check "load: server still serves" [ "$status" = 200 ]
stop_server
finish
