"""bench/torch_gpt2.py: examples/gpt2_small.mdl written in eager PyTorch
(the same primitives: unfused attention with the [B, h, S, S] scores,
dropout 0.1 where the model has it, AdamW), for comparison with
`mdlc --run`: peak memory by torch.cuda.max_memory_allocated over a step
(parameters, optimizer state and the batch included, as mdlc counts) and
the median step time with CUDA events. Usage: python3 bench/torch_gpt2.py
[fp32|bf16_mixed] [steps]."""
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

B, S, D, H, V, L = 8, 1024, 768, 12, 50257, 12


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.reshape(B, S, H, D // H).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(D // H))
        mask = torch.ones(S, S, dtype=torch.bool, device=x.device).triu(1)
        p = F.dropout(torch.softmax(s.float().masked_fill(mask, -math.inf), -1), 0.1)
        a = self.proj((p.to(v.dtype) @ v).transpose(1, 2).reshape(B, S, D))
        x = x + F.dropout(a, 0.1)
        m = self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return x + F.dropout(m, 0.1)


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, D), nn.Parameter(torch.randn(S, D))
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, V, bias=False)

    def forward(self, t, y):
        h = F.dropout(self.emb(t) + self.pos, 0.1)
        for l in self.layers:
            h = l(h)
        return F.cross_entropy(self.head(self.ln(h)).float().view(-1, V), y.view(-1))


def main():
    prec = sys.argv[1] if len(sys.argv) > 1 else "bf16_mixed"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.backends.cuda.matmul.allow_tf32 = False
    m = GPT().cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    t = torch.randint(0, V, (B, S), device="cuda")
    y = torch.randint(0, V, (B, S), device="cuda")
    ms, peaks = [], []
    for i in range(steps):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True)
        e0.record()
        with torch.autocast("cuda", torch.bfloat16, enabled=prec == "bf16_mixed"):
            loss = m(t, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        e1.record()
        torch.cuda.synchronize()
        ms.append(e0.elapsed_time(e1))
        peaks.append(torch.cuda.max_memory_allocated())
        print("torch %s step %d loss %.5f ms %.3f peak %d" % (
            prec, i, loss.item(), ms[-1], peaks[-1]), flush=True)
    ms.sort()
    print("torch %s: median step %.3f ms, peak (steps 2+) %d B" % (
        prec, ms[len(ms) // 2], max(peaks[1:] or peaks)))


main()
