#!/usr/bin/env python3
"""gptq.py — GPTQ (Frantar et al., 2022) INT4 quantization with calibration, in numpy.

Round-to-nearest (RTN) quantizes each weight on its own. GPTQ quantizes the
columns of a linear weight W [out][in] one at a time and spreads each
column's rounding error over the columns not yet quantized, weighted by the
inverse Hessian of the layer's reconstruction loss ||W X - Q X||^2, where
H = 2 X X^T / N over calibration inputs X [in][N]. The steps follow the
paper and AutoGPTQ's defaults: damping 1% of mean(diag H), an upper Cholesky
factor of H^-1, lazy updates in blocks of 128 columns, scales and zero
points computed per group from the updated weights as the sweep reaches
each group, optional act order (columns by decreasing diag H; the group of
original column c is then g_idx[c], stored in the checkpoint as desc_act
does).

Layers are processed in order (AutoGPTQ's sequential mode): the inputs of
layer l's linears are computed by a numpy Llama/Qwen2 forward through the
already-quantized layers 0..l-1, q/k/v share the input Hessian, o_proj
sees the attention output of the quantized q/k/v, gate/up the post-attention
norm, down_proj the SwiGLU product.

Used by tools/quantize_checkpoint.py (--gptq-calib); standalone it prints
the per-layer reconstruction error of GPTQ vs RTN:
  gptq.py MODEL_DIR [--calib IDS.json] [--cinfer BIN] [--group 128] [--asym] [--desc-act]
IDS.json: a JSON list of token-id lists; by default 64 x 256 tokens of the
Python standard library's source, tokenized by `cinfer tokenize`.
Needs numpy."""
import json
import os
import struct
import sys

import numpy as np

BLOCK = 128  # lazy-update block (columns)


