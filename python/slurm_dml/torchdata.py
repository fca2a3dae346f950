# SPDX-License-Identifier: BSD-3-Clause
"""A slurm-dml dataset as a torch.utils.data.Dataset."""
import numpy as np
import torch

from .dataset import Dataset


class DmlDataset(torch.utils.data.Dataset):
    """The samples of a slurm-dml dataset, in index order, as (features,
    label) pairs. With model (a slurm_dml.Model), features are normalised as
    that model was trained (float32, C x H x W, or F for flat data);
    without, they are the stored values (uint8 or float32, the feature
    shape). The dataset is read (and verified) once, into memory: datasets
    that fit a node's memory, as dml-train's cache assumes too."""

    def __init__(self, path, model=None, verify=True):
        self.dataset = Dataset(path, verify)
        x, y, ids = self.dataset.arrays()
        self.ids = ids
        self.labels = torch.from_numpy(y.astype(np.int64))
        self.x = torch.from_numpy(model.normalise(x) if model is not None else x)

    def __len__(self):
        return self.labels.shape[0]

    def __getitem__(self, i):
        return self.x[i], self.labels[i]
