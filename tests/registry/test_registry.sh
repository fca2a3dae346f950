#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The model registry (dml-registry) on its own, and dml-infer --model REG:REF:
#  (a) register: the version is the model's hash (dml-registry hash, and the
#      hash dml-infer's report gives the same file); registering it again
#      changes nothing; lineage from the model file and from the options;
#      a checkpoint registers as the model it holds;
#  (b) aliases: set, compare-and-set (--expect) refused without a change
#      when the alias moved, rollback, history; bad names refused;
#  (c) dml-infer --model REG:alias infers with the alias's version; a
#      version whose model file was replaced by another's is refused by
#      every load through the registry (dml-infer --model REG:REF,
#      dml-registry path), naming the version, the file and both hashes; a
#      version's model file from before the model checksum still serves and
#      verifies;
#  (d) damage: a changed model file, a broken version record, a foreign
#      entry and a broken alias are each named by verify (exit 1) while the
#      other versions stay usable; leftovers of a killed registration and a
#      half-written alias are ignored by readers and removed by gc;
#  (e) a registration and an alias update killed with SIGKILL at each
#      system call that changes the registry (strace's fault injection):
#      the registry verifies, the alias names the old version or the new
#      one, and a rerun lands;
#  (f) gc removes only versions no alias names beyond --keep;
#  (g) bad input: a registry in a directory of other files, a missing model,
#      a non-model file, bad --metric: refused, nothing written.
. "$(dirname "$0")/../lib.sh"
make_work registry
cd "$work"
reg=$work/reg
R() { "$registry" --registry "$reg" "$@"; }

"$data" synth --out ds --samples 600 --shape 12 --classes 3 --seed 1 >/dev/null 2>&1 || fail "dml-data synth failed"
for s in 1 2 3 4; do
    "$train" --train ds --model mlp:12-8-3 --epochs 1 --batch 32 --seed "$s" --log-every 0 \
        --output "m$s.h5" >/dev/null 2>&1 || fail "training model $s failed"
done
"$train" --train ds --model mlp:12-8-3 --epochs 1 --batch 32 --seed 9 --log-every 0 --checkpoint-dir ck \
    --checkpoint-every 5 --output m9.h5 >/dev/null 2>&1 || fail "training with checkpoints failed"

# ---- (a) register ------------------------------------------------------------
h1=$("$registry" hash m1.h5) && [[ $h1 =~ ^[0-9a-f]{16}$ ]] || fail "dml-registry hash m1.h5 gave '$h1'"
v1=$(R register m1.h5 --name first --param lr=0.05 --param model=mlp:12-8-3 --metric val_accuracy=0.75 \
    --job 77 2>err) || fail "register m1.h5 failed: $(cat err)"
[ "$v1" = "$h1" ] || fail "register printed $v1, not the model's hash $h1"
v1b=$(R register m1.h5 2>err) || fail "registering m1.h5 again failed"
[ "$v1b" = "$v1" ] && grep -q "registered already" err || fail "registering again did not say it was there: $(cat err)"
[ "$(ls reg/versions | wc -l)" -eq 1 ] || fail "registering again made another version"
R show "$v1" >show.json
[ "$(json show.json 'd["name"], d["params"]["lr"], d["metrics"]["val_accuracy"], d["job"], d["spec"], d["dataset"]["hash"]')" = \
  "('first', '0.05', 0.75, '77', 'mlp:12-8-3', '$("$data" inspect ds | sed -n 's/^content hash: *//p')')" ] ||
    fail "the lineage is not what was registered: $(cat show.json)"
