"""tests/gpu/rt_check.py: checks rt_test's dumps against PyTorch (float64).

Each DIR/<case>.bin holds records: u32 name length, name, u32 rank,
i64 dims, f64 data. For every result, |out - ref| <= atol + rtol*|ref|
elementwise; prints the worst element of each and exits 1 on any failure.
"""
import struct
import sys

import torch
import torch.nn.functional as F

D = torch.float64
fails = 0
rows = []


def load(path):
    """A dump of rt_test: name, rank, dims, then float64 data, per tensor."""
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
        out[name] = (torch.frombuffer(bytearray(b[i:i + 8 * cnt]), dtype=D)
                     if cnt else torch.zeros(0, dtype=D)).reshape(dims)
        i += 8 * cnt
    return out


def check(case, name, got, ref, atol=1e-5, rtol=1e-4):
    global fails
    ref = ref.detach().to(D).reshape(got.shape)
    err = (got - ref).abs()
    lim = atol + rtol * ref.abs()
    bad = (err > lim) | torch.isnan(got)
    worst = int(torch.argmax(err - lim)) if err.numel() else 0
    ok = not bool(bad.any())
    fails += not ok
    rows.append("%-16s %-10s %-4s max|err| %.2e at %d (got %.6g, ref %.6g)" % (
        case, name, "ok" if ok else "FAIL", float(err.max()) if err.numel() else 0,
        worst, float(got.flatten()[worst]), float(ref.flatten()[worst])))


def req(*ts):
    return [t.clone().requires_grad_(True) for t in ts]


def linear(case, tol):
    t = load(DIR + "/%s.bin" % case)
    x, w, b = req(t["x"], t["w"], t["b"])
    y = F.linear(x, w, b)
    y.backward(t["dy"])
    check(case, "y", t["y"], y, *tol)
    check(case, "dx", t["dx"], x.grad, *tol)
    check(case, "dw", t["dw"], t["dw0"] + w.grad, *tol)
    check(case, "db", t["db"], b.grad, *tol)


def matmul(case, ta, tb):
    t = load(DIR + "/%s.bin" % case)
    a, b = req(t["a"], t["b"])
    A = a.transpose(-1, -2) if ta else a
    B = b.transpose(-1, -2) if tb else b
    y = A @ B
    y.backward(t["dy"])
    check(case, "y", t["y"], y)
    check(case, "da", t["da"], a.grad)
    check(case, "db", t["db"], b.grad)


def conv():
    t = load(DIR + "/conv2d.bin")
    x, w, b = req(t["x"], t["w"], t["b"])
    y = F.conv2d(x, w, b, stride=2, padding=1, groups=2)
    y.backward(t["dy"])
    for n, ref in (("y", y), ("dx", x.grad), ("dw", w.grad), ("db", b.grad)):
        check("conv2d", n, t[n], ref)


def conv_bf16():
    t = load(DIR + "/conv2d_bf16.bin")
    x, w, b = req(t["x"], t["w"], t["b"])
    y = F.conv2d(x, w, b, stride=1, padding=1)
    y.backward(t["dy"])
    for n, ref in (("y", y), ("dx", x.grad), ("dw", w.grad), ("db", b.grad)):
        check("conv2d_bf16", n, t[n], ref, 3e-2, 2e-2)


def conv_big(case, tol):
    t = load(DIR + "/%s.bin" % case)
    x, w, b = req(t["x"], t["w"], t["b"])
    y = F.conv2d(x, w, b, stride=1, padding=1)
    y.backward(t["dy"])
    for n, ref in (("y", y), ("dx", t["dx0"] + x.grad),
                   ("dw", t["dw0"] + w.grad), ("db", b.grad)):
        check(case, n, t[n], ref, *tol)


def conv_gemm(case, stride, pad, dil, groups, tol):
    t = load(DIR + "/%s.bin" % case)
    x, w = req(t["x"], t["w"])
    y = F.conv2d(x, w, None, stride=stride, padding=pad, dilation=dil,
                 groups=groups)
    y.backward(t["dy"])
    check(case, "dw", t["dw"], t["dw0"] + w.grad, *tol)
    check(case, "db", t["db"], t["dy"].sum(dim=(0, 2, 3)), *tol)


