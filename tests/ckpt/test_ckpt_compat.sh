#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Files written by an earlier build still work, what users with runs under
# way and models in registries rely on when they upgrade. The fixtures in
# tests/ckpt/data were written by slurm-dml at commit 0b1617f (checkpoint
# format version 2, before the training state had one owner):
#   dml-data synth --samples 256 --shape 1x6x6 --classes 4 --seed 3 --out d
#   mpirun -np 2 dml-train --train d --model 'conv2d(4,3),batchnorm,relu,flatten,dense(4)' \
#       --optimizer adamw --batch 8 --epochs 1 --checkpoint-dir ck --checkpoint-every 6 \
#       --seed 5 --output m.h5 --log-every 0
# prev-ckpt-000000006.h5 (mid-epoch: the loader's cursor, AdamW's moments,
# batch normalisation's buffers, 2 ranks), prev-ckpt-000000016.h5 (the same
# run's end) and prev-model.h5 (its --output).
#  - the old checkpoint verifies, and a resume from it on 2 ranks and on 1
#    rank runs to the end; on 2 ranks its weights come out as the old run's
#    own end (to rounding: the BLAS kernel may differ from the one that wrote
#    the fixture), which holds only if every part of the state was read back
#    and applied;
#  - the old model file loads for inference, hashes in the registry and
#    equals what dml-ckpt export makes of the old end checkpoint.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
fx=$abs_top_srcdir/tests/ckpt/data
make_work ckpt-compat
run() { local n=$1; shift; timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$train" "$@"; }

"$data" synth --samples 256 --shape 1x6x6 --classes 4 --seed 3 --out "$work/d" >/dev/null
hash=$("$data" inspect --json "$work/d" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["content_hash"])')
[ "$hash" = 525472b5c1ec98ca ] ||
    fail "dml-data synth no longer makes the fixtures' dataset (content hash $hash, was 525472b5c1ec98ca): regenerate tests/ckpt/data as its header says"
common=(--train "$work/d" --model 'conv2d(4,3),batchnorm,relu,flatten,dense(4)' --optimizer adamw
    --batch 8 --epochs 1 --seed 5 --log-every 0)

"$ckpt" verify "$fx/prev-ckpt-000000006.h5" >"$work/verify.out" 2>&1 ||
    fail "dml-ckpt verify refuses a version 2 checkpoint: $(cat "$work/verify.out")"

# The cursor is in samples: 96 of 256 done at step 6 (2 ranks x 8); on 2
# ranks the epoch ends at step 6 + 160 / 16 = 16, on 1 at 6 + 160 / 8 = 26.
for n in 2 1; do
    end=$((n == 2 ? 16 : 26))
    mkdir "$work/ck$n"
    cp "$fx/prev-ckpt-000000006.h5" "$work/ck$n/ckpt-000000006.h5"
    run "$n" "${common[@]}" --checkpoint-dir "$work/ck$n" --output "$work/m$n.h5" >"$work/run$n.out" 2>&1 ||
        fail "resume of a version 2 checkpoint on $n ranks failed: $(tail -n 5 "$work/run$n.out")"
    grep -q "resumed from .*ckpt-000000006.h5: step 6, epoch 1, saved by 2 ranks, now $n" "$work/run$n.out" ||
        fail "$n ranks did not resume from the old checkpoint: $(head -n 5 "$work/run$n.out")"
    [ -e "$work/ck$n/ckpt-0000000$end.h5" ] || fail "$n ranks: no checkpoint at step $end: $(ls "$work/ck$n")"
done
echo "ok: a version 2 checkpoint verifies and resumes on 2 ranks and on 1"

# The resumed run's end against the old run's own end: every array of the
# model and the optimiser, to rounding.
/usr/bin/python3 - "$fx/prev-ckpt-000000016.h5" "$work/ck2/ckpt-000000016.h5" <<'PY' || fail "the resumed run's state is not the old run's"
import sys
import h5py
import numpy as np
old, new = (h5py.File(p, "r") for p in sys.argv[1:3])
names = ["model/weights", "model/buffers", "optimizer/state0", "optimizer/state1"]
for n in names:
    a, b = old[n][...], new[n][...]
    if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-5):
        sys.exit("%s: max difference %g over %d values" % (n, float(np.max(np.abs(a - b))), a.size))
# the epoch's loss and accuracy: they hold only if the epoch's running sums
# (epoch_sums) came back with the rest
a, b = old["metrics"][:, :4], new["metrics"][:, :4]
if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-5):
    sys.exit("metrics (epoch, step, loss, accuracy): old run %s, resumed %s" % (a.tolist(), b.tolist()))
for k in ("step", "epoch", "loader_epoch", "loader_cursor", "optimizer_steps", "seed"):
    if old.attrs[k] != new.attrs[k]:
        sys.exit("attribute %s: old run %s, resumed %s" % (k, old.attrs[k], new.attrs[k]))
print("ok: resumed state equals the old run's at step 16 (%s, the epoch's loss and accuracy)" % ", ".join(names))
PY

# ---- the old model file -------------------------------------------------------
"$registry" hash "$fx/prev-model.h5" >"$work/hash.out" 2>&1 ||
    fail "dml-registry hash refuses a model file of the earlier build: $(cat "$work/hash.out")"
timeout 300 "$MPIRUN" --oversubscribe -np 1 "$infer" run --model "$fx/prev-model.h5" --input "$work/d" \
    --out "$work/inf" --task 0 --tasks 1 >"$work/infer.out" 2>&1 ||
    fail "dml-infer with a model file of the earlier build: $(tail -n 5 "$work/infer.out")"
"$ckpt" export "$fx/prev-ckpt-000000016.h5" "$work/exported.h5" >"$work/export.out" 2>&1 ||
    fail "dml-ckpt export of a version 2 checkpoint: $(cat "$work/export.out")"
[ "$("$registry" hash "$work/exported.h5")" = "$(cat "$work/hash.out")" ] ||
    fail "the old end checkpoint exported hashes as $("$registry" hash "$work/exported.h5"), its run's model file as $(cat "$work/hash.out")"
echo "ok: a model file of the earlier build hashes, serves, and equals its checkpoint's export"
echo PASS