v2=$(R register m2.h5 --name second --metric val_accuracy=0.8)
v3=$(R register m3.h5 --name third)
ck=$(ls ck/ckpt-*.h5 | tail -n 1)
v9=$(R register "$ck" --checkpoint "$ck") || fail "registering a checkpoint failed"
[ "$v9" = "$("$registry" hash m9.h5)" ] || fail "the checkpoint registered as $v9, not as the model it holds ($("$registry" hash m9.h5))"
R list >list.txt
for v in "$v1" "$v2" "$v3" "$v9"; do grep -q "^$v " list.txt || fail "list lacks $v: $(cat list.txt)"; done
[ "$(R list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 4 ] || fail "list --json does not hold 4 versions"
echo "ok: register, idempotent re-registration, lineage, checkpoint, list"

# ---- (b) aliases -------------------------------------------------------------
R alias production "$v1" --expect none >/dev/null || fail "setting a new alias with --expect none failed"
rc=0; R alias production "$v2" --expect none >/dev/null 2>err || rc=$?
[ $rc -eq 4 ] && grep -q "changed meanwhile" err || fail "--expect none on an existing alias: exit $rc, $(cat err)"
rc=0; R alias production "$v2" --expect "$v3" >/dev/null 2>err || rc=$?
[ $rc -eq 4 ] || fail "--expect of another version: exit $rc (want 4)"
[ "$(R path production)" = "$reg/versions/$v1/model.h5" ] || fail "a refused compare-and-set changed the alias"
R alias production "${v2:0:6}" --expect "$v1" --note "better" >/dev/null || fail "compare-and-set by prefix failed"
[ "$(R path production)" = "$reg/versions/$v2/model.h5" ] || fail "production does not name $v2"
back=$(R rollback production) && [ "$back" = "$v1" ] || fail "rollback went to '$back', not $v1"
R alias production >alias.json
[ "$(json alias.json 'len(d["history"]), d["history"][1]["note"].startswith("better"), d["history"][2]["action"], d["version"]')" = \
  "(3, True, 'rollback', '$v1')" ] || fail "the alias history is wrong: $(cat alias.json)"
for bad in "" ".x" "-x" "a/b" "$v1"; do
    rc=0; R alias "$bad" "$v1" >/dev/null 2>err || rc=$?
    [ $rc -ne 0 ] || fail "alias name '$bad' was accepted"
done
rc=0; R alias staging ffffffffffffffff >/dev/null 2>err || rc=$?
[ $rc -eq 1 ] && grep -q "no version or alias 'ffffffffffffffff'" err || fail "an alias to a missing version: exit $rc, $(cat err)"
echo "ok: aliases: compare-and-set refused without change, rollback, history with notes, bad names"

# ---- (c) dml-infer --model REG:alias --------------------------------------------
"$infer" run --model "$reg:production" --input ds --out inf --task 0 --tasks 1 >/dev/null 2>err ||
    fail "dml-infer --model REG:production failed: $(cat err)"
"$infer" merge --out inf >/dev/null 2>&1 || fail "merge failed"
[ "$(json inf/report.json 'd["model"]["hash"]')" = "$v1" ] || fail "dml-infer used $(json inf/report.json 'd["model"]["hash"]'), not production's $v1"
"$infer" run --model "$reg:${v3:0:8}" --input ds --out inf3 --task 0 --tasks 1 >/dev/null 2>&1 &&
    "$infer" merge --out inf3 >/dev/null 2>&1 && [ "$(json inf3/report.json 'd["model"]["hash"]')" = "$v3" ] ||
    fail "dml-infer --model REG:PREFIX did not use $v3"
rc=0; "$infer" run --model "$reg:nosuch" --input ds --out inf4 --task 0 --tasks 1 >/dev/null 2>err || rc=$?
[ $rc -eq 2 ] && grep -q "no version or alias 'nosuch'" err && [ ! -e inf4 ] ||
    fail "dml-infer with a missing alias: exit $rc, $(cat err)"
echo "ok: dml-infer --model REG:alias and REG:prefix use that version; a missing alias is named"
cp -a reg regx
cp m4.h5 "regx/versions/$v1/model.h5"
h4=$("$registry" hash m4.h5)
want="version $v1: its model file regx/versions/$v1/model.h5 has hash $h4, not $v1"
rc=0; "$infer" run --model "regx:production" --input ds --out infx --task 0 --tasks 1 >/dev/null 2>err || rc=$?
[ $rc -eq 1 ] && grep -qF "$want" err && [ ! -e infx ] ||
    fail "dml-infer served a replaced model file as version $v1: exit $rc, $(cat err)"
rc=0; "$registry" --registry regx path "$v1" >/dev/null 2>err || rc=$?
[ $rc -eq 1 ] && grep -qF "$want" err || fail "dml-registry path of a replaced model file: exit $rc, $(cat err)"
rm -rf regx infx
# a model file written before the checksum attribute: the same hash, still served and sound
cp -a reg regold
/usr/bin/python3 -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); del f.attrs["checksum"]; f.close()' \
    "regold/versions/$v1/model.h5" || fail "h5py could not remove the checksum attribute"
"$registry" --registry regold verify >verify.out 2>&1 || fail "a version without a model checksum does not verify: $(cat verify.out)"
"$infer" run --model "regold:$v1" --input ds --out infold --task 0 --tasks 1 >/dev/null 2>err ||
    fail "a version without a model checksum is not served: $(cat err)"