def pool():
    t = load(DIR + "/pool.bin")
    (x,) = req(t["x"])
    ym = F.max_pool2d(x, 3, 2, 1)
    ym.backward(t["dym"])
    check("pool", "ym", t["ym"], ym)
    check("pool", "dxm", t["dxm"], x.grad)
    (x,) = req(t["x"])
    ya = F.avg_pool2d(x, 2, 2, 0, count_include_pad=True)
    ya.backward(t["dya"])
    check("pool", "ya", t["ya"], ya)
    check("pool", "dxa", t["dxa"], x.grad)
    (x,) = req(t["x"])
    yg = x.mean(dim=(2, 3))
    yg.backward(t["dyg"])
    check("pool", "yg", t["yg"], yg)
    check("pool", "dxg", t["dxg"], x.grad)


def norms():
    t = load(DIR + "/norms.bin")
    x, w, b = req(t["ln_x"], t["ln_w"], t["ln_b"])
    y = F.layer_norm(x, (10,), w, b, 1e-5)
    y.backward(t["ln_dy"])
    for n, ref in (("y", y), ("dx", x.grad), ("dw", w.grad), ("db", b.grad)):
        check("layernorm", n, t["ln_" + n], ref)
    x, w, b = req(t["gn_x"], t["gn_w"], t["gn_b"])
    y = F.group_norm(x, 3, w, b, 1e-5)
    y.backward(t["gn_dy"])
    for n, ref in (("y", y), ("dx", x.grad), ("dw", w.grad), ("db", b.grad)):
        check("groupnorm", n, t["gn_" + n], ref)
    x, w, b = req(t["bn_x"], t["bn_w"], t["bn_b"])
    rm = t["bn_rm0"].clone()
    rv = torch.ones(3, dtype=D)
    y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    y.backward(t["bn_dy"])
    for n, ref in (("y", y), ("dx", x.grad), ("dw", w.grad), ("db", b.grad),
                   ("rm", rm), ("rv", rv)):
        check("batchnorm", n, t["bn_" + n], ref)


def elementwise():
    t = load(DIR + "/elementwise.bin")
    fns = {"relu": torch.relu, "gelu": F.gelu, "silu": F.silu,
           "tanh": torch.tanh, "sigmoid": torch.sigmoid,
           "scale": lambda v: v * 0.75}
    for n, fn in fns.items():
        (x,) = req(t["x"])
        y = fn(x)
        y.backward(t["dy"])
        check("unary", n + "_y", t[n + "_y"], y)
        check("unary", n + "_dx", t[n + "_dx"], x.grad)
    a, b = req(t["a"], t["b"])
    y = a + b
    y.backward(t["g"])
    check("add", "y", t["add_y"], y)
    check("add", "db", t["add_db"], b.grad)
    a, b = req(t["a"], t["b"])
    y = a * b
    y.backward(t["g"])
    check("mul", "y", t["mul_y"], y)
    check("mul", "da", t["mul_da"], a.grad)
    check("mul", "db+acc", t["mul_db"], t["dbm0"] + b.grad)
    check("copy", "transpose", t["transpose"], t["a"].transpose(1, 2))
    check("copy", "bf16", t["bf16"], t["a"].to(torch.bfloat16).to(D), 0, 0)
    # dropout: the mask is the RNG's (mdlrt_rng.h, replayed here), y and dx
    # follow it.
    M = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
        return z ^ (z >> 31)

    stream = 0x300000000 + 7
    key = mix(0 ^ ((stream * 0x9e3779b97f4a7c15) & M))
    n = t["do_x"].numel()
    mask = torch.tensor([float(((mix((key + ((2 << 40) ^ i)) & M) >> 40)
                                * (1.0 / 16777216.0)) >= 0.3)
                         for i in range(n)], dtype=D).reshape(t["do_x"].shape)
    check("dropout", "mask", t["do_mask"], mask, 0, 0)
    check("dropout", "y", t["do_y"], t["do_x"] * mask / 0.7)
    check("dropout", "dx", t["do_dx"], t["do_dy"] * mask / 0.7)


