#!/usr/bin/env python3
"""hf_quant_ref.py — reference perplexity of a quantized checkpoint with transformers.

Issue 10's reference tooling: the quantized checkpoint as written (by
tools/quantize_checkpoint.py, or by llm-compressor / AutoGPTQ / AutoAWQ /
AutoFP8) is dequantized here, independently of cinfer's loader and of the
writer's own --dequant-out, from each layout's public description:

  gptq (AutoGPTQ / GPTQModel): qweight I32 [in/p][out] (p = 32 / bits values
      per word along the input dim), qzeros I32 [G][out/p] (v1 stores z - 1),
      scales [G][out], g_idx [in] (else column // group_size);
      w = (q - z[g]) * s[g]; lm_head: true quantizes the LM head too
  awq (AutoAWQ GEMM): qweight I32 [in][out/8], nibble j of word c is output
      8c + (0, 2, 4, 6, 1, 3, 5, 7)[j]; qzeros the same; w = (q - z) * s
  compressed-tensors pack-quantized: weight_packed I32 [out][in/8] (nibble
      j = input 8c + j, stored value + 8), weight_scale [out][G],
      weight_zero_point I32 [out/8][G] (asymmetric, packed along dim 0),
      weight_g_idx (actorder group); w = (q - z) * s
  compressed-tensors float-quantized / int-quantized, fp8 (AutoFP8 and
      FineGrainedFP8): F8_E4M3 or I8 weights times tensor / channel / block
      scales (weight_scale, or weight_scale_inv for FineGrainedFP8)

and runs in transformers (float32, eager attention) on the device given,
scored as `cinfer perplexity` scores (consecutive windows of --ctx tokens,
each from an empty context, NLL averaged over every predicted token). With
--act, the inputs of the decoder's linears (and of a quantized LM head) are
rounded as W8A8 does (forward pre-hooks): dynamic E4M3 per token or per
128-column group, INT8 per token, or E4M3 with the checkpoint's static
input_scale (the largest of q/k/v's and of gate/up's, as their fused
weights take). Prints `mean_nll=... ppl=... tokens=N` like the others.

    hf_quant_ref.py QUANT_DIR TEXT [--ctx 512] [--act none|token|group128|token-int8|static]
                    [--ids IDS.json] [--cinfer BIN] [--device cuda]
    hf_quant_ref.py --check QUANT_DIR DEQUANT_DIR   (numpy only: the dequantized weights
                    against quantize_checkpoint.py --dequant-out's, exactly)

Needs numpy; the perplexity needs torch and transformers (the GPU machine)."""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gptq import st_tensors  # noqa: E402  (the safetensors walk)
from ref_ppl import add_ppl_args, load_ids, score_windows  # noqa: E402  (cinfer perplexity's way)
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
NP = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "I8": np.int8,
      "U8": np.uint8, "F8_E4M3": np.uint8, "BF16": np.uint16}


def read_raw(d):
    """name -> (safetensors dtype, numpy array as stored; BF16 / F8 as their bits)."""
    return {name: (dt, np.frombuffer(raw, NP[dt]).reshape(shape))
            for _, name, dt, shape, raw in st_tensors(d)}


def e4m3_table():
    """The 256 E4M3fn codes as float32 (0x7f / 0xff: NaN)."""
    c = np.arange(256)
    e, m = (c >> 3) & 0xF, c & 7
    v = np.where(e == 0, m / 8.0 * 2.0**-6, (1 + m / 8.0) * 2.0**(e - 7.0))
    v = np.where(c & 0x80, -v, v)
    v[(c & 0x7F) == 0x7F] = np.nan
    return v.astype(np.float32)


E4M3 = e4m3_table()


def dense(dt, a):
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if dt == "F8_E4M3":
        return E4M3[a]
    return a.astype(np.float32)


def unpack(words, bits, axis):
    """I32 words -> their 32/bits unsigned values, laid out along axis (low bits first)."""
    per, mask = 32 // bits, (1 << bits) - 1
    u = words.astype(np.uint32)
    vals = np.stack([(u >> (bits * j)) & mask for j in range(per)], axis=axis + 1)
    shape = list(words.shape)
    shape[axis] *= per
    return vals.reshape(shape).astype(np.int64)


def expand(scale, out, inn, gsize, g_idx=None):
    """Per-group [out][G] values -> [out][in] by each column's group."""
    g = g_idx if g_idx is not None else np.arange(inn) // gsize
    return scale[:, g]