# ---- quantizer (AutoGPTQ's 4-bit min/max quantizer) --------------------------
def find_params(x, sym, maxq=15):
    """x [out][k] -> scale [out], zero [out] (zero is an integer 0..maxq)."""
    xmin = np.minimum(x.min(axis=1), 0)
    xmax = np.maximum(x.max(axis=1), 0)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    both0 = (xmin == 0) & (xmax == 0)
    xmin = np.where(both0, -1.0, xmin)
    xmax = np.where(both0, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    # the checkpoint stores scales in f16: quantize with the stored value
    scale = scale.astype(np.float16).astype(np.float32)
    zero = np.full_like(scale, (maxq + 1) / 2) if sym else np.round(-xmin / scale)
    return scale, np.clip(zero, 0, maxq)


def quantize(x, scale, zero, maxq=15):
    """x [out] -> integer codes [out] (0..maxq)."""
    return np.clip(np.round(x / scale) + zero, 0, maxq)


# ---- GPTQ on one weight -------------------------------------------------------
def gptq_weight(w, h, group, sym, act_order, damp=0.01, min_zero=0):
    """w [out][in] f32, h [in][in] (2 X X^T / N) -> q [out][in] codes, scales [G][out],
    zeros [G][out] (ints), g_idx [in], deq [out][in] f32 (what the checkpoint encodes)."""
    w = w.astype(np.float64).copy()
    h = h.astype(np.float64).copy()
    out, cols = w.shape
    gs = cols if group == -1 else group
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(cols)
    w = w[:, perm]
    h = h[perm][:, perm]
    h[np.diag_indices(cols)] += damp * np.mean(np.diag(h))
    # upper Cholesky factor of H^-1 (H^-1 = U^T U)
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros((out, cols))
    ngroups = cols // gs
    scales = np.zeros((ngroups, out), np.float32)
    zeros = np.zeros((ngroups, out), np.int32)
    scale = zero = None
    for i1 in range(0, cols, BLOCK):
        i2 = min(i1 + BLOCK, cols)
        w1 = w[:, i1:i2].copy()
        err1 = np.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if c % gs == 0:  # a new group: its parameters from the updated weights
                scale, zero = find_params(
                    np.concatenate([w1[:, i:], w[:, i2:]], axis=1)[:, :gs].astype(np.float32), sym)
                zero = np.maximum(zero, min_zero)
                scales[c // gs] = scale
                zeros[c // gs] = zero.astype(np.int32)
            x = w1[:, i]
            code = quantize(x, scale, zero)
            q[:, c] = code
            deq = scale * (code - zero)
            e = (x - deq) / h1[i, i]
            w1[:, i:] -= np.outer(e, h1[i, i:])
            err1[:, i] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    inv = np.argsort(perm)
    q = q[:, inv].astype(np.int32)
    g_idx = np.zeros(cols, np.int32)
    g_idx[perm] = np.arange(cols) // gs
    deq = (q - zeros[g_idx].T) * scales[g_idx].T
    return q, scales.astype(np.float16), zeros, g_idx, deq.astype(np.float32)


# ---- a numpy Llama/Qwen2 forward for the calibration inputs -----------------
class Model:
    def __init__(self, cfg, t):
        self.c, self.t = cfg, t
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads", self.H)
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        theta = cfg.get("rope_theta") or cfg.get("rope_parameters", {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / theta ** (np.arange(0, self.hd, 2) / self.hd)

    def norm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):  # x [T][heads][hd], rotate-half
        f = np.outer(pos, self.inv_freq)
        cos, sin = np.cos(f)[:, None, :], np.sin(f)[:, None, :]
        a, b = x[..., : self.hd // 2], x[..., self.hd // 2:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    def lin(self, name, x):
        y = x @ self.t[name + ".weight"].T
        if name + ".bias" in self.t:
            y = y + self.t[name + ".bias"]
        return y

    def attention_out(self, p, x):
        """Input of o_proj for one sequence's normed hidden states x [T][D]."""
        T = x.shape[0]
        pos = np.arange(T)
        q = self.rope(self.lin(p + "q_proj", x).reshape(T, self.H, self.hd), pos)
        k = self.rope(self.lin(p + "k_proj", x).reshape(T, self.KV, self.hd), pos)
        v = self.lin(p + "v_proj", x).reshape(T, self.KV, self.hd)
        rep = self.H // self.KV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(self.hd)
        s = s + np.triu(np.full((T, T), -np.inf), 1)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        return np.einsum("hqk,khd->qhd", s, v).reshape(T, self.H * self.hd)


def walk_linears(cfg, t, calib, visit, lm_head=False):
    """Runs calib (list of id lists) through the model layer by layer and calls
    visit(name, xs) for each of a layer's 7 linears with its inputs (one
    [T][in] array per sequence; q/k/v and gate/up get the same list) before
    the forward goes on with t's weights, which visit may replace; lm_head:
    then visit("lm_head", the final norm's outputs) (t["lm_head.weight"])."""
    m = Model(cfg, t)
    hs = [t["model.embed_tokens.weight"][np.asarray(ids)] for ids in calib]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        xa = [m.norm(h, t[p + "input_layernorm.weight"]) for h in hs]
        for n in ("q_proj", "k_proj", "v_proj"):
            visit(p + "self_attn." + n, xa)
        ao = [m.attention_out(p + "self_attn.", x) for x in xa]
        visit(p + "self_attn.o_proj", ao)
        hs = [h + m.lin(p + "self_attn.o_proj", a) for h, a in zip(hs, ao)]
        xm = [m.norm(h, t[p + "post_attention_layernorm.weight"]) for h in hs]
        for n in ("gate_proj", "up_proj"):
            visit(p + "mlp." + n, xm)
        act = [(lambda g: g / (1 + np.exp(-g)))(m.lin(p + "mlp.gate_proj", x)) *
               m.lin(p + "mlp.up_proj", x) for x in xm]
        visit(p + "mlp.down_proj", act)
        hs = [h + m.lin(p + "mlp.down_proj", a) for h, a in zip(hs, act)]
    if lm_head:
        visit("lm_head", [m.norm(h, t["model.norm.weight"]) for h in hs])


def quantize_model(cfg, t, calib, group, sym, act_order, min_zero=0, log=None, skip=(),
                   lm_head=False):
    """Quantizes every layer's 7 linears of t (name -> f32 array, modified in
    place to the dequantized weights), and with lm_head the LM head
    (t["lm_head.weight"]), with GPTQ on calib (list of id lists).
    Modules named in skip stay dense. Returns {module prefix: (q, scales,
    zeros, g_idx)}."""
    result = {}
    last = [None, None, None]  # the inputs list, its Hessian, rows for the error log

    def visit(name, xs):
        if last[0] is not xs:  # q/k/v and gate/up share one input: one Hessian
            x = np.concatenate(xs, axis=0).astype(np.float64)
            last[:] = [xs, 2.0 * x.T @ x / x.shape[0], np.concatenate(xs)[:512]]
        if name in skip:  # kept dense (--ignore)
            return
        h, x = last[1], last[2]
        w = t[name + ".weight"]
        q, s, z, g, deq = gptq_weight(w, h, group, sym, act_order, min_zero=min_zero)
        if log:
            e_g = np.mean((x @ (w - deq).T) ** 2)
            _, _, _, _, rtn = gptq_weight(w, np.eye(w.shape[1]), group, sym, False,
                                          min_zero=min_zero)
            e_r = np.mean((x @ (w - rtn).T) ** 2)
            log(f"{name}: output MSE GPTQ {e_g:.3e} vs RTN {e_r:.3e} ({e_g / e_r:.2f}x)")
        t[name + ".weight"] = deq
        result[name] = (q, s, z, g)

    walk_linears(cfg, t, calib, visit, lm_head)
    return result


def input_amax(cfg, t, calib, lm_head=False):
    """{module prefix: the largest |input| over calib} for every linear (and
    with lm_head the LM head): static activation scales (AutoFP8's
    calibration: amax / 448 per tensor)."""
    amax = {}
    walk_linears(cfg, t, calib,
                 lambda name, xs: amax.__setitem__(name, max(float(np.abs(x).max()) for x in xs)),
                 lm_head)
    return amax


# ---- calibration data ----------------------------------------------------------
def calib_ids(model_dir, cinfer, n=64, seq_len=256, text_files=None):
    """n sequences of seq_len token ids of Python source (the models here were
    trained on Python): by default the Python standard library's own modules,
    a corpus disjoint from the models' val_text.txt. Tokenized by
    `cinfer tokenize --jsonl` with the model's tokenizer."""
    import glob
    import subprocess
    import sysconfig
    if not text_files:
        text_files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    text, need = "", n * seq_len * 6  # ~4 characters a token; margin
    for f in text_files:
        with open(f, errors="replace") as fh:
            text += fh.read()
        if len(text) >= need:
            break
    step = len(text) // n
    lines = "".join(json.dumps(text[i * step:(i + 1) * step]) + "\n" for i in range(n))
    out = subprocess.run([cinfer, "tokenize", "-m", model_dir, "--jsonl"], input=lines,
                         capture_output=True, text=True, check=True).stdout
    ids = [json.loads(ln)[:seq_len] for ln in out.splitlines() if ln.strip()]
    if len(ids) != n or min(len(x) for x in ids) < seq_len // 2:
        raise SystemExit("gptq: not enough calibration text")
    return ids


# ---- standalone: per-layer error, GPTQ vs RTN ---------------------------------
def st_tensors(d, keep=None):
    """(file, name, dtype, shape, raw bytes) of every tensor in d's *.safetensors, file by file
    in name order; keep(name): only the tensors it accepts. Also used by hf_quant_ref.py."""
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(d, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
            base = 8 + n
            for name, v in hdr.items():
                if name == "__metadata__" or (keep and not keep(name)):
                    continue
                a, b = v["data_offsets"]
                fh.seek(base + a)
                yield f, name, v["dtype"], v["shape"], fh.read(b - a)


def read_model(d, keep=None):
    """All *.safetensors of d as name -> float32 array (F32, BF16, F16); lm_head.weight is the
    embedding when the checkpoint ties them. keep(name): only the tensors it accepts (and no
    lm_head tie). Also used by ref_ppl.py."""
    t = {}
    for f, name, dt, shape, raw in st_tensors(d, keep):
        if dt == "BF16":
            arr = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt in ("F32", "F16"):
            arr = np.frombuffer(raw, np.float32 if dt == "F32" else np.float16)
        else:
            sys.exit(f"{f}: {name}: dtype {dt} (only dense F32/BF16/F16 checkpoints; "
                     "dequantize with quantize_checkpoint.py --dequant-out)")
        t[name] = arr.astype(np.float32).reshape(shape)
    if not t:
        sys.exit(f"{d}: no *.safetensors" + (" tensors of the kind asked" if keep else ""))
    if not keep and "lm_head.weight" not in t:
        t["lm_head.weight"] = t["model.embed_tokens.weight"]
    return t


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--calib", help="JSON list of token-id lists (default: stdlib source)")
    ap.add_argument("--cinfer", default="build/cinfer")
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--asym", action="store_true")
    ap.add_argument("--desc-act", action="store_true")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    t = read_model(a.model)
    calib = json.load(open(a.calib)) if a.calib else calib_ids(a.model, a.cinfer)
    quantize_model(cfg, t, calib, a.group, not a.asym, a.desc_act, log=print)


if __name__ == "__main__":
    sys.exit(main())
