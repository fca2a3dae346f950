# SPDX-License-Identifier: BSD-3-Clause
"""PyTorch CPU inference of the same MLP, the comparison for dml-infer:
forward (Linear+ReLU ... Linear, softmax, top-k) at the same batch on
in-memory inputs, with the weights of the model file. Prints samples/s.

    python3 infer_torch.py THREADS BATCH SECONDS DIM0 DIM1 ... DIMn

DML_TORCH_DEVICE=cuda runs it on the GPU, the inputs in GPU memory (for
scripts/check-gpu); the clock is read after the GPU has finished.
"""
import os
import sys
import time

import torch

dev = torch.device(os.environ.get("DML_TORCH_DEVICE", "cpu"))


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


threads, batch, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
dims = [int(d) for d in sys.argv[4:]]
torch.set_num_threads(threads)
layers = []
for i in range(len(dims) - 1):
    layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
    if i < len(dims) - 2:
        layers.append(torch.nn.ReLU())
model = torch.nn.Sequential(*layers).eval().to(dev)
x = torch.rand(batch, dims[0], device=dev)
with torch.inference_mode():
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.3:
        torch.topk(torch.softmax(model(x), dim=1), 3)
    sync()
    n, t0 = 0, time.perf_counter()
    while True:
        torch.topk(torch.softmax(model(x), dim=1), 3)
        n += 1
        if n % 50 == 0:
            sync()
        t = time.perf_counter() - t0
        if t >= secs:
            break
    sync()
    t = time.perf_counter() - t0
print("%.1f" % (n * batch / t))