def deq_gptq(t, p, qc):
    bits = qc.get("bits", 4)
    _, qw = t[p + ".qweight"]
    q = unpack(qw, bits, 0)                         # [in][out]
    z = unpack(t[p + ".qzeros"][1], bits, 1)        # [G][out]
    fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
    if fmt != "gptq_v2":
        z = z + 1
    s = dense(*t[p + ".scales"])                    # [G][out]
    inn = q.shape[0]
    gs = qc.get("group_size", -1)
    gs = inn if gs == -1 else gs
    g = t[p + ".g_idx"][1].astype(np.int64) if p + ".g_idx" in t else np.arange(inn) // gs
    return ((q - z[g]) * s[g].astype(np.float32)).T.astype(np.float32)


def deq_awq(t, p, qc):
    def cols(w):  # [r][out/8] -> [r][out]
        u = w.astype(np.uint32)
        o = np.empty((w.shape[0], w.shape[1] * 8), np.int64)
        for j, k in enumerate(AWQ_ORDER):
            o[:, k::8] = (u >> (4 * j)) & 0xF
        return o
    q = cols(t[p + ".qweight"][1])                  # [in][out]
    z = cols(t[p + ".qzeros"][1])                   # [G][out]
    s = dense(*t[p + ".scales"])
    gs = qc.get("group_size", qc.get("q_group_size"))
    g = np.arange(q.shape[0]) // gs
    return ((q - z[g]) * s[g].astype(np.float32)).T.astype(np.float32)


def ct_scheme(qc, name):
    for grp in qc["config_groups"].values():
        return grp  # one group over every Linear (the layouts written here)
    return None


def deq_ct(t, p, qc):
    w = ct_scheme(qc, p)["weights"]
    if qc["format"] == "pack-quantized":
        q = unpack(t[p + ".weight_packed"][1], 4, 1) - 8     # [out][in], signed
        s = dense(*t[p + ".weight_scale"])                  # [out][G]
        out, inn = q.shape
        gs = w.get("group_size") or inn
        g = t[p + ".weight_g_idx"][1].astype(np.int64) if p + ".weight_g_idx" in t else None
        z = 0
        if not w.get("symmetric", True):
            z = unpack(t[p + ".weight_zero_point"][1], 4, 0) - 8   # [out][G]
            z = expand(z, out, inn, gs, g)
        return ((q - z) * expand(s, out, inn, gs, g)).astype(np.float32)
    q = dense(*t[p + ".weight"])                             # E4M3 / I8 values
    s = dense(*t[p + ".weight_scale"])
    return scaled(q, s, w.get("block_structure"))


def scaled(q, s, block=None):
    out, inn = q.shape
    if s.size == 1:
        return q * s.reshape(())
    if block:
        bn, bk = block
        return q * np.repeat(np.repeat(s, bn, 0), bk, 1)[:out, :inn]
    return q * s.reshape(out, 1)


def deq_fp8(t, p, qc):
    q = dense(*t[p + ".weight"])
    if qc.get("weight_block_size"):
        return scaled(q, dense(*t[p + ".weight_scale_inv"]), qc["weight_block_size"])
    return scaled(q, dense(*t[p + ".weight_scale"]))


def dequantize(d):
    """The checkpoint of d as a dense float32 state dict (name -> array), its config without
    quantization_config, its static input scales and the quantized modules' prefixes (an LM
    head quantized or not)."""
    cfg = json.load(open(os.path.join(d, "config.json")))
    qc = cfg.pop("quantization_config", None) or {}
    m = qc.get("quant_method")
    t = read_raw(d)
    deq = {"gptq": deq_gptq, "awq": deq_awq, "compressed-tensors": deq_ct, "fp8": deq_fp8}.get(m)
    if m and not deq:
        sys.exit(f"{d}: quant_method {m} is not one this tool reads")
    marks = (".qweight", ".weight_packed")
    prefixes = {n.rsplit(".", 1)[0] for n in t if n.endswith(marks)}
    prefixes |= {n[:-len(".weight")] for n, (dt, _) in t.items()
                 if n.endswith(".weight") and dt in ("F8_E4M3", "I8")}
    sd = {}
    for p in sorted(prefixes):
        sd[p + ".weight"] = deq(t, p, qc)
    skip = (".qweight", ".qzeros", ".scales", ".g_idx", ".weight_packed", ".weight_scale",
            ".weight_zero_point", ".weight_g_idx", ".weight_shape", ".weight_scale_inv",
            ".input_scale")
    for n, (dt, a) in t.items():
        if n in sd or n.endswith(skip):
            continue
        sd[n] = dense(dt, a)
    scales = {n[:-len(".input_scale")]: float(dense(*t[n]).reshape(-1)[0])
              for n in t if n.endswith(".input_scale")}
    return cfg, sd, scales, prefixes


