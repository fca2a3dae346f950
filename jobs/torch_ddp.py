#!/usr/bin/python3
# SPDX-License-Identifier: BSD-3-Clause
"""torch_ddp.py: PyTorch DistributedDataParallel under srun --dml-gpus, with no
glue. The slurm-dml SPANK plugin sets what torch.distributed's env://
rendezvous reads (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT),
each task's GPU (device 0 is its own; the node's other GPUs follow, for
NCCL's NVLink paths) and the network variables of NCCL and Gloo.

    srun --dml-gpus -N2 --ntasks-per-node=4 python3 torch_ddp.py          # NCCL, one GPU per task
    srun --dml-gpus=none --dml-net=tcp -N3 -n3 python3 torch_ddp.py       # Gloo on CPUs

It trains a small network for DDP_STEPS steps (10) on data of each rank's
own, and every rank prints the checksum of its weights: DDP keeps them the
same on every rank.

Use Debian's PyTorch (/usr/bin/python3, package python3-torch) or your own.
"""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def main():
    cuda = torch.cuda.is_available()
    dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    # The plugin lists each task's own GPU first: device 0, whatever the
    # local rank (not cuda:LOCAL_RANK, which would be another task's GPU).
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")

    torch.manual_seed(0)  # DDP broadcasts rank 0's weights anyway
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, 4)).to(device)
    ddp = DDP(model, device_ids=[0] if cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own samples
    for _ in range(int(os.environ.get("DDP_STEPS", "10"))):
        x = torch.randn(64, 16, generator=data)
        y = x[:, :4].argmax(dim=1)
        loss = torch.nn.functional.cross_entropy(ddp(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()

    weights = torch.cat([p.detach().flatten().cpu() for p in model.parameters()])
    print(f"rank {rank} of {world} (local rank {os.environ.get('LOCAL_RANK')}, "
          f"{'cuda' if cuda else 'cpu'}, rendezvous {os.environ['MASTER_ADDR']}:"
          f"{os.environ['MASTER_PORT']}): loss {loss.item():.4f}, weights checksum "
          f"{weights.double().sum().item():.12f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