rm -rf regold infold
echo "ok: a replaced model file is refused on every load through the registry; an older model file still serves"

# ---- (d) damage ----------------------------------------------------------------
R verify >verify.out || fail "a sound registry does not verify: $(cat verify.out)"
cp -a reg reg.bak
# a bit of the weights flipped through HDF5 itself: only the model's own checksums see it
"$abs_top_builddir/tests/ckpt/h5poke" "reg/versions/$v2/model.h5" flip /weights >/dev/null ||
    fail "h5poke could not change the model file"
echo '{"format": "slurm-dml registry version", "version": "0000"' >"reg/versions/$v3/version.json"
mkdir reg/versions/notaversion
echo 'nonsense' >reg/aliases/broken.json
mkdir -p reg/tmp/reg-leftover && echo partial >reg/tmp/reg-leftover/model.h5
echo '{"format": "slurm-dml registry alias", "alias": "prod' >reg/aliases/production.json.tmp.12345
rc=0; R verify >verify.out 2>err || rc=$?
[ $rc -eq 1 ] || fail "verify of a damaged registry exited $rc: $(cat verify.out err)"
grep -q "PROBLEM  versions/$v2: " verify.out || fail "verify does not name the changed model $v2: $(cat verify.out)"
grep -q "PROBLEM  versions/$v3: .*version.json" verify.out || fail "verify does not name the broken record of $v3"
grep -q "PROBLEM  versions/notaversion: foreign" verify.out || fail "verify does not name the foreign entry"
grep -q "PROBLEM  aliases/broken.json" verify.out || fail "verify does not name the broken alias"
grep -q "ok       versions/$v1: sound" verify.out && grep -q "ok       aliases/production.json: names $v1" verify.out ||
    fail "verify does not find the sound entries sound: $(cat verify.out)"
[ "$(grep -c PROBLEM verify.out)" -eq 4 ] || fail "verify names other problems than the 4 made: $(cat verify.out)"
[ "$(R path production)" = "$reg/versions/$v1/model.h5" ] || fail "production is not usable beside the damage"
R list >list.txt && grep -q "^$v1 " list.txt && ! grep -q "^$v3 " list.txt || fail "list does not skip the broken record: $(cat list.txt)"
touch -d '2 hours ago' reg/tmp/reg-leftover
R gc --keep 10 >gc.out || fail "gc failed"
[ ! -e reg/tmp/reg-leftover ] || fail "gc left a stale registration leftover"
rm -rf reg && mv reg.bak reg
echo "ok: verify names a changed model, a broken record, a foreign entry and a broken alias; the rest stays usable"

# ---- (e) registrations and alias updates killed at every step ------------------------
# strace kills dml-registry with SIGKILL (what scancel, the OOM killer or a
# lost node do) on entering the k-th call of each system call that changes
# the registry, for every k the uninterrupted run makes: every point of a
# registration and of an alias update, on any machine, with no race against
# the clock. After each: the registry verifies, the version is absent or
# whole, the alias names the old version or the new one; after them all, a
# rerun over their leftovers lands. (LeakSanitizer cannot run under ptrace:
# off for the traced runs.)
command -v strace >/dev/null || skip_or_fail "strace is not installed (run scripts/install-deps)"
"$data" synth --out big --samples 600 --shape 256 --classes 3 --seed 2 >/dev/null 2>&1
"$train" --train big --model mlp:256-512-512-3 --epochs 1 --batch 64 --log-every 0 --output big.h5 >/dev/null 2>&1 ||
    fail "training the larger model failed"
