#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml-train end to end under mpirun (oversubscribed):
#  - a short run on a learnable synthetic dataset reaches 90% test accuracy,
#    writes metrics as JSON lines (read by Python's json) and a model file;
#  - the same seed and world size give bit-identical weights;
#  - 2 ranks x batch 32 train the same model as 1 rank x batch 64;
#  - bad input is refused before training, on every rank, naming the cause
#    (--device cuda where no GPU is seen too; auto trains on the CPU);
#  - a loss that becomes NaN stops training with the step number and leaves
#    an earlier model file untouched;
#  - --print-config prints the effective configuration without MPI: the same
#    settings given as options or in a config file (either key spelling)
#    print the same, its ini form read back as a config file prints itself
#    again, the command line wins over the file, and the JSON has the keys
#    the pipeline records; the ini form means what the settings mean (SGD's
#    printed file read with --optimizer adamw has AdamW's weight decay), and
#    an empty "model =" is unset, not an empty spec.
. "$(dirname "$0")/../lib.sh"
: "${MPIRUN:?run this test through make check}"
make_work train-test
run() { local n=$1; shift; timeout 300 "$MPIRUN" --oversubscribe -np "$n" "$train" "$@"; }

"$data" synth --out "$work/ds" --samples 4000 --shape 20 --classes 4 --noise 0.6 --seed 1 \
    --dtype float32 --shards 3 >/dev/null
common=(--train "$work/ds" --test "$work/ds" --model mlp:20-32-4 --batch 32 --lr 0.05 --seed 5)

# Learns, reports, writes the model.
run 2 "${common[@]}" --epochs 3 --metrics "$work/m.jsonl" --output "$work/a.h5" --log-every 20 \
    >"$work/out.txt" 2>&1 || fail "training failed: $(cat "$work/out.txt")"
cat "$work/out.txt"
# 2 ranks on one node: the gradients are summed in shared memory by default
grep -q "gradients summed by shared memory (one node)" "$work/out.txt" ||
    fail "2 ranks on one node did not default to the shared reduction"
json "$work/m.jsonl" >/dev/null || fail "the metrics are not JSON lines"
[ "$(json "$work/m.jsonl" 'sum(l["type"] == "step" for l in d)')" -ge 1 ] || fail "no step lines in the metrics"
[ "$(json "$work/m.jsonl" 'sum(l["type"] == "epoch" for l in d)')" -eq 3 ] || fail "expected 3 epoch lines in the metrics"
acc=$(json "$work/m.jsonl" '[l for l in d if l["type"] == "epoch"][-1]["test_accuracy"]')
awk -v a="$acc" 'BEGIN { exit !(a >= 0.90) }' || fail "test accuracy $acc after 3 epochs, expected >= 0.90"
h5dump -a format "$work/a.h5" | grep -q '"slurm-dml model"' || fail "no model file format attribute"
h5dump -a model "$work/a.h5" | grep -q '"mlp:20-32-4"' || fail "the model file does not record the spec"
h5dump -H "$work/a.h5" | grep -q 'DATASET "weights"' || fail "no weights in the model file"

# Same seed, same world size: the same weights, bit for bit.
run 2 "${common[@]}" --epochs 3 --output "$work/b.h5" --log-every 0 >/dev/null 2>&1 || fail "rerun failed"
h5diff "$work/a.h5" "$work/b.h5" /weights /weights >/dev/null || fail "two runs with the same seed differ"

# Data parallel: 2 ranks x 32 = 1 rank x 64, up to float rounding.
run 1 --train "$work/ds" --model mlp:20-32-4 --batch 64 --lr 0.05 --seed 5 --epochs 2 \
    --output "$work/one.h5" --log-every 0 >/dev/null 2>&1 || fail "1-rank run failed"
run 2 --train "$work/ds" --model mlp:20-32-4 --batch 32 --lr 0.05 --seed 5 --epochs 2 \
    --output "$work/two.h5" --log-every 0 >/dev/null 2>&1 || fail "2-rank run failed"