def rowops():
    t = load(DIR + "/rows.bin")
    (x,) = req(t["sm_x"])
    y = torch.softmax(x, -1)
    y.backward(t["sm_dy"])
    check("softmax", "y", t["sm_y"], y)
    check("softmax", "dx", t["sm_dx"], x.grad)
    (x,) = req(t["sm_x"])
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    y = torch.softmax(x.masked_fill(mask, float("-inf")), -1)
    y.backward(t["sm_dy"])
    check("softmax_c", "y", t["smc_y"], y)
    check("softmax_c", "dx", t["smc_dx"], x.grad)
    (w,) = req(t["em_w"])
    y = F.embedding(t["em_ids"].long(), w)
    y.backward(t["em_dy"])
    check("embedding", "y", t["em_y"], y)
    check("embedding", "dw", t["em_dw"], w.grad)
    (x,) = req(t["ce_x"])
    loss = F.cross_entropy(x, t["ce_t"].long())
    (loss * 0.5).backward()
    check("cross_ent", "loss", t["ce_loss"], loss)
    check("cross_ent", "dx", t["ce_dx"], x.grad)
    a, b = req(t["mse_a"], t["mse_b"])
    loss = F.mse_loss(a, b)
    (loss * 0.5).backward()
    check("mse", "loss", t["mse_loss"], loss)
    check("mse", "da", t["mse_da"], a.grad)
    check("mse", "db", t["mse_db"], b.grad)


def optim():
    t = load(DIR + "/optim.bin")
    for n in ("sgd", "momentum", "adam", "adamw"):
        p = t[n + "_p0"].clone().requires_grad_(True)
        if n == "sgd":
            o = torch.optim.SGD([p], lr=1e-2)
        elif n == "momentum":
            o = torch.optim.SGD([p], lr=1e-2, momentum=0.9)
        elif n == "adam":
            o = torch.optim.Adam([p], lr=1e-2)
        else:
            o = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.01)
        for g in (t[n + "_g1"], t[n + "_g2"]):
            p.grad = g.clone()
            o.step()
        check("optim", n, t[n + "_p2"], p)
    p = t["master_m0"].clone().requires_grad_(True)
    o = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.01)
    p.grad = t["master_g"].clone()
    o.step()
    check("optim", "master", t["master_m1"], p)
    check("optim", "master_bf16", t["master_p1"],
          t["master_m1"].to(torch.bfloat16).to(D), 0, 0)


# ---- the fast paths of batchnorm, groupnorm and pooling's backward ------



TOL = {"f32": (1e-5, 1e-4), "f16": (1e-2, 1e-2), "bf16": (3e-2, 2e-2)}


def plus0(t, name, ref, acc):
    return ref + t[name + "0"] if acc else ref


def bn_fast(case, dt, acc, same=True):
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    x, w, b = req(t["x"], t["w"], t["b"])
    rm, rv = t["rm0"].clone(), t["rv0"].clone()
    y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
    y.backward(t["dy"])
    dims = [0] + list(range(2, x.dim()))
    mean = t["x"].mean(dim=dims)
    istd = 1 / torch.sqrt(t["x"].var(dim=dims, unbiased=False) + 1e-5)
    check(case, "y", t["y"], y, *tol)
    check(case, "mean", t["mean"], mean)
    check(case, "invstd", t["invstd"], istd)
    check(case, "rm", t["rm"], rm)
    check(case, "rv", t["rv"], rv)
    check(case, "dx", t["dx"], plus0(t, "dx", x.grad, acc), *tol)
    check(case, "dw", t["dw"], plus0(t, "dw", w.grad, acc), *tol)
    check(case, "db", t["db"], plus0(t, "db", b.grad, acc), *tol)
    if "y_inf" in t:  # inference, from the running statistics it updated
        y = F.batch_norm(t["x"], t["rm"], t["rv"], t["w"], t["b"],
                         training=False, eps=1e-5)
        check(case, "y_inf", t["y_inf"], y, *tol)
    if same:
        check(case, "same", t["same"], torch.ones((), dtype=D), 0, 0)


