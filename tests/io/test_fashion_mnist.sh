#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml-data convert of the real Fashion-MNIST files: 60000 training and 10000
# test samples, labels 0..9 with the published class names, the first image's
# bytes and label identical to the IDX files, and validate passes.
. "$(dirname "$0")/../lib.sh"
fm=/usr/share/datasets/fashion-mnist
if [ ! -r "$fm/train-images-idx3-ubyte.gz" ]; then
    [ -z "${CI:-}" ] || { echo "ERROR: $fm missing (package dataset-fashion-mnist)" >&2; exit 99; }
    echo "SKIP: $fm missing (package dataset-fashion-mnist)"; exit 77
fi
dml_data=$abs_top_builddir/io/dml-data
make_work fmnist-test

"$dml_data" convert --fashion-mnist --out "$work/fm" --shard-size 16000 || fail "convert"
"$dml_data" validate "$work/fm/train" "$work/fm/test" || fail "validate"
tr=$("$dml_data" inspect "$work/fm/train")
te=$("$dml_data" inspect "$work/fm/test")
echo "$tr"
grep -q '^samples: *60000 in 4 shards$' <<<"$tr" || fail "train: not 60000 samples in 4 shards"
grep -q '^samples: *10000 in 1 shards$' <<<"$te" || fail "test: not 10000 samples"
grep -q '^features: *uint8, shape 28x28' <<<"$tr" || fail "train: not uint8 28x28"
grep -q '^classes: *10$' <<<"$tr" || fail "train: not 10 classes"
grep -q '^ *9 Ankle boot  *6000 samples$' <<<"$tr" || fail "class 9 is not 6000 Ankle boots"
[ "$(echo "$tr" | awk '/^ +[0-9] .* samples$/ {s += $(NF-1)} END {print s}')" = 60000 ] ||
    fail "label counts do not add up to 60000"

# The first image and label, byte for byte.
h5dump -d /x -s 0,0,0 -c 1,28,28 -b LE -o "$work/x0.bin" "$work/fm/train/shard-00000.h5" >/dev/null
head -c $((16 + 784)) < <(zcat "$fm/train-images-idx3-ubyte.gz") | tail -c 784 >"$work/idx0.bin"
cmp "$work/x0.bin" "$work/idx0.bin" || fail "first image differs from the IDX file"
lab=$(h5dump -d /y -s 0 -c 1 "$work/fm/train/shard-00000.h5" | sed -n 's/^ *(0): //p' | tr -d ' ')
idxlab=$(head -c 9 < <(zcat "$fm/train-labels-idx1-ubyte.gz") | tail -c 1 | od -An -tu1 | tr -d ' ')
[ "$lab" = "$idxlab" ] || fail "first label $lab, the IDX file says $idxlab"

# A validation split is held out of training, exactly, and reproducibly.
"$dml_data" convert --fashion-mnist --out "$work/fv" --val-fraction 0.1 --seed 3 >/dev/null
grep -q '^samples: *54000 ' <<<"$("$dml_data" inspect "$work/fv/train")" || fail "train after split"
grep -q '^samples: *6000 ' <<<"$("$dml_data" inspect "$work/fv/val")" || fail "val after split"
"$dml_data" convert --fashion-mnist --out "$work/fv2" --val-fraction 0.1 --seed 3 >/dev/null
[ "$("$dml_data" inspect "$work/fv/val" | grep hash)" = "$("$dml_data" inspect "$work/fv2/val" | grep hash)" ] ||
    fail "the same seed gave another validation split"

# Refuses to overwrite; bad options are named.
if msg=$("$dml_data" convert --fashion-mnist --out "$work/fm" 2>&1); then fail "overwrote a dataset"; fi
grep -q "already exists" <<<"$msg" || fail "unclear: $msg"
if msg=$("$dml_data" convert --fashion-mnist --out "$work/x" --shards 0 2>&1); then fail "--shards 0"; fi
grep -q -- "--shards '0'" <<<"$msg" || fail "unclear: $msg"
echo PASS
