#!/usr/bin/env bash
# serve_harden.sh — hostile clients and shutdown (issue 13): slowloris cut at
# its deadline while others are served, --max-connections refusal (503 +
# Retry-After), a 16 MiB prompt refused fast without delaying a small request,
# admission by sequences and by queued prompt tokens (503 + Retry-After), duplicate / conflicting
# Content-Length (400), a pipelined byte + hang-up aborts, X-Request-Id and the
# access log, vllm: metrics that parse, and the SIGTERM drain (streams end
# with finish_reason "abort" + [DONE], non-streams answered, exit 0).
# Loopback only; every wait bounded (~25 s in all).
. "$(dirname "$0")/serve_common.bash"
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
client="$tmp/client.py"
cat >"$client" <<'PY'
#!/usr/bin/env python3
"""Socket-level clients of serve_harden.sh (loopback, bounded).
usage: client.py PORT CHECK [args]; prints 'ok ...' / 'FAIL ...' lines."""
import json
import socket
import sys
import threading
import time

port = int(sys.argv[1])
check = sys.argv[2]
failed = 0


def say(ok, msg):
    global failed
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failed += 1


def conn(timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def http(method, path, body=None, headers=None, timeout=30):
    """One request on a new connection: (status, headers dict, body bytes, seconds)."""
    t0 = time.time()
    s = conn(timeout)
    data = body.encode() if isinstance(body, str) else (body or b"")
    h = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if body is not None:
        h += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    for k, v in (headers or {}).items():
        h += f"{k}: {v}\r\n"
    s.sendall(h.encode() + b"\r\n" + data)
    buf = b""
    while True:
        try:
            d = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not d:
            break
        buf += d
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hd = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hd[k.strip().lower()] = v.strip()
    return status, hd, rest, time.time() - t0


def small():
    return http("POST", "/v1/completions", json.dumps({"prompt": "def f():", "max_tokens": 4}))


if check == "slowloris":
    # 3 clients send a request 1 byte a second; --header-timeout 2 must cut them
    # at ~2 s while a normal request answers in < 1 s.
    cut = [None] * 3

    def loris(i):
        s = conn()
        s.settimeout(0.05)
        t0 = time.time()
        for b in b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 20:
            try:
                s.send(bytes([b]))
                d = s.recv(1000)
                if d is not None:
                    cut[i] = (time.time() - t0, d[:12])
                    return
            except socket.timeout:
                pass
            except OSError:
                cut[i] = (time.time() - t0, b"reset")
                return
            time.sleep(1.0)

    ts = [threading.Thread(target=loris, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    st, _, _, dt = small()
    say(st == 200 and dt < 1.0, f"normal request during slowloris: {st} in {dt*1000:.0f} ms")
    for t in ts:
        t.join(15)
    say(all(c and 1.8 < c[0] < 4.0 for c in cut),
        "slowloris clients cut at their deadline: " + ", ".join(
            f"{c[0]:.2f} s {c[1]!r}" if c else "never" for c in cut))
elif check == "maxconn":
    n = int(sys.argv[3])
    idle = [conn() for _ in range(n)]
    time.sleep(0.3)
    st, hd, body, dt = http("GET", "/health")
    ok = st == 503 and hd.get("retry-after") == "1"
    try:
        ok = ok and json.loads(body)["error"]["code"] == 503
    except Exception:
        ok = False
    say(ok, f"connection {n + 1} of --max-connections {n}: {st}, Retry-After {hd.get('retry-after')}, "
        f"{dt*1000:.0f} ms")
    for s in idle:
        s.close()
    time.sleep(1.5)  # the sweep forgets closed sockets within a second
    st, _, _, _ = http("GET", "/health")
    say(st == 200, f"after the idle connections closed: /health {st}")
elif check == "bigprompt":
    big = json.dumps({"prompt": "a " * (8 << 20), "max_tokens": 4})  # 16 MiB prompt
    res = {}

    def bigreq():
        res["big"] = http("POST", "/v1/completions", big, timeout=60)

    t = threading.Thread(target=bigreq)
    t.start()
    time.sleep(0.02)
    st, _, _, dt = small()
    t.join(60)
    bst, _, bbody, bdt = res["big"]
    say(bst == 400 and b"prompt size limit" in bbody,
        f"16 MiB prompt -> {bst} in {bdt*1000:.0f} ms (request sent and answered)")
    say(st == 200 and dt < 2.0, f"concurrent small request: {st} in {dt*1000:.0f} ms")
elif check == "seqs":
    # --max-num-seqs 4 --max-waiting 8: 8 prompts x n=4 = 32 sequences run alone;
    # a second such request while it runs -> 503 + Retry-After
    body = json.dumps({"prompt": ["def f%d():" % i for i in range(8)], "n": 4, "max_tokens": 1500,
                       "ignore_eos": True, "temperature": 1.0})
    s = conn()
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % len(body)).encode() + body.encode())
    time.sleep(0.5)
    st, hd, rb, _ = http("POST", "/v1/completions", body)
    say(st == 503 and hd.get("retry-after") == "1" and b'"code":503' in rb,
        f"a second 32-sequence request while one runs: {st}, Retry-After {hd.get('retry-after')}")
    st, _, _, _ = http("POST", "/v1/completions", json.dumps({"prompt": "x", "max_tokens": 2}))
    say(st == 503, f"even a 1-sequence request beyond the 12 sequences: {st}")
    s.close()  # hang-up aborts the big one
elif check == "fdlimit":
    # far more connections than the server's descriptors: each one is refused
    # (503) or waits in the backlog; /health still answers within 1 s
    held = []
    for _ in range(int(sys.argv[3])):
        try:
            held.append(conn(timeout=2))
        except OSError:
            break
    time.sleep(1.0)
    got503 = 0
    for s in held:
        s.settimeout(0.01)
        try:
            if s.recv(64).startswith(b"HTTP/1.1 503"):
                got503 += 1
        except OSError:
            pass
    try:
        st, _, _, dt = http("GET", "/health", timeout=3)
    except OSError:
        st, dt = 0, 9
    say(st in (200, 503) and dt < 1.0 and got503 > 0,
        f"{len(held)} connections with 256 descriptors: {got503} got 503; /health {st} in "
        f"{dt*1000:.0f} ms")
    for s in held:
        s.close()
    time.sleep(1.5)
    st, _, _, dt = http("GET", "/health", timeout=3)
    say(st == 200, f"after they closed: /health {st} in {dt*1000:.0f} ms")
elif check == "queued":
    # --max-num-seqs 1 --max-queued-tokens 50: one request runs, one with 40
    # prompt tokens waits; another 40 would pass 50 -> 503 + Retry-After
    held = []
    for i in range(2):
        body = json.dumps({"prompt": [100 + i] * 40, "max_tokens": 1500, "ignore_eos": True})
        s = conn()
        s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                   "\r\nContent-Length: %d\r\n\r\n" % len(body)).encode() + body.encode())
        held.append(s)
        time.sleep(0.3)
    st, hd, rb, _ = http("POST", "/v1/completions",
                         json.dumps({"prompt": [7] * 40, "max_tokens": 2}))
    say(st == 503 and hd.get("retry-after") == "1" and b"queued prompt tokens" in rb,
        f"40 more prompt tokens with 40 queued and --max-queued-tokens 50: {st}")
    for s in held:
        s.close()