def gn_fast(case, dt, G, affine, acc, same=True):
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    if affine:
        x, w, b = req(t["x"], t["w"], t["b"])
    else:
        (x,) = req(t["x"])
        w = b = None
    y = F.group_norm(x, G, w, b, 1e-5)
    y.backward(t["dy"])
    xs = t["x"].reshape(t["x"].shape[0], G, -1)
    mean = xs.mean(-1).flatten()
    rstd = (1 / torch.sqrt(xs.var(-1, unbiased=False) + 1e-5)).flatten()
    check(case, "y", t["y"], y, *tol)
    check(case, "mean", t["mean"], mean)
    check(case, "rstd", t["rstd"], rstd)
    check(case, "dx", t["dx"], plus0(t, "dx", x.grad, acc), *tol)
    if affine:
        check(case, "dw", t["dw"], plus0(t, "dw", w.grad, acc), *tol)
        check(case, "db", t["db"], plus0(t, "db", b.grad, acc), *tol)
    if same:
        check(case, "same", t["same"], torch.ones((), dtype=D), 0, 0)


def pool_fast(case, dt, op, k, s, p, acc):
    # max: dy goes to the first element (row-major in the window) equal to
    # the maximum, which is PyTorch's choice on ties too (strict >)
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    (x,) = req(t["x"])
    if op == 0:
        y = F.max_pool2d(x, k, s, p)
    else:
        y = F.avg_pool2d(x, k, s, p, count_include_pad=True)
    y.backward(t["dy"])
    check(case, "y", t["y"], y, *tol)
    check(case, "dx", t["dx"], plus0(t, "dx", x.grad, acc), *tol)


FAST = (
    lambda: bn_fast("bn_fast_f32", "f32", 0),
    lambda: bn_fast("bn_fast_stem", "f32", 0),
    lambda: bn_fast("bn_fast_7x7", "f32", 0),
    lambda: bn_fast("bn_fast_odd", "f16", 0),
    lambda: bn_fast("bn_fast_bf16", "bf16", 1),
    lambda: gn_fast("gn_fast_in", "f16", 64, 1, 0),
    lambda: gn_fast("gn_fast_g8", "f16", 8, 1, 0),
    lambda: gn_fast("gn_fast_odd", "bf16", 3, 1, 1),
    lambda: gn_fast("gn_fast_noaff", "f32", 2, 0, 0),
    lambda: gn_fast("gn_fused_odd", "bf16", 3, 1, 1),
    lambda: gn_fast("gn_unit_in", "f16", 8, 1, 0),
    lambda: bn_fast("bn_ws_small", "f32", 0),
    lambda: gn_fast("gn_ws_small", "f16", 8, 1, 0),
    lambda: bn_fast("bn_ws0", "f32", 1),
    lambda: gn_fast("gn_ws0", "f16", 4, 1, 1, same=False),
    lambda: pool_fast("pool_fast_f32", "f32", 0, 3, 2, 1, 0),
    lambda: pool_fast("pool_fast_bf16", "bf16", 0, 3, 2, 1, 1),
    lambda: pool_fast("pool_fast_odd", "f16", 0, 3, 2, 1, 0),
    lambda: pool_fast("pool_fast_avg", "f32", 1, 3, 2, 1, 1),
    lambda: pool_fast("pool_fast_avg2", "bf16", 1, 2, 2, 0, 0),
    lambda: pool_fast("pool_wide", "f32", 0, 3, 2, 1, 0),
)


# ---- the kernels added with the family split -----------------------------


