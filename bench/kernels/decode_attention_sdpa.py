"""PyTorch SDPA reference timing for the decode-attention kernel lab.

Dense decode attention: q [B, 32, 1, 128], k/v [B, 8, ctx, 128] bf16 with
enable_gqa=True (and, for comparison, k/v repeated to [B, 32, ctx, 128]).
Effective bandwidth counts K+V of the 8 kv heads once plus q and out, the
same bytes as the lab. Also a device-to-device copy (read + write bytes).
Run: python3 bench/kernels/decode_attention_sdpa.py
"""
import torch
import torch.nn.functional as F


def median_us(fn, iters=50):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    dev = "cuda"
    print(torch.__version__, torch.cuda.get_device_name())
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=dev).random_()
    dst = torch.empty_like(src)
    us = median_us(lambda: dst.copy_(src))
    print(f"copy 1 GiB: {us:.1f} us, {2 * n / us / 1e3:.0f} GB/s (read+write)")
    del src, dst
    H, KV, hd = 32, 8, 128
    for B, ctx in [(64, 4096), (1, 4096), (32, 2048), (256, 512)]:
        q = torch.randn(B, H, 1, hd, dtype=torch.bfloat16, device=dev)
        k = torch.randn(B, KV, ctx, hd, dtype=torch.bfloat16, device=dev)
        v = torch.randn(B, KV, ctx, hd, dtype=torch.bfloat16, device=dev)
        nbytes = 2 * B * ctx * KV * hd * 2 + 2 * B * H * hd * 2
        us = median_us(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        print(f"SDPA enable_gqa B={B} ctx={ctx} H{H}/KV{KV}: {us:.1f} us, "
              f"{nbytes / us / 1e3:.0f} GB/s effective")
        if B * ctx <= 64 * 4096:
            kr = k.repeat_interleave(H // KV, dim=1)
            vr = v.repeat_interleave(H // KV, dim=1)
            us = median_us(lambda: F.scaled_dot_product_attention(q, kr, vr))
            print(f"SDPA repeated-kv B={B} ctx={ctx}: {us:.1f} us, "
                  f"{nbytes / us / 1e3:.0f} GB/s effective (reads {H // KV}x the K/V)")
            del kr, vr
        del q, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
