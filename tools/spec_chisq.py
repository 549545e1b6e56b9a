#!/usr/bin/env python3
"""Speculative decoding preserves the sampling distribution: a chi-square test.

For each prompt, draws N seeded samples of the first three tokens without
speculation (seeds 0..N-1) and N with it (seeds N..2N-1: other draws, so the
test is not trivially passed by identical outputs), then tests the two joint
distributions of (t1, t2, t3) for homogeneity (Pearson chi-square on a 2 x C
table; categories with fewer than MIN_POOL samples in both runs together are
pooled into one). Prints a table; exits 1 when any p-value is below --alpha.

  tools/spec_chisq.py --bin build/cinfer -m models/tinyqwen2-code \\
      --spec "--speculative-method ngram --num-speculative-tokens 4" [--top-p 0.9]

Python standard library only (the regularized upper incomplete gamma is
computed here)."""
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

# Prompts with repeated text, so that n-gram lookup drafts as well as a draft model.
PROMPTS = [
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n",
    "x = 1\ny = 2\nz = 3\nprint(x)\nprint(y)\nprint(",
    "import os\nimport sys\nimport re\nimport json\nimport",
    "for i in range(10):\n    print(i)\nfor j in range(10):\n    print(",
    "class A:\n    pass\n\nclass B:\n    pass\n\nclass",
]
MIN_POOL = 10


def gammq(a, x):
    """Q(a, x) = 1 - P(a, x), the regularized upper incomplete gamma."""
    if x <= 0:
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1:  # series for P
        ap, s, d = a, 1.0 / a, 1.0 / a
        for _ in range(10000):
            ap += 1
            d *= x / ap
            s += d
            if abs(d) < abs(s) * 1e-15:
                break
        return max(0.0, 1.0 - s * math.exp(-x + a * math.log(x) - gln))
    # continued fraction for Q (modified Lentz)
    b = x + 1 - a
    c = 1.0 / 1e-300
    d = 1.0 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return math.exp(-x + a * math.log(x) - gln) * h


def chisq_2xC(c1, c2):
    """Pearson chi-square of homogeneity for two count dicts: (stat, df, p, C)."""
    keys = set(c1) | set(c2)
    pooled1 = pooled2 = 0
    cols = []
    for k in keys:
        a, b = c1.get(k, 0), c2.get(k, 0)
        if a + b < MIN_POOL:
            pooled1 += a
            pooled2 += b
        else:
            cols.append((a, b))
    if pooled1 + pooled2 > 0:
        cols.append((pooled1, pooled2))
    n1, n2 = sum(a for a, _ in cols), sum(b for _, b in cols)
    n = n1 + n2
    stat = 0.0
    for a, b in cols:
        tot = a + b
        e1, e2 = tot * n1 / n, tot * n2 / n
        stat += (a - e1) ** 2 / e1 + (b - e2) ** 2 / e2
    df = len(cols) - 1
    p = gammq(df / 2.0, stat / 2.0) if df > 0 else 1.0
    return stat, df, p, len(cols)


def draw(args, prompt, seed0, extra, temperature=1.0):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for s in range(seed0, seed0 + args.n):
            req = {"prompt": prompt, "max_tokens": 3, "temperature": temperature, "seed": s,
                   "ignore_eos": True}
            if args.top_p < 1:
                req["top_p"] = args.top_p
            f.write(json.dumps(req) + "\n")
        path = f.name
    cmd = [args.bin, "generate", "-m", args.model, "--prompts-file", path,
           "--max-num-seqs", str(args.max_num_seqs), "--stats"] + shlex.split(args.common) + extra
    try:
        r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    finally:
        os.unlink(path)
    out = r.stdout
    stats = {}
    for line in r.stderr.splitlines():
        if line.startswith("{"):
            stats = json.loads(line)
    counts = {}
    for line in out.splitlines():
        t = tuple(json.loads(line)["tokens"][:3])
        counts[t] = counts.get(t, 0) + 1
    return counts, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/cinfer")
    ap.add_argument("-m", "--model", default="models/tinyqwen2-code")
    ap.add_argument("--spec", required=True, help="speculative decoding flags")
    ap.add_argument("--common", default="", help="flags for both runs (e.g. --device cuda)")
    ap.add_argument("-n", type=int, default=2000, help="samples per prompt and run")
    ap.add_argument("--prompts", type=int, default=5)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--control-temperature", type=float, default=1.0,
                    help="negative control: the second run samples at this temperature "
                    "(with --spec '' the test must then find a difference)")
    args = ap.parse_args()
    print("| prompt | samples | categories | chi-square | df | p | top tuple share (off / spec) "
          "| drafted / accepted |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 1.0
    for i, prompt in enumerate(PROMPTS[: args.prompts]):
        off, _ = draw(args, prompt, 0, [])
        on, st = draw(args, prompt, args.n, shlex.split(args.spec), args.control_temperature)
        drafted = st.get("spec_draft_tokens", 0)
        if drafted == 0 and args.control_temperature == 1.0:
            print(f"prompt {i}: no token was drafted: the test would prove nothing")
            return 1
        stat, df, p, ncol = chisq_2xC(off, on)
        top = max(off, key=off.get)
        worst = min(worst, p)
        print(f"| {i} | {args.n} + {args.n} | {ncol} | {stat:.1f} | {df} | {p:.3f} | "
              f"{off[top] / args.n:.3f} / {on.get(top, 0) / args.n:.3f} | "
              f"{drafted} / {st.get('spec_accepted_tokens', 0)} |")
    ok = worst >= args.alpha
    print(f"smallest p = {worst:.4f}: {'not significant' if ok else 'SIGNIFICANT'} at {args.alpha}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
