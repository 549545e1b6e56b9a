#!/usr/bin/env python3
"""Write a random-weight Hugging Face checkpoint directory for benchmarks.

Python standard library only (no numpy/torch), so it runs on a bare machine.

    python3 tools/make_random_model.py --shape llama-100m --out /tmp/llama-100m \
        [--dtype bf16|f16|f32] [--seed N] [--tokenizer-dir ../shared/tokenizers/mistral]
    python3 tools/make_random_model.py --verify /tmp/llama-100m

Output: config.json (hub style: top-level rope_theta, rope_scaling, torch_dtype,
like the real checkpoints), generation_config.json, model.safetensors or, above
--max-shard-bytes (default 5e9, like HF's "5GB"), model-0000i-of-0000N.safetensors
plus model.safetensors.index.json, and the tokenizer files copied from
--tokenizer-dir when given.

Values: weights are random with magnitudes in about [2^-11, 2^-4) (bf16/f32;
f16 [2^-8, 2^-4)) and random sign; RMSNorm weights lie in about [0.94, 1.12].
Bytes come from a 64 MiB pool (SHAKE-128 of the seed, then the high byte of
every element rewritten with bytes.translate to bound the exponent); each
chunk of a tensor is a slice of the pool at a seeded random offset. Same
--seed, same bytes. This is for speed measurements only: the model is noise.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import time

SHAPES = {
    # ~100M params, Llama architecture, Mistral-7B tokenizer (vocab 32000)
    "llama-100m": dict(
        arch="llama", hidden=768, layers=12, heads=12, kv_heads=4, inter=2048, vocab=32000,
        tied=True, theta=10000.0, max_pos=2048, eps=1e-5, bos=1, eos=2, rope_scaling=None),
    "llama-3.2-1b": dict(
        arch="llama", hidden=2048, layers=16, heads=32, kv_heads=8, inter=8192, vocab=128256,
        tied=True, theta=500000.0, max_pos=131072, eps=1e-5, bos=128000, eos=128001,
        rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "llama-3-8b": dict(
        arch="llama", hidden=4096, layers=32, heads=32, kv_heads=8, inter=14336, vocab=128256,
        tied=False, theta=500000.0, max_pos=8192, eps=1e-5, bos=128000, eos=128001, rope_scaling=None),
    # Llama-3.1-8B: the Llama-3-8B shape with a 131072-token context (llama3 rope scaling)
    "llama-3.1-8b": dict(
        arch="llama", hidden=4096, layers=32, heads=32, kv_heads=8, inter=14336, vocab=128256,
        tied=False, theta=500000.0, max_pos=131072, eps=1e-5, bos=128000, eos=128001,
        rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    "qwen2.5-7b": dict(
        arch="qwen2", hidden=3584, layers=28, heads=28, kv_heads=4, inter=18944, vocab=152064,
        tied=False, theta=1000000.0, max_pos=131072, eps=1e-6, bos=151643, eos=151643, rope_scaling=None),
}

DTYPES = {  # name -> (safetensors dtype, bytes per element, torch_dtype string)
    "bf16": ("BF16", 2, "bfloat16"),
    "f16": ("F16", 2, "float16"),
    "f32": ("F32", 4, "float32"),
}

POOL_BYTES = 64 << 20
CHUNK_BYTES = 32 << 20

# High byte of a bf16 / f32 element: sign | 7 high exponent bits. 58..61 -> biased
# exponent 116..123 (with the next byte's top bit) -> |x| in [2^-11, 2^-4).
HI_BF = bytes((i & 0x80) | (58 + (i & 3)) for i in range(256))
# High byte of an f16 element: sign | 5-bit exponent | 2 mantissa bits; exponent 7..10
# -> |x| in [2^-8, 2^-4).
HI_F16 = bytes((i & 0x80) | ((7 + ((i >> 2) & 3)) << 2) | (i & 3) for i in range(256))
# Norm weights. bf16/f32: high byte 0x3F, next byte 0x70..0x8F -> [0.9375, 1.117].
NORM_BF = bytes(0x70 + (i & 0x1F) for i in range(256))
# f16: high byte 0x3B or 0x3C -> [0.875, 1.25).
NORM_F16 = bytes(0x3B + (i & 1) for i in range(256))


def tensor_list(s):
    """(name, shape, kind) in checkpoint order; kind is 'w' (random) or 'norm'."""
    H, hd = s["hidden"], s["hidden"] // s["heads"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    bias = s["arch"] == "qwen2"
    out = [("model.embed_tokens.weight", (s["vocab"], H), "w")]
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        out.append((p + "input_layernorm.weight", (H,), "norm"))
        for nm, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            out.append((p + f"self_attn.{nm}.weight", (rows, H), "w"))
            if bias:
                out.append((p + f"self_attn.{nm}.bias", (rows,), "w"))
        out.append((p + "self_attn.o_proj.weight", (H, q), "w"))
        out.append((p + "post_attention_layernorm.weight", (H,), "norm"))
        out.append((p + "mlp.gate_proj.weight", (s["inter"], H), "w"))
        out.append((p + "mlp.up_proj.weight", (s["inter"], H), "w"))
        out.append((p + "mlp.down_proj.weight", (H, s["inter"]), "w"))
    out.append(("model.norm.weight", (H,), "norm"))
    if not s["tied"]:
        out.append(("lm_head.weight", (s["vocab"], H), "w"))
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_config(shape_name, s, dt):
    hd = s["hidden"] // s["heads"]
    common = {
        "attention_dropout": 0.0,
        "bos_token_id": s["bos"],
        "eos_token_id": s["eos"],
        "hidden_act": "silu",
        "hidden_size": s["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": s["inter"],
        "max_position_embeddings": s["max_pos"],
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "rms_norm_eps": s["eps"],
        "rope_scaling": s["rope_scaling"],
        "rope_theta": s["theta"],
        "tie_word_embeddings": s["tied"],
        "torch_dtype": DTYPES[dt][2],
        "use_cache": True,
        "vocab_size": s["vocab"],
    }
    if s["arch"] == "llama":
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False,
               "head_dim": hd, "mlp_bias": False, "pretraining_tp": 1}
    else:
        cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "max_window_layers": s["layers"],
               "sliding_window": s["max_pos"], "use_sliding_window": False}
    cfg.update(common)
    cfg["_random_model"] = f"tools/make_random_model.py --shape {shape_name} --dtype {dt}"
    return dict(sorted(cfg.items()))


class Source:
    """Seeded bytes for tensors."""

    def __init__(self, seed, dt):
        self.dt = dt
        self.w = DTYPES[dt][1]
        self.seed = seed
        self.rng = random.Random(seed)
        pool = bytearray(hashlib.shake_128(f"cinfer-random-model:{seed}".encode()).digest(POOL_BYTES))
        w = self.w
        pool[w - 1::w] = pool[w - 1::w].translate(HI_F16 if dt == "f16" else HI_BF)
        self.pool = memoryview(bytes(pool))

    def weight_chunks(self, nbytes):
        """Yield memoryview chunks totalling nbytes of random weight elements."""
        w = self.w
        while nbytes > 0:
            n = min(nbytes, CHUNK_BYTES)
            off = self.rng.randrange(0, (POOL_BYTES - n) // w + 1) * w
            yield self.pool[off:off + n]
            nbytes -= n

    def norm_bytes(self, name, n):
        w = self.w
        b = bytearray(hashlib.shake_128(f"{self.seed}:{name}".encode()).digest(n * w))
        if self.dt == "f16":
            b[1::2] = b[1::2].translate(NORM_F16)
        else:
            b[w - 1::w] = b"\x3f" * n
            b[w - 2::w] = b[w - 2::w].translate(NORM_BF)
        return bytes(b)


def plan_shards(tensors, w, max_shard):
    """HF-style greedy sharding in checkpoint order."""
    shards, cur, cur_size = [], [], 0
    for t in tensors:
        sz = numel(t[1]) * w
        if cur and cur_size + sz > max_shard:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(t)
        cur_size += sz
    if cur:
        shards.append(cur)
    return shards


def write_safetensors(path, tensors, dt, src):
    st_dtype, w, _ = DTYPES[dt]
    tensors = sorted(tensors, key=lambda t: t[0])
    header, off = {}, 0
    for name, shape, _ in tensors:
        sz = numel(shape) * w
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [off, off + sz]}
        off += sz
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, kind in tensors:
            if kind == "norm":
                f.write(src.norm_bytes(name, numel(shape)))
            else:
                for c in src.weight_chunks(numel(shape) * w):
                    f.write(c)
    return off


def copy_tokenizer(tdir, out, vocab):
    copied = []
    for fn in sorted(os.listdir(tdir)):
        if (fn.startswith("tokenizer") or fn in ("special_tokens_map.json", "vocab.json", "merges.txt",
                                                  "added_tokens.json")) and os.path.isfile(os.path.join(tdir, fn)):
            shutil.copyfile(os.path.join(tdir, fn), os.path.join(out, fn))
            copied.append(fn)
    tj = os.path.join(out, "tokenizer.json")
    if os.path.exists(tj):
        with open(tj, encoding="utf-8") as f:
            t = json.load(f)
        ids = list(t.get("model", {}).get("vocab", {}).values()) if isinstance(
            t.get("model", {}).get("vocab"), dict) else []
        ids += [a["id"] for a in t.get("added_tokens", [])]
        if ids and max(ids) >= vocab:
            print(f"warning: tokenizer has ids up to {max(ids)} >= vocab_size {vocab}", file=sys.stderr)
    return copied


def verify(d):
    """Stdlib check of a checkpoint dir: headers parse, offsets contiguous, sizes add up."""
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    assert files, "no .safetensors files"
    idx_path = os.path.join(d, "model.safetensors.index.json")
    weight_map = None
    if os.path.exists(idx_path):
        with open(idx_path) as f:
            weight_map = json.load(f)["weight_map"]
    n_tensors, total, seen = 0, 0, {}
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    for fn in files:
        p = os.path.join(d, fn)
        with open(p, "rb") as f:
            hl = struct.unpack("<Q", f.read(8))[0]
            assert hl % 8 == 0, f"{fn}: header length {hl} not 8-aligned"
            hdr = json.loads(f.read(hl))
            hdr.pop("__metadata__", None)
            ents = sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0])
            pos = 0
            for name, e in ents:
                a, b = e["data_offsets"]
                assert a == pos, f"{fn}:{name}: offset {a} != expected {pos}"
                assert b - a == numel(e["shape"]) * sizes[e["dtype"]], f"{fn}:{name}: size mismatch"
                pos = b
                seen[name] = fn
            assert os.path.getsize(p) == 8 + hl + pos, f"{fn}: file size mismatch"
            # sample the first elements of the first tensor and of a norm
            for name, e in ents[:1] + [x for x in ents if x[0].endswith("norm.weight")][:1]:
                f.seek(8 + hl + e["data_offsets"][0])
                raw = f.read(min(64, e["data_offsets"][1] - e["data_offsets"][0]))
                vals = decode(raw, e["dtype"])
                lim = (0.85, 1.3) if name.endswith("norm.weight") else (0.0, 0.13)
                assert all(lim[0] <= abs(v) < lim[1] for v in vals), (name, vals[:8])
        n_tensors += len(ents)
        total += pos
    if weight_map is not None:
        assert weight_map == seen, "index weight_map does not match shard contents"
    return n_tensors, total, files


def decode(raw, dtype):
    if dtype == "BF16":
        return [struct.unpack("<f", b"\0\0" + raw[i:i + 2])[0] for i in range(0, len(raw) - 1, 2)]
    if dtype == "F16":
        return [struct.unpack("<e", raw[i:i + 2])[0] for i in range(0, len(raw) - 1, 2)]
    return [struct.unpack("<f", raw[i:i + 4])[0] for i in range(0, len(raw) - 3, 4)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES))
    ap.add_argument("--out")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokenizer-dir")
    ap.add_argument("--max-shard-bytes", type=int, default=5_000_000_000)
    ap.add_argument("--verify", metavar="DIR", help="only check an existing checkpoint dir")
    args = ap.parse_args()

    if args.verify:
        n, total, files = verify(args.verify)
        print(f"ok: {len(files)} file(s), {n} tensors, {total} data bytes")
        return
    if not args.shape or not args.out:
        ap.error("--shape and --out are required (or --verify DIR)")

    t0 = time.time()
    s = SHAPES[args.shape]
    w = DTYPES[args.dtype][1]
    os.makedirs(args.out, exist_ok=True)
    tensors = tensor_list(s)
    params = sum(numel(t[1]) for t in tensors)
    src = Source(args.seed, args.dtype)

    shards = plan_shards(tensors, w, args.max_shard_bytes)
    total = 0
    if len(shards) == 1:
        total = write_safetensors(os.path.join(args.out, "model.safetensors"), tensors, args.dtype, src)
    else:
        weight_map = {}
        for i, sh in enumerate(shards):
            fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            total += write_safetensors(os.path.join(args.out, fn), sh, args.dtype, src)
            for t in sh:
                weight_map[t[0]] = fn
            print(f"  wrote {fn} ({time.time() - t0:.1f}s)", flush=True)
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
                      f, indent=2)
            f.write("\n")

    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(make_config(args.shape, s, args.dtype), f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": s["bos"], "eos_token_id": s["eos"], "do_sample": False}, f, indent=2)
        f.write("\n")
    copied = copy_tokenizer(args.tokenizer_dir, args.out, s["vocab"]) if args.tokenizer_dir else []

    print(f"{args.shape}: {params} params ({params / 1e6:.1f}M), {total} bytes of {args.dtype} weights in "
          f"{len(shards)} file(s), {len(tensors)} tensors, tokenizer files {copied or 'none'}, "
          f"{time.time() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
