#!/bin/bash
# dml-data against hostile but realistic input, what users rely on:
#  - --force replaces a slurm-dml dataset and nothing else: a directory of
#    other files, a dataset holding a file of the user's, a link: refused,
#    naming it, with everything left as it was;
#  - CSV labels mean one thing: class numbers keep their value (labels 0, 2
#    and 5 make 6 classes, and the empty ones are named in a warning), class
#    names are numbered in byte order; a negative or too large number, a
#    number with a fraction (a feature column taken for the label), numbers
#    and names mixed, a header with a name twice: refused with the line;
#  - a dataset too large for the disk is refused before anything is
#    written; an IDX header whose sizes overflow is named as such;
#  - a write that fails midway leaves no .partial directory behind;
#  - --out may name a directory that does not exist yet.
. "$(dirname "$0")/../lib.sh"
make_work data-hostile
# refused PATTERN args...: exit 1 (or 2 for usage) with PATTERN in the message
refused() {
    local pat=$1 rc=0
    shift
    "$data" "$@" >"$work/out" 2>&1 || rc=$?
    [ $rc -eq 1 ] || fail "exit $rc, expected 1: dml-data $*: $(cat "$work/out")"
    grep -q -- "$pat" "$work/out" || fail "message does not match '$pat': dml-data $*: $(cat "$work/out")"
}
cd "$work"

# ---- --out in a new directory; --force only over a dataset --------------------------
"$data" synth --samples 300 --shard-size 100 --out new/deep/A >/dev/null 2>&1 ||
    fail "--out in directories that do not exist yet failed"
mkdir -p proj/src && echo code >proj/src/main.py
refused "proj: exists and is not a slurm-dml dataset (no dataset index.h5): --force replaces only a dataset" \
    synth --samples 100 --out proj --force
[ "$(cat proj/src/main.py)" = code ] || fail "--force touched proj/src/main.py"
echo "my notes" >new/deep/A/notes.txt
refused "new/deep/A: holds 'notes.txt', which is not part of a slurm-dml dataset" \
    synth --samples 100 --out new/deep/A --force
[ -f new/deep/A/notes.txt ] && "$data" validate new/deep/A >/dev/null 2>&1 || fail "the dataset or the notes were touched"
rm new/deep/A/notes.txt
ln -s new/deep/A link
refused "link: a symbolic link" synth --samples 100 --out link --force
hash=$("$data" inspect new/deep/A | sed -n 's/^content hash: //p')
"$data" synth --samples 200 --seed 5 --out new/deep/A --force >/dev/null 2>&1 || fail "--force over a dataset failed"
[ "$(("$data" inspect new/deep/A | sed -n 's/^content hash: //p'))" != "$hash" ] || fail "--force did not replace the dataset"
! ls new/deep | grep -q partial || fail "a .partial was left: $(ls new/deep)"
echo "ok: --force refuses a project directory, a dataset with a file of the user's, a link; replaces a dataset"

# ---- CSV labels ---------------------------------------------------------------------------
csv() { # name header rows...
    local f=$1.csv
    shift
    printf '%s\n' "$@" >"$f"
}
csv num "a,b,label" "1,2,0" "3,4,2" "5,6,5" "7,8,2"
"$data" convert --csv num.csv --label-column label --out num >/dev/null 2>"$work/warn" || fail "integer labels refused: $(cat "$work/warn")"
grep -q "num.csv: column \"label\" holds class numbers up to 5, and 3 of the 6 classes have no sample (1, 3, 4)" "$work/warn" ||
    fail "no warning naming the empty classes: $(cat "$work/warn")"
[ "$(h5dump -d /y num/shard-00000.h5 | sed -n 's/^ *(0): //p' | tr -d ' ')" = "0,2,5,2" ] ||
    fail "labels did not keep their values: $(h5dump -d /y num/shard-00000.h5)"
