"""tests/gpu/attn_check.py: checks attn_test's dumps against PyTorch (float64).

Each DIR/attn_<case>.bin holds records (u32 name length, name, u32 rank,
i64 dims, f64 data): "params" (dtype, B, H, Hkv, S, T, Dh, causal, dropout,
scale, seed, step, node, accum, want dq, dk, dv), the inputs q, k, v, dout
(dq0, dk0, dv0 when accumulating) and the results o, lse, dq, dk, dv.

The reference is the explicit formula in float64 with autograd: scores
scale * q k^T (kv heads repeated over their query heads), -inf where
causal and column > row, lse = logsumexp, P = softmax, P * M / (1 - p) with
the dropout mask M rebuilt here (mdlrt_rng.h's mixer ported to numpy
uint64, whose arithmetic wraps as C's does), o = P v. Without dropout it is
also compared with F.scaled_dot_product_attention in float64 (must agree to
1e-9: the formula is the one PyTorch computes).

Pass: |got - ref| <= atol * max(1, max|ref|) + rtol * |ref| elementwise,
(atol, rtol) per dtype below (lse: f32's in every dtype). Each line also shows, for 16-bit cases, the
error of the same formula computed by PyTorch in that dtype (matmuls in
the dtype, softmax in f32), for scale. Exit 1 on any failure.
"""
import glob
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

D = torch.float64
DEV = "cuda" if torch.cuda.is_available() else "cpu"
DT = {0: "f32", 1: "f16", 2: "bf16"}
TDT = {1: torch.float16, 2: torch.bfloat16}
TOL = {0: (2e-5, 1e-4), 1: (4e-3, 4e-3), 2: (1.5e-2, 2e-2)}
fails = 0
count = 0


def load(path):
    """A dump of attn_test: name -> float64 tensor."""
    out = {}
    with open(path, "rb") as f:
        b = f.read()
    i = 0
    while i < len(b):
        (n,) = struct.unpack_from("<I", b, i); i += 4
        name = b[i:i + n].decode(); i += n
        (r,) = struct.unpack_from("<I", b, i); i += 4
        dims = struct.unpack_from("<%dq" % r, b, i); i += 8 * r
        cnt = 1
        for d in dims:
            cnt *= d
        out[name] = torch.frombuffer(bytearray(b[i:i + 8 * cnt]),
                                     dtype=D).reshape(dims)
        i += 8 * cnt
    return out


# ---- mdlrt_rng.h, in numpy uint64 ---------------------------------------
U = np.uint64


def mix64(z):
    z = (z ^ (z >> U(30))) * U(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> U(27))) * U(0x94d049bb133111eb)
    return z ^ (z >> U(31))


