# SPDX-License-Identifier: BSD-3-Clause
"""A slurm-dml model file (docs/formats/model.md), or the model group of a
checkpoint, and the equivalent PyTorch network."""
import os
import re
import zlib

import numpy as np

from .common import FormatError, attr, check_format, names, open_h5, text


def parse_spec(spec):
    """The layers of a canonical spec text (or an mlp: shorthand) as
    [(name, {key: value}, [positional])]."""
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


def pair(v):
    """'3' -> (3, 3); '3x5' -> (3, 5)."""
    a, _, b = v.partition("x")
    return (int(a), int(b or a))


def input_chw(feature_shape):
    """One sample's shape as channels x height x width (flat data: F x 1 x 1)."""
    s = tuple(int(v) for v in feature_shape)
    return {1: (s[0], 1, 1), 2: (1, s[0], s[1]), 3: s}[len(s)]


class Model:
    """A model file's contents: spec, the data shape it was trained on,
    weights and batch-normalisation buffers (float32, the file's flat
    layout), class names, the training data's statistics."""

    def __init__(self, path):
        self.path = os.fspath(path)
        with open_h5(self.path, "model") as f:
            g = f
            if text(f.attrs.get("format", "")) != "slurm-dml model" and "model" in f:
                g = f["model"]  # a checkpoint: its model group has the same layout
            check_format(g, self.path, "slurm-dml model")
            self.version = int(attr(g, self.path, "version"))
            if self.version not in (1, 2):
                raise FormatError(f"{self.path}: model version {self.version}; this reader knows 1 and 2")
            self.spec = text(attr(g, self.path, "model"))
            if "feature_shape" in g.attrs:
                self.feature_shape = tuple(int(v) for v in g.attrs["feature_shape"])
            else:  # version 1: an mlp: of flat inputs
                self.feature_shape = (int(self.spec[4:].split("-")[0]),)
            self.weights = self._array(g, "weights")
            self.buffers = self._array(g, "buffers") if "buffers" in g else np.zeros(0, np.float32)
            self.class_names = names(g["class_names"]) if "class_names" in g else []
            self.normalisation = text(g.attrs.get("normalisation", "global"))
            st = g["stats"]
            self.stats = {k: st[k][()] for k in st}
            self.stats["global_mean"] = float(st.attrs["global_mean"])
            self.stats["global_std"] = float(st.attrs["global_std"])
            self.dataset_hash = text(g.attrs.get("dataset_hash", ""))
        self.layers = parse_spec(self.spec)
        # an mlp: takes its input flat, whatever the data's shape
        if self.spec.startswith("mlp:"):
            self.input_shape = (int(np.prod(self.feature_shape)), 1, 1)
        else:
            self.input_shape = input_chw(self.feature_shape)

    def _array(self, g, name):
        d = g[name]
        a = d[()].astype(np.float32, copy=False).ravel()
        if "crc32" in d.attrs and zlib.crc32(a.astype("<f4").tobytes()) != int(d.attrs["crc32"]):
            raise FormatError(f"{self.path}: {name}: CRC-32 does not match: the file is damaged")
        if not np.all(np.isfinite(a)):
            raise FormatError(f"{self.path}: {name}: values that are not finite")
        return a

    def normalise(self, x):
        """Stored samples (uint8 or float32, n x feature shape) as the model's
        input, float32 n x C x H x W (flat data: n x F), normalised as
        training did: x * (1/std) - mean/std in float32, with the training
        data's global statistics."""
        s = self.stats["global_std"] if self.stats["global_std"] > 0 else 1.0
        scale, bias = np.float32(1.0 / s), np.float32(-self.stats["global_mean"] / s)
        x = np.asarray(x)
        out = x.astype(np.float32) * scale + bias
        c, h, w = self.input_shape
        return out.reshape((x.shape[0], c) if h == w == 1 else (x.shape[0], c, h, w))

    def to_torch(self):
        """An equivalent torch.nn.Sequential with these weights, in evaluation
        mode (build_torch). Its outputs are logits; softmax gives dml-infer's
        probabilities."""
        return build_torch(self.spec, self.input_shape, self.weights, self.buffers,
                           where=self.path).eval()


