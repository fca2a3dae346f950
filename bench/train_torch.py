# SPDX-License-Identifier: BSD-3-Clause
"""PyTorch CPU training of dml-train's benchmark workloads, the comparison for
dml-train: Fashion-MNIST from Debian's IDX files, the same normalisation
(global mean and std of the training images), the same model, a fresh
shuffle every epoch, evaluation on the test set after each epoch. The data
are float tensors in memory. Prints one line: samples/s over the epochs
after the first, and the last test accuracy.

    python3 train_torch.py FM_DIR THREADS BATCH EPOCHS LR [SEED [MODEL]]

MODEL is mlp (the default: mlp:784-512-256-10 with He initialisation, SGD
with momentum 0.9), or one of the book's CNNs with Adam (weight decay 0):
cnn (Conv2d 32 3x3, ReLU, MaxPool 2, Flatten, Linear 64, ReLU, Linear 10),
cnn-bn (BatchNorm2d after the convolution) or cnn-dropout (Dropout 0.5 after
the pooling).

With RANK, WORLD_SIZE and DML_DDP_INIT (a file:// URL) in the environment it
is one process of a DistributedDataParallel run over gloo, PyTorch's own way
to use several cores: BATCH per process, each its share of the same seeded
permutation, gradients averaged by DDP; rank 0 prints the global samples/s.

DML_TORCH_DEVICE=cuda trains on the GPU, the data in GPU memory (for
scripts/check-gpu; one process); the clock is read after the GPU has finished.
"""
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist


def idx(path):
    raw = gzip.open(path + ".gz").read() if os.path.exists(path + ".gz") else open(path, "rb").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def model_of(name):
    if name == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                    torch.nn.ReLU(), torch.nn.Linear(256, 10))
        for m in model:
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)
        return model
    layers = [torch.nn.Conv2d(1, 32, 3)]
    if name == "cnn-bn":
        layers.append(torch.nn.BatchNorm2d(32))
    layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
    if name == "cnn-dropout":
        layers.append(torch.nn.Dropout(0.5))
    layers += [torch.nn.Flatten(), torch.nn.Linear(5408, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)]
    return torch.nn.Sequential(*layers)


d, threads, batch, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lr = float(sys.argv[5])
seed = int(sys.argv[6]) if len(sys.argv) > 6 else 1
name = sys.argv[7] if len(sys.argv) > 7 else "mlp"
shape = (-1, 784) if name == "mlp" else (-1, 1, 28, 28)
torch.set_num_threads(threads)
torch.manual_seed(seed)
xtr = idx(os.path.join(d, "train-images-idx3-ubyte")).reshape(shape).astype(np.float32)
ytr = idx(os.path.join(d, "train-labels-idx1-ubyte")).astype(np.int64)
xte = idx(os.path.join(d, "t10k-images-idx3-ubyte")).reshape(shape).astype(np.float32)
yte = idx(os.path.join(d, "t10k-labels-idx1-ubyte")).astype(np.int64)
mean, std = xtr.mean(), xtr.std()
dev = torch.device(os.environ.get("DML_TORCH_DEVICE", "cpu"))
xtr, xte = torch.from_numpy((xtr - mean) / std).to(dev), torch.from_numpy((xte - mean) / std).to(dev)
ytr, yte = torch.from_numpy(ytr).to(dev), torch.from_numpy(yte).to(dev)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


model = model_of(name).to(dev)
rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
net = model
if world > 1:
    dist.init_process_group("gloo", init_method=os.environ["DML_DDP_INIT"], rank=rank, world_size=world)
    net = torch.nn.parallel.DistributedDataParallel(model)
opt = (torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9) if name == "mlp"
       else torch.optim.Adam(net.parameters(), lr=lr))
loss_fn = torch.nn.CrossEntropyLoss()
n = xtr.shape[0]
times, acc = [], 0.0
for epoch in range(epochs):
    # the same permutation on every rank (same seed), each rank its share
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1000 * seed + epoch))
    share = perm[rank * n // world:(rank + 1) * n // world].to(dev)
    if world > 1:
        dist.barrier()
    sync()
    t0 = time.perf_counter()
    net.train()
    for i in range(0, len(share), batch):
        idx_b = share[i:i + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xtr[idx_b]), ytr[idx_b])
        loss.backward()
        opt.step()
    if world > 1:
        dist.barrier()
    sync()
    times.append(time.perf_counter() - t0)
    model.eval()
    with torch.inference_mode():
        acc = sum((model(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                  for i in range(0, len(yte), 1000)) / len(yte)
t = sum(times[1:]) if len(times) > 1 else times[0]
e = len(times) - 1 if len(times) > 1 else 1
if rank == 0:
    print(f"{n * e / t:.1f} {acc:.4f}")
if world > 1:
    dist.destroy_process_group()
