# SPDX-License-Identifier: BSD-3-Clause
"""What the readers share: the error they raise and HDF5 attribute access."""
import h5py


class FormatError(ValueError):
    """A file is not what its slurm-dml format says (the message names it)."""


def text(v):
    """An HDF5 string attribute or element as str."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def names(dset):
    """A dataset of fixed-size strings as a list of str."""
    return [text(v).rstrip("\0") for v in dset[()]]


def open_h5(path, kind):
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FormatError(f"{path}: cannot open as the HDF5 file of a {kind}: {e}") from None


def attr(f, path, name):
    try:
        return f.attrs[name]
    except KeyError:
        raise FormatError(f"{path}: no attribute '{name}'") from None


def check_format(f, path, want):
    got = text(attr(f, path, "format"))
    if got != want:
        raise FormatError(f"{path}: format is '{got}', not '{want}'")
