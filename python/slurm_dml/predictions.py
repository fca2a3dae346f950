# SPDX-License-Identifier: BSD-3-Clause
"""An inference run's merged output (docs/formats/inference.md)."""
import json
import os

from .common import check_format, names, open_h5


def read_predictions(path):
    """DIR/predictions.h5 (or the file itself) as a dict of numpy arrays: id,
    pred, label, topk_class, topk_prob; and class_names, model_hash,
    input_hash."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "predictions.h5")
    with open_h5(path, "predictions file") as f:
        check_format(f, path, "slurm-dml predictions")
        out = {k: f[k][()] for k in ("id", "pred", "label", "topk_class", "topk_prob")}
        out["class_names"] = names(f["class_names"])
        for k in ("model_hash", "input_hash"):
            v = f.attrs.get(k, b"")
            out[k] = v.decode() if isinstance(v, bytes) else str(v)
    return out


def read_report(path):
    """DIR/report.json (or the file itself) as a dict."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "report.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