"$data" inspect num | grep -q "^classes: *6$" || fail "6 classes expected: $("$data" inspect num)"
csv names "x,kind" "1,dog" "2,Cat" "3,ant" "4,dog"
"$data" convert --csv names.csv --label-column kind --out names >/dev/null 2>&1 || fail "names refused"
[ "$("$data" inspect names | awk '$1 ~ /^[0-9]+$/ {printf "%s=%s ", $1, $2}')" = "0=Cat 1=ant 2=dog " ] ||
    fail "names are not numbered in byte order: $("$data" inspect names)"
csv neg "a,label" "1,0" "2,-1"
refused "neg.csv:3: label -1: class numbers go from 0 to 65535" convert --csv neg.csv --label-column label --out neg
csv big "a,label" "1,0" "2,1000000"
refused "big.csv:3: label 1000000: class numbers go from 0 to 65535" convert --csv big.csv --label-column label --out big
csv flt "price,size" "1.5,2" "2.25,3"
refused "flt.csv:2: label \"1.5\" in column \"price\" is a number but not a whole one" convert --csv flt.csv --label-column price --out flt
csv mix "a,label" "1,0" "2,1" "3,cat"
refused "mix.csv:4: column \"label\" mixes class numbers (\"0\", line 2) and class names (\"cat\", line 4)" \
    convert --csv mix.csv --label-column label --out mix
csv dup "a,b,a,label" "1,2,3,0"
refused "dup.csv:1: column \"a\" appears twice in the header (columns 1 and 3)" convert --csv dup.csv --label-column label --out dup
for d in neg big flt mix dup; do [ ! -e "$d" ] && [ ! -e "$d.partial" ] || fail "$d: something was written"; done
echo "ok: CSV labels: values kept, names in byte order; -1, 1000000, 1.5, mixed kinds, a name twice: refused"

# ---- sizes ------------------------------------------------------------------------------
rc=0; timeout 60 "$data" synth --samples 1000000000000 --out huge >"$work/out" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "huge: the dataset needs about [0-9.e+]* GiB and .* has [0-9.e+]* GiB free" "$work/out" ||
    fail "10^12 samples: exit $rc, $(cat "$work/out")"
[ ! -e huge ] && [ ! -e huge.partial ] || fail "the refused dataset left files"
# IDX: 65536 x 65536 x 65536 bytes, and a size of 0
printf '\x00\x00\x08\x03\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00' >over.idx
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03' >lab.idx
refused "over.idx: IDX header says 65536 x 65536 x 65536 elements, more than the 17179869184 read here" \
    convert --idx-images over.idx --idx-labels lab.idx --out o
printf '\x00\x00\x08\x03\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x1c' >zero.idx
refused "zero.idx: IDX header says dimension 1 is 0: no data" convert --idx-images zero.idx --idx-labels lab.idx --out o
echo "ok: 10^12 samples refused against the free space; IDX sizes that overflow or are 0 named"

# ---- a write that fails midway leaves nothing behind ---------------------------------------
# A file system with room for the bytes but only a few inodes: the third
# shard file cannot be made.
mkdir -p small
if ! mount -t tmpfs -o size=16m,nr_inodes=4 tmpfs small 2>/dev/null; then
    [ -z "${CI:-}" ] || fail "cannot mount a small tmpfs (CI runs as root and must test this)"
    echo "note: not root: the failed-write case is not run"
else
    at_exit 'umount "$work/small" 2>/dev/null || true'
    rc=0; "$data" synth --samples 1000 --shard-size 100 --out small/D >"$work/out" 2>&1 || rc=$?
    [ $rc -eq 1 ] && grep -q "small/D.partial/shard-0000[0-9].h5: cannot create the shard file: No space left on device" "$work/out" ||
        fail "a write that runs out of inodes: exit $rc, $(cat "$work/out")"
    [ -z "$(ls -A small)" ] || fail "the failed write left $(ls -A small)"
    umount small
    echo "ok: a write failing midway (no inode left for the third shard) leaves no .partial"
fi
echo PASS
