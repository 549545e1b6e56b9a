#!/usr/bin/env python3
"""ref_ppl.py — reference perplexity of a dense Qwen2/Llama checkpoint in numpy.

A float32 numpy forward (HF Qwen2ForCausalLM: RMSNorm, q/k/v with optional
bias, rotate-half RoPE, GQA causal attention, SwiGLU MLP, tied or separate
lm_head) scored the way `cinfer perplexity` scores: the token ids are cut into
consecutive non-overlapping windows of --ctx tokens (the last may be shorter),
each window runs from an empty context, and the NLL (accumulated in float64)
is averaged over every token predicted inside a window (L - 1 per window).
Prints `mean_nll=... ppl=... tokens=N`, N the number of predicted tokens, as
cinfer does.

--act simulates W8A8 dynamic FP8 E4M3 activations: the input of every linear
inside the decoder layers (q/k/v share one, o_proj, gate/up share one,
down_proj; not lm_head) is quantized per token row (token) or per 128-column
group of each row (group128) with s = amax|x| / 448 (1 when amax is 0) and
x_q = e4m3(x / s) * s, e4m3 = round to nearest even E4M3fn, saturating at 448;
token-int8 is W8A8 INT8's per-token scheme (vLLM's): s = amax|x| / 127 and
x_q = clip(rint(x / s), -128, 127) * s. static is W8A8 FP8 with the static
per-tensor scales of a quantized checkpoint (--scales-from DIR: each linear's
input_scale, the largest of q/k/v's and of gate/up's for their shared input,
as vLLM fuses them): x_q = e4m3(x / s) * s.
Quantized checkpoints are scored by first dequantizing their weights
(tools/quantize_checkpoint.py --dequant-out DIR) and running this on DIR.

    ref_ppl.py MODEL_DIR TEXT_FILE [--ctx 512] [--act none|token|group128|token-int8|static]
               [--scales-from QUANT_DIR] [--ids IDS.json] [--threads N] [--cinfer BIN]
    ref_ppl.py --selftest      (vectorized E4M3 rounding vs brute force)

Token ids come from --ids (a JSON array of ints) or from
`cinfer tokenize -m MODEL_DIR --no-special < TEXT_FILE`. Needs numpy."""
import argparse
import json
import os
import struct
import subprocess
import sys
import time


def _preset_threads(argv):
    """--threads must reach OpenBLAS / OpenMP before numpy is imported."""
    for i, a in enumerate(argv):
        n = a.split("=", 1)[1] if a.startswith("--threads=") else \
            (argv[i + 1] if a == "--threads" and i + 1 < len(argv) else None)
        if n:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[var] = n


_preset_threads(sys.argv[1:])
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gptq import read_model  # noqa: E402  (the safetensors reader)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E4M3_MAX = np.float32(448.0)


# ---- FP8 E4M3 (fn) activations ------------------------------------------------------
def e4m3_round(v):
    """float32 -> nearest E4M3fn value as float32, ties to even, saturating at 448.
    For |v| >= 2^-6 the spacing is 2^(floor(log2|v|) - 3), below it 2^-9."""
    v = np.asarray(v, np.float32)
    a = np.abs(v)
    _, e = np.frexp(a)  # a = m * 2^e, m in [0.5, 1): floor(log2 a) = e - 1
    k = np.maximum(e - 4, -9)
    q = np.ldexp(np.rint(np.ldexp(a, -k)), k)  # power-of-two scaling: exact
    return np.copysign(np.minimum(q, E4M3_MAX), v).astype(np.float32)


def e4m3_all_values():
    """The 254 finite E4M3fn values (codes 0x00..0xff without the NaNs 0x7f/0xff)."""
    c = np.array([i for i in range(256) if i & 0x7F != 0x7F])
    e, m = (c >> 3) & 0xF, c & 7
    v = np.where(e == 0, m / 8.0 * 2.0**-6, (1 + m / 8.0) * 2.0**(e - 7.0))
    return np.where(c & 0x80, -v, v), c