def unary2(case, dt):
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    for k in "ab":
        (x,) = req(t[k + "_x"])
        y = torch.exp(x)
        y.backward(t[k + "_dy"])
        check(case, k + "_exp_y", t[k + "_exp_y"], y, *tol)
        check(case, k + "_exp_dx", t[k + "_exp_dx"], x.grad, *tol)
        (x,) = req(t[k + "_xs"])
        y = F.softplus(x)  # beta 1, threshold 20
        y.backward(t[k + "_dy"])
        check(case, k + "_sp_y", t[k + "_sp_y"], y, *tol)
        check(case, k + "_sp_dx", t[k + "_sp_dx"], t[k + "_sp_dx0"] + x.grad,
              *tol)


def rmsnorm(case, dt, acc, same=True, accw=None):
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    x, w = req(t["x"], t["w"])
    rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    y = x * rstd * w
    y.backward(t["dy"])
    check(case, "y", t["y"], y, *tol)
    check(case, "rstd", t["rstd"], rstd.detach().flatten())
    check(case, "dx", t["dx"], plus0(t, "dx", x.grad, acc), *tol)
    check(case, "dw", t["dw"], plus0(t, "dw", w.grad, acc if accw is None
                                     else accw), *tol)
    if same:
        check(case, "same", t["same"], torch.ones((), dtype=D), 0, 0)


def rope(case, dt, base, acc):
    # The angle as PyTorch computes it, in f32 (inv_freq = 1 / base^(2i/Dh),
    # angle = p inv_freq); cos and sin of it in f64. The runtime rounds
    # base^(2i/Dh) to f32 correctly (from a double pow), PyTorch's f32 pow
    # may be 1 ulp off: "inv_freq" compares the two (1 ulp allowed), and
    # the angles' largest difference d widens atol by 2 d max|x| (a turn
    # by d moves a pair by at most d (|x_i| + |x_{i+h}|)).
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    (x,) = req(t["x"])
    S, Dh = x.shape[-2], x.shape[-1]
    h = Dh // 2
    e = torch.arange(0, Dh, 2, dtype=torch.int64).float() / Dh
    inv = 1.0 / (base ** e)
    inv_rt = 1.0 / (float(torch.tensor(base, dtype=torch.float32))
                    ** e.to(D)).float()
    check(case, "inv_freq", inv_rt.to(D), inv, 0, 1.2e-7)
    pos = torch.arange(S, dtype=torch.float32)
    ang = torch.outer(pos, inv).to(D)
    d = float((torch.outer(pos, inv_rt).to(D) - ang).abs().max())
    cos, sin = ang.cos(), ang.sin()
    a, b = x[..., :h], x[..., h:]
    y = torch.cat((a * cos - b * sin, b * cos + a * sin), -1)
    y.backward(t["dy"])
    wide = 2 * d * float(max(t["x"].abs().max(), t["dy"].abs().max()))
    check(case, "y", t["y"], y, tol[0] + wide, tol[1])
    check(case, "dx", t["dx"], plus0(t, "dx", x.grad, acc), tol[0] + wide,
          tol[1])


def reduce_axis(case, dt, axis, keep, mean, acc, tol=None):
    t = load(DIR + "/%s.bin" % case)
    tol = tol or TOL[dt]
    (x,) = req(t["x"])
    y = x.mean(axis, keepdim=keep) if mean else x.sum(axis, keepdim=keep)
    y.backward(t["dy"].reshape(y.shape))
    check(case, "y", t["y"], y, *tol)
    check(case, "dx", t["dx"], plus0(t, "dx", x.grad, acc), *tol)


