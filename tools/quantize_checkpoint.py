#!/usr/bin/env python3
"""quantize_checkpoint.py — writes quantized test checkpoints in the published layouts.

From a Hugging Face Llama/Qwen2-style checkpoint (F32/BF16/F16 safetensors) it
writes a copy whose linear layers (q/k/v/o, gate/up/down) are quantized the
way the public tools store them, plus (with --dequant-out) the f32 checkpoint
of exactly the weights the quantized one encodes, so a test can compare
cinfer(quantized) with cinfer(dequantized f32). Embeddings, norms, biases and
lm_head stay as they are (as llm-compressor's `ignore: ["lm_head"]`, GPTQ and
AWQ leave them; --lm-head below quantizes the head too).

Formats (--format):
  ct-fp8-tensor   compressed-tensors `float-quantized`, FP8 E4M3 weight, one
                  F32 weight_scale [1] per tensor, dynamic per-token activations
  ct-fp8-channel  same, weight_scale [out, 1] per output channel (in the
                  checkpoint's dtype, BF16 here, as llm-compressor writes it)
  ct-fp8-block    same, strategy block (block_structure [128, 128]): weight_scale
                  [ceil(out/128)][ceil(in/128)] F32, per-token-group activations
  ct-int8-channel compressed-tensors `int-quantized` (llm-compressor W8A8 INT8): I8
                  weight, weight_scale [out, 1] (BF16) per output channel, symmetric
                  (s = amax / 127, round half to even), dynamic per-token INT8 activations
  ct-int8-tensor  same with one F32 weight_scale [1] per tensor
  fp8-tensor      AutoFP8 / vLLM's serialized fp8 (`quant_method: fp8`, no
                  weight_block_size): E4M3 weight, F32 weight_scale [] per tensor,
                  activation_scheme dynamic; --static: activation_scheme static with an
                  F32 input_scale [] per linear, AutoFP8's calibration: the largest |input|
                  / 448 over calibration ids run through a numpy forward of the bf16
                  model (tools/gptq.py; --gptq-calib's ids, else 4 x 64 random ids)
  fp8-block       transformers FineGrainedFP8 (`quant_method: fp8`): E4M3
                  weight, F32 weight_scale_inv [ceil(out/128)][ceil(in/128)]
  ct-w4a16        compressed-tensors `pack-quantized` (llm-compressor W4A16): INT4,
                  weight_packed I32 [out][in/8] (8 inputs per word, value + 8),
                  weight_scale F16 [out][groups], weight_shape I64 [2]; --group G or -1
                  (strategy channel); --desc-act writes actorder "group" + weight_g_idx;
                  --asym: symmetric false + weight_zero_point I32 [out/8][groups]
                  (8 outputs per word, zero point + 8, pack_to_int32 along dim 0)
  gptq            AutoGPTQ/GPTQModel: qweight I32 [in/8][out] (8 nibbles along
                  the input dim), qzeros I32 [groups][out/8], scales F16
                  [groups][out], g_idx I32 [in]; --group 128/32/-1, --asym,
                  --desc-act (a random act order per input, shared by q/k/v and
                  by gate/up as GPTQ's is), --v2 for
                  checkpoint_format gptq_v2 (v1 stores zero-1); --bits 8:
                  8-bit GPTQ, symmetric (zero point 128), qweight I32 [in/4][out]
                  (4 bytes along the input dim), qzeros I32 [groups][out/4]
  awq             AutoAWQ GEMM: qweight I32 [in][out/8] with nibbles in the
                  order [0,2,4,6,1,3,5,7], qzeros I32 [groups][out/8], scales
                  F16 [groups][out]; always with zero points

--gptq-calib runs real GPTQ (tools/gptq.py: calibration inputs through a numpy
forward, inverse-Hessian error spreading, act order with --desc-act) instead
of round-to-nearest for gptq and ct-w4a16.

GPTQ v1 cannot store a zero point of 0 (zero-1 wraps into the next nibble, a
known v1 defect), so asymmetric v1 fixtures clamp zeros to >= 1.
--ignore NAME keeps one linear module (e.g. model.layers.0.mlp.down_proj)
dense and lists it in the config's ignore / modules_to_not_convert.

--lm-head quantizes the LM head too, as the linears (every format but awq):
GPTQModel's `lm_head: true` (lm_head.qweight, ...), compressed-tensors / fp8
without lm_head in ignore / ignored_layers. A tied model's head is written
from the embedding as its own tensors and the config unties them
(tie_word_embeddings false; the embedding stays as stored).

Needs python3 + numpy (Debian: python3-numpy)."""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