def quant_act(x, mode, static=None):
    """Dynamic FP8 fake-quantization of x [T][D] per row (token) or 128-column group;
    token-int8: INT8 per row; static: FP8 with the one scale given."""
    if mode == "none":
        return x
    if mode == "static":
        s = np.float32(static)
        return (e4m3_round(x / s) * s).astype(np.float32)
    if mode == "token-int8":
        amax = np.abs(x).max(axis=-1, keepdims=True)
        s = np.where(amax == 0, np.float32(1), amax / np.float32(127)).astype(np.float32)
        return (np.clip(np.rint(x / s), -128, 127) * s).astype(np.float32)
    T, D = x.shape
    g = D if mode == "token" else 128
    pad = -D % g
    xg = np.pad(x, ((0, 0), (0, pad))) if pad else x
    xg = xg.reshape(T, -1, g)
    amax = np.abs(xg).max(axis=-1, keepdims=True)
    s = np.where(amax == 0, np.float32(1), amax / E4M3_MAX).astype(np.float32)
    xq = (e4m3_round(xg / s) * s).reshape(T, -1)
    return xq[:, :D] if pad else xq


def selftest(n=100_000, seed=0):
    """Vectorized e4m3_round vs the nearest of all codes (ties: even mantissa)."""
    rng = np.random.default_rng(seed)
    vals, codes = e4m3_all_values()
    pos = np.unique(vals[vals >= 0])
    mids = (pos[:-1] + pos[1:]) / 2  # exact ties (5 significant bits)
    x = np.concatenate([
        np.exp2(rng.uniform(-14, 9.6, n - 4000)) * rng.choice([-1, 1], n - 4000),
        rng.choice(mids, 2000) * rng.choice([-1, 1], 2000),
        rng.choice(vals, 1000), rng.uniform(-2.0**-6, 2.0**-6, 500),
        rng.uniform(440, 1000, 490) * rng.choice([-1, 1], 490),
        [0.0, -0.0, 448, 464, -464, 480, 2.0**-10, 2.0**-10 * 3, 2.0**-6, 1e6]]).astype(np.float32)
    want = np.empty_like(x)
    even = (codes & 1) == 0
    for i in range(0, len(x), 4096):
        d = np.abs(x[i:i + 4096, None].astype(np.float64) - vals[None, :])
        best = d == d.min(axis=1, keepdims=True)
        want[i:i + 4096] = vals[np.argmax(best * (1 + even), axis=1)]
    got = e4m3_round(x)
    bad = np.flatnonzero(got != want)
    for j in bad[:10]:
        print(f"  x={x[j]!r}: got {got[j]!r}, want {want[j]!r}")
    print(f"selftest: {len(x)} values ({len(mids)} distinct ties), {len(bad)} mismatches")
    return 1 if len(bad) else 0


# ---- forward ----------------------------------------------------------------------
class Model:
    def __init__(self, cfg, t, act, static=None):
        self.t, self.act, self.static = t, act, static or {}
        self.L = cfg["num_hidden_layers"]
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.H
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.eps = np.float32(cfg.get("rms_norm_eps", 1e-6))
        theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 1e4)
        self.inv_freq = 1.0 / float(theta) ** (np.arange(0, self.hd, 2) / self.hd)
        self.embed = t["model.embed_tokens.weight"]
        self.lm_head = t.get("lm_head.weight", self.embed)
        self.wt = {n[:-len(".weight")]: np.ascontiguousarray(w.T)
                   for n, w in t.items() if n.startswith("model.layers.") and w.ndim == 2}

    def norm(self, x, w):
        return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps))

    def lin(self, name, x):
        y = x @ self.wt[name]
        b = self.t.get(name + ".bias")
        return y if b is None else y + b

    def rope(self, x, cos, sin):  # x [heads][T][hd], rotate-half
        h = self.hd // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
        return x * cos + rot * sin

    def logits(self, ids):
        T = len(ids)
        f = np.outer(np.arange(T), self.inv_freq)
        f = np.concatenate([f, f], axis=-1)
        cos, sin = np.cos(f).astype(np.float32), np.sin(f).astype(np.float32)
        mask = np.triu(np.full((T, T), -np.inf, np.float32), 1)
        rep = self.H // self.KV

        def qa(v, p, *names):  # the static scale of a shared input: its linears' largest
            s = max(self.static[p + n] for n in names) if self.act == "static" else None
            return quant_act(v, self.act, s)
        x = self.embed[np.asarray(ids)]
        for i in range(self.L):
            p = f"model.layers.{i}."
            h = qa(self.norm(x, self.t[p + "input_layernorm.weight"]), p, "self_attn.q_proj",
                   "self_attn.k_proj", "self_attn.v_proj")
            q = self.lin(p + "self_attn.q_proj", h).reshape(T, self.H, self.hd).transpose(1, 0, 2)
            k = self.lin(p + "self_attn.k_proj", h).reshape(T, self.KV, self.hd).transpose(1, 0, 2)
            v = self.lin(p + "self_attn.v_proj", h).reshape(T, self.KV, self.hd).transpose(1, 0, 2)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
            s = q @ k.transpose(0, 2, 1) / np.float32(np.sqrt(self.hd)) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            o = (s @ v).transpose(1, 0, 2).reshape(T, self.H * self.hd)
            x = x + self.lin(p + "self_attn.o_proj", qa(o, p, "self_attn.o_proj"))
            h = qa(self.norm(x, self.t[p + "post_attention_layernorm.weight"]), p,
                   "mlp.gate_proj", "mlp.up_proj")
            g, u = self.lin(p + "mlp.gate_proj", h), self.lin(p + "mlp.up_proj", h)
            x = x + self.lin(p + "mlp.down_proj", qa(g / (1 + np.exp(-g)) * u, p, "mlp.down_proj"))
        return self.norm(x, self.t["model.norm.weight"]) @ self.lm_head.T