elif check == "framing":
    for name, extra in (("duplicate", "Content-Length: 2\r\nContent-Length: 2\r\n"),
                        ("conflicting", "Content-Length: 2\r\nContent-Length: 5\r\n")):
        s = conn()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + extra.encode() + b"\r\n{}xyz")
        buf = b""
        s.settimeout(5)
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        s.close()
        say(buf.startswith(b"HTTP/1.1 400") and b"Content-Length headers" in buf,
            f"{name} Content-Length -> {buf[:12]!r}, JSON error, closed")
elif check == "pipelined":
    # a non-streaming long request followed by one byte, then a hang-up
    body = json.dumps({"prompt": "class A:", "max_tokens": 1900, "ignore_eos": True})
    s = conn()
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % len(body)).encode() + body.encode() + b"G")
    time.sleep(0.3)
    s.close()
    say(True, "long non-streaming request + 1 pipelined byte sent, then hung up")
elif check == "drain":
    # 4 streams and 2 non-streaming requests in flight; the caller sends SIGTERM
    out = {}

    def stream(i):
        st, _, body, _ = http("POST", "/v1/completions", json.dumps(
            {"prompt": "def g%d():" % i, "max_tokens": 1900, "ignore_eos": True, "stream": True,
             "n": 2}), timeout=40)
        out[("s", i)] = (st, body)

    def plain(i):
        st, _, body, _ = http("POST", "/v1/completions", json.dumps(
            {"prompt": "def h%d():" % i, "max_tokens": 1900, "ignore_eos": True}), timeout=40)
        out[("p", i)] = (st, body)

    ts = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    ts += [threading.Thread(target=plain, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    # a kept-alive connection for /health during the drain
    ka = conn()
    ka.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    ka.settimeout(5)
    first = ka.recv(4096)
    print("ready", flush=True)
    sys.stdin.readline()  # the caller has sent SIGTERM
    time.sleep(0.2)
    try:
        ka.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        second = ka.recv(4096)
    except OSError:
        second = b""
    say(first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 503"),
        f"/health on a kept-alive connection: {first[:12]!r} before, {second[:12]!r} while draining")
    for t in ts:
        t.join(40)
    good = 0
    for i in range(4):
        st, body = out.get(("s", i), (0, b""))
        text = body.decode(errors="replace")
        aborts = text.count('"finish_reason":"abort"')
        if st == 200 and aborts == 2 and text.rstrip().endswith("data: [DONE]\r\n0") or (
                st == 200 and aborts == 2 and "data: [DONE]" in text):
            good += 1
    say(good == 4, f"{good}/4 streams end with a finish_reason \"abort\" chunk per choice and [DONE]")
    got = [out.get(("p", i), (0, b""))[0] for i in range(2)]
    say(all(g in (200, 503) for g in got), f"non-streaming requests answered: {got}")
else:
    say(False, "unknown check " + check)
sys.exit(1 if failed else 0)
PY
run() { # run CHECK [args]: the client's ok / FAIL lines count here
    local out
    out=$(timeout 60 python3 "$client" "$port" "$@" 2>&1)
    echo "$out"
    passed=$((passed + $(grep -c '^ok ' <<<"$out")))
    failed=$((failed + $(grep -c '^FAIL ' <<<"$out")))
    grep -q '^\(ok\|FAIL\) ' <<<"$out" || failed=$((failed + 1))
}
metric() { curl -s -m 10 "$base/metrics" | grep "^$1" | sed 's/.* //' | head -n 1; }

# ---- connection limits, deadlines, framing ----
start_server --max-connections 8 --header-timeout 2 --body-timeout 3 --max-body-bytes 40000000 \
    --log-format json
run slowloris
run maxconn 8
run framing
run bigprompt
check "access log: one JSON line per request with id, status, tokens, TTFT, e2e, finish" \
    eval 'grep "\"msg\":\"request\"" "$tmp/server.log" | grep "/v1/completions" | grep "\"status\":200" |
          head -n 1 | jq -e ".request_id and .prompt_tokens >= 1 and .generated_tokens == 4 and
          .ttft_ms > 0 and .e2e_ms >= .ttft_ms and .finish_reason == \"length\"" >/dev/null'
rid=$(curl -s -m 10 -D - -o /dev/null -H 'X-Request-Id: my-req-42' "$base/health" | tr -d '\r' |
    sed -n 's/^X-Request-Id: //ip')
check "X-Request-Id honoured and echoed ($rid)" eval '[ "$rid" = my-req-42 ] &&
    grep -q "\"request_id\":\"my-req-42\"" "$tmp/server.log"'

# ---- a pipelined byte + hang-up aborts a non-streaming request ----
a0=$(metric 'cinfer:request_success_total{model_name="[^"]*",finished_reason="abort"}')
run pipelined
idle=""
for _ in $(seq 50); do
    [ "$(metric 'cinfer:num_requests_running')" = 0 ] && idle=1 && break
    sleep 0.1
done
a1=$(metric 'cinfer:request_success_total{model_name="[^"]*",finished_reason="abort"}')
check "pipelined byte + hang-up aborts the request (aborts $a0 -> $a1, idle within 5 s)" \
    eval '[ -n "$idle" ] && [ "$a1" -gt "$a0" ]'

# ---- /metrics: vLLM's names, and the text parses ----
curl -s -m 10 "$base/metrics" >"$tmp/metrics"
check "/metrics parses as Prometheus text and has vLLM's names" python3 - "$tmp/metrics" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$')
names, types = set(), {}
for ln in text.splitlines():
    if ln.startswith("# TYPE "):
        _, _, n, t = ln.split(" ", 3)
        assert t in ("gauge", "counter", "histogram"), ln
        assert n not in types, "TYPE twice: " + n
        types[n] = t
    elif ln.startswith("# HELP ") or not ln:
        continue
    else:
        m = sample.match(ln)
        assert m, "bad sample line: " + ln
        base = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in types or base in types, "sample without TYPE: " + ln
        if m.group(1).startswith("vllm:"):
            assert 'model_name="' in ln, "no model_name: " + ln
        names.add(m.group(1))
want = """num_requests_running num_requests_waiting kv_cache_usage_perc gpu_cache_usage_perc
prompt_tokens_total generation_tokens_total request_success_total num_preemptions_total
prefix_cache_queries_total prefix_cache_hits_total cache_config_info
time_to_first_token_seconds_bucket time_per_output_token_seconds_bucket
inter_token_latency_seconds_bucket e2e_request_latency_seconds_bucket
request_queue_time_seconds_bucket request_prefill_time_seconds_bucket
request_decode_time_seconds_bucket request_inference_time_seconds_bucket
request_prompt_tokens_bucket request_generation_tokens_bucket iteration_tokens_total_bucket""".split()
missing = [w for w in want if "vllm:" + w not in names]
assert not missing, "missing: " + " ".join(missing)
assert 'finished_reason="stop"' in text and 'finished_reason="length"' in text
PY
stop_server

# ---- descriptor limit: ulimit -n 256 and 300 connections ----
realbin=$bin
bin="$tmp/ulimit256"
printf '#!/bin/sh\nulimit -n 256\nexec "%s" "$@"\n' "$realbin" >"$bin"
chmod +x "$bin"
start_server
run fdlimit 300
lines=$(grep -c "accept:" "$tmp/server.log")
check "--max-connections lowered below the descriptor limit; accept errors logged $lines times (< 10)" \
    eval 'grep -q "lowered to 224" "$tmp/server.log" && [ "$lines" -lt 10 ]'
stop_server
bin=$realbin

# ---- admission by sequences: prompts x n against --max-num-seqs + --max-waiting ----
start_server --max-num-seqs 4 --max-waiting 8
run seqs
stop_server
start_server --max-num-seqs 1 --max-queued-tokens 50
run queued
stop_server

# ---- SIGTERM drain: streams end with "abort" + [DONE], others answered, exit 0 ----
start_server --shutdown-timeout 1
coproc DRAIN { timeout 60 python3 "$client" "$port" drain 2>&1; }
read -r -t 20 line <&"${DRAIN[0]}"
echo "$line"
sleep 0.5
kill -TERM "$srv_pid"
t0=$(date +%s%N)
echo go >&"${DRAIN[1]}"
out=$(cat <&"${DRAIN[0]}")
echo "$out"
passed=$((passed + $(grep -c '^ok ' <<<"$out")))
failed=$((failed + $(grep -c '^FAIL ' <<<"$out")))
wait_server_exit
t1=$(date +%s%N)
check "SIGTERM drain: exit status 0 after --shutdown-timeout 1 ($(((t1 - t0) / 1000000)) ms)" [ "$srv_rc" = 0 ]
check "drain logged" grep -q "shutdown timeout: ended 4 streams" "$tmp/server.log"
srv_pid=""

finish
