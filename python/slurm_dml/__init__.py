# SPDX-License-Identifier: BSD-3-Clause
"""slurm_dml: read slurm-dml's datasets, model files and inference results
from Python (numpy and h5py), and use them from PyTorch.

    import slurm_dml
    ds = slurm_dml.open_dataset("fm/test")          # checksums verified
    x, y, ids = ds.arrays()                          # as stored, in index order
    model = slurm_dml.load_model("model.h5")         # weights, spec, stats
    net = model.to_torch()                           # an equivalent torch.nn.Sequential
    pred = slurm_dml.read_predictions("infer-out")   # dml-infer merge's output

    from slurm_dml.torchdata import DmlDataset       # a torch.utils.data.Dataset
    loader = torch.utils.data.DataLoader(DmlDataset("fm/train", model=model), batch_size=64)

The file formats are those of docs/formats/ (dataset.md, model.md,
inference.md); every reader here checks the format attribute and the
checksums the format records, and raises FormatError naming the file and
the cause.
"""
from .common import FormatError
from .dataset import Dataset, open_dataset
from .model import Model, load_model
from .predictions import read_predictions, read_report

__all__ = ["FormatError", "Dataset", "open_dataset", "Model", "load_model", "read_predictions",
           "read_report"]
__version__ = "0.1.0"
__license__ = "BSD-3-Clause"