def input_scales(d):
    """{linear prefix: its input_scale} of a quantized checkpoint (one value each)."""
    t = read_model(d, keep=lambda n: n.endswith(".input_scale"))
    return {n[:-len(".input_scale")]: float(v.reshape(-1)[0]) for n, v in t.items()}


def window_nll(model, ids):
    """Sum of -log p(ids[j+1] | ids[:j+1]) over one window, in float64."""
    z = model.logits(ids[:-1]).astype(np.float64)
    m = z.max(axis=-1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(axis=-1))
    return float(np.sum(lse - z[np.arange(len(z)), ids[1:]]))


def add_ppl_args(p):
    """The arguments every perplexity reference here takes (also hf_quant_ref.py's)."""
    p.add_argument("model", nargs="?")
    p.add_argument("text", nargs="?")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--act", choices=["none", "token", "group128", "token-int8", "static"],
                   default="none")
    p.add_argument("--ids", help="JSON array of token ids (instead of tokenizing TEXT)")
    p.add_argument("--cinfer", default=os.path.join(ROOT, "build", "cinfer"),
                   help="tokenizer when --ids is not given")


def load_ids(a):
    """The token ids to score: --ids' JSON array, else TEXT through `cinfer tokenize`."""
    if a.ids:
        with open(a.ids) as f:
            return json.load(f)
    with open(a.text, "rb") as f:
        return json.loads(subprocess.run([a.cinfer, "tokenize", "-m", a.model, "--no-special"],
                                         stdin=f, capture_output=True, check=True).stdout)


def score_windows(ids, ctx, window_nll):
    """cinfer perplexity's scoring: consecutive windows of ctx ids, each from an empty context,
    window_nll(w) the sum of -log p over its predicted tokens; prints and returns the mean."""
    nll, cnt = 0.0, 0
    for w0 in range(0, len(ids), ctx):
        w = ids[w0:w0 + ctx]
        if len(w) < 2:
            break  # a lone last token predicts nothing
        nll += window_nll(w)
        cnt += len(w) - 1
    if not cnt:
        sys.exit("fewer than 2 tokens to score")
    mean = nll / cnt
    print(f"mean_nll={mean:.6f} ppl={np.exp(mean):.4f} tokens={cnt}")
    return mean


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_ppl_args(p)
    p.add_argument("--scales-from", help="--act static: the quantized checkpoint whose "
                   "input_scale tensors give the scales")
    p.add_argument("--threads", type=int, help="BLAS threads (set before numpy loads)")
    p.add_argument("--selftest", action="store_true")
    a = p.parse_args()
    if a.selftest:
        return selftest()
    if not a.model or (not a.text and not a.ids):
        p.error("MODEL_DIR and TEXT_FILE (or --ids) are required")
    if a.ctx < 2:
        p.error("--ctx must be >= 2")
    t0 = time.time()
    ids = np.asarray(load_ids(a), np.int64)
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    if ids.size and (ids.min() < 0 or ids.max() >= cfg["vocab_size"]):
        sys.exit("token id outside the vocabulary")
    static = None
    if a.act == "static":
        if not a.scales_from:
            p.error("--act static needs --scales-from QUANT_DIR")
        static = input_scales(a.scales_from)
    model = Model(cfg, read_model(a.model), a.act, static)
    score_windows(ids, a.ctx, lambda w: window_nll(model, w))
    print(f"ref_ppl: {len(ids)} ids, act={a.act}, {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
