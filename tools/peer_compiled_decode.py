#!/usr/bin/env python3
"""Batch-1 decode peer in the manner of gpt-fast: the model's forward under
torch.compile (mode "reduce-overhead": CUDA graphs) with a static KV cache,
greedy, one token per step, timed after the compile warm-ups. The peer
issue 14 asks to time beside `cinfer bench latency --batch-size 1`.

    python3 tools/peer_compiled_decode.py MODEL_DIR [--input-len 128]
        [--output-len 256] [--iters 3]

Prints "peer decode tok/s  X" (decode only, the mean over --iters timed
runs, as cinfer's bench latency reports) and which path ran: "loop" (a hand-written step loop over
transformers' StaticCache, as gpt-fast's generate loop does) or, when this
transformers has another StaticCache signature, "generate" (HF generate with
cache_implementation="static" and the compiled forward, which adds its
per-step Python). Runs on the GPU machine (torch, transformers, no network).
"""
import argparse
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=256)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--tune", action="store_true",
                    help="inductor coordinate-descent tuning, as gpt-fast sets (longer compile)")
    a = ap.parse_args()
    if a.tune:
        import torch._inductor.config as ic
        ic.coordinate_descent_tuning = True
    dev = "cuda"
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, device_map=dev).eval()
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, V, (1, a.input_len), generator=g).to(dev)
    total = a.input_len + a.output_len
    t0 = time.time()
    try:
        rate = loop_decode(model, prompt, a.output_len, total, a.iters)
        path = "loop"
    except (TypeError, AttributeError, RuntimeError) as e:  # another StaticCache API
        print(f"peer: step loop unavailable ({type(e).__name__}: {e}); using generate")
        rate = generate_decode(model, prompt, a.output_len, a.iters)
        path = "generate"
    print(f"peer path {path}, compile + warm-up + runs {time.time() - t0:.1f} s")
    print(f"peer decode tok/s  {rate:.1f}")


@torch.no_grad()
def loop_decode(model, prompt, n_out, total, iters):
    from transformers import StaticCache

    cache = StaticCache(config=model.config, max_cache_len=total)

    def step(tok, pos):
        out = model(input_ids=tok, cache_position=pos, past_key_values=cache, use_cache=True)
        return out.logits[:, -1].argmax(-1, keepdim=True)

    cstep = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    n_in = prompt.shape[1]
    times = []
    for it in range(iters + 2):  # two warm-ups compile and record the graphs
        cache.reset()
        tok = step(prompt, torch.arange(n_in, device=prompt.device))
        pos = torch.tensor([n_in], device=prompt.device)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(n_out - 1):  # the position advances on the device: no upload per step
            tok = cstep(tok.clone(), pos)
            pos += 1
        torch.cuda.synchronize()
        if it >= 2:
            times.append(time.perf_counter() - t)
    return (n_out - 1) * len(times) / sum(times)  # mean over the timed runs


@torch.no_grad()
def generate_decode(model, prompt, n_out, iters):
    model.generation_config.cache_implementation = "static"
    model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    kw = dict(do_sample=False, pad_token_id=0)
    times = []
    for it in range(iters + 2):
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(prompt, max_new_tokens=1, min_new_tokens=1, **kw)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        model.generate(prompt, max_new_tokens=n_out, min_new_tokens=n_out, **kw)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        if it >= 2:  # decode = full run minus a prompt-only run
            times.append((t2 - t1) - (t1 - t))
    return (n_out - 1) * len(times) / sum(times)


if __name__ == "__main__":
    main()
