#!/usr/bin/env python3
"""Copy a Hugging Face checkpoint directory with its vocabulary padded: the
embedding (and an untied lm_head) get EXTRA more rows of zeros and
config.json's vocab_size grows to match, as Qwen2.5 pads 151665 tokens to
152064 rows. The tokenizer files are copied unchanged. Standard library only.

    python3 tools/pad_vocab.py SRC_DIR DST_DIR [--extra 64]
"""
import argparse
import json
import os
import shutil
import struct

SIZES = {"F32": 4, "F16": 2, "BF16": 2}
PADDED = ("model.embed_tokens.weight", "lm_head.weight")


def pad_file(src, dst, extra):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out, blobs, off = {}, [], 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        blob = data[a:b]
        shape = list(t["shape"])
        if name in PADDED:
            blob += bytes(extra * shape[1] * SIZES[t["dtype"]])
            shape[0] += extra
        out[name] = {"dtype": t["dtype"], "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    if meta is not None:
        out["__metadata__"] = meta
    h = json.dumps(out).encode()
    h += b" " * (-len(h) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for blob in blobs:
            f.write(blob)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--extra", type=int, default=64)
    a = ap.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for fn in os.listdir(a.src):
        p = os.path.join(a.src, fn)
        if fn.endswith(".safetensors"):
            pad_file(p, os.path.join(a.dst, fn), a.extra)
        elif fn == "config.json":
            cfg = json.load(open(p))
            cfg["vocab_size"] += a.extra
            json.dump(cfg, open(os.path.join(a.dst, fn), "w"), indent=2)
        elif fn.endswith(".json") or fn.endswith(".txt") or fn.endswith(".model"):
            shutil.copy(p, os.path.join(a.dst, fn))


if __name__ == "__main__":
    main()
