# SPDX-License-Identifier: BSD-3-Clause
"""Helpers the fixture generators (gen-dgx-h100.py, gen-fixtures.py) share:
hwloc 2 XML bitmaps and object sets, and the objects' gp_index counter."""

_gp = [0]


def reset():
    """Numbers a new file's objects from 1."""
    _gp[0] = 0


def nid():
    _gp[0] += 1
    return _gp[0]


def bitmap(bits):
    """hwloc's XML bitmap: 32-bit hex words, most significant first."""
    if not bits:
        return "0x0"
    top = max(bits) // 32 + 1
    words = [0] * top
    for b in bits:
        words[b // 32] |= 1 << (b % 32)
    return ",".join("0x%08x" % w for w in reversed(words))


def sets(cpus, nodes):
    c, n = bitmap(cpus), bitmap(nodes)
    return f'cpuset="{c}" complete_cpuset="{c}" nodeset="{n}" complete_nodeset="{n}"'