hb=$("$registry" hash big.h5)
calls=mkdir,flock,pwrite64,write,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,rmdir,ftruncate
traced() { # strace-options... -- dml-registry arguments
    local opts=()
    while [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
        "$abs_top_builddir/libtool" --mode=execute strace -qq "${opts[@]}" "$registry" --registry "$reg" "$@"
}
# kill_each NAME CHECK dml-registry-arguments...: the uninterrupted run's calls
# counted, then one run killed at each; CHECK runs after each kill
kill_each() {
    local name=$1 check=$2 sc n k rc total=0
    shift 2
    traced -o "$name.calls" -e trace="$calls" -- "$@" >/dev/null 2>&1 || fail "$name under strace failed"
    eval "$check reset"
    for sc in ${calls//,/ }; do
        n=$(grep -c "^$sc(" "$name.calls" || true)
        for ((k = 1; k <= n; k++)); do
            rc=0
            traced -o /dev/null -e trace="$sc" -e inject="$sc:signal=KILL:when=$k" -- "$@" >/dev/null 2>&1 || rc=$?
            [ $rc -eq 137 ] || fail "$name: not killed on entering $sc call $k of $n (exit $rc)"
            eval "$check \"$sc call $k of $n\""
            total=$((total + 1))
        done
    done
    [ $total -ge 10 ] || fail "$name: only $total kill points ($(cat "$name.calls"))"
    echo "$name killed at each of its $total steps that change the registry"
}
reg_check() { # reset | where-it-was-killed
    if [ "$1" != reset ]; then
        R verify >verify.out 2>&1 || fail "registration killed at $1: the registry does not verify: $(cat verify.out)"
        [ ! -e "reg/versions/$hb" ] || grep -q "ok       versions/$hb: sound" verify.out ||
            fail "registration killed at $1 left version $hb, not whole: $(cat verify.out)"
    fi
    rm -rf "reg/versions/$hb"
}
kill_each register reg_check register big.h5
[ "$(R register big.h5 2>err)" = "$hb" ] && R verify >verify.out 2>&1 ||
    fail "registering again over the killed registrations' leftovers failed: $(cat err verify.out)"
rm -rf "reg/versions/$hb"
alias_check() { # reset | where-it-was-killed
    if [ "$1" != reset ]; then
        R verify >verify.out 2>&1 || fail "alias update killed at $1: the registry does not verify: $(cat verify.out)"
        grep -q "ok       aliases/production.json: names $v2" verify.out ||
            { grep -q "ok       aliases/production.json: names $v1" verify.out && return; } ||
            fail "alias update killed at $1: production names neither the old version nor the new: $(cat verify.out)"
    fi
    R alias production "$v1" >/dev/null 2>&1 || fail "setting production back to $v1 failed"
}
R alias production "$v1" >/dev/null 2>&1
kill_each alias alias_check alias production "$v2"
echo "ok: registrations and alias updates killed by SIGKILL at every step: registry sound, alias old or new, a rerun lands"

# ---- (f) gc --------------------------------------------------------------------
v4=$(R register m4.h5)
R alias staging "$v3" >/dev/null
R gc --keep 1 --dry-run >gc.out
[ "$(ls reg/versions | wc -l)" -eq 5 ] || fail "gc --dry-run removed something"
R gc --keep 1 >gc.out || fail "gc failed: $(cat gc.out)"
for v in "$v1" "$v3" "$v4"; do [ -d "reg/versions/$v" ] || fail "gc removed $v (aliased or newest): $(cat gc.out)"; done
for v in "$v2" "$v9"; do [ ! -e "reg/versions/$v" ] || fail "gc kept $v, which no alias names: $(cat gc.out)"; done
R verify >/dev/null || fail "the registry does not verify after gc"
echo "ok: gc removes what no alias names beyond --keep"

# ---- (g) bad input --------------------------------------------------------------
mkdir other && echo mine >other/notes.txt
rc=0; "$registry" --registry other register m1.h5 >/dev/null 2>err || rc=$?
[ $rc -eq 1 ] && grep -q "holds other files" err && [ "$(ls other)" = notes.txt ] ||
    fail "registering into a directory of other files: exit $rc, $(cat err), $(ls other)"
rc=0; R register nosuch.h5 >/dev/null 2>err || rc=$?
[ $rc -eq 1 ] && grep -q "nosuch.h5" err || fail "a missing model: exit $rc, $(cat err)"
rc=0; R register ds/index.h5 >/dev/null 2>err || rc=$?
[ $rc -eq 1 ] && grep -q "index.h5" err || fail "a dataset file registered as a model: exit $rc, $(cat err)"
rc=0; R register m1.h5 --metric acc=high >/dev/null 2>err || rc=$?
[ $rc -eq 2 ] && grep -q "'high' is not a number" err || fail "--metric acc=high: exit $rc, $(cat err)"
rc=0; "$registry" list >/dev/null 2>err || rc=$?
[ $rc -eq 2 ] && grep -q "no registry" err || fail "no --registry: exit $rc, $(cat err)"
[ "$(ls reg/versions | wc -l)" -eq 3 ] || fail "refused registrations changed the registry"
echo "ok: bad input refused, naming the cause; nothing written"