# (The values, not h5diff: the weights' crc32 attributes differ, rightly.)
h5dump -d /weights -b LE -o "$work/one.bin" "$work/one.h5" >/dev/null
h5dump -d /weights -b LE -o "$work/two.bin" "$work/two.h5" >/dev/null
maxdiff=$(paste <(od -An -v -f -w4 "$work/one.bin") <(od -An -v -f -w4 "$work/two.bin") |
    awk '{d = $1 - $2; d = d < 0 ? -d : d; if (d > m) m = d} END {printf "%g", m}')
awk -v d="$maxdiff" 'BEGIN { exit !(d <= 1e-4) }' ||
    fail "2 ranks x batch 32 trained other weights than 1 rank x batch 64: largest difference $maxdiff"

# Bad input: refused before training, by every rank with one message.
expect_refusal() { # what... -- args
    local want=$1 out
    shift
    if out=$(run 2 "$@" 2>&1); then fail "accepted: $*"; fi
    grep -q -- "$want" <<<"$out" || fail "unclear refusal of '$*': $out"
    [ "$(grep -c -- "$want" <<<"$out")" -eq 1 ] || fail "message printed more than once: $out"
}
expect_refusal "samples have 20 features, the model's input layer has 19" --train "$work/ds" --model mlp:19-8-4
expect_refusal "the data's labels go up to 3 (4 classes), outside the output layer's 3 units" \
    --train "$work/ds" --model mlp:20-8-3
expect_refusal "--batch '0': expected a whole number from 1 to 1048576" --train "$work/ds" --model mlp:20-8-4 --batch 0
expect_refusal "--lr '-1': expected a number" --train "$work/ds" --model mlp:20-8-4 --lr -1
expect_refusal "--model: model \"mlp:20\"" --train "$work/ds" --model mlp:20
expect_refusal "--grad-reduce 'ring': expected auto, allreduce or shared" --train "$work/ds" \
    --model mlp:20-8-4 --grad-reduce ring
expect_refusal "$work/none: cannot open dataset directory" --train "$work/none" --model mlp:20-8-4

# A configuration file (INI), with the command line winning.
printf '# dml-train settings\n[train]\nmodel = mlp:20-32-4\nepochs = 3\nbatch = 32\nlr = 0.05\nnesterov = true\n' >"$work/c.ini"
run 2 --config "$work/c.ini" --train "$work/ds" --epochs 1 --metrics "$work/c.jsonl" --log-every 0 \
    >"$work/c.out" 2>&1 || fail "training from a config file failed: $(cat "$work/c.out")"
grep -q "training mlp:20-32-4 on .* 2 ranks x batch 32 .* 1 epochs, SGD lr 0.05 .*(Nesterov)" "$work/c.out" ||
    fail "the config file's settings were not used: $(cat "$work/c.out")"
[ "$(grep -c '"type": "epoch"' "$work/c.jsonl")" -eq 1 ] || fail "--epochs 1 did not win over the file's 3"
printf 'model = mlp:20-32-4\nepoch = 1\n' >"$work/bad.ini"
if out=$(run 2 --config "$work/bad.ini" --train "$work/ds" 2>&1); then fail "an unknown config key was accepted"; fi
grep -q "$work/bad.ini:2: unknown key 'epoch'" <<<"$out" || fail "unclear config error: $out"
[ "$(grep -c "unknown key 'epoch'" <<<"$out")" -eq 1 ] || fail "config error printed more than once: $out"
if out=$(run 2 --config "$work/none.ini" --train "$work/ds" --model mlp:20-8-4 2>&1); then
    fail "a missing config file was accepted"
fi
grep -q -- "--config $work/none.ini: cannot open: No such file" <<<"$out" || fail "unclear: $out"

