"""tests/gpu/scan_check.py: checks scan_test's dumps against PyTorch float64.

The selective scan's reference is the recurrence itself, step by step,
    h_t = exp(dt_t A) * h_{t-1} + dt_t x_t b_t,  y_t = <c_t, h_t> + Dskip x_t,
with A = -exp(A_log), and its gradients are PyTorch autograd's through that
loop (y.backward(dy)); conv1d's is F.conv1d on an explicitly padded input.
Each DIR/<case>.bin holds records: u32 name length, name, u32 rank, i64
dims, f64 data (the inputs as the kernels read them, 16-bit values already
rounded). A result passes if every element has
    |got - ref| <= atol * max|ref| + rtol * |ref|
with (atol, rtol) per dtype (the atol term is scaled by the tensor's
largest element: sums of many terms carry errors of their terms' size).
Accumulating cases add the dumped initial gradient (`dx0`, ...). `det` (1
or 0) says whether two backward runs gave the same bits. Prints a line per
result and a count; exits 1 on any failure.
"""
import struct
import sys

import torch
import torch.nn.functional as F

D64 = torch.float64
DEV = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {"f32": (1e-5, 1e-4), "f16": (4e-4, 2e-3), "bf16": (2e-3, 1e-2)}
fails = 0
rows = []


def load(path):
    """A dump: name -> float64 tensor, on DEV."""
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
        t = (torch.frombuffer(bytearray(b[i:i + 8 * cnt]), dtype=D64)
             if cnt else torch.zeros(0, dtype=D64))
        out[name] = t.reshape(dims).to(DEV)
        i += 8 * cnt
    return out


def check(case, name, got, ref, tol):
    global fails
    atol, rtol = tol
    ref = ref.detach().to(D64).reshape(got.shape)
    err = (got - ref).abs()
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    lim = atol * scale + rtol * ref.abs()
    bad = (err > lim) | torch.isnan(got)
    worst = int(torch.argmax(err - lim)) if err.numel() else 0
    ok = not bool(bad.any())
    fails += not ok
    rows.append("%-22s %-7s %-4s max|err| %.2e (max|ref| %.2e) worst at %d: "
                "got %.6g, ref %.6g" % (
                    case, name, "ok" if ok else "FAIL", float(err.max()),
                    scale, worst, float(got.flatten()[worst]),
                    float(ref.flatten()[worst])))


def req(*ts):
    return [t.clone().requires_grad_(True) for t in ts]


def scan_ref(x, dt, b, c, A_log, Dskip):
    """The recurrence, one step at a time (autograd follows it)."""
    A = -torch.exp(A_log)                                   # [D, S]
    n, d, l = x.shape
    h = x.new_zeros(n, d, A.shape[1])                       # [N, D, S]
    ys = []
    for t in range(l):
        a = torch.exp(dt[:, :, t, None] * A)                # [N, D, S]
        u = (dt[:, :, t] * x[:, :, t])[:, :, None] * b[:, None, :, t]
        h = a * h + u
        ys.append((h * c[:, None, :, t]).sum(-1) + Dskip * x[:, :, t])
    return torch.stack(ys, -1)


def scan(case, dt, acc=False, det=False):
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    ins = req(t["x"], t["dt"], t["b"], t["c"], t["A_log"], t["Dskip"])
    y = scan_ref(*ins)
    y.backward(t["dy"])
    check(case, "y", t["y"], y, tol)
    names = ("dx", "ddt", "db", "dc", "dA_log", "dDskip")
    for name, v in zip(names, ins):
        g = v.grad + (t[name + "0"] if acc else 0)
        # the parameters' gradients are f32 whatever the activations are
        check(case, name, t[name], g, TOL["f32"] if name[1] in "AD" else tol)
    if det:
        ok = float(t["det"][0]) == 1.0
        global fails
        fails += not ok
        rows.append("%-22s %-7s %-4s two backward runs %s" % (
            case, "det", "ok" if ok else "FAIL",
            "bit-identical" if ok else "differ"))


def conv1d(case, dt, stride, pl, pr, dil, groups, bias, acc=False, wdt=None):
    t = load(DIR + "/%s.bin" % case)
    tol = TOL[dt]
    x, w = req(t["x"], t["w"])
    b = req(t["b"])[0] if bias else None
    y = F.conv1d(F.pad(x, (pl, pr)), w, b, stride=stride, dilation=dil,
                 groups=groups)
    y.backward(t["dy"])
    check(case, "y", t["y"], y, tol)
    check(case, "dx", t["dx"], x.grad + (t["dx0"] if acc else 0), tol)
    wt = TOL[wdt or dt]
    check(case, "dw", t["dw"], w.grad + (t["dw0"] if acc else 0), wt)
    if bias:
        check(case, "db", t["db"], b.grad, wt)


DIR = sys.argv[1]
for fn in (lambda: scan("scan_f32_s16", "f32", det=True),
           lambda: scan("scan_f32_s128", "f32"),
           lambda: scan("scan_f32_s13_tr", "f32"),
           lambda: scan("scan_bf16_s128_proj", "bf16"),
           lambda: scan("scan_f16_s16_acc", "f16", acc=True),
           lambda: scan("scan_bf16_s64_tr_acc", "bf16", acc=True),
           lambda: scan("scan_f32_slices", "f32", det=True),
           lambda: scan("scan_bf16_mamba", "bf16", det=True),
           lambda: scan("scan_f32_mamba_s16", "f32"),
           lambda: conv1d("conv1d_dw_f32", "f32", 1, 3, 0, 1, 64, True),
           lambda: conv1d("conv1d_dw_bf16_w32", "bf16", 1, 3, 0, 1, 64, True,
                          wdt="f32"),
           lambda: conv1d("conv1d_dw_f16_acc", "f16", 1, 3, 0, 1, 32, True,
                          acc=True),
           lambda: conv1d("conv1d_general", "f32", 2, 2, 1, 2, 4, True,
                          acc=True),
           lambda: conv1d("conv1d_dense_nobias", "f32", 1, 4, 0, 1, 1,
                          False)):
    try:
        fn()
    except Exception as e:  # a crash in one case is a failure, not the end
        fails += 1
        rows.append("exception: %r" % (e,))
print("\n".join(rows))
print("scan_check: %d checks, %d failed" % (len(rows), fails))
sys.exit(1 if fails else 0)
