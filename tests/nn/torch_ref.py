#!/usr/bin/python3
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
import re
import sys

import h5py
import numpy as np
import torch

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


def pair(v):
    a, _, b = v.partition("x")
    return (int(a), int(b or a))


def layers_of(spec):
    """[(name, {args}, [positional])] from the canonical text (or mlp:)."""
    if spec.startswith("mlp:"):
        body, _, opt = spec[4:].partition(":")
        dims = [int(d) for d in body.split("-")]
        p = float(opt.split("=")[1]) if opt else 0.0
        out = []
        for i, d in enumerate(dims[1:]):
            out.append(("dense", {}, [str(d)]))
            if i < len(dims) - 2:
                out.append(("relu", {}, []))
                if p > 0:
                    out.append(("dropout", {}, [str(p)]))
        return out
    out = []
    for m in re.finditer(r"([a-z0-9]+)(?:\(([^)]*)\))?(?:,|$)", spec):
        name, args = m.group(1), m.group(2)
        kw, pos = {}, []
        for a in (args.split(",") if args else []):
            if "=" in a:
                k, v = a.split("=")
                kw[k] = v
            else:
                pos.append(a)
        out.append((name, kw, pos))
    return out


def build(spec, shape, seed, params, buffers):
    """The torch model with slurm-dml's weights, and how to lay gradients
    out as slurm-dml does (a function per parameter layer)."""
    c, h, w = (int(s) for s in shape)
    flat = h == 1 and w == 1
    mods, layout = [], []
    po = bo = 0
    size = (c, h, w)
    for li, (name, kw, pos) in enumerate(layers_of(spec)):
        if name == "conv2d":
            f = int(pos[0])
            kh, kwd = pair(pos[1])
            sh, sw = pair(kw.get("stride", "1"))
            pad = kw.get("padding", "0")
            conv = torch.nn.Conv2d(size[0], f, (kh, kwd), stride=(sh, sw),
                                   padding="same" if pad == "same" else pair(pad))
            nw = f * size[0] * kh * kwd
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(params[po:po + nw].reshape(conv.weight.shape)))
                conv.bias.copy_(torch.from_numpy(params[po + nw:po + nw + f]))
            layout.append((conv, lambda m: np.concatenate([m.weight.grad.numpy().ravel(),
                                                           m.bias.grad.numpy().ravel()]),
                           lambda m: np.concatenate([m.weight.detach().numpy().ravel(),
                                                     m.bias.detach().numpy().ravel()])))
            po += nw + f
            if pad == "same":
                oh, ow = size[1], size[2]
            else:
                ph, pw = pair(pad)
                oh, ow = (size[1] + 2 * ph - kh) // sh + 1, (size[2] + 2 * pw - kwd) // sw + 1
            size = (f, oh, ow)
            mods.append(conv)
        elif name in ("maxpool", "avgpool"):
            kh, kwd = pair(pos[0])
            sh, sw = pair(kw.get("stride", pos[0]))
            cls = torch.nn.MaxPool2d if name == "maxpool" else torch.nn.AvgPool2d
            mods.append(cls((kh, kwd), stride=(sh, sw)))
            size = (size[0], (size[1] - kh) // sh + 1, (size[2] - kwd) // sw + 1)
        elif name == "batchnorm":
            ch = size[0]
            cls = torch.nn.BatchNorm1d if flat else torch.nn.BatchNorm2d
            bn = cls(ch, eps=float(kw.get("eps", 1e-5)), momentum=float(kw.get("momentum", 0.1)))
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(params[po:po + ch]))
                bn.bias.copy_(torch.from_numpy(params[po + ch:po + 2 * ch]))
                bn.running_mean.copy_(torch.from_numpy(buffers[bo:bo + ch]))
                bn.running_var.copy_(torch.from_numpy(buffers[bo + ch:bo + 2 * ch]))
            layout.append((bn, lambda m: np.concatenate([m.weight.grad.numpy(), m.bias.grad.numpy()]),
                           lambda m: np.concatenate([m.weight.detach().numpy(),
                                                     m.bias.detach().numpy()])))
            po += 2 * ch
            bo += 2 * ch
            mods.append(bn)
        elif name == "dropout":
            mods.append(FixedDropout(float(pos[0]), li, seed))
        elif name == "flatten":
            mods.append(torch.nn.Flatten())
            size = (size[0] * size[1] * size[2], 1, 1)
            flat = True
        elif name == "relu":
            mods.append(torch.nn.ReLU())
        elif name == "dense":
            din, dout = size[0] * size[1] * size[2], int(pos[0])
            lin = torch.nn.Linear(din, dout)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(params[po:po + din * dout].reshape(din, dout).T.copy()))
                lin.bias.copy_(torch.from_numpy(params[po + din * dout:po + din * dout + dout]))
            layout.append((lin, lambda m: np.concatenate([m.weight.grad.numpy().T.ravel(),
                                                          m.bias.grad.numpy()]),
                           lambda m: np.concatenate([m.weight.detach().numpy().T.ravel(),
                                                     m.bias.detach().numpy()])))
            po += din * dout + dout
            size = (dout, 1, 1)
            mods.append(lin)
        else:
            raise SystemExit(f"torch_ref: unknown layer {name}")
    assert po == params.size, (po, params.size)
    return torch.nn.Sequential(*mods), layout, bo


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
