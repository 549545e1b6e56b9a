#!/usr/bin/env python3
"""bench_serve.py — load generator for `cinfer serve` (stdlib only).

Sends --num-requests streaming /v1/completions requests with --concurrency
clients to a server on loopback and reports throughput and latency
percentiles (TTFT, time per output token, end-to-end):

    cinfer serve -m models/tinyqwen2-code --port 8000 &
    tools/bench_serve.py --port 8000 --num-requests 64 --concurrency 8 --output-len 64
"""
import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time


def one(host, port, body, timeout):
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    ttft, tokens, usage = None, 0, None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        ev = json.loads(data)
        if ev.get("usage"):
            usage = ev["usage"]
        if ev.get("choices") and ev["choices"][0]["text"] and ttft is None:
            ttft = time.perf_counter() - t0
    e2e = time.perf_counter() - t0
    conn.close()
    tokens = usage["completion_tokens"] if usage else 0
    return ttft if ttft is not None else e2e, e2e, tokens, usage["prompt_tokens"] if usage else 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--num-requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--input-words", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("bench_serve.py: loopback only")
    rng = random.Random(a.seed)
    words = "def return self import for in if else while class print range len list dict x y z".split()
    bodies = [{"prompt": " ".join(rng.choice(words) for _ in range(a.input_words)), "max_tokens": a.output_len,
               "ignore_eos": True, "temperature": 1.0, "seed": i, "stream": True,
               "stream_options": {"include_usage": True}} for i in range(a.num_requests)]
    results, errors, lock = [], [], threading.Lock()
    it = iter(range(a.num_requests))

    def worker():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                r = one(a.host, a.port, bodies[i], a.timeout)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - report every failure
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = [r[0] for r in results]
    e2e = [r[1] for r in results]
    tpot = [(r[1] - r[0]) / (r[2] - 1) for r in results if r[2] > 1]
    out_tokens = sum(r[2] for r in results)
    in_tokens = sum(r[3] for r in results)
    rep = {
        "requests": len(results), "errors": len(errors), "concurrency": a.concurrency, "wall_s": wall,
        "requests_per_s": len(results) / wall, "output_tokens_per_s": out_tokens / wall,
        "total_tokens_per_s": (in_tokens + out_tokens) / wall,
        "ttft_ms": {"mean": 1e3 * statistics.fmean(ttft) if ttft else None, "p50": 1e3 * pct(ttft, 50),
                    "p99": 1e3 * pct(ttft, 99)},
        "tpot_ms": {"mean": 1e3 * statistics.fmean(tpot) if tpot else None, "p50": 1e3 * pct(tpot, 50),
                    "p99": 1e3 * pct(tpot, 99)},
        "e2e_s": {"mean": statistics.fmean(e2e) if e2e else None, "p50": pct(e2e, 50), "p99": pct(e2e, 99)},
    }
    if a.json:
        print(json.dumps(rep))
    else:
        print(f"requests {rep['requests']} (errors {rep['errors']}), concurrency {a.concurrency}, wall {wall:.2f} s")
        print(f"throughput: {rep['requests_per_s']:.2f} req/s, {rep['output_tokens_per_s']:.1f} output tok/s, "
              f"{rep['total_tokens_per_s']:.1f} total tok/s")
        for k in ("ttft_ms", "tpot_ms"):
            v = rep[k]
            print(f"{k}: mean {v['mean']:.1f}  p50 {v['p50']:.1f}  p99 {v['p99']:.1f}")
        v = rep["e2e_s"]
        print(f"e2e_s: mean {v['mean']:.3f}  p50 {v['p50']:.3f}  p99 {v['p99']:.3f}")
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
