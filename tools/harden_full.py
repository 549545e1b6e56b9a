#!/usr/bin/env python3
"""Issue 13's hardening figures at full scale, against a running `cinfer serve`
(loopback only, every wait bounded). tests/cli/serve_harden.sh runs the same
checks at CI scale.

  idle-loris: 1,000 idle connections plus 50 slowloris clients (1 byte a
      second); a normal request must answer in < 1 s, and the slow clients
      must be cut at their header deadline (start the server with
      --header-timeout T --max-connections >= 1100, and pass T).
  admission: 4 concurrent requests of 64 prompts x n=16 (1,024 sequences
      each) against --max-num-seqs S --max-waiting 80: those that cannot be
      admitted get 503 + Retry-After at once.

  drain: 32 streams (n=1) and 4 non-streaming requests in flight, then
      SIGTERM to SERVER_PID (start the server with --shutdown-timeout 1):
      every stream ends with a finish_reason "abort" chunk and [DONE], every
      non-stream gets a response, and the server exits 0 (checked by the caller).

usage: harden_full.py PORT idle-loris HEADER_TIMEOUT | PORT admission | PORT drain SERVER_PID"""
import os
import signal
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
    failed += not ok


def conn(timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def http(method, path, body=None, timeout=60):
    s = conn(timeout)
    t0 = time.time()
    data = body.encode() if body else b""
    req = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, path)
    if body:
        req += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    s.sendall(req.encode() + b"\r\n" + data)
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip() for ln in lines[1:] if ":" in ln}
    return status, hdrs, rest, time.time() - t0


if check == "idle-loris":
    deadline = float(sys.argv[3])
    idle = []
    for _ in range(1000):
        idle.append(conn())
    cut = [None] * 50

    def loris(i):
        s = conn()
        s.settimeout(0.05)
        t0 = time.time()
        for b in b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60:
            try:
                s.send(bytes([b]))
                if s.recv(1000) is not None:
                    cut[i] = time.time() - t0
                    return
            except socket.timeout:
                pass
            except OSError:
                cut[i] = time.time() - t0
                return
            time.sleep(1.0)

    ts = [threading.Thread(target=loris, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    time.sleep(1.0)
    worst = 0.0
    for _ in range(5):
        st, _, _, dt = http("POST", "/v1/completions",
                            json.dumps({"prompt": "def f():", "max_tokens": 4}))
        worst = max(worst, dt if st == 200 else 99)
    say(worst < 1.0, f"normal requests with 1,000 idle + 50 slowloris connections: slowest of 5 "
        f"{worst * 1000:.0f} ms")
    for t in ts:
        t.join(deadline + 30)
    got = sorted(c for c in cut if c is not None)
    say(len(got) == 50 and got[0] > deadline - 0.3 and got[-1] < deadline + 2.5,
        f"50 slowloris clients cut: {len(got)}, after {got[0]:.2f} .. {got[-1]:.2f} s "
        f"(header deadline {deadline:.0f} s)" if got else "no slowloris client was cut")
    for s in idle:
        s.close()
elif check == "admission":
    res = [None] * 4

    def big(i):
        body = json.dumps({"prompt": ["def f%d_%d():" % (i, j) for j in range(64)], "n": 16,
                           "max_tokens": 8, "temperature": 1.0})
        res[i] = http("POST", "/v1/completions", body, timeout=600)

    ts = [threading.Thread(target=big, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    codes = [r[0] if r else 0 for r in res]
    refused = [r for r in res if r and r[0] == 503]
    say(len(refused) >= 1 and all(r[1].get("retry-after") for r in refused) and
        all(r[3] < 1.0 for r in refused),
        f"4 x (64 prompts x n=16) with --max-waiting 80: statuses {codes}; 503s carry Retry-After "
        f"and came in {max((r[3] for r in refused), default=0) * 1000:.0f} ms at most")
    say(all(c in (200, 503) for c in codes), "every request answered (200 or 503)")
elif check == "drain":
    pid = int(sys.argv[3])
    out = {}

    def req(kind, i):
        body = {"prompt": "def d%d():" % i, "max_tokens": 1900, "ignore_eos": True}
        if kind == "s":
            body["stream"] = True
        st, _, rb, _ = http("POST", "/v1/completions", json.dumps(body), timeout=60)
        out[(kind, i)] = (st, rb)

    ts = [threading.Thread(target=req, args=("s", i)) for i in range(32)]
    ts += [threading.Thread(target=req, args=("p", i)) for i in range(4)]
    for t in ts:
        t.start()
    time.sleep(1.5)  # all admitted and generating
    t0 = time.time()
    os.kill(pid, signal.SIGTERM)
    for t in ts:
        t.join(60)
    good = 0
    for i in range(32):
        st, body = out.get(("s", i), (0, b""))
        text = body.decode(errors="replace")
        if st == 200 and '"finish_reason":"abort"' in text and "data: [DONE]" in text:
            good += 1
    say(good == 32, f"{good}/32 streams end with a finish_reason \"abort\" chunk and [DONE]")
    got = [out.get(("p", i), (0, b""))[0] for i in range(4)]
    say(all(g in (200, 503) for g in got), f"4 non-streaming requests answered: {got}, all within "
        f"{time.time() - t0:.2f} s of SIGTERM")
sys.exit(1 if failed else 0)
