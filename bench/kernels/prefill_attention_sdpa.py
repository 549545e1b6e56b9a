"""PyTorch SDPA reference timing for the prefill attention lab's target shape:
causal, bf16, [B=8, H=32, N=4096, D=128] (q, k and v all 32 heads: GQA
expanded, as SDPA's flash backend wants). FLOPs: 4*B*H*N*N*D/2 (causal
convention, the same as bench/kernels/prefill_attention.cu). Arguments: head
dims to time (default 128)."""
import torch
import torch.nn.functional as F

import sys

B, H, N = 8, 32, 4096
for D in [int(a) for a in sys.argv[1:]] or [128]:  # head dims, e.g. 128 64
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * B * H * N * N * D / 2
    for _ in range(3):
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.cuda.synchronize()
    times = []
    for _ in range(30):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    ms = times[len(times) // 2]
    print(f"SDPA torch {torch.__version__} {torch.cuda.get_device_name()}: B={B} H={H} N={N} D={D} "
          f"causal bf16: {ms:.3f} ms, {flops / ms / 1e9:.1f} TFLOP/s (median of 30)")
