# SPDX-License-Identifier: BSD-3-Clause
"""A slurm-dml dataset (docs/formats/dataset.md): a directory of HDF5 shards
and index.h5."""
import os
import zlib

import numpy as np

from .common import FormatError, attr, check_format, names, open_h5, text


class Dataset:
    """A dataset, its index read and (with verify, the default) every shard
    checked against it: element types, shapes, sample counts, the CRC-32 of
    x, y and id, labels within the classes. Nothing is read beyond the index
    until needed; shards are opened one at a time."""

    def __init__(self, path, verify=True):
        self.path = os.fspath(path)
        index = os.path.join(self.path, "index.h5")
        with open_h5(index, "dataset index") as f:
            check_format(f, index, "slurm-dml dataset")
            version = int(attr(f, index, "version"))
            if version != 1:
                raise FormatError(f"{index}: version {version}; this reader knows version 1")
            self.dtype = np.dtype(text(attr(f, index, "dtype")))
            self.feature_shape = tuple(int(v) for v in attr(f, index, "feature_shape"))
            self.num_classes = int(attr(f, index, "num_classes"))
            self.samples = int(attr(f, index, "samples"))
            self.content_hash = text(attr(f, index, "content_hash"))
            self.source = text(f.attrs.get("source", ""))
            self.shard_names = names(f["shard_names"])
            self.shard_samples = [int(v) for v in f["shard_samples"][()]]
            self.shard_crc32 = [int(v) for v in f["shard_crc32"][()]]
            self.class_names = names(f["class_names"])
            st = f["stats"]
            self.stats = {k: st[k][()] for k in st}
            self.stats["global_mean"] = float(st.attrs["global_mean"])
            self.stats["global_std"] = float(st.attrs["global_std"])
        if sum(self.shard_samples) != self.samples:
            raise FormatError(f"{index}: the shards hold {sum(self.shard_samples)} samples, "
                              f"the index says {self.samples}")
        self._starts = np.concatenate([[0], np.cumsum(self.shard_samples)]).astype(np.int64)
        if verify:
            for i in range(len(self.shard_names)):
                self.shard(i)

    def __len__(self):
        return self.samples

    def shard(self, i):
        """Shard i as (x, y, id), checked against the index."""
        path = os.path.join(self.path, self.shard_names[i])
        with open_h5(path, "dataset shard") as f:
            check_format(f, path, "slurm-dml dataset shard")
            try:
                x, y, ids = f["x"][()], f["y"][()], f["id"][()]
            except KeyError as e:
                raise FormatError(f"{path}: {e}") from None
        n = self.shard_samples[i]
        if x.dtype != self.dtype or x.shape != (n,) + self.feature_shape:
            raise FormatError(f"{path}: x is {x.dtype} {x.shape}, the index says "
                              f"{self.dtype} {(n,) + self.feature_shape}")
        if y.shape != (n,) or ids.shape != (n,):
            raise FormatError(f"{path}: y or id do not hold {n} samples")
        crc = 0
        for a in (x, y.astype("<i4"), ids.astype("<u8")):
            crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
        if crc != self.shard_crc32[i]:
            raise FormatError(f"{path}: CRC-32 {crc:08x}, the index records "
                              f"{self.shard_crc32[i]:08x}: the shard is damaged")
        if n and (y.min() < 0 or y.max() >= self.num_classes):
            raise FormatError(f"{path}: labels outside 0..{self.num_classes - 1}")
        return x, y, ids

    def arrays(self):
        """All samples as (x, y, id), in index order (shard by shard)."""
        parts = [self.shard(i) for i in range(len(self.shard_names))]
        if not parts:
            return (np.zeros((0,) + self.feature_shape, self.dtype), np.zeros(0, np.int32),
                    np.zeros(0, np.uint64))
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))

    def locate(self, index):
        """(shard, row) of the sample at position index."""
        if not 0 <= index < self.samples:
            raise IndexError(f"{self.path}: sample {index} of {self.samples}")
        s = int(np.searchsorted(self._starts, index, side="right") - 1)
        return s, index - int(self._starts[s])


def open_dataset(path, verify=True):
    """The dataset at path (a directory dml-data wrote)."""
    return Dataset(path, verify)
