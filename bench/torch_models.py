"""bench/torch_models.py: the four benchmark cases of bench/RESULTS.md in
eager PyTorch, for comparison with `mdlc --run`: the same model, batch and
precision as examples/{gpt2_small,gpt2_naive,resnet18,operator_cnn}.mdl
(gpt2_small: tied head, F.scaled_dot_product_attention; gpt2_naive: untied
head, the scores materialized). Per step:
time with CUDA events around forward, backward, optimizer step and
zero_grad(set_to_none); peak as torch.cuda.memory_stats()
["requested_bytes.all.peak"] (bytes asked for, before the caching
allocator's rounding: what mdlc's prediction counts) and
max_memory_allocated (after rounding). TF32 is off (mdlc's f32 is plain
f32).

Usage: python3 bench/torch_models.py CASE PRECISION [steps [MODE]]
  CASE: gpt2_small | gpt2_naive | resnet18 | operator_cnn
  PRECISION: fp32 | bf16_mixed | fp16 (pure: parameters, Adam state and
  activations in f16) | bf16
  MODE, how PyTorch picks its convolution algorithms:
    benchmark      cudnn.benchmark = True: times them all at the first
                   step and keeps the fastest, deterministic or not
                   (the default here: the strongest reference)
    default        PyTorch's defaults: cuDNN's heuristics, deterministic
                   or not
    deterministic  torch.use_deterministic_algorithms(True, warn_only=
                   True): deterministic algorithms where PyTorch has them,
                   as mdlc (which never times: its choice is a function
                   of the shapes)
Prints one line per step and a last line:
  torch CASE PRECISION median_ms X requested_peak N allocated_peak N
"""
import os
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- gpt2_small ---------------------------------------------------------------
B, S, D, H, V, L = 8, 1024, 768, 12, 50257, 12


class Layer(nn.Module):
    def __init__(self, fused):
        super().__init__()
        self.fused = fused
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.reshape(B, S, H, D // H).transpose(1, 2) for t in (q, k, v))
        if self.fused:
            o = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1,
                                               is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(D // H))
            mask = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(1)
            p = F.dropout(torch.softmax(s.float().masked_fill(mask, -math.inf), -1), 0.1)
            o = p.to(v.dtype) @ v
        a = self.proj(o.transpose(1, 2).reshape(B, S, D))
        x = x + F.dropout(a, 0.1)
        m = self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x + F.dropout(m, 0.1)


class GPT(nn.Module):
    def __init__(self, published=True):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, D), nn.Parameter(torch.randn(S, D))
        self.layers = nn.ModuleList(Layer(published) for _ in range(L))
        self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, V, bias=False)
        if published:
            self.head.weight = self.emb.weight  # tied, as GPT-2

    def forward(self, t, y):
        h = F.dropout(self.emb(t) + self.pos, 0.1)
        for l in self.layers:
            h = l(h)
        return F.cross_entropy(self.head(self.ln(h)).float().view(-1, V), y.view(-1))


# ---- operator_cnn --------------------------------------------------------
class OperatorCNN(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        chans = [3, c, c, c]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                   for a, b in zip(chans, chans[1:]))
        self.norms = nn.ModuleList(nn.InstanceNorm2d(c, affine=True)
                                   for _ in range(3))
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x, t):
        for conv, norm in zip(self.convs, self.norms):
            x = F.gelu(norm(conv(x)))
        return F.mse_loss(self.out(x), t)


def build(case, prec):
    dev = "cuda"
    if case in ("gpt2_small", "gpt2_naive"):
        m = GPT(case == "gpt2_small")
        opt = lambda ps: torch.optim.AdamW(ps, lr=1e-3)
        inputs = (torch.randint(0, V, (B, S), device=dev),
                  torch.randint(0, V, (B, S), device=dev))
        fwd = lambda m, a, b: m(a, b)
    elif case == "resnet18":
        import torchvision
        m = torchvision.models.resnet18()
        opt = lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9)
        inputs = (torch.rand(32, 3, 224, 224, device=dev) * 2 - 1,
                  torch.randint(0, 1000, (32,), device=dev))
        fwd = lambda m, a, b: F.cross_entropy(m(a).float(), b)
    elif case == "operator_cnn":
        m = OperatorCNN()
        opt = lambda ps: torch.optim.Adam(ps, lr=1e-3)
        inputs = (torch.rand(16, 3, 128, 128, device=dev) * 2 - 1,
                  torch.rand(16, 3, 128, 128, device=dev) * 2 - 1)
        fwd = lambda m, a, b: m(a, b)
    else:
        raise SystemExit("unknown case " + case)
    m = m.to(dev)
    if prec in ("fp16", "bf16"):
        dt = torch.float16 if prec == "fp16" else torch.bfloat16
        m = m.to(dt)
        inputs = tuple(x.to(dt) if x.is_floating_point() else x for x in inputs)
    return m, opt(m.parameters()), inputs, fwd


def main():
    case = sys.argv[1]
    prec = sys.argv[2] if len(sys.argv) > 2 else "fp32"
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    mode = sys.argv[4] if len(sys.argv) > 4 else "benchmark"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = mode == "benchmark"
    if mode == "deterministic":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: an op with no deterministic kernel (resnet18's
        # adaptive_avg_pool2d backward) warns and runs anyway
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif mode not in ("benchmark", "default"):
        sys.exit("MODE: benchmark | default | deterministic")
    torch.manual_seed(0)
    m, opt, inputs, fwd = build(case, prec)
    ms, req, alloc = [], [], []
    for i in range(steps):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True)
        e0.record()
        with torch.autocast("cuda", torch.bfloat16, enabled=prec == "bf16_mixed"):
            loss = fwd(m, *inputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        e1.record()
        torch.cuda.synchronize()
        ms.append(e0.elapsed_time(e1))
        st = torch.cuda.memory_stats()
        req.append(st["requested_bytes.all.peak"])
        alloc.append(torch.cuda.max_memory_allocated())
        print("torch %s %s step %d loss %.5f ms %.3f requested_peak %d "
              "allocated_peak %d" % (case, prec, i, loss.item(), ms[-1],
                                     req[-1], alloc[-1]), flush=True)
    t = sorted(ms[1:] or ms)
    print("torch %s %s median_ms %.3f requested_peak %d allocated_peak %d" % (
        case, prec, t[len(t) // 2], max(req[1:] or req), max(alloc[1:] or alloc)))


if __name__ == "__main__":
    main()
