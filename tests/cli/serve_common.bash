# serve_common.bash — sourced by tests/cli/serve_*.sh: starts `cinfer serve`
# on a free loopback port (--port 0; the port is read from its log), waits
# for /health, and always stops it on exit. Every wait is bounded.
set -uo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
model=$(cd "$src/models/tinyqwen2-code" && pwd)
for tool in curl jq; do
    command -v $tool >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
tmp=$(mktemp -d)
srv_pid=""
passed=0 failed=0

cleanup() {
    if [ -n "$srv_pid" ] && kill -0 "$srv_pid" 2>/dev/null; then
        kill -TERM "$srv_pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$srv_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { # check NAME COMMAND...   (passes when the command succeeds)
    local name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}

# start_server [extra serve args...]: sets $srv_pid, $port, $base
start_server() {
    : >"$tmp/server.log"
    "$bin" serve -m "$model" --host 127.0.0.1 --port 0 --threads 2 "$@" >"$tmp/server.log" 2>&1 &
    srv_pid=$!
    port=""
    for _ in $(seq 600); do # 60 s (ASan builds load slowly)
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/server.log")
        [ -n "$port" ] && break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "FAIL server did not start:"
        cat "$tmp/server.log"
        exit 1
    fi
    base="http://127.0.0.1:$port"
    for _ in $(seq 100); do
        curl -s -m 2 -o /dev/null "$base/health" && return 0
        sleep 0.1
    done
    echo "FAIL /health never answered"
    exit 1
}

# wait_server_exit: $srv_rc = the server's exit status once it exits (within
# 20 s), empty if it did not
wait_server_exit() {
    srv_rc=""
    for _ in $(seq 200); do
        if ! kill -0 "$srv_pid" 2>/dev/null; then
            wait "$srv_pid"
            srv_rc=$?
            break
        fi
        sleep 0.1
    done
}

# stop_server [SIGNAL]: SIGTERM (or SIGNAL), expects exit status 0 within 20 s
stop_server() {
    local sig=${1:-TERM}
    kill -"$sig" "$srv_pid"
    wait_server_exit
    local rc=$srv_rc
    if [ -z "$rc" ]; then
        fail "server did not exit within 20 s of SIG$sig"
        kill -KILL "$srv_pid"
    elif [ "$rc" = 0 ]; then
        ok "server exits 0 on SIG$sig"
    else
        fail "server exit status $rc on SIG$sig"
        cat "$tmp/server.log"
    fi
    srv_pid=""
}

# req METHOD PATH [BODY] [curl args...]: status -> $status, body -> $tmp/body
req() {
    local method=$1 path=$2
    shift 2
    local body=""
    if [ $# -gt 0 ]; then
        body=$1
        shift
    fi
    if [ -n "$body" ]; then
        status=$(curl -s -m 60 -o "$tmp/body" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json' \
            --data-binary "$body" "$@" "$base$path")
    else
        status=$(curl -s -m 60 -o "$tmp/body" -w '%{http_code}' -X "$method" "$@" "$base$path")
    fi
}

# jqb FILTER: jq -e over the last body
jqb() { jq -e "$1" "$tmp/body" >/dev/null 2>&1; }

# expect_error NAME STATUS METHOD PATH BODY [curl args]: status and an OpenAI error body
expect_error() {
    local name=$1 want=$2
    shift 2
    req "$@"
    if [ "$status" = "$want" ] && jqb '.error.message|type=="string"' && jqb '.error.type|type=="string"' &&
        jqb ".error.code==$want" && jqb '.error|has("param")'; then
        ok "$name -> $status $(jq -c .error.message "$tmp/body")"
    else
        fail "$name: want $want, got $status: $(head -c 300 "$tmp/body")"
    fi
}

finish() {
    echo "passed $passed, failed $failed"
    [ "$failed" = 0 ]
}