# A loss that becomes NaN stops training; the earlier model file survives.
cp "$work/a.h5" "$work/keep.h5"
if out=$(run 2 --train "$work/ds" --model mlp:20-32-4 --lr 1e30 --epochs 2 --output "$work/keep.h5" \
    --log-every 1 --metrics "$work/nan.jsonl" 2>&1); then
    fail "training with lr 1e30 did not stop"
fi
grep -q "the training loss became .* at step [0-9]* (epoch 1); last good: step" <<<"$out" ||
    fail "no clear NaN message: $out"
cmp -s "$work/a.h5" "$work/keep.h5" || fail "the earlier model file was overwritten"
json "$work/nan.jsonl" >/dev/null || fail "the metrics of a diverging run are not JSON lines"

# --check: options, config and spec checked without MPI or data, nothing written.
printf '[train]\nmodel = cnn-bn\nlr = 0.001\noptimizer = adamw\n' >"$work/ok.ini"
out=$("$train" --check --config "$work/ok.ini" --train "$work/nodata" --output "$work/never.h5" 2>&1) ||
    fail "--check refused a valid config: $out"
grep -q "options and model cnn-bn are valid" <<<"$out" && [ ! -e "$work/never.h5" ] || fail "--check: $out"
for bad in "--model cnnx:unknown layer" "--lr -1:--lr '-1'" "--optimizer adam:sgd or adamw" "--learning-rate 3:unknown option" \
           "--device gpu:expected cpu, cuda, cuda:N or auto" "--device cuda1:--device 'cuda1'"; do
    rc=0
    # shellcheck disable=SC2086 # the option and its value are two words
    out=$("$train" --check --train "$work/nodata" --model cnn ${bad%%:*} 2>&1) || rc=$?
    [ $rc -eq 2 ] && grep -qF -- "${bad#*:}" <<<"$out" || fail "--check with ${bad%%:*}: exit $rc, $out"
done

# --print-config: the effective configuration, without MPI or data.
pc() { "$train" --print-config "$@"; }
out=$(pc) || fail "--print-config without --train and --model: $out"
# momentum and weight decay, not given, are the optimiser's: written empty
grep -qx 'epochs=10' <<<"$out" && grep -qx 'stall_timeout=auto' <<<"$out" && grep -qx 'momentum=' <<<"$out" &&
    grep -qx 'weight_decay=' <<<"$out" || fail "--print-config: not the defaults: $out"
opts=(--train "$work/ds" --model mlp:20-32-4 --optimizer adamw --lr 0.002 --weight-decay 0.05 --nesterov
      --schedule step --step-every 100 --gamma 0.5 --seed 7 --bucket-kb 256 --stall-timeout 90
      --checkpoint-dir "$work/eqck" --requeue --device auto)
printf '[train]\ntrain = %s\nmodel = mlp:20-32-4\noptimizer = adamw\nlr = 0.002\nweight_decay = 0.05\nnesterov = true\nschedule = step\nstep-every = 100\ngamma = 0.5\nseed = 7\nbucket_kb = 256\nstall-timeout = 90\ncheckpoint_dir = %s\nrequeue = yes\ndevice = auto\n' \
    "$work/ds" "$work/eqck" >"$work/eq.ini"
for form in ini json; do
    a=$("$train" --print-config=$form "${opts[@]}") || fail "--print-config=$form with options: $a"
    b=$("$train" --print-config=$form --config "$work/eq.ini") || fail "--print-config=$form with the file: $b"
    [ "$a" = "$b" ] || fail "the same settings as options and in a config file print differently ($form): $(diff <(echo "$a") <(echo "$b"))"
done
a=$(pc "${opts[@]}")
grep -qx 'weight_decay=0.05' <<<"$a" && grep -qx 'lr=0.002' <<<"$a" && grep -qx 'momentum=' <<<"$a" &&
    grep -qx 'step_every=100' <<<"$a" && grep -qx 'nesterov=1' <<<"$a" || fail "--print-config: $a"
