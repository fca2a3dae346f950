#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""torch_ref.py REF.h5: redoes nn_ref's training step in PyTorch and compares.

The network is built from the spec slurm-dml wrote (its canonical text), with
slurm-dml's weights: convolution weights as they are (filters x C x kh x kw),
dense weights transposed (slurm-dml keeps inputs x outputs), batch
normalisation's scale, shift and running statistics. Dropout uses
slurm-dml's masks, recomputed here from its documented counter-based
generator (splitmix64 of seed ^ (layer + 1) << 56 ^ element): PyTorch's own
generator would draw others. Then, against what slurm-dml computed:
evaluation's probabilities, the training step's loss and every gradient,
the running statistics after it, and the parameters after one SGD step of
learning rate 0.1. Each must agree to a relative difference of 1e-4 (the
largest absolute difference over the largest magnitude of PyTorch's values).
Exit 0 if all agree, 1 (naming what differs) if not.
"""
import os
import sys

import h5py
import numpy as np
import torch

# the package's network builder, from the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from slurm_dml.model import build_torch  # noqa: E402

TOL = 1e-4
M64 = (1 << 64) - 1


def mix(z):
    """splitmix64's finaliser on a numpy uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def dropout_mask(seed, layer, count, p):
    k = np.arange(count, dtype=np.uint64)
    key = np.uint64(seed) ^ np.uint64(((layer + 1) << 56) & M64) ^ k
    u = ((mix(key) >> np.uint64(11)).astype(np.float64) + 0.5) / 9007199254740992.0
    keep = float(np.float32(1.0 - p))
    return u < keep


class FixedDropout(torch.nn.Module):
    """Dropout with slurm-dml's mask (training) or none (evaluation)."""

    def __init__(self, p, layer, seed):
        super().__init__()
        self.p, self.layer, self.seed = p, layer, seed

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        mask = dropout_mask(self.seed, self.layer, x.numel(), self.p)
        m = torch.from_numpy(mask.reshape(x.shape)).to(x.dtype)
        return x * m * (1.0 / np.float32(1.0 - self.p))


def build(spec, shape, seed, params, buffers):
    """The torch model with slurm-dml's weights (the slurm_dml package's
    build_torch, with slurm-dml's dropout masks), and how to lay gradients
    and values out as slurm-dml does: per parameter layer, (module,
    gradients of, values of)."""
    model = build_torch(spec, tuple(int(s) for s in shape), params, buffers,
                        dropout=lambda p, layer: FixedDropout(p, layer, seed), spare_buffers=True)
    layout = []
    for m in model:
        if isinstance(m, torch.nn.Linear):  # slurm-dml keeps W as inputs x outputs
            layout.append((m, lambda m: np.concatenate([m.weight.grad.numpy().T.ravel(), m.bias.grad.numpy()]),
                           lambda m: np.concatenate([m.weight.detach().numpy().T.ravel(),
                                                     m.bias.detach().numpy()])))
        elif isinstance(m, (torch.nn.Conv2d, torch.nn.modules.batchnorm._BatchNorm)):
            layout.append((m, lambda m: np.concatenate([m.weight.grad.numpy().ravel(),
                                                        m.bias.grad.numpy().ravel()]),
                           lambda m: np.concatenate([m.weight.detach().numpy().ravel(),
                                                     m.bias.detach().numpy().ravel()])))
    return model, layout, sum(2 * m.num_features for m in model
                              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.max(np.abs(b)), 1e-30)
    return float(np.max(np.abs(a - b)) / scale)


def main():
    torch.set_num_threads(1)
    f = h5py.File(sys.argv[1], "r")
    spec = f.attrs["spec"]
    spec = spec.decode() if isinstance(spec, bytes) else str(spec)
    shape = f["shape"][()]
    seed = int(f["dropout_seed"][0])
    p0, b0 = f["params0"][()], f["buffers0"][()]
    model, layout, nb = build(spec, shape, seed, p0, b0)
    n = f["y"].shape[0]
    c, h, w = (int(s) for s in shape)
    x = torch.from_numpy(f["x"][()].reshape((n, c) if h == 1 and w == 1 else (n, c, h, w)))
    y = torch.from_numpy(f["y"][()].astype(np.int64))
    checks = []

    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1).numpy().ravel()
    checks.append(("evaluation's probabilities", rel(f["eval_probs"][()], probs)))

    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    checks.append(("training loss", rel([f["train_loss"][0]], [loss.item()])))
    g = f["grads"][()]
    o = 0
    for i, (mod, grad_of, _) in enumerate(layout):
        tg = grad_of(mod)
        checks.append((f"gradients of parameter layer {i} ({type(mod).__name__})",
                       rel(g[o:o + tg.size], tg)))
        o += tg.size
    if nb:
        rs = np.concatenate([np.concatenate([m.running_mean.numpy(), m.running_var.numpy()])
                             for m, _, _ in layout if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)])
        checks.append(("running statistics after the step", rel(f["buffers1"][()][:nb], rs)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0)
    opt.step()
    after = np.concatenate([val_of(mod) for mod, _, val_of in layout])
    checks.append(("parameters after one SGD step", rel(f["params1"][()], after)))

    bad = [(what, d) for what, d in checks if not d <= TOL]
    for what, d in checks:
        print(f"{spec} {tuple(int(s) for s in shape)}: {what}: relative difference {d:.2e}"
              f"{'  FAIL' if not d <= TOL else ''}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
