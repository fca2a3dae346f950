#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The Python package (python/slurm_dml) against outside references, with
# Debian's python3-h5py, numpy and python3-torch:
#  - its PyTorch dataset over dml-data's conversion of Fashion-MNIST's test
#    set yields exactly the IDX files' samples and labels (read here from the
#    IDX files themselves), in order, with their positions as ids;
#  - a damaged shard is refused, naming the shard and the CRC-32;
#  - a dml-train model file (cnn-bn and an mlp, trained here for one epoch)
#    loaded into the equivalent PyTorch module reproduces dml-infer's
#    predictions of the test set (top-k probabilities within 1e-5, the same
#    classes).
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
py=/usr/bin/python3
fm=/usr/share/datasets/fashion-mnist
$py -c 'import h5py, numpy, torch' 2>/dev/null || skip_or_fail "$py lacks h5py, numpy or torch (scripts/install-deps)"
[ -f "$fm/t10k-images-idx3-ubyte.gz" ] || skip_or_fail "$fm missing (package dataset-fashion-mnist)"
export PYTHONPATH=$abs_top_srcdir/python${PYTHONPATH:+:$PYTHONPATH}
make_work python
check() { $py "$abs_top_srcdir/tests/python/check_python.py" "$@"; }

"$data" convert --idx-images "$fm/t10k-images-idx3-ubyte.gz" --idx-labels "$fm/t10k-labels-idx1-ubyte.gz" \
    --shard-size 3000 --out "$work/test" >/dev/null || fail "converting the test set failed"
check idx "$work/test" "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" ||
    fail "the PyTorch dataset is not the IDX files' data"

cp -r "$work/test" "$work/bad"
size=$(stat -c %s "$work/bad/shard-00002.h5")
printf '\377' | dd of="$work/bad/shard-00002.h5" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
check damaged "$work/bad" shard-00002.h5 || fail "a damaged shard was not refused clearly"

# (trained on the test set itself: what is checked is agreement, not accuracy)
for model in cnn-bn mlp:784-32-10; do
    m=${model//[:]/-}
    timeout 300 "$MPIRUN" --oversubscribe -np 2 "$train" --train "$work/test" --model "$model" --batch 32 \
        --epochs 1 --seed 4 --log-every 0 --output "$work/$m.h5" >"$work/t.out" 2>&1 ||
        fail "training $model failed: $(cat "$work/t.out")"
    "$infer" run --model "$work/$m.h5" --input "$work/test" --out "$work/inf-$m" --task 0 --tasks 1 \
        >"$work/i.out" 2>&1 && "$infer" merge --out "$work/inf-$m" >/dev/null 2>>"$work/i.out" ||
        fail "dml-infer with $model failed: $(cat "$work/i.out")"
    check infer "$work/$m.h5" "$work/test" "$work/inf-$m" || fail "PyTorch and dml-infer disagree on $model"
done
echo PASS