pc "${opts[@]}" >"$work/printed.ini"
b=$(pc --config "$work/printed.ini") || fail "--print-config's own output as --config: $b"
[ "$a" = "$b" ] || fail "--print-config's output read back prints otherwise: $(diff <(echo "$a") <(echo "$b"))"
# the ini form means what the settings mean: SGD's defaults are not written
# as values, so the file read with --optimizer adamw has AdamW's (the JSON
# record shows them settled)
pc --optimizer sgd >"$work/sgd.ini" || fail "--print-config --optimizer sgd failed"
grep -qx 'weight_decay=' "$work/sgd.ini" && grep -qx 'momentum=' "$work/sgd.ini" && grep -qx 'model=' "$work/sgd.ini" ||
    fail "--print-config --optimizer sgd: the optimiser's defaults written as values: $(cat "$work/sgd.ini")"
"$train" --print-config=json --config "$work/sgd.ini" --optimizer adamw >"$work/adamw.json" ||
    fail "SGD's printed ini read back with --optimizer adamw failed"
[ "$(json "$work/adamw.json" 'd["weight_decay"]')" = 0.01 ] && [ "$(json "$work/adamw.json" 'd["momentum"]')" = 0.0 ] &&
    [ "$(json "$work/adamw.json" 'd["model"]')" = None ] ||
    fail "SGD's printed ini read back with --optimizer adamw: not AdamW's defaults: $(cat "$work/adamw.json")"
"$train" --print-config=json --config "$work/sgd.ini" >"$work/sgd.json" &&
    [ "$(json "$work/sgd.json" 'd["momentum"]')" = 0.9 ] && [ "$(json "$work/sgd.json" 'd["weight_decay"]')" = 0.0 ] ||
    fail "SGD's printed ini read back: not SGD's defaults: $(cat "$work/sgd.json")"
# "model =" is unset, not an empty spec: the command line's model is used
printf '[train]\nmodel =\nlr = 0.05\n' >"$work/nomodel.ini"
out=$("$train" --check --config "$work/nomodel.ini" --train "$work/nodata" --model mlp:20-8-4 2>&1) ||
    fail "model = (empty) in a config file with --model: $out"
grep -q "options and model mlp:20-8-4 are valid" <<<"$out" || fail "model = (empty) with --model: $out"
rc=0; out=$("$train" --check --config "$work/nomodel.ini" --train "$work/nodata" 2>&1) || rc=$?
[ $rc -eq 2 ] && grep -q -- "--train and --model are required" <<<"$out" ||
    fail "model = (empty) without --model: exit $rc, $out"
b=$(pc --config "$work/eq.ini" --lr 0.1 --seed 9)
grep -qx 'lr=0.1' <<<"$b" && grep -qx 'seed=9' <<<"$b" && grep -qx 'gamma=0.5' <<<"$b" ||
    fail "--print-config: the command line did not win over the file: $b"
pc --train "$work/ds" --model mlp:20-32-4 --lr 0.02 --print-config=json >"$work/eff.json" ||
    fail "--print-config=json failed"
[ "$(json "$work/eff.json" 'd["lr"]')" = 0.02 ] && [ "$(json "$work/eff.json" 'd["stall_timeout"]')" = auto ] &&
    [ "$(json "$work/eff.json" 'd["test"]')" = None ] && [ "$(json "$work/eff.json" 'd["nesterov"]')" = False ] &&
    [ "$(json "$work/eff.json" 'd["model"]')" = mlp:20-32-4 ] && [ "$(json "$work/eff.json" 'd["beta2"]')" = 0.999 ] ||
    fail "--print-config=json: $(cat "$work/eff.json")"
rc=0; out=$("$train" --print-config=yaml 2>&1) || rc=$?
[ $rc -eq 2 ] && grep -q -- "--print-config 'yaml': expected ini or json" <<<"$out" || fail "--print-config=yaml: exit $rc, $out"
printf 'model = mlp:20-32-4\nlr = fast\n' >"$work/badlr.ini"
rc=0; out=$("$train" --check --config "$work/badlr.ini" --train "$work/ds" 2>&1) || rc=$?
[ $rc -eq 2 ] && grep -q "badlr.ini:2: lr = fast: expected a number from 1e-30 to 1e+30" <<<"$out" ||
    fail "a bad value in a config file: exit $rc, $out"
