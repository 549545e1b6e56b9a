#!/usr/bin/env python3
"""Hugging Face transformers baseline (eager attention, bf16) on the shapes of
tools/gpu_bench.sh, for the side-by-side table in docs/benchmarks.md.

    python3 tools/hf_baseline.py MODEL_DIR [--batch-sizes 1,64] [--json OUT]

MODEL_DIR: a checkpoint from tools/make_random_model.py (e.g. llama-3-8b).
Measures, with model.generate (greedy, eos disabled, static lengths):
  - batch 1: 128-token prompt, 256 new tokens: TTFT (one forward of the
    prompt) and decode tok/s ((256 - 1) / (total - TTFT));
  - batch B (--batch-sizes): B random 256-token prompts, 256 new tokens each:
    output tok/s. A 1000-request run would take hours at HF's speed, so the
    offline number is B x 256 / wall time for one full batch.
"""
import argparse
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def sync():
    torch.cuda.synchronize()


def timed_generate(model, ids, new_tokens):
    sync()
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                         pad_token_id=0)
    sync()
    dt = time.perf_counter() - t0
    assert out.shape[1] == ids.shape[1] + new_tokens, out.shape
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16,
                                                 attn_implementation="eager").cuda().eval()
    load_s = time.perf_counter() - t0
    V = model.config.vocab_size
    res = {"load_s": load_s, "transformers_attn": "eager", "dtype": "bfloat16"}
    with torch.inference_mode():
        ids = torch.randint(0, V - 256, (1, 128), device="cuda")
        timed_generate(model, ids, 8)  # warm-up
        sync()
        t = time.perf_counter()
        model(ids)
        sync()
        ttft = time.perf_counter() - t
        total = timed_generate(model, ids, 256)
        res["batch1"] = {"prompt": 128, "new": 256, "ttft_ms": 1000 * ttft,
                         "decode_tok_s": 255 / max(total - ttft, 1e-9)}
        print("HF eager bf16 batch 1: TTFT %.1f ms, decode %.1f tok/s" %
              (1000 * ttft, res["batch1"]["decode_tok_s"]), flush=True)
        for b in [int(x) for x in a.batch_sizes.split(",") if int(x) > 1]:
            ids = torch.randint(0, V - 256, (b, 256), device="cuda")
            try:
                dt = timed_generate(model, ids, 256)
            except torch.OutOfMemoryError:
                print("HF eager bf16 batch %d: out of memory" % b, flush=True)
                torch.cuda.empty_cache()
                continue
            res["batch%d" % b] = {"prompt": 256, "new": 256, "wall_s": dt,
                                  "output_tok_s": b * 256 / dt}
            print("HF eager bf16 batch %d x 256 in / 256 out: %.1f s, %.0f output tok/s" %
                  (b, dt, b * 256 / dt), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
