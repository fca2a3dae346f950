#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Writes the hand-made node topologies the mapping tests use beside the
recorded ones (hwloc 2 XML):

  amd-mi250x.xml   2 sockets x 8 cores x 2 threads; 2 AMD Instinct GPUs per
                   socket (PCI 1002:740c, class 0380, ROCm SMI OS devices
                   rsmi0-3) and one ConnectX HCA per socket (mlx5_0, mlx5_1),
                   as an AMD GPU node is laid out; no NVIDIA GPU.
  nocores.xml      2 sockets x 4 PUs; socket 0's PUs in Core objects,
                   socket 1's straight under its Package (hwloc reports no
                   cores where the OS gives none); one NVIDIA GPU per socket.
                   A domain with no Core objects must still get its PUs.
  memonly.xml      one socket of 4 cores, and a second NUMA node with memory
                   only (CXL- or HBM-like), with a GPU attached to it.
  cpuonly.xml      one socket of 4 cores and an Ethernet NIC: no GPU, no
                   InfiniBand (a login or CPU node).

Run: python3 gen-fixtures.py (in this directory).
"""

from hwlocxml import bitmap, nid, reset, sets


def header(w, pus, nodes, product):
    c, n = bitmap(pus), bitmap(nodes)
    w('<?xml version="1.0" encoding="UTF-8"?>')
    w('<!DOCTYPE topology SYSTEM "hwloc2.dtd">')
    w('<topology version="2.0">')
    w(f'  <object type="Machine" os_index="0" cpuset="{c}" complete_cpuset="{c}" allowed_cpuset="{c}" '
      f'nodeset="{n}" complete_nodeset="{n}" allowed_nodeset="{n}" gp_index="{nid()}">')
    w(f'    <info name="DMIProductName" value="{product} (hand-written fixture, slurm-dml)"/>')


def nvidia_gpu(w, ind, bus, g):
    w(f'{ind}<object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{bus:02x}:00.0" '
      f'pci_type="0302 [10de:20b0] [10de:1450] a1" pci_link_speed="31.507692">')
    w(f'{ind}  <object type="OSDev" gp_index="{nid()}" name="nvml{g}" subtype="NVML" osdev_type="1">')
    w(f'{ind}    <info name="NVIDIAUUID" value="GPU-00000000-0000-4000-8000-{100 + g:012d}"/>')
    w(f'{ind}  </object>')
    w(f'{ind}</object>')


def bridge_open(w, ind, lo, hi, busid):
    w(f'{ind}<object type="Bridge" gp_index="{nid()}" bridge_type="1-1" depth="1" '
      f'bridge_pci="0000:[{lo:02x}-{hi:02x}]" pci_busid="{busid}" pci_type="0604 [8086:352a] [0000:0000] 04">')


def amd():
    out = []
    w = out.append
    sockets, cores, threads = 2, 8, 2
    npu = sockets * cores * threads
    header(w, list(range(npu)), [0, 1], "AMD GPU node")
    g = 0
    for s in range(sockets):
        ks = list(range(s * cores, (s + 1) * cores))
        pus = sorted(p for k in ks for p in (k, k + sockets * cores))
        w(f'    <object type="Package" os_index="{s}" {sets(pus, [s])} gp_index="{nid()}">')
        w(f'      <object type="NUMANode" os_index="{s}" {sets(pus, [s])} gp_index="{nid()}" local_memory="274877906944"/>')
        for k in ks:
            cp = [k, k + sockets * cores]
            w(f'      <object type="Core" os_index="{k}" {sets(cp, [s])} gp_index="{nid()}">')
            for p in cp:
                w(f'        <object type="PU" os_index="{p}" {sets([p], [s])} gp_index="{nid()}"/>')
            w('      </object>')
        base = 0x10 + s * 0x40
        w(f'      <object type="Bridge" gp_index="{nid()}" bridge_type="0-1" depth="0" bridge_pci="0000:[{base:02x}-{base + 0x3f:02x}]">')
        for j in range(2):
            root = base + 1 + j * 4
            bridge_open(w, '        ', root, root + 1, f'0000:{base:02x}:{j + 1:02x}.0')
            w(f'          <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{root:02x}:00.0" '
              f'pci_type="0380 [1002:740c] [1002:0b0c] 01" pci_link_speed="31.507692">')
            w('            <info name="PCIVendor" value="Advanced Micro Devices, Inc. [AMD/ATI]"/>')
            w('            <info name="PCIDevice" value="Aldebaran/MI200 [Instinct MI250X]"/>')
            w(f'            <object type="OSDev" gp_index="{nid()}" name="rsmi{g}" subtype="RSMI" osdev_type="1">')
            w('              <info name="Backend" value="RSMI"/>')
            w(f'              <info name="AMDUUID" value="{0x1000 + g:x}"/>')
            w('            </object>')
            w('          </object>')
            w('        </object>')
            g += 1
        hroot = base + 0x20
        bridge_open(w, '        ', hroot, hroot, f'0000:{base:02x}:05.0')
        w(f'          <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{hroot:02x}:00.0" '
          f'pci_type="0207 [15b3:101b] [15b3:0007] 00" pci_link_speed="31.507692">')
        w(f'            <object type="OSDev" gp_index="{nid()}" name="ib{s}" osdev_type="2"/>')
        w(f'            <object type="OSDev" gp_index="{nid()}" name="mlx5_{s}" osdev_type="3">')
        w('              <info name="Port1State" value="4"/>')
        close(w, 12, 10, 8, 6, 4)
    close(w, 2)
    w('</topology>')
    return "\n".join(out) + "\n"


def nocores():
    out = []
    w = out.append
    header(w, list(range(8)), [0, 1], "node without core objects on one socket")
    for s in range(2):
        pus = list(range(s * 4, s * 4 + 4))
        w(f'    <object type="Package" os_index="{s}" {sets(pus, [s])} gp_index="{nid()}">')
        w(f'      <object type="NUMANode" os_index="{s}" {sets(pus, [s])} gp_index="{nid()}" local_memory="17179869184"/>')
        for p in pus:
            if s == 0:
                w(f'      <object type="Core" os_index="{p}" {sets([p], [s])} gp_index="{nid()}">')
                w(f'        <object type="PU" os_index="{p}" {sets([p], [s])} gp_index="{nid()}"/>')
                w('      </object>')
            else:
                w(f'      <object type="PU" os_index="{p}" {sets([p], [s])} gp_index="{nid()}"/>')
        base = 0x10 + s * 0x40
        w(f'      <object type="Bridge" gp_index="{nid()}" bridge_type="0-1" depth="0" bridge_pci="0000:[{base:02x}-{base + 0x3f:02x}]">')
        bridge_open(w, '        ', base + 1, base + 1, f'0000:{base:02x}:01.0')
        nvidia_gpu(w, '          ', base + 1, s)
        close(w, 8, 6, 4)
    close(w, 2)
    w('</topology>')
    return "\n".join(out) + "\n"


def close(w, *indents):
    """Closes objects, the innermost first, at the given indents."""
    for ind in indents:
        w(' ' * ind + '</object>')


def one_socket(w, pus, nodes, product, memory_only_node=False):
    """Machine, one Package of single-thread cores and its NUMA node (and a
    memory-only one), and a host bridge with one root port opened: the
    caller writes the device under it and closes with close_socket."""
    header(w, pus, nodes, product)
    w(f'    <object type="Package" os_index="0" {sets(pus, nodes)} gp_index="{nid()}">')
    w(f'      <object type="NUMANode" os_index="0" {sets(pus, [0])} gp_index="{nid()}" local_memory="17179869184"/>')
    if memory_only_node:
        w(f'      <object type="NUMANode" os_index="1" {sets(pus, [1])} gp_index="{nid()}" local_memory="68719476736" subtype="CXL"/>')
    for p in pus:
        w(f'      <object type="Core" os_index="{p}" {sets([p], nodes)} gp_index="{nid()}">')
        w(f'        <object type="PU" os_index="{p}" {sets([p], nodes)} gp_index="{nid()}"/>')
        w('      </object>')
    w(f'      <object type="Bridge" gp_index="{nid()}" bridge_type="0-1" depth="0" bridge_pci="0000:[10-3f]">')
    bridge_open(w, '        ', 0x11, 0x11, '0000:10:01.0')


def close_socket(w):
    close(w, 8, 6, 4, 2)
    w('</topology>')


def memonly():
    out = []
    w = out.append
    one_socket(w, list(range(4)), [0, 1], "node with a memory-only NUMA node", memory_only_node=True)
    nvidia_gpu(w, '          ', 0x11, 0)
    close_socket(w)
    return "\n".join(out) + "\n"


def cpuonly():
    out = []
    w = out.append
    one_socket(w, list(range(4)), [0], "CPU-only node")
    w(f'          <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:11:00.0" '
      f'pci_type="0200 [8086:1563] [15d9:15d9] 01">')
    w(f'            <object type="OSDev" gp_index="{nid()}" name="eth0" osdev_type="2"/>')
    w('          </object>')
    close_socket(w)
    return "\n".join(out) + "\n"


for name, fn in (("amd-mi250x.xml", amd), ("nocores.xml", nocores), ("memonly.xml", memonly),
                 ("cpuonly.xml", cpuonly)):
    reset()
    with open(name, "w") as f:
        f.write(fn())