if __name__ == "__main__" and "MALLOC_MMAP_MAX_" not in os.environ:
    # numpy's large temporaries come from glibc's mmap and go back with munmap, and zeroing the
    # fresh pages each time cost more system time than the arithmetic took on 8B-class
    # checkpoints (46 s -> 38 s on the 1B shape here); kept in the heap they are reused. glibc
    # reads these at start, so set them and start again.
    os.environ.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(1 << 40))
    os.execv(sys.executable, [sys.executable] + sys.argv)

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
ST_TO_NP = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
            "F8_E4M3": np.uint8, "BF16": np.uint16, "I8": np.int8}


# ---- safetensors -----------------------------------------------------------
def st_read(path):
    """name -> (dtype string, numpy array; BF16 as uint16 bits), read-only views of the file
    mapped (no copy: the forked workers share its pages)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    base = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        b, e = d["data_offsets"]
        arr = mm[base + b:base + e].view(ST_TO_NP[d["dtype"]]).reshape(d["shape"])
        out[name] = (d["dtype"], arr)
    return out


def st_write(path, tensors):
    """tensors: name -> (dtype string, numpy array)."""
    header, arrs, off = {}, [], 0
    for name in sorted(tensors):
        dt, arr = tensors[name]
        arr = np.require(arr, requirements="C")  # (ascontiguousarray would make [] a [1])
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [off, off + arr.nbytes]}
        arrs.append(arr)
        off += arr.nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for arr in arrs:  # the array's own bytes, not a copy of them
            f.write(memoryview(arr.reshape(-1)).cast("B"))


def to_f32(dt, arr):
    if dt == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def bf16_bits(x):
    """f32 -> BF16 bits, round to nearest even."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


# ---- FP8 E4M3 (fn: no infinities, 0x7f/0xff NaN, max 448) ------------------
def e4m3_decode(codes):
    c = codes.astype(np.int32)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 0xF
    m = c & 7
    v = np.where(e == 0, m / 8.0 * 2.0**-6, (1 + m / 8.0) * 2.0**(e - 7))
    return (s * v).astype(np.float32)


_E4M3 = e4m3_decode(np.arange(256, dtype=np.uint8))  # every code's value


def _e4m3_encode_exact(x):
    """Round to nearest E4M3 (ties to even code), saturating at +-448. Normal values: float32
    rounded to 3 mantissa bits (round half to even on the bits = ties to the even code, a carry
    into the exponent included), its exponent rebiased; below 2^-6 the subnormal steps of 2^-9
    (np.rint: half to even). Equal to a nearest-value search over the 127 magnitudes on every
    float32 tried (the codes' values, their midpoints and one ulp either side), 10x faster."""
    x = np.asarray(x, np.float32)
    a = np.minimum(np.abs(x), np.float32(448.0))
    u = a.view(np.uint32)
    r = (u + np.uint32(0x7FFFF) + ((u >> np.uint32(20)) & np.uint32(1))) & np.uint32(0xFFF00000)
    code = (((r >> np.uint32(23)).astype(np.int32) - 120) << 3) | \
        ((r >> np.uint32(20)) & np.uint32(7)).astype(np.int32)
    code = np.where(a < np.float32(2.0**-6), np.rint(a * np.float32(512.0)).astype(np.int32), code)
    return (code | np.where(x < 0, 0x80, 0)).astype(np.uint8)


# The code of a float32 depends only on its top 16 bits and on whether any of the other 16 is
# set: every rounding point of E4M3 (normal: 3 mantissa bits; subnormal: steps of 2^-9; the
# half of the smallest step, 2^-10) lies at bit 16 or above, so the low bits only break ties.
# One table of 2^17 codes from the exact encoder, then one lookup a value (4x fewer passes).
_E4M3_HI = (np.arange(1 << 17, dtype=np.uint32) >> 1) << 16
with np.errstate(invalid="ignore"):  # the NaN patterns' entries: never looked up
    _E4M3_LUT = _e4m3_encode_exact((_E4M3_HI | (np.arange(1 << 17, dtype=np.uint32) & 1))
                                   .view(np.float32))
