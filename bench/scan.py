"""bench/scan.py: mdlc's selective_scan and conv1d against PyTorch and
against the bandwidth floor, in one run on one GPU.

    python3 bench/scan.py PATH/TO/scan_bench

runs the mdlc microbenchmark (bench/scan_bench.cu: medians of 20 calls),
then times, on the same shapes, PyTorch implementations of the same ops:
  - the scan: the recurrence as a Python loop over L holding the state
    tensor [N, D, S] (what mamba_ssm's selective_scan_ref does: 16-bit
    inputs upcast to f32, the state in f32), forward, and forward plus
    backward through autograd; median of 3 after 1;
  - conv1d: F.conv1d (cuDNN) with groups = C on the left-padded input.
The floor is the bytes an op must move (its inputs read once, its outputs
written once) over the H200's datasheet bandwidth, 4.8 TB/s, and over the
bandwidth measured here (a 2 GiB device-to-device copy, bytes read plus
written). Prints a table: times in ms, PyTorch / mdlc, mdlc / floor.
"""
import re
import subprocess
import sys

import torch
import torch.nn.functional as F

DATASHEET = 4.8e12
dev = "cuda"


def measured_bandwidth():
    a = torch.empty(1 << 29, dtype=torch.float32, device=dev)  # 2 GiB
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    ts = []
    for _ in range(10):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e) / 1e3)
    ts.sort()
    return 2 * a.numel() * 4 / ts[len(ts) // 2]


def timed(fn, warm=1, reps=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


def scan_loop(x, dt, b, c, A_log, Dskip):
    """The recurrence, a Python loop over L (f32 state)."""
    odt = x.dtype
    x, dt, b, c = x.float(), dt.float(), b.float(), c.float()
    A = -torch.exp(A_log)
    n, d, l = x.shape
    h = x.new_zeros(n, d, A.shape[1])
    ys = []
    for t in range(l):
        h = torch.exp(dt[:, :, t, None] * A) * h + \
            (dt[:, :, t] * x[:, :, t])[:, :, None] * b[:, None, :, t]
        ys.append(torch.einsum("nds,ns->nd", h, c[:, :, t]))
    return (torch.stack(ys, -1) + Dskip[:, None] * x).to(odt)


def torch_scan(dtype, N, D, S, L):
    g = torch.Generator(device=dev).manual_seed(0)
    def u(*s, lo=-1.0, hi=1.0, grad=True):
        return (lo + (hi - lo) * torch.rand(*s, device=dev, generator=g)).to(
            dtype).requires_grad_(grad)
    x, dt = u(N, D, L), u(N, D, L, lo=0.001, hi=0.1)
    dy = u(N, D, L, grad=False)
    b, c = u(N, S, L), u(N, S, L)
    A_log = torch.log(torch.arange(1, S + 1, device=dev, dtype=torch.float32)
                      ).repeat(D, 1).requires_grad_(True)
    Dskip = u(D).float().detach().requires_grad_(True)
    args = (x, dt, b, c, A_log, Dskip)
    fwd = timed(lambda: scan_loop(*args))
    def both():
        y = scan_loop(*args)
        y.backward(dy)
    fb = timed(both)
    return fwd, fb


def torch_conv(dtype, N, C, L):
    x = torch.randn(N, C, L, device=dev, dtype=dtype, requires_grad=True)
    w = torch.randn(C, 1, 4, device=dev, dtype=dtype, requires_grad=True)
    b = torch.randn(C, device=dev, dtype=dtype, requires_grad=True)
    dy = torch.randn(N, C, L, device=dev, dtype=dtype)
    def f():
        return F.conv1d(F.pad(x, (3, 0)), w, b, groups=C)
    fwd = timed(f, 3, 20)
    def both():
        f().backward(dy)
    return fwd, timed(both, 3, 20)


def scan_bytes(e, N, D, S, L):
    """(forward, backward) bytes: inputs read once, outputs written once."""
    act, st, par = N * D * L * e, N * S * L * e, D * S * 4 + D * 4
    fwd = 2 * act + 2 * st + par + act                  # x dt b c, y
    bwd = 3 * act + 2 * st + par + 2 * act + 2 * st + par  # + dy; dx ddt db dc
    return fwd, bwd


def main():
    out = subprocess.run([sys.argv[1]], capture_output=True, text=True,
                         check=True).stdout
    rows = [dict(kv.split("=") for kv in line.split()[1:])
            for line in out.splitlines() if line.startswith("RESULT")]
    bw = measured_bandwidth()
    name = torch.cuda.get_device_name()
    print("device: %s; measured copy bandwidth %.2f TB/s (datasheet 4.8)"
          % (name, bw / 1e12))
    print("PyTorch reference: the recurrence as a Python loop over L "
          "(f32 state), autograd for the backward")
    print("%-34s %8s %8s %9s %9s %9s %8s %8s" % (
        "scan (ws MiB)", "mdlc fwd", "mdlc bwd", "mdlc f+b", "torch fwd",
        "torch f+b", "speedup", "f+b/floor"))
    cache = {}
    for r in rows:
        if r["op"] != "scan":
            continue
        dt = torch.bfloat16 if r["dtype"] == "bf16" else torch.float32
        N, D, S, L = (int(r[k]) for k in "NDSL")
        fwd, bwd = float(r["fwd_ms"]), float(r["bwd_ms"])
        key = (r["dtype"], N, D, S, L)
        if key not in cache:
            cache[key] = torch_scan(dt, N, D, S, L) if L <= 1024 else (
                float("nan"), float("nan"))
            torch.cuda.empty_cache()
        tf, tfb = cache[key]
        e = 2 if r["dtype"] == "bf16" else 4
        bf, bb = scan_bytes(e, N, D, S, L)
        floor = (bf + bb) / DATASHEET * 1e3
        mfloor = (bf + bb) / bw * 1e3
        print("%-34s %8.3f %8.3f %9.3f %9.2f %9.2f %7.0fx %8.1fx"
              % ("%s N%d D%d S%d L%d (%s)" % (r["dtype"], N, D, S, L,
                                                r["ws_mib"]),
                 fwd, bwd, fwd + bwd, tf, tfb, tfb / (fwd + bwd),
                 (fwd + bwd) / floor))
        print("%34s floor f+b %.4f ms at 4.8 TB/s, %.4f ms at the measured "
              "%.2f TB/s (fwd %.1f MB, bwd %.1f MB); fwd/floor %.1fx, "
              "bwd/floor %.1fx" % ("", floor, mfloor, bw / 1e12, bf / 1e6,
                                    bb / 1e6, fwd / (bf / DATASHEET * 1e3),
                                    bwd / (bb / DATASHEET * 1e3)))
    print("%-34s %8s %8s %9s %9s %9s" % (
        "conv1d depthwise causal k4", "mdlc fwd", "mdlc bwd", "cudnn fwd",
        "cudnn f+b", "floor f+b"))
    for r in rows:
        if r["op"] != "conv1d":
            continue
        dt = torch.bfloat16 if r["dtype"] == "bf16" else torch.float32
        N, C, L = int(r["N"]), int(r["C"]), int(r["L"])
        fwd, bwd = float(r["fwd_ms"]), float(r["bwd_ms"])
        tf, tfb = torch_conv(dt, N, C, L)
        e = 2 if r["dtype"] == "bf16" else 4
        floor = (2 * N * C * L * e + 3 * N * C * L * e) / DATASHEET * 1e3
        print("%-34s %8.4f %8.4f %9.4f %9.4f %9.4f"
              % ("%s N%d C%d L%d" % (r["dtype"], N, C, L), fwd, bwd, tf, tfb,
                 floor))


if __name__ == "__main__":
    main()
