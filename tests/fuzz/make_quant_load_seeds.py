#!/usr/bin/env python3
"""make_quant_load_seeds.py — writes tests/fuzz/corpus/quant_load: for each
quantized layout of fuzz_quant_load.c's table (same order), the byte of its
index followed by the model.safetensors that tools/quantize_checkpoint.py
writes for a tiny dense Llama (1 layer, hidden 32, intermediate 64, 2 heads /
1 KV head of 16, vocabulary 32; random weights, seed 0). Prints each
format's quantization_config, which must equal the harness's entry."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORMATS = [  # fuzz_quant_load.c's k_configs, in order
    ["--format", "gptq", "--group", "32", "--desc-act"],
    ["--format", "gptq", "--bits", "8", "--group", "32"],
    ["--format", "awq", "--group", "32"],
    ["--format", "ct-w4a16", "--group", "32", "--asym"],
    ["--format", "ct-fp8-channel"],
    ["--format", "ct-fp8-block"],
    ["--format", "fp8-tensor", "--static"],
    ["--format", "fp8-block"],
    ["--format", "ct-int8-channel"],
    ["--format", "gptq", "--group", "32", "--lm-head"],
]


def write_dense(d):
    rng = np.random.default_rng(0)
    H, I, V, hd, nh, nkv = 32, 64, 32, 16, 2, 1
    t = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,),
         "model.layers.0.input_layernorm.weight": (H,),
         "model.layers.0.post_attention_layernorm.weight": (H,),
         "model.layers.0.self_attn.q_proj.weight": (nh * hd, H),
         "model.layers.0.self_attn.k_proj.weight": (nkv * hd, H),
         "model.layers.0.self_attn.v_proj.weight": (nkv * hd, H),
         "model.layers.0.self_attn.o_proj.weight": (H, nh * hd),
         "model.layers.0.mlp.gate_proj.weight": (I, H), "model.layers.0.mlp.up_proj.weight": (I, H),
         "model.layers.0.mlp.down_proj.weight": (H, I)}
    hdr, blobs, off = {}, [], 0
    for n, shp in t.items():
        a = (np.ones(shp) if n.endswith("norm.weight") else rng.normal(0, 0.2, shp))
        b = a.astype(np.float32).tobytes()
        hdr[n] = {"dtype": "F32", "shape": list(shp), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
           "intermediate_size": I, "num_hidden_layers": 1, "num_attention_heads": nh,
           "num_key_value_heads": nkv, "head_dim": hd, "vocab_size": V,
           "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "tie_word_embeddings": True, "hidden_act": "silu", "torch_dtype": "float32"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)


def main():
    out = os.path.join(ROOT, "tests", "fuzz", "corpus", "quant_load")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "dense")
        os.makedirs(src)
        write_dense(src)
        for k, args in enumerate(FORMATS):
            q = os.path.join(tmp, f"q{k}")
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quantize_checkpoint.py"),
                            src, q, *args], check=True, capture_output=True)
            qc = json.load(open(os.path.join(q, "config.json")))["quantization_config"]
            print(k, json.dumps(qc, separators=(",", ":")))
            with open(os.path.join(q, "model.safetensors"), "rb") as f:
                body = f.read()
            name = "_".join(a.lstrip("-") for a in args[1:]).replace("_group_", "_g")
            with open(os.path.join(out, f"{k:02d}_{name}"), "wb") as f:
                f.write(bytes([k]) + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
