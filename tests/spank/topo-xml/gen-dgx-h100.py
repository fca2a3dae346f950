#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Writes dgx-h100.xml (and dgx-h100-port-down.xml): an hwloc 2 XML topology of
a DGX H100-class node, written by hand from NVIDIA's published block diagram,
since no public export of such a node exists.

  2 sockets x 56 cores x 2 hardware threads (PU i and i+112 share core i),
  one NUMA node per socket; per socket 4 PCIe switches, each holding one H100
  GPU and the ConnectX-7 compute HCA paired with it (mlx5_0..7, ib0..7); one
  storage/in-band ConnectX-7 per socket on its own root port (mlx5_8 on
  socket 0, mlx5_9 on socket 1); one Ethernet NIC (eno1) on socket 0.

The port-down variant marks mlx5_2's port 1 as DOWN (state 1); the ib-down
variant marks every port DOWN (a node with HCAs and no fabric).
Run: python3 gen-dgx-h100.py (in this directory).
"""

from hwlocxml import bitmap, nid, reset, sets

CORES, THREADS, SOCKETS = 56, 2, 2
NPU = CORES * SOCKETS * THREADS


def pu_of_core(core):
    return [core, core + CORES * SOCKETS]


def gen(port_down, all_down=False):
    out = []
    w = out.append
    allpus = list(range(NPU))
    w('<?xml version="1.0" encoding="UTF-8"?>')
    w('<!DOCTYPE topology SYSTEM "hwloc2.dtd">')
    w('<topology version="2.0">')
    c = bitmap(allpus)
    w(f'  <object type="Machine" os_index="0" cpuset="{c}" complete_cpuset="{c}" allowed_cpuset="{c}" '
      f'nodeset="0x00000003" complete_nodeset="0x00000003" allowed_nodeset="0x00000003" gp_index="{nid()}">')
    w('    <info name="DMIProductName" value="DGX H100 (hand-written fixture, slurm-dml)"/>')
    bus = 0x10
    for s in range(SOCKETS):
        cores = list(range(s * CORES, (s + 1) * CORES))
        pus = sorted(p for k in cores for p in pu_of_core(k))
        w(f'    <object type="Package" os_index="{s}" {sets(pus, [s])} gp_index="{nid()}">')
        w('      <info name="CPUModel" value="Intel(R) Xeon(R) Platinum 8480C"/>')
        w(f'      <object type="NUMANode" os_index="{s}" {sets(pus, [s])} gp_index="{nid()}" local_memory="1082331758592"/>')
        for k in cores:
            cp = pu_of_core(k)
            w(f'      <object type="Core" os_index="{k}" {sets(cp, [s])} gp_index="{nid()}">')
            for p in cp:
                w(f'        <object type="PU" os_index="{p}" {sets([p], [s])} gp_index="{nid()}"/>')
            w('      </object>')
        # host bridge for this socket
        lo = bus
        w(f'      <object type="Bridge" gp_index="{nid()}" bridge_type="0-1" depth="0" bridge_pci="0000:[{lo:02x}-{lo + 0x3f:02x}]">')
        for sw in range(4):
            g = s * 4 + sw
            root = bus + 1 + sw * 8
            w(f'        <object type="Bridge" gp_index="{nid()}" bridge_type="1-1" depth="1" bridge_pci="0000:[{root:02x}-{root + 3:02x}]" '
              f'pci_busid="0000:{lo:02x}:{sw + 1:02x}.0" pci_type="0604 [8086:352a] [0000:0000] 04" pci_link_speed="31.507692">')
            w(f'          <object type="Bridge" gp_index="{nid()}" bridge_type="1-1" depth="2" bridge_pci="0000:[{root + 1:02x}-{root + 3:02x}]" '
              f'pci_busid="0000:{root:02x}:00.0" pci_type="0604 [1000:c030] [0000:0000] 00" pci_link_speed="31.507692">')
            w('            <info name="PCIVendor" value="Broadcom / LSI"/>')
            w('            <info name="PCIDevice" value="PEX890xx PCIe Gen 5 Switch"/>')
            # GPU
            w(f'            <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{root + 2:02x}:00.0" '
              f'pci_type="0302 [10de:2330] [10de:16c1] a1" pci_link_speed="63.015385">')
            w('              <info name="PCIVendor" value="NVIDIA Corporation"/>')
            w('              <info name="PCIDevice" value="GH100 [H100 SXM5 80GB]"/>')
            w(f'              <object type="OSDev" gp_index="{nid()}" name="cuda{g}" subtype="CUDA" osdev_type="5">')
            w('                <info name="Backend" value="CUDA"/>')
            w('              </object>')
            w(f'              <object type="OSDev" gp_index="{nid()}" name="nvml{g}" subtype="NVML" osdev_type="1">')
            w('                <info name="Backend" value="NVML"/>')
            w(f'                <info name="NVIDIAUUID" value="GPU-00000000-0000-4000-8000-{g:012d}"/>')
            w('              </object>')
            w('            </object>')
            # compute HCA
            state = 1 if (port_down and g == 2) or all_down else 4
            w(f'            <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{root + 3:02x}:00.0" '
              f'pci_type="0207 [15b3:1021] [15b3:0041] 00" pci_link_speed="63.015385">')
            w('              <info name="PCIVendor" value="Mellanox Technologies"/>')
            w('              <info name="PCIDevice" value="MT2910 Family [ConnectX-7]"/>')
            w(f'              <object type="OSDev" gp_index="{nid()}" name="ib{g}" osdev_type="2">')
            w('                <info name="Port" value="1"/>')
            w('              </object>')
            w(f'              <object type="OSDev" gp_index="{nid()}" name="mlx5_{g}" osdev_type="3">')
            w(f'                <info name="Port1State" value="{state}"/>')
            w(f'                <info name="Port1LID" value="0x{0x100 + g:x}"/>')
            w('              </object>')
            w('            </object>')
            w('          </object>')
            w('        </object>')
        # storage HCA on its own root port
        sroot = bus + 0x30
        w(f'        <object type="Bridge" gp_index="{nid()}" bridge_type="1-1" depth="1" bridge_pci="0000:[{sroot:02x}-{sroot:02x}]" '
          f'pci_busid="0000:{lo:02x}:06.0" pci_type="0604 [8086:352a] [0000:0000] 04" pci_link_speed="31.507692">')
        w(f'          <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{sroot:02x}:00.0" '
          f'pci_type="0207 [15b3:1021] [15b3:0041] 00" pci_link_speed="31.507692">')
        w('            <info name="PCIDevice" value="MT2910 Family [ConnectX-7] (storage)"/>')
        w(f'            <object type="OSDev" gp_index="{nid()}" name="ib{8 + s}" osdev_type="2"/>')
        w(f'            <object type="OSDev" gp_index="{nid()}" name="mlx5_{8 + s}" osdev_type="3">')
        w('              <info name="Port1State" value="%d"/>' % (1 if all_down else 4))
        w('            </object>')
        w('          </object>')
        w('        </object>')
        if s == 0:
            w(f'        <object type="Bridge" gp_index="{nid()}" bridge_type="1-1" depth="1" bridge_pci="0000:[{sroot + 1:02x}-{sroot + 1:02x}]" '
              f'pci_busid="0000:{lo:02x}:07.0" pci_type="0604 [8086:352a] [0000:0000] 04" pci_link_speed="7.876923">')
            w(f'          <object type="PCIDev" gp_index="{nid()}" pci_busid="0000:{sroot + 1:02x}:00.0" '
              f'pci_type="0200 [8086:1563] [15d9:15d9] 01" pci_link_speed="7.876923">')
            w(f'            <object type="OSDev" gp_index="{nid()}" name="eno1" osdev_type="2"/>')
            w('          </object>')
            w('        </object>')
        w('      </object>')
        w('    </object>')
        bus += 0x80
    w('  </object>')
    w('</topology>')
    return "\n".join(out) + "\n"


for name, down, all_down in (("dgx-h100.xml", False, False), ("dgx-h100-port-down.xml", True, False),
                             ("dgx-h100-ib-down.xml", False, True)):
    reset()
    with open(name, "w") as f:
        f.write(gen(down, all_down))