def dropout_mask(seed, node, step, B, H, S, T, p):
    """kept[b, h, i, j] = mdlrt_uniform(seed, DROP + node,
    mdlrt_dropout_index(step, ((b*H + h)*S + i)*T + j)) >= p"""
    stream = 0x300000000 + node
    key = mix64(np.array([seed ^ ((stream * 0x9e3779b97f4a7c15)
                                  & 0xFFFFFFFFFFFFFFFF)], dtype=U))[0]
    e = np.arange(B * H * S * T, dtype=U)
    bits = mix64(key + ((U(step) << U(40)) ^ e))
    u = (bits >> U(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return torch.from_numpy(u >= np.float32(p)).reshape(B, H, S, T)


def attention(q, k, v, causal, scale, keep, mask, dt=None):
    """The formula; dt: compute in that dtype (softmax in f32)."""
    H, Hkv = q.shape[1], k.shape[1]
    S, T = q.shape[2], k.shape[2]
    kk = k.repeat_interleave(H // Hkv, dim=1)
    vv = v.repeat_interleave(H // Hkv, dim=1)
    s = (q @ kk.transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(S, T, dtype=torch.bool,
                                     device=q.device).triu(1), float("-inf"))
    if dt is None:
        lse = torch.logsumexp(s, -1)
        P = torch.softmax(s, -1)
    else:
        lse = torch.logsumexp(s.float(), -1)
        P = torch.softmax(s.float(), -1).to(dt)
    if mask is not None:
        P = P * mask.to(P.dtype) * keep
    return P @ vv, lse


def check(case, name, dt, got, ref, lowp=None, tol=None):
    global fails, count
    atol, rtol = tol or TOL[dt]
    ref = ref.detach().to(D).cpu().reshape(got.shape)
    err = (got - ref).abs()
    lim = atol * max(1.0, float(ref.abs().max())) + rtol * ref.abs()
    bad = (err > lim) | torch.isnan(got)
    ok = not bool(bad.any())
    fails += not ok
    count += 1
    worst = int(torch.argmax(err - lim))
    extra = ""
    if lowp is not None:
        extra = "  torch %s err %.2e" % (DT[dt], float(
            (lowp.detach().to(D).cpu().reshape(got.shape) - ref).abs().max()))
    print("%-26s %-4s %-4s %-4s max|err| %.2e at %d (got %.6g, ref %.6g)%s" % (
        case, DT[dt], name, "ok" if ok else "FAIL", float(err.max()), worst,
        float(got.flatten()[worst]), float(ref.flatten()[worst]), extra))


def run(path):
    global fails, count
    case = os.path.basename(path)[5:-4]
    t = load(path)
    (dt, B, H, Hkv, S, T, Dh, causal, p, scale, seed, step, node, accum,
     wq, wk, wv) = t["params"].tolist()
    dt, B, H, Hkv, S, T, Dh = map(int, (dt, B, H, Hkv, S, T, Dh))
    causal, accum = bool(causal), bool(accum)
    keep = float(np.float32(1.0 / (1.0 - p))) if p > 0 else 1.0
    mask = (dropout_mask(int(seed), int(node), int(step), B, H, S, T, p)
            .to(DEV) if p > 0 else None)
    q, k, v = (t[n].to(DEV).clone().requires_grad_(True)
               for n in ("q", "k", "v"))
    dout = t["dout"].to(DEV)
    o, lse = attention(q, k, v, causal, scale, keep, mask)
    o.backward(dout)
    if mask is None:  # the formula against PyTorch's own
        G = H // Hkv
        ref2 = F.scaled_dot_product_attention(
            q.detach(), k.detach().repeat_interleave(G, 1),
            v.detach().repeat_interleave(G, 1), is_causal=causal, scale=scale)
        dev = float((ref2 - o.detach()).abs().max())
        count += 1
        if dev > 1e-9:
            fails += 1
        print("%-26s %-4s ref  %-4s |formula - F.sdpa| %.2e (float64)" % (
            case, DT[dt], "ok" if dev <= 1e-9 else "FAIL", dev))
    low = {}
    if dt in TDT:  # the same formula in the dtype, for scale
        ql, kl, vl = (t[n].to(DEV, TDT[dt]).clone().requires_grad_(True)
                      for n in ("q", "k", "v"))
        ol, ll = attention(ql, kl, vl, causal, scale, keep, mask, TDT[dt])
        ol.backward(dout.to(TDT[dt]))
        low = {"o": ol, "lse": ll, "dq": ql.grad, "dk": kl.grad, "dv": vl.grad}
    check(case, "o", dt, t["o"], o, low.get("o"))
    # lse: from f32 sums of exact products, f32-accurate in every dtype
    check(case, "lse", dt, t["lse"], lse, low.get("lse"), TOL[0])
    grads = {"dq": q.grad, "dk": k.grad, "dv": v.grad}
    for n, want in (("dq", wq), ("dk", wk), ("dv", wv)):
        if not want:
            continue
        ref = grads[n].detach().cpu() + (t[n + "0"] if accum else 0)
        lp = low.get(n)
        if lp is not None and accum:
            lp = lp.detach().to(D).cpu() + t[n + "0"]
        check(case, n, dt, t[n], ref, lp)


if __name__ == "__main__":
    paths = sorted(glob.glob(os.path.join(sys.argv[1], "attn_*.bin")))
    if not paths:
        print("attn_check: no dumps in %s" % sys.argv[1])
        sys.exit(1)
    for path in paths:
        try:
            run(path)
        except Exception as e:  # a broken case fails, the others still run
            import traceback
            traceback.print_exc()
            print("%s: FAIL (%s)" % (path, e))
            fails += 1
    print("attn_check: %d checks, %d failed" % (count, fails))
    sys.exit(1 if fails else 0)
