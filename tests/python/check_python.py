#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""check_python.py WHAT ARGS: the slurm_dml Python package against outside
references (called by test_python.sh; exit 0 if it holds, 1 naming what does
not).

  idx DATASET IMAGES.gz LABELS.gz   DmlDataset yields exactly the IDX files'
                                    samples and labels, in order
  damaged DATASET SHARD             opening it raises FormatError naming SHARD
  infer MODEL DATASET RUN           the model in PyTorch reproduces dml-infer's
                                    predictions of DATASET in RUN
"""
import gzip
import sys

import numpy as np
import torch

import slurm_dml
from slurm_dml.torchdata import DmlDataset


def fail(msg):
    print(f"check_python: {msg}", file=sys.stderr)
    sys.exit(1)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def idx(ds_path, images, labels):
    xi, yi = read_idx(images), read_idx(labels)
    ds = DmlDataset(ds_path)
    if len(ds) != len(yi):
        fail(f"{ds_path}: {len(ds)} samples, the IDX files {len(yi)}")
    x = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
    y = np.array([int(ds[i][1]) for i in range(len(ds))])
    if x.dtype != np.uint8 or x.shape != xi.shape or not np.array_equal(x, xi):
        fail(f"{ds_path}: the samples differ from {images} ({x.dtype} {x.shape})")
    if not np.array_equal(y, yi):
        fail(f"{ds_path}: the labels differ from {labels}")
    if not np.array_equal(ds.ids, np.arange(len(yi), dtype=np.uint64)):
        fail(f"{ds_path}: the sample ids are not the IDX positions")
    names = slurm_dml.open_dataset(ds_path).class_names
    print(f"ok: {len(ds)} samples and labels equal the IDX files'; classes {names[0]} .. {names[-1]}")


def damaged(ds_path, shard):
    try:
        slurm_dml.open_dataset(ds_path)
    except slurm_dml.FormatError as e:
        if shard not in str(e) or "CRC-32" not in str(e):
            fail(f"unclear refusal: {e}")
        print(f"ok: refused: {e}")
        return
    fail(f"{ds_path}: a damaged {shard} was read without complaint")


def infer(model_path, ds_path, run):
    torch.set_num_threads(1)
    model = slurm_dml.load_model(model_path)
    net = model.to_torch()
    ds = DmlDataset(ds_path, model=model)
    with torch.no_grad():
        probs = torch.cat([torch.softmax(net(xb), dim=1)
                           for xb, _ in torch.utils.data.DataLoader(ds, batch_size=500)]).numpy()
    p = slurm_dml.read_predictions(run)
    if not np.array_equal(p["id"], ds.ids):
        fail(f"{run}: the predictions' ids are not the dataset's, in order")
    if not np.array_equal(p["label"], ds.labels.numpy()):
        fail(f"{run}: the predictions' labels are not the dataset's")
    k = p["topk_class"].shape[1]
    tp = np.take_along_axis(probs, p["topk_class"].astype(np.int64), axis=1)
    d = float(np.max(np.abs(tp - p["topk_prob"])))
    if not d <= 1e-5:
        fail(f"{model.spec}: top-{k} probabilities differ from dml-infer's by up to {d:.2e}")
    pred = probs.argmax(axis=1)
    srt = np.sort(probs, axis=1)
    ties = srt[:, -1] - srt[:, -2] <= 1e-5
    wrong = (pred != p["pred"]) & ~ties
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        fail(f"{model.spec}: PyTorch predicts class {pred[i]} for sample {i}, dml-infer {p['pred'][i]}")
    rep = slurm_dml.read_report(run)
    acc = float(np.mean(pred == ds.labels.numpy()))
    if abs(acc - rep["accuracy"]) > 1e-3:
        fail(f"{model.spec}: PyTorch's accuracy {acc}, dml-infer's report {rep['accuracy']}")
    print(f"ok: {model.spec}: PyTorch on the model file reproduces dml-infer's predictions of "
          f"{len(ds)} samples (top-{k} probabilities within {d:.1e}; accuracy {acc:.4f})")


if __name__ == "__main__":
    {"idx": idx, "damaged": damaged, "infer": infer}[sys.argv[1]](*sys.argv[2:])
