#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The GPU halves of nn/test_device and nn/test_gpu_layers: the build's device
# code run on each GPU this process sees, each chosen and described as the
# tools choose them, and the GPU path against the CPU path on the same
# weights. Skipped (77) where no GPU is visible, never passed without one.
"${abs_top_builddir:?}/tests/nn/test_device" --need-gpu || exit
exec "$abs_top_builddir/tests/nn/test_gpu_layers" --need-gpu
