#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Every layer, and the book's three models, against PyTorch (Debian's
# python3-torch, with h5py): the same weights and inputs give the same
# evaluation probabilities, training loss, gradients, batch normalisation
# running statistics and parameters after one SGD step, to a relative
# difference of 1e-4 (nn_ref writes slurm-dml's, torch_ref.py redoes them).
. "$(dirname "$0")/../lib.sh"
py=/usr/bin/python3
"$py" -c 'import torch, h5py' 2>/dev/null ||
    skip_or_fail "Debian's python3-torch and python3-h5py are not installed (scripts/install-deps)"
make_work torch-ref
ref=$abs_top_builddir/tests/nn/nn_ref
n=0
check() { # spec C H W N
    n=$((n + 1))
    "$ref" "$@" "$work/ref$n.h5" || fail "nn_ref $*"
    "$py" "$abs_top_srcdir/tests/nn/torch_ref.py" "$work/ref$n.h5" || fail "slurm-dml and PyTorch differ for $1 on $2x$3x$4"
}
check "mlp:20-16-3" 20 1 1 6
check "mlp:20-16-8-3:dropout=0.2" 20 1 1 6
check "conv2d(4,3),relu,flatten,dense(3)" 1 6 5 4
check "conv2d(4,3x2,stride=2,padding=1),relu,conv2d(3,3,padding=same),relu,flatten,dense(3)" 2 7 6 4
check "conv2d(3,1),relu,conv2d(2,2,stride=2),flatten,dense(3)" 2 6 6 3
check "conv2d(4,2),maxpool(2),flatten,dense(3)" 1 7 7 4
check "conv2d(4,2),maxpool(3,stride=2),flatten,dense(3)" 1 8 8 4
check "conv2d(4,2),avgpool(2x3,stride=1x2),flatten,dense(3)" 1 7 8 4
check "conv2d(4,3),batchnorm,relu,flatten,dense(8),batchnorm,relu,dense(3)" 2 6 6 5
check "batchnorm(eps=0.001,momentum=0.3),conv2d(2,3),flatten,dense(3)" 2 5 5 5
check "conv2d(4,3),relu,dropout(0.3),flatten,dense(3)" 1 6 6 4
check cnn 1 28 28 8
check cnn-bn 1 28 28 8
check cnn-dropout 1 28 28 8
echo PASS