NEW = (
    lambda: unary2("unary2_f32", "f32"),
    lambda: unary2("unary2_f16", "f16"),
    lambda: unary2("unary2_bf16", "bf16"),
    lambda: rmsnorm("rms_768_f32", "f32", 0),
    lambda: rmsnorm("rms_768_mix16", "f16", 1),
    lambda: rmsnorm("rms_4096_bf16", "bf16", 0),
    lambda: rmsnorm("rms_4096_mixbf", "bf16", 1),
    lambda: rmsnorm("rms_odd_f32", "f32", 1),
    lambda: rmsnorm("rms_odd_f16", "f16", 0),
    lambda: rmsnorm("rms_strided", "f16", 1, same=False, accw=0),
    lambda: rope("rope_f32_strided", "f32", 10000.0, 1),
    lambda: rope("rope_f16", "f16", 10000.0, 0),
    lambda: rope("rope_bf16_strided", "bf16", 10000.0, 1),
    lambda: rope("rope_f32_long", "f32", 500000.0, 0),
    lambda: reduce_axis("red_last_f32", "f32", 1, False, True, 0),
    lambda: reduce_axis("red_last_big", "f32", 1, True, False, 1,
                        (1e-3, 1e-4)),
    lambda: reduce_axis("red_mid_f16", "f16", 1, False, True, 0),
    lambda: reduce_axis("red_mid_acc", "f32", 1, True, False, 1, (1e-4, 1e-4)),
    lambda: reduce_axis("red_first_bf16", "bf16", 0, True, False, 1),
    lambda: reduce_axis("red_strided_mid", "f32", 1, False, True, 0),
    lambda: reduce_axis("red_strided_last", "f32", 2, True, False, 1),
    lambda: reduce_axis("red_rank1", "f32", 0, False, False, 0, (1e-4, 1e-4)),
    lambda: reduce_axis("red_ws0", "f32", 1, False, True, 0),
    lambda: bn_fast("bn_mix_f16", "f16", 0),
    lambda: bn_fast("bn_mix_bf16", "bf16", 1),
    lambda: bn_fast("bn_mix_small", "f16", 1),
    lambda: bn_fast("bn_mix_strided", "bf16", 0, same=False),
    lambda: gn_fast("in_mix_f16", "f16", 64, 1, 0),
    lambda: gn_fast("in_mix_unit", "bf16", 8, 1, 1),
    lambda: gn_fast("in_mix_small", "f16", 6, 1, 1),
    lambda: gn_fast("in_mix_strided", "f16", 3, 1, 0, same=False),
    lambda: gn_fast("gn_mix_g4", "f16", 4, 1, 0),
    lambda: bn_fast("bn_mix_ws0", "bf16", 1),
    lambda: gn_fast("in_mix_ws0", "bf16", 8, 1, 1, same=False),
)

DIR = sys.argv[1]
for fn in (lambda: linear("linear", (1e-5, 1e-4)),
           lambda: linear("linear_bf16", (2e-2, 2e-2)),
           lambda: matmul("matmul_nn", 0, 0), lambda: matmul("matmul_nt", 0, 1),
           lambda: matmul("matmul_tn_bcast", 1, 0), conv, conv_bf16,
           lambda: conv_big("conv2d_f32_acc", (1e-4, 1e-4)),
           lambda: conv_big("conv2d_f16_acc", (1e-1, 1e-2)),
           lambda: conv_big("conv2d_f16_chunk", (1e-1, 1e-2)),
           lambda: conv_gemm("conv2d_gemm_f16", 1, 1, 1, 1, (1e-1, 1e-2)),
           lambda: conv_gemm("conv2d_gemm_bf16", 1, 1, 1, 1, (3e-2, 2e-2)),
           lambda: conv_gemm("conv2d_gemm_s2", 2, 1, 1, 1, (1e-1, 1e-2)),
           lambda: conv_gemm("conv2d_gemm_dil", 1, 1, 2, 1, (1e-1, 1e-2)),
           lambda: conv_gemm("conv2d_gemm_f32", 1, 1, 1, 1, (1e-4, 1e-4)),
           lambda: conv_gemm("conv2d_gemm_grp", 1, 1, 1, 4, (1e-1, 1e-2)),
           lambda: conv_big("conv2d_f32_chunk", (1e-4, 1e-4)), pool, norms, *FAST,
           elementwise, rowops, optim, *NEW):
    try:
        fn()
    except Exception as e:  # a crash in one case is a failure, not the end
        fails += 1
        rows.append("exception: %s: %s" % (type(e).__name__, e))
print("\n".join(rows))
print("rt_check: %d checks, %d failed" % (len(rows), fails))
sys.exit(1 if fails else 0)
