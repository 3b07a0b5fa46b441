"""bench/torch_ce_peak.py: where PyTorch's GPT-2 small step (bench/
torch_models.py, bf16_mixed) spends the memory that mdlc's does not. At
both peaks the loss's backward is running; PyTorch's F.cross_entropy is
log_softmax + nll_loss, mdlc's cross_entropy one op (memory.md). This
measures PyTorch's cross_entropy alone on GPT-2's f32 logits [8 * 1024,
50257] and prints the requested bytes above the logits themselves, at the
peak of forward + backward, in units of one such f32 tensor; then the same
for a step whose logits are a bf16 head output cast with .float(), as the
model does.

Usage: python3 bench/torch_ce_peak.py
"""
import torch
import torch.nn.functional as F

N, V = 8 * 1024, 50257
UNIT = N * V * 4  # one f32 tensor of the logits' shape


def peak_above(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_stats()["requested_bytes.all.current"]
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.memory_stats()["requested_bytes.all.peak"] - base


def main():
    y = torch.randint(0, V, (N,), device="cuda")
    x = torch.randn(N, V, device="cuda", requires_grad=True)

    def f32():
        F.cross_entropy(x, y).backward()
    f32()  # warm-up (cuBLAS/cuDNN handles, kernels)
    x.grad = None
    b = peak_above(f32)
    print("cross_entropy on f32 logits: %d B above them = %.4f x %d B"
          % (b, b / UNIT, UNIT))
    x.grad = None

    h = torch.randn(N, V, device="cuda", dtype=torch.bfloat16,
                    requires_grad=True)

    def bf16():
        F.cross_entropy(h.float(), y).backward()
    bf16()
    h.grad = None
    b = peak_above(bf16)
    print("cross_entropy on bf16 logits .float(): %d B above them = %.4f x "
          "%d B" % (b, b / UNIT, UNIT))


if __name__ == "__main__":
    main()
