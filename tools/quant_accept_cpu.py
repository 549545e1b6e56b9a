#!/usr/bin/env python3
"""quant_accept_cpu.py — issue 10's format-correctness check on the CPU, one
table: for each published layout, tools/quantize_checkpoint.py writes the
quantized checkpoint of MODEL_DIR and (--dequant-out) the f32 checkpoint of
exactly the weights it encodes; then `cinfer perplexity` of both on TEXT
(--ctx 512) and `cinfer generate --prompts-file` of the model's
golden_public.json prompts (48 greedy tokens, ignore_eos) on both, counting
prompts whose continuations are identical. Weight-only formats should match
their dequantized weights (perplexity within 0.1 %, every continuation);
W8A8 formats (activations quantized in prefill) are held to
tools/ref_ppl.py's numpy forward with the same activation rounding (within
0.5 %) instead, their continuations reported.

    quant_accept_cpu.py MODEL_DIR TEXT [--cinfer BIN] [--only NAME ...] [--jobs N]

Needs numpy; takes ~1-2 minutes a format for qwen2-code-28m on 2 cores."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name, quantize_checkpoint.py arguments, ref_ppl.py --act for W8A8 (None: weight-only)
FORMATS = [
    ("ct-fp8-tensor", ["--format", "ct-fp8-tensor"], "token"),
    ("ct-fp8-channel", ["--format", "ct-fp8-channel"], "token"),
    ("ct-fp8-block", ["--format", "ct-fp8-block"], "group128"),
    ("fp8-tensor", ["--format", "fp8-tensor"], "token"),
    ("fp8-tensor --static", ["--format", "fp8-tensor", "--static"], "static"),
    ("fp8-block", ["--format", "fp8-block"], "group128"),
    ("ct-int8-channel", ["--format", "ct-int8-channel"], "token-int8"),
    ("ct-w4a16 g128", ["--format", "ct-w4a16", "--group", "128"], None),
    ("ct-w4a16 g32 act-order", ["--format", "ct-w4a16", "--group", "32", "--desc-act"], None),
    ("ct-w4a16 channel asym", ["--format", "ct-w4a16", "--group", "-1", "--asym"], None),
    ("gptq g128", ["--format", "gptq", "--group", "128"], None),
    ("gptq g128 desc_act", ["--format", "gptq", "--group", "128", "--desc-act"], None),
    ("gptq g32 asym v2", ["--format", "gptq", "--group", "32", "--asym", "--v2"], None),
    ("gptq 8-bit g128", ["--format", "gptq", "--bits", "8", "--group", "128"], None),
    ("gptq 8-bit g128 desc_act", ["--format", "gptq", "--bits", "8", "--group", "128",
                                  "--desc-act"], None),
    ("awq g128", ["--format", "awq", "--group", "128"], None),
    ("gptq g128 + lm_head", ["--format", "gptq", "--group", "128", "--lm-head"], None),
    ("gptq 8-bit g128 + lm_head", ["--format", "gptq", "--bits", "8", "--group", "128",
                                   "--lm-head"], None),
    ("ct-w4a16 g128 + lm_head", ["--format", "ct-w4a16", "--group", "128", "--lm-head"], None),
]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw).stdout


def ppl(cinfer, model, text):
    out = run([cinfer, "perplexity", "-m", model, "-f", text, "--threads", "2"])
    return float(out.split("ppl=")[1].split()[0])


def continuations(cinfer, model, jsonl):
    out = run([cinfer, "generate", "-m", model, "--prompts-file", jsonl, "--threads", "2"])
    return [json.loads(ln)["tokens"] for ln in out.splitlines() if ln.strip()]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("text")
    p.add_argument("--cinfer", default=os.path.join(ROOT, "build", "cinfer"))
    p.add_argument("--only", action="append", help="format names to run (default: all)")
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    golden = json.load(open(os.path.join(a.model, "golden_public.json")))
    tmp = tempfile.mkdtemp(prefix="qaccept-")
    jsonl = os.path.join(tmp, "golden.jsonl")
    with open(jsonl, "w") as f:
        for g in golden["prompts"]:
            f.write(json.dumps({"prompt_token_ids": g["prompt_token_ids"], "max_tokens": 48,
                                "temperature": 0, "ignore_eos": True}) + "\n")
    ids = os.path.join(tmp, "ids.json")
    with open(a.text, "rb") as f, open(ids, "wb") as o:
        o.write(subprocess.run([a.cinfer, "tokenize", "-m", a.model, "--no-special"], stdin=f,
                               capture_output=True, check=True).stdout)
    py = sys.executable
    print("| format | perplexity | dequantized f32 | diff | reference (numpy, same activation "
          "rounding) | diff | greedy continuations equal |")
    print("|---|---|---|---|---|---|---|")
    for name, args, act in FORMATS:
        if a.only and name not in a.only:
            continue
        q, dq = os.path.join(tmp, "q"), os.path.join(tmp, "dq")
        for d in (q, dq):
            shutil.rmtree(d, ignore_errors=True)
        cal = ["--gptq-calib", "auto", "--cinfer", a.cinfer] if "--static" in args else []
        jobs = [] if cal else ["--jobs", str(a.jobs)]
        run([py, os.path.join(ROOT, "tools", "quantize_checkpoint.py"), a.model, q, *args, *cal,
             *jobs, "--dequant-out", dq])
        for d in (q, dq):
            shutil.copy(os.path.join(a.model, "tokenizer.json"), d)
        pq, pd = ppl(a.cinfer, q, a.text), ppl(a.cinfer, dq, a.text)
        cq, cd = continuations(a.cinfer, q, jsonl), continuations(a.cinfer, dq, jsonl)
        same = sum(x == y for x, y in zip(cq, cd))
        ref = rdiff = ""
        if act:
            ra = ["--scales-from", q] if act == "static" else []
            out = run([py, os.path.join(ROOT, "tools", "ref_ppl.py"), dq, a.text, "--act", act,
                       *ra, "--ids", ids, "--threads", "2"])
            r = float(out.split("ppl=")[1].split()[0])
            ref, rdiff = f"{r:.4f}", f"{100 * (pq - r) / r:+.3f} %"
        print(f"| {name}{' (W8A8)' if act else ''} | {pq:.4f} | {pd:.4f} | "
              f"{100 * (pq - pd) / pd:+.3f} % | {ref} | {rdiff} | {same}/{len(cd)} |", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
