"""bench/attn.py: mdlc's fused attention against PyTorch's
F.scaled_dot_product_attention, forward and backward, on the shapes of
GPT-2 small (B8 H12 S1024 Dh64, causal) and Llama-3-8B (H32 Hkv8 S2048
Dh128, causal, B 1, 2, 4), bf16 and fp16, in one run on one GPU.

mdlc: bench/attn_bench.cu (run here as a subprocess, once with the 4-warp
forward and once with MDLRT_SDPA_WARPS=8). PyTorch: the same layout (q, k,
v transposed [B, S, H, Dh] slices of one fused qkv tensor, made leaves with
.detach() so that only the attention's own backward is timed), its default
backend choice and each backend on its own (flash, cuDNN, memory-efficient;
"n/a" where the backend refuses the shape); grouped-query heads through
enable_gqa=True. Time: the median of 20 calls after 3 warm-ups, CUDA events
around each (the backward's start event recorded after its forward).
TFLOP/s: 4 B H S T Dh for the forward, halved if causal, 2.5 times that for
the backward. ratio = mdlc / torch (below 1: mdlc is faster).

Usage: python3 bench/attn.py PATH/attn_bench
ATTN_SHAPES=name,name: only those shapes.
"""
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

SHAPES = [  # name, dtype, B, H, Hkv, S, Dh, causal (as in attn_bench.cu)
    ("gpt2_bf16", torch.bfloat16, 8, 12, 12, 1024, 64, True),
    ("gpt2_fp16", torch.float16, 8, 12, 12, 1024, 64, True),
    ("llama_b1_bf16", torch.bfloat16, 1, 32, 8, 2048, 128, True),
    ("llama_b2_bf16", torch.bfloat16, 2, 32, 8, 2048, 128, True),
    ("llama_b4_bf16", torch.bfloat16, 4, 32, 8, 2048, 128, True),
    ("llama_b2_fp16", torch.float16, 2, 32, 8, 2048, 128, True),
    ("gpt2_f32", torch.float32, 8, 12, 12, 1024, 64, True),
]
WARMUP, TIMED = 3, 20


def median(xs):
    xs = sorted(xs)
    return (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def flops(B, H, S, Dh, causal):
    return 4.0 * B * H * S * S * Dh * (0.5 if causal else 1.0)


def torch_times(dt, B, H, G, S, Dh, causal, backend):
    """(fwd ms, bwd ms) of F.sdpa under `backend` (None: the default)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    W = (H + 2 * G) * Dh
    qkv = torch.empty(B, S, W, device="cuda", dtype=dt).uniform_(-1, 1)
    q = qkv[..., :H * Dh].view(B, S, H, Dh).transpose(1, 2)
    k = qkv[..., H * Dh:(H + G) * Dh].view(B, S, G, Dh).transpose(1, 2)
    v = qkv[..., (H + G) * Dh:].view(B, S, G, Dh).transpose(1, 2)
    q, k, v = (x.detach().requires_grad_(True) for x in (q, k, v))
    dout = torch.empty(B, H, S, Dh, device="cuda", dtype=dt).uniform_(-1, 1)
    kw = {"is_causal": causal}
    if G != H:
        kw["enable_gqa"] = True
    ctx = (sdpa_kernel([backend]) if backend is not None
           else torch.enable_grad())
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    tf, tb = [], []
    with ctx:
        for i in range(WARMUP + TIMED):
            ev[0].record()
            o = F.scaled_dot_product_attention(q, k, v, **kw)
            ev[1].record()
            ev[2].record()
            torch.autograd.grad(o, (q, k, v), dout)
            ev[3].record()
            torch.cuda.synchronize()
            if i >= WARMUP:
                tf.append(ev[0].elapsed_time(ev[1]))
                tb.append(ev[2].elapsed_time(ev[3]))
    return median(tf), median(tb)


def mdlc_times(exe, warps, names):
    env = dict(os.environ, MDLRT_SDPA_WARPS=str(warps))
    out = subprocess.run([exe] + names, env=env, capture_output=True,
                         text=True)
    if out.returncode:
        print(out.stdout + out.stderr)
        raise SystemExit("attn_bench failed (exit %d)" % out.returncode)
    res = {}
    for line in out.stdout.splitlines():
        f = line.split()
        if f and f[0] == "mdlc":
            res[f[1]] = (float(f[3]), float(f[5]))
    return res


def main():
    exe = sys.argv[1]
    print("GPU: %s; torch %s" % (torch.cuda.get_device_name(), torch.__version__))
    want = os.environ.get("ATTN_SHAPES")
    shapes = [s for s in SHAPES if not want or s[0] in want.split(",")]
    ours = {w: mdlc_times(exe, w, [s[0] for s in shapes]) for w in (4, 8)}
    from torch.nn.attention import SDPBackend
    backends = [("default", None), ("flash", SDPBackend.FLASH_ATTENTION),
                ("cudnn", SDPBackend.CUDNN_ATTENTION),
                ("efficient", SDPBackend.EFFICIENT_ATTENTION)]
    print("%-14s %-10s %9s %9s %7s %7s" % ("shape", "impl", "fwd ms", "bwd ms",
                                          "fwd TF", "bwd TF"))
    summary = []
    for name, dt, B, H, G, S, Dh, causal in shapes:
        fl = flops(B, H, S, Dh, causal)
        rows = {}
        for w in (4, 8):
            if name in ours[w]:
                rows["mdlc w%d" % w] = ours[w][name]
        for bname, be in backends:
            try:
                rows["torch " + bname] = torch_times(dt, B, H, G, S, Dh,
                                                     causal, be)
            except Exception as e:  # a backend that refuses the shape
                rows["torch " + bname] = None
                print("  (%s %s: %s)" % (name, bname,
                                         str(e).splitlines()[0][:100]))
        for impl, t in rows.items():
            if t is None:
                print("%-14s %-16s %9s" % (name, impl, "n/a"))
            else:
                print("%-14s %-16s %9.3f %9.3f %7.1f %7.1f" % (
                    name, impl, t[0], t[1], fl / t[0] * 1e-9,
                    2.5 * fl / t[1] * 1e-9))
        m = [rows[k] for k in ("mdlc w4", "mdlc w8") if rows.get(k)]
        d = rows.get("torch default")
        tv = [t for k, t in rows.items() if k.startswith("torch") and t]
        if m and d and tv:
            bf = min(t[0] for t in m)
            bb = min(t[1] for t in m)
            tf = min(t[0] for t in tv)
            tb = min(t[1] for t in tv)
            summary.append((name, bf / d[0], bb / d[1], (bf + bb) / sum(d),
                            (bf + bb) / (tf + tb)))
    print()
    print("ratio mdlc/torch (mdlc: best of w4/w8 per direction; below 1: "
          "mdlc faster)")
    print("%-14s %9s %9s %12s %18s" % ("shape", "fwd/dflt", "bwd/dflt",
                                        "f+b/dflt", "f+b/best torch"))
    for s in summary:
        print("%-14s %9.2f %9.2f %12.2f %18.2f" % s)


if __name__ == "__main__":
    main()
