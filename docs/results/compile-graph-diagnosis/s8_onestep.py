"""One training step of xnor ResNet-18 in float32 (deterministic cuDNN, no TF32) under
several variants; per tensor: relative difference and cosine against the eager step with
the fused binarizers. Which variant leaves the eager step, and where?"""
import copy
import sys

import torch
from torch import nn

from bnn_nas.binary import fused, quantizers
from bnn_nas.space.network import build_baseline

torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
family = sys.argv[1] if len(sys.argv) > 1 else "xnor"
dtype = torch.float64 if "f64" in sys.argv else torch.float32
torch.manual_seed(0)
cl = torch.channels_last
model = build_baseline("resnet18", family, 10).to(dev, dtype).to(memory_format=cl)
x = torch.randn(128, 3, 32, 32, device=dev, dtype=dtype).to(memory_format=cl)
y = torch.randint(0, 10, (128,), device=dev)
applies, csign = fused.applies, quantizers.clipped_ste_sign


VARIANTS = {  # name: (torch.compile backend or None, ATen binarizers, binarizers outside Dynamo)
    "eager": (None, False, False),
    "eager-aten": (None, True, False),
    "dynamo": ("eager", False, False),
    "aot_eager": ("aot_eager", False, False),
    "inductor": ("inductor", False, False),
}


def step(name):
    backend, aten, nobin = VARIANTS[name]
    m = copy.deepcopy(model)
    m.train()
    fused.applies = (lambda t: False) if aten else applies
    quantizers.clipped_ste_sign = torch.compiler.disable(csign) if nobin else csign
    torch._dynamo.reset()
    f = torch.compile(m, backend=backend) if backend else m
    logits = f(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    out = {"logits": logits.detach().double()}
    grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    out.update({f"grad:{n}": g.double() for n, g in grads.items()})
    out.update({f"buf:{n}": b.double() for n, b in m.named_buffers() if b.is_floating_point()})
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    fused.applies, quantizers.clipped_ste_sign = applies, csign
    return out, missing


probe = torch.compile(lambda t: torch.tensor(fused.applies(t)), backend="eager")
print("fused.applies inside Dynamo on CUDA:", bool(probe(x)), "(eager:", fused.applies(x), ")")
ref, _ = step("eager")
print(f"family {family}, dtype {dtype}")
for name in VARIANTS:
    out, missing = step(name)
    rows = []
    for k, r in ref.items():
        d = out[k] - r
        rel = float(d.norm() / r.norm().clamp_min(1e-30))
        cos = float((out[k].flatten() @ r.flatten()) / (out[k].norm() * r.norm()).clamp_min(1e-30))
        rows.append((rel, cos, k))
    logits_rel = next(r[0] for r in rows if r[2] == "logits")
    rows.sort(reverse=True)
    med = sorted(r[0] for r in rows)[len(rows) // 2]
    print(f"{name}: median rel {med:.3g}, logits rel {logits_rel:.3g}, "
          f"params without grad: {missing}")
    for rel, cos, k in rows[:6]:
        print(f"    {k:42s} rel {rel:.3g} cos {cos:.4f}")