printf 'lr = 0.1\nweight-decay = 0.1\nweight_decay = 0.2\n' >"$work/twice.ini"
rc=0; out=$("$train" --check --config "$work/twice.ini" --train "$work/ds" --model cnn 2>&1) || rc=$?
[ $rc -eq 2 ] && grep -q "twice.ini:3: 'weight_decay' is given twice (first on line 2)" <<<"$out" ||
    fail "a key given twice under its two spellings: exit $rc, $out"

# --device: auto trains on the CPU where no GPU is seen, and says where;
# cuda without a GPU is refused on every rank before anything is written.
# (With a GPU: tests/nn/test_gpu.sh and scripts/check-gpu.)
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    out=$(run 2 "${common[@]}" --epochs 1 --log-every 0 --device auto --output "$work/auto.h5" 2>&1) ||
        fail "--device auto without a GPU: $out"
    grep -q "gradients summed by .*, on the CPU$" <<<"$out" || fail "--device auto: not reported on the CPU: $out"
    rc=0
    out=$(run 2 "${common[@]}" --epochs 1 --device cuda --output "$work/cuda.h5" 2>&1) || rc=$?
    [ $rc -ne 0 ] && [ ! -e "$work/cuda.h5" ] || fail "--device cuda without a GPU: exit $rc, $out"
    grep -qE "device 'cuda': no GPU is visible to this process|built without the GPU path" <<<"$out" ||
        fail "--device cuda without a GPU: no clear message: $out"
    grep -q "training mlp" <<<"$out" && fail "--device cuda without a GPU started training: $out"
fi

# A build with the GPU path on a node without CUDA (CUDA's library directory
# hidden under an empty tmpfs, in a mount namespace of this test's own): the
# GPU code is a module loaded only when a GPU is asked for, so --device cpu
# trains, and --device cuda names the module and the library it lacks.
mod=$abs_top_builddir/nn/.libs/dml_nn_cuda.so
if [ -e "$mod" ]; then
    cublas=$(ldd "$mod" | awk '$1 ~ /^libcublas\.so/ {print $3}')
    cudadir=$(dirname "$(readlink -f "$cublas")")
    [ -n "$cublas" ] && [ "$cudadir" != / ] || fail "ldd does not find the module's cuBLAS: $(ldd "$mod")"
    if [ "$(id -u)" -ne 0 ] || ! unshare -m true 2>/dev/null; then
        skip_or_fail "hiding CUDA needs root and unshare -m (a node without CUDA not checked)"
    fi
    hide() { unshare -m sh -c 'mount -t tmpfs none "$1" && shift && exec "$@"' _ "$cudadir" "$@"; }
    hide test ! -e "$cublas" ||
        fail "CUDA's libraries are still visible in the namespace"
    out=$(hide "$train" "${common[@]}" --epochs 1 --log-every 0 --device cpu --output "$work/nocuda.h5" 2>&1) ||
        fail "--device cpu on a node without CUDA: $out"
    [ -s "$work/nocuda.h5" ] || fail "--device cpu on a node without CUDA wrote no model: $out"
    rc=0
    out=$(hide "$train" "${common[@]}" --epochs 1 --device cuda --output "$work/nocuda2.h5" 2>&1) || rc=$?
    [ $rc -ne 0 ] && [ ! -e "$work/nocuda2.h5" ] &&
        grep -q "the GPU module .*dml_nn_cuda.so cannot be loaded: libcu.*\.so.*: cannot open" <<<"$out" ||
        fail "--device cuda on a node without CUDA: exit $rc, not naming the module and the library: $out"
    echo "a node without CUDA: --device cpu trains; --device cuda: ${out#*error: }"
fi
echo PASS