def check(qdir, ddir):
    """The dequantized weights against the writer's --dequant-out, exactly."""
    sd = dequantize(qdir)[1]
    ref = {n: dense(dt, a) for n, (dt, a) in read_raw(ddir).items()}
    bad = 0
    for n, r in ref.items():
        if n not in sd:
            print(f"  {n}: missing")
            bad += 1
        elif sd[n].shape != r.shape or not np.array_equal(sd[n].astype(np.float32), r):
            d = np.abs(sd[n].astype(np.float32) - r).max() if sd[n].shape == r.shape else "shape"
            print(f"  {n}: differs ({d})")
            bad += 1
    extra = sorted(set(sd) - set(ref))
    print(f"check {qdir}: {len(ref)} tensors, {bad} differ, {len(extra)} extra {extra[:3]}")
    return 1 if bad else 0


def act_hooks(model, mode, scales, quant_head):
    """W8A8's input rounding on the decoder's linears (and a quantized LM head)."""
    import torch

    def e4m3(x):
        return x.clamp(-448, 448).to(torch.float8_e4m3fn).to(torch.float32)

    def make(name):
        fused = {"q_proj": ("q_proj", "k_proj", "v_proj"), "k_proj": ("q_proj", "k_proj", "v_proj"),
                 "v_proj": ("q_proj", "k_proj", "v_proj"), "gate_proj": ("gate_proj", "up_proj"),
                 "up_proj": ("gate_proj", "up_proj")}
        base, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        group = fused.get(leaf, (leaf,))
        st = max((scales.get(f"{base}.{g}" if base else g, 0.0) for g in group), default=0.0)

        def hook(_mod, args):
            x = args[0]
            if mode == "static":
                return (e4m3(x / st) * st,)
            if mode == "token-int8":
                s = x.abs().amax(-1, keepdim=True) / 127
                s = torch.where(s == 0, torch.ones_like(s), s)
                return (torch.clamp(torch.round(x / s), -128, 127) * s,)
            g = x.shape[-1] if mode == "token" else 128
            xs = x.reshape(*x.shape[:-1], -1, g)
            s = xs.abs().amax(-1, keepdim=True) / 448
            s = torch.where(s == 0, torch.ones_like(s), s)
            return ((e4m3(xs / s) * s).reshape(x.shape),)
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and (".layers." in name or name == "lm_head"):
            if name == "lm_head" and not quant_head:
                continue
            mod.register_forward_pre_hook(make(name))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_ppl_args(p)
    p.add_argument("--device", default="cuda")
    p.add_argument("--check", nargs=2, metavar=("QUANT_DIR", "DEQUANT_DIR"))
    a = p.parse_args()
    if a.check:
        return check(*a.check)
    if not a.model or (not a.text and not a.ids):
        p.error("QUANT_DIR and TEXT (or --ids) are required")
    if a.ctx < 2:
        p.error("--ctx must be >= 2")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg, sd, scales, quantized = dequantize(a.model)
    ids = load_ids(a)
    with tempfile.TemporaryDirectory() as td:  # the config without quantization_config
        with open(os.path.join(td, "config.json"), "w") as f:
            json.dump(cfg, f)
        hc = AutoConfig.from_pretrained(td)
    try:
        model = AutoModelForCausalLM.from_config(hc, dtype=torch.float32,
                                                 attn_implementation="eager")
    except TypeError:  # transformers before `dtype`
        model = AutoModelForCausalLM.from_config(hc, torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    missing, unexpected = model.load_state_dict({n: torch.from_numpy(np.ascontiguousarray(v))
                                                 for n, v in sd.items()}, strict=False)
    missing = [n for n in missing if not (n == "lm_head.weight" and cfg.get("tie_word_embeddings"))]
    if missing or unexpected:
        sys.exit(f"state dict: missing {missing[:4]}, unexpected {unexpected[:4]}")
    if a.act != "none":
        act_hooks(model, a.act, scales, "lm_head" in quantized)
    model.to(a.device).eval()

    def window_nll(w):
        x = torch.tensor([list(w)], device=a.device)
        lp = torch.log_softmax(model(x).logits[0, :-1].double(), -1)
        return -float(lp[torch.arange(len(w) - 1), x[0, 1:]].sum())

    with torch.no_grad():
        score_windows(ids, a.ctx, window_nll)
    return 0


if __name__ == "__main__":
    sys.exit(main())