def build_torch(spec, input_shape, weights, buffers, dropout=None, where="model", spare_buffers=False):
    """The torch.nn.Sequential of spec on inputs of input_shape (C, H, W; flat:
    F, 1, 1) with slurm-dml's flat weights and buffers (docs/formats/model.md):
    Conv2d, MaxPool2d, AvgPool2d, BatchNorm1d/2d (with the running
    statistics), Dropout, Flatten, ReLU, Linear. dropout(p, layer_index), if
    given, makes the dropout modules (a test's own masks); spare_buffers
    allows buffer values beyond those the layers use."""
    import torch

    c, h, w = input_shape
    flat = h == 1 and w == 1
    size, po, bo, mods = (c, h, w), 0, 0, []
    p, b = weights, buffers
    for li, (name, kw, pos) in enumerate(parse_spec(spec)):
        if name == "conv2d":
            f, (kh, kwd) = int(pos[0]), pair(pos[1])
            sh, sw = pair(kw.get("stride", "1"))
            pad = kw.get("padding", "0")
            m = torch.nn.Conv2d(size[0], f, (kh, kwd), stride=(sh, sw),
                                padding="same" if pad == "same" else pair(pad))
            nw = f * size[0] * kh * kwd
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(p[po:po + nw].reshape(m.weight.shape)))
                m.bias.copy_(torch.from_numpy(p[po + nw:po + nw + f]))
            po += nw + f
            if pad == "same":
                size = (f, size[1], size[2])
            else:
                ph, pw = pair(pad)
                size = (f, (size[1] + 2 * ph - kh) // sh + 1, (size[2] + 2 * pw - kwd) // sw + 1)
        elif name in ("maxpool", "avgpool"):
            kh, kwd = pair(pos[0])
            sh, sw = pair(kw.get("stride", pos[0]))
            cls = torch.nn.MaxPool2d if name == "maxpool" else torch.nn.AvgPool2d
            m = cls((kh, kwd), stride=(sh, sw))
            size = (size[0], (size[1] - kh) // sh + 1, (size[2] - kwd) // sw + 1)
        elif name == "batchnorm":
            ch = size[0]
            cls = torch.nn.BatchNorm1d if flat else torch.nn.BatchNorm2d
            m = cls(ch, eps=float(kw.get("eps", 1e-5)), momentum=float(kw.get("momentum", 0.1)))
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(p[po:po + ch]))
                m.bias.copy_(torch.from_numpy(p[po + ch:po + 2 * ch]))
                m.running_mean.copy_(torch.from_numpy(b[bo:bo + ch]))
                m.running_var.copy_(torch.from_numpy(b[bo + ch:bo + 2 * ch]))
            po, bo = po + 2 * ch, bo + 2 * ch
        elif name == "dropout":
            m = dropout(float(pos[0]), li) if dropout else torch.nn.Dropout(float(pos[0]))
        elif name == "flatten":
            m = torch.nn.Flatten()
            size, flat = (size[0] * size[1] * size[2], 1, 1), True
        elif name == "relu":
            m = torch.nn.ReLU()
        elif name == "dense":
            din, dout = size[0] * size[1] * size[2], int(pos[0])
            m = torch.nn.Linear(din, dout)
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(p[po:po + din * dout].reshape(din, dout).T.copy()))
                m.bias.copy_(torch.from_numpy(p[po + din * dout:po + din * dout + dout]))
            po += din * dout + dout
            size = (dout, 1, 1)
        else:
            raise FormatError(f"{where}: layer '{name}' of '{spec}' is not known here")
        mods.append(m)
    if po != p.size or bo > b.size or (bo != b.size and not spare_buffers):
        raise FormatError(f"{where}: '{spec}' needs {po} weights and {bo} buffer values, "
                          f"the file holds {p.size} and {b.size}")
    return torch.nn.Sequential(*mods)


def load_model(path):
    """The model file (or checkpoint) at path."""
    return Model(path)