del _E4M3_HI


def e4m3_encode(x):
    """Round to nearest E4M3 (ties to even code), saturating at +-448, as _e4m3_encode_exact
    (finite x)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    i = u >> np.uint32(15)
    i |= (u & np.uint32(0x7FFF)) != 0
    return _E4M3_LUT[i]


def fp8_tensor(w, deq=True):
    s = np.float32(max(np.abs(w).max(), 1e-12) / 448.0)
    q = e4m3_encode(w / s)
    return q, np.array([s], np.float32), _E4M3[q] * s if deq else None


def fp8_channel(w, deq=True):
    s = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) / 448.0
    sb = bf16_bits(s)  # stored in the checkpoint dtype (BF16)
    s = to_f32("BF16", sb)
    q = e4m3_encode(w / s)
    return q, sb, _E4M3[q] * s if deq else None


def int8_quant(w, per_channel, deq=True):
    """Symmetric INT8: s = amax / 127 per row (BF16, the checkpoint dtype) or per tensor (F32)."""
    if per_channel:
        sb = bf16_bits(np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) / 127.0)
        s = to_f32("BF16", sb)
    else:
        sb = np.array([max(np.abs(w).max(), 1e-12) / 127.0], np.float32)
        s = sb[0]
    q = np.clip(np.rint(w / s), -128, 127).astype(np.int8)
    return q, sb, q.astype(np.float32) * s if deq else None


def fp8_block(w, bs=128, deq=True):
    out, inn = w.shape
    nb_o, nb_i = -(-out // bs), -(-inn // bs)
    sinv = np.zeros((nb_o, nb_i), np.float32)
    q = np.zeros(w.shape, np.uint8)
    d = np.zeros(w.shape, np.float32) if deq else None
    for i in range(nb_o):
        for j in range(nb_i):
            blk = w[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs]
            s = np.float32(max(np.abs(blk).max(), 1e-12) / 448.0)
            sinv[i, j] = s
            qb = e4m3_encode(blk / s)
            q[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs] = qb
            if d is not None:
                d[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs] = _E4M3[qb] * s
    return q, sinv, d


# ---- INT4 ------------------------------------------------------------------
def act_order(a, prefix, inn):
    """--desc-act: the column order of one linear, the same for the linears that read one
    input (q/k/v, gate/up), as GPTQ's (argsort of the input Hessian's diagonal) is."""
    if not a.desc_act:
        return None
    if prefix == "lm_head":
        layer, kind = 1 << 20, 0
    else:
        layer = int(prefix.split(".")[2])
        kind = {"q_proj": 0, "k_proj": 0, "v_proj": 0, "o_proj": 1, "gate_proj": 2, "up_proj": 2,
                "down_proj": 3}[prefix.rsplit(".", 1)[1]]
    return np.random.default_rng([a.seed, layer, kind]).permutation(inn)


def int4_quant(w, group, sym, awq, min_zero, desc_act, bits=4, deq=True):
    """-> q [out][in] (0..2^bits - 1), zeros [G][out], scales f16 [G][out], g_idx [in], deq
    (None unless asked). desc_act: a column order (act_order) or None. bits 8: symmetric only
    (s = 2 max|w| / 255, zero 128: AutoGPTQ's)."""
    maxq = (1 << bits) - 1
    out, inn = w.shape
    gs = inn if group == -1 else group
    ngroups = inn // gs
    perm = desc_act if desc_act is not None else np.arange(inn)
    g_idx = np.zeros(inn, np.int32)
    g_idx[perm] = np.arange(inn) // gs
    # all groups at once: [out][G][gs], the columns of group g (in act order) at [:, g, :]
    blk = (w[:, perm] if desc_act is not None else w).reshape(out, ngroups, gs)
    if awq:
        mx, mn = blk.max(axis=2), blk.min(axis=2)
        s16 = (np.maximum(mx - mn, 1e-5) / 15.0).astype(np.float16)
        z = np.clip(-np.round(mn / s16.astype(np.float32)), 0, 15)
    elif sym:
        mx = np.maximum(np.abs(blk).max(axis=2), 1e-8)
        s16 = (2 * mx / float(maxq)).astype(np.float16)
        z = np.full((out, ngroups), float((maxq + 1) // 2))
    else:
        mx, mn = np.maximum(blk.max(axis=2), 0), np.minimum(blk.min(axis=2), 0)
        s16 = (np.maximum(mx - mn, 1e-8) / 15.0).astype(np.float16)
        z = np.clip(np.round(-mn / s16.astype(np.float32)), min_zero, 15)
    sf = s16.astype(np.float32)
    qq = np.round(blk / sf[:, :, None])
    qq += z[:, :, None]
    q = np.clip(qq, 0, maxq).astype(np.int32).reshape(out, inn)
    del qq
    if desc_act is not None:  # back to the checkpoint's column order
        qp = np.empty_like(q)
        qp[:, perm] = q
        q = qp
    zeros = np.ascontiguousarray(z.T.astype(np.int32))
    scales = np.ascontiguousarray(s16.T)
    return q, zeros, scales, g_idx, int4_deq(q, zeros, scales, g_idx) if deq else None


def int4_deq(q, zeros, scales, g_idx):
    """The f32 weight that codes q [out][in] with zeros / scales [G][out] encode."""
    return ((q - zeros[g_idx].T) * scales[g_idx].T.astype(np.float32)).astype(np.float32)


def pack_rows(v, per=8):
    """[n][m] codes -> I32 [n/per][m]: element per*r+j at bits (32/per)*j (GPTQ qweight: 8
    nibbles, or 4 bytes at 8 bits)."""
    n, m = v.shape
    b = 32 // per
    v = v.astype(np.uint32).reshape(n // per, per, m)
    p = np.zeros((n // per, m), np.uint32)
    for j in range(per):
        p |= (v[:, j, :] & ((1 << b) - 1)) << (b * j)
    return p.view(np.int32)


def pack_cols(v, order=tuple(range(8)), per=8):
    """[n][m] codes -> I32 [n][m/per]: column per*c+order[j] at bits (32/per)*j (4 or 8 bits)."""
    n, m = v.shape
    b = 32 // per
    v = v.astype(np.uint32).reshape(n, m // per, per)
    p = np.zeros((n, m // per), np.uint32)
    for j in range(per):
        p |= (v[:, :, order[j]] & ((1 << b) - 1)) << (b * j)
    return p.view(np.int32)


# ---- driver ----------------------------------------------------------------
def ct_scheme(bits, typ, strategy, dynamic, symmetric=True, group_size=None, block=None,
              actorder=None):
    """One compressed-tensors quantization args entry (weights or input_activations)."""
    return {"actorder": actorder, "block_structure": block, "dynamic": dynamic,
            "group_size": group_size, "num_bits": bits,
            "observer": None if dynamic else "minmax", "observer_kwargs": {},
            "strategy": strategy, "symmetric": symmetric, "type": typ}


def ct_config(fmt, weights, acts, ignore):
    """A compressed-tensors quantization_config with one config group over every Linear."""
    return {"config_groups": {"group_0": {"input_activations": acts,
                                          "output_activations": None,
                                          "targets": ["Linear"], "weights": weights}},
            "format": fmt, "ignore": ignore,
            "kv_cache_scheme": None, "quant_method": "compressed-tensors",
            "quantization_status": "compressed"}


def qconfig(a, ignore):
    """config.json's quantization_config; ignore: the --ignore modules (the formats that list
    lm_head list it too, unless --lm-head quantized it)"""
    listed = ignore if a.lm_head else ["lm_head"] + ignore
    if a.format.startswith("ct-fp8"):
        strategy = a.format[len("ct-fp8-"):]
        block = [128, 128] if strategy == "block" else None
        acts = (ct_scheme(8, "float", "tensor", False) if a.static else
                ct_scheme(8, "float", "group" if block else "token", True,
                          group_size=128 if block else None))
        return ct_config("float-quantized", ct_scheme(8, "float", strategy, False, block=block),
                         acts, listed)
    if a.format.startswith("ct-int8"):
        return ct_config("int-quantized", ct_scheme(8, "int", a.format[len("ct-int8-"):], False),
                         ct_scheme(8, "int", "token", True), listed)
    if a.format == "fp8-tensor":
        return {"activation_scheme": "static" if a.static else "dynamic", "quant_method": "fp8",
                "ignored_layers": listed}
    if a.format == "fp8-block":
        return {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                "weight_block_size": [128, 128], "modules_to_not_convert": ignore or None}
    if a.format == "ct-w4a16":
        weights = ct_scheme(4, "int", "channel" if a.group == -1 else "group", False,
                            symmetric=not a.asym, group_size=None if a.group == -1 else a.group,
                            actorder="group" if a.desc_act else None)
        return ct_config("pack-quantized", weights, None, listed)
    if a.format == "gptq":
        c = {"bits": a.bits, "group_size": a.group, "damp_percent": 0.01, "desc_act": a.desc_act,
             "static_groups": False, "sym": not a.asym, "true_sequential": True,
             "model_name_or_path": None, "model_file_base_name": "model", "quant_method": "gptq",
             "checkpoint_format": "gptq_v2" if a.v2 else "gptq"}
        if a.lm_head:
            c["lm_head"] = True
        if ignore:
            c["modules_to_not_convert"] = ignore
        return c
    return {"bits": 4, "group_size": a.group, "modules_to_not_convert": ignore or None,
            "quant_method": "awq", "version": "gemm", "zero_point": True}


def int4_codes(a, prefix, w, sym, min_zero):
    """INT4 codes of one linear: GPTQ's (computed for the whole model up front,
    with --gptq-calib) or round-to-nearest."""
    if prefix in a.gptq:
        q, s, z, g_idx = a.gptq[prefix]
        return q, z, s, g_idx, int4_deq(q, z, s, g_idx) if a.dequant_out else None
    return int4_quant(w, a.group, sym, False, min_zero, act_order(a, prefix, w.shape[1]),
                      deq=bool(a.dequant_out))


def quantize_linear(a, prefix, w, qt):
    """Writes prefix.* quantized tensors into qt; returns the dequantized f32 weight (None
    without --dequant-out, which alone needs it)."""
    f, dq = a.format, bool(a.dequant_out)
    if f in ("ct-fp8-tensor", "fp8-tensor"):  # scale [1] (compressed-tensors) or [] (AutoFP8)
        q, s, deq = fp8_tensor(w, dq)
        qt[prefix + ".weight"] = ("F8_E4M3", q)
        qt[prefix + ".weight_scale"] = ("F32", s if f == "ct-fp8-tensor" else s.reshape(()))
        if a.static:  # [1] (compressed-tensors) or [] (AutoFP8), as the weight scale
            sc = np.array(a.amax[prefix] / 448.0, np.float32)
            qt[prefix + ".input_scale"] = ("F32", sc.reshape(1) if f == "ct-fp8-tensor" else sc)
    elif f == "ct-fp8-channel":
        q, s, deq = fp8_channel(w, dq)
        qt[prefix + ".weight"] = ("F8_E4M3", q)
        qt[prefix + ".weight_scale"] = ("BF16", s)
    elif f.startswith("ct-int8"):
        q, s, deq = int8_quant(w, f == "ct-int8-channel", dq)
        qt[prefix + ".weight"] = ("I8", q)
        qt[prefix + ".weight_scale"] = ("BF16" if f == "ct-int8-channel" else "F32", s)
    elif f in ("fp8-block", "ct-fp8-block"):
        q, s, deq = fp8_block(w, deq=dq)
        qt[prefix + ".weight"] = ("F8_E4M3", q)
        qt[prefix + (".weight_scale_inv" if f == "fp8-block" else ".weight_scale")] = ("F32", s)
    elif f == "ct-w4a16":
        q, z, s, g_idx, deq = int4_codes(a, prefix, w, not a.asym, 0)
        qt[prefix + ".weight_packed"] = ("I32", pack_cols(q))
        if a.asym:  # z [groups][out] -> [out/8][groups], 8 outputs per word
            qt[prefix + ".weight_zero_point"] = ("I32", np.ascontiguousarray(pack_cols(z).T))
        qt[prefix + ".weight_scale"] = ("F16", np.ascontiguousarray(s.T))
        qt[prefix + ".weight_shape"] = ("I64", np.array(w.shape, np.int64))
        if a.desc_act:
            qt[prefix + ".weight_g_idx"] = ("I32", g_idx)
    elif f == "gptq" and a.bits == 8:
        q, z, s, g_idx, deq = int4_quant(w, a.group, True, False, 0,
                                         act_order(a, prefix, w.shape[1]), bits=8, deq=dq)
        qt[prefix + ".qweight"] = ("I32", pack_rows(q.T, 4))
        qt[prefix + ".qzeros"] = ("I32", pack_cols(z if a.v2 else z - 1, tuple(range(4)), 4))
        qt[prefix + ".scales"] = ("F16", s)
        qt[prefix + ".g_idx"] = ("I32", g_idx)
    elif f == "gptq":
        q, z, s, g_idx, deq = int4_codes(a, prefix, w, not a.asym, 0 if a.v2 else 1)
        qt[prefix + ".qweight"] = ("I32", pack_rows(q.T))
        qt[prefix + ".qzeros"] = ("I32", pack_cols(z if a.v2 else z - 1))
        qt[prefix + ".scales"] = ("F16", s)
        qt[prefix + ".g_idx"] = ("I32", g_idx)
    else:
        q, z, s, _, deq = int4_quant(w, a.group, False, True, 0, None, deq=dq)
        qt[prefix + ".qweight"] = ("I32", pack_cols(q.T, AWQ_ORDER))
        qt[prefix + ".qzeros"] = ("I32", pack_cols(z, AWQ_ORDER))
        qt[prefix + ".scales"] = ("F16", s)
    return deq


_JOB = None  # (args, source tensors): read by _quantize_one in forked workers


def _quantize_one(name):
    """-> (name, its quantized tensors, dequantized f32 weight or None)."""
    a, src = _JOB
    dt, arr = src[name]
    q = {}
    deq = quantize_linear(a, name[:-len(".weight")], to_f32(dt, arr), q)
    return name, q, deq


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--format", required=True,
                   choices=["ct-fp8-tensor", "ct-fp8-channel", "ct-fp8-block", "fp8-tensor",
                            "fp8-block",
                            "ct-int8-channel", "ct-int8-tensor", "ct-w4a16", "gptq", "awq"])
    p.add_argument("--group", type=int, default=128)
    p.add_argument("--static", action="store_true",
                   help="fp8-tensor / ct-fp8-tensor: static per-tensor activation scales "
                   "(input_scale tensors, calibrated)")
    p.add_argument("--bits", type=int, default=4, choices=[4, 8],
                   help="gptq: 4 (default) or 8 (symmetric)")
    p.add_argument("--asym", action="store_true")
    p.add_argument("--desc-act", action="store_true")
    p.add_argument("--v2", action="store_true")
    p.add_argument("--ignore", action="append", default=[])
    p.add_argument("--lm-head", action="store_true",
                   help="quantize the LM head too (not awq); a tied head is untied")
    p.add_argument("--dequant-out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gptq-calib", metavar="auto|IDS.json",
                   help="gptq / ct-w4a16: real GPTQ (tools/gptq.py) on calibration token ids "
                   "(auto: 64 x 256 tokens of the Python stdlib's source) instead of RTN")
    p.add_argument("--cinfer", default="build/cinfer", help="tokenizer for --gptq-calib auto")
    p.add_argument("--jobs", type=int, default=1,
                   help="quantize linears in this many processes (round-to-nearest: each "
                   "linear is independent; for 8B-class checkpoints)")
    a = p.parse_args()
    if a.static and a.format not in ("fp8-tensor", "ct-fp8-tensor"):
        sys.exit("--static: only --format fp8-tensor or ct-fp8-tensor")
    if a.bits == 8 and (a.format != "gptq" or a.asym or a.gptq_calib):
        sys.exit("--bits 8: only --format gptq, symmetric, round-to-nearest")
    if a.lm_head and a.format == "awq":
        sys.exit("--lm-head: AutoAWQ does not quantize the LM head")
    if a.jobs > 1 and a.gptq_calib:
        sys.exit("--jobs > 1: only round-to-nearest (GPTQ runs over the whole model)")
    files = sorted(f for f in os.listdir(a.src) if f.endswith(".safetensors"))
    src = {}
    for f in files:
        src.update(st_read(os.path.join(a.src, f)))
    if a.lm_head and "lm_head.weight" not in src:  # tied: the head from the embedding
        src["lm_head.weight"] = src["model.embed_tokens.weight"]
    a.gptq, a.amax = {}, {}
    if a.gptq_calib or a.static:
        if a.gptq_calib and a.format not in ("gptq", "ct-w4a16") and not a.static:
            sys.exit("--gptq-calib: only with --format gptq or ct-w4a16, or --static")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import gptq
        with open(os.path.join(a.src, "config.json")) as f:
            cfg = json.load(f)
        t = {n: to_f32(dt, arr) for n, (dt, arr) in src.items()}
        t.setdefault("lm_head.weight", t["model.embed_tokens.weight"])
        if a.gptq_calib:
            calib = (gptq.calib_ids(a.src, a.cinfer) if a.gptq_calib == "auto"
                     else json.load(open(a.gptq_calib)))
        else:
            rng = np.random.default_rng(a.seed)
            calib = [rng.integers(0, cfg["vocab_size"], 64).tolist() for _ in range(4)]
    if a.static:
        a.amax = gptq.input_amax(cfg, t, calib, a.lm_head)
    elif a.gptq_calib:
        sym = not a.asym
        min_zero = 0 if (a.v2 or a.format == "ct-w4a16") else 1
        a.gptq = gptq.quantize_model(cfg, t, calib, a.group, sym, a.desc_act, min_zero,
                                     skip=set(a.ignore), lm_head=a.lm_head)
    qt, dq = {}, {}
    lin = []
    for name, (dt, arr) in src.items():
        prefix = name[:-len(".weight")] if name.endswith(".weight") else None
        is_lin = (prefix and prefix.startswith("model.layers.") and
                  prefix.split(".", 3)[3] in LINEARS and prefix not in a.ignore) or \
            (a.lm_head and prefix == "lm_head")
        if not is_lin:
            qt[name] = (dt, arr)
            if a.dequant_out:
                dq[name] = ("F32", to_f32(dt, arr))
            continue
        if a.format in ("gptq", "awq", "ct-w4a16"):
            gs = arr.shape[1] if a.group == -1 else a.group
            if arr.shape[1] % gs or arr.shape[1] % 8 or arr.shape[0] % 8:
                sys.exit(f"{name}: shape {arr.shape} does not fit group size {a.group} / packing")
        lin.append(name)
    global _JOB
    _JOB = (a, src)
    if a.jobs > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(a.jobs) as pool:
            done = pool.map(_quantize_one, lin, chunksize=1)
    else:
        done = [_quantize_one(name) for name in lin]
    for name, q, deq in done:
        qt.update(q)
        if a.dequant_out:
            dq[name] = ("F32", deq)
    os.makedirs(a.dst, exist_ok=True)
    st_write(os.path.join(a.dst, "model.safetensors"), qt)
    with open(os.path.join(a.src, "config.json")) as f:
        cfg = json.load(f)
    qcfg = dict(cfg)
    qcfg["quantization_config"] = qconfig(a, a.ignore)
    if a.lm_head:
        qcfg["tie_word_embeddings"] = False
    extras = [f for f in os.listdir(a.src) if f.startswith("tokenizer") or
              f == "generation_config.json"]
    outs = [(a.dst, qcfg)]
    if a.dequant_out:
        os.makedirs(a.dequant_out, exist_ok=True)
        st_write(os.path.join(a.dequant_out, "model.safetensors"), dq)
        dcfg = dict(cfg)
        dcfg["torch_dtype"] = dcfg["dtype"] = "float32"
        if a.lm_head:
            dcfg["tie_word_embeddings"] = False
        outs.append((a.dequant_out, dcfg))
    for d, c in outs:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        for e in extras:
            shutil.copy(os.path.join(a.src, e), os.path.join(d, e))


if __name__ == "__main__":
    main()
