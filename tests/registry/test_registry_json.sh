#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml-registry --json and dml-data --json: what scripts (jobs/dml-pipeline)
# read instead of messages meant for people. Each answer is one JSON value
# on stdout that a standard parser reads, with the values the plain form
# gives:
#  (a) dml-registry hash, register (new and again: existed), path (a prefix
#      resolved), alias NAME REF (new: previous null; unchanged: changed
#      false; moved: the previous version), list;
#  (b) dml-data validate (sound, and a dataset that cannot be opened next to
#      it: the exit status is the plain form's, the problem still named on
#      stderr) and inspect (the record equals the plain lines' figures);
#  (c) a path with a quote, a backslash and a tab comes back unchanged;
#  (d) a path that is not UTF-8 (a byte 0xff): register --json answers (the
#      byte as '?') with exit 0 and the version registered once, as do hash
#      and path --json, from a registry whose directory has such a name too.
. "$(dirname "$0")/../lib.sh"
make_work registry_json
cd "$work"
reg=$work/reg

"$data" synth --out ds --samples 120 --shard-size 50 --seed 3 >/dev/null 2>&1 || fail "dml-data synth failed"
for s in 1 2; do
    timeout 300 "$MPIRUN" --oversubscribe -np 1 "$train" --train ds --model mlp:784-8-10 --epochs 1 --seed $s \
        --log-every 0 --output m$s.h5 >t.out 2>&1 || fail "training failed: $(cat t.out)"
done
v1=$("$registry" hash m1.h5) v2=$("$registry" hash m2.h5)
[ "$v1" != "$v2" ] || fail "two seeds gave one model"

# ---- (a) dml-registry ------------------------------------------------------------
"$registry" hash --json m1.h5 >h.json
[ "$(json h.json 'd["model"], d["hash"]')" = "('m1.h5', '$v1')" ] || fail "hash --json: $(cat h.json)"
"$registry" --registry "$reg" register --json m1.h5 --name one >r1.json 2>r1.err
"$registry" --registry "$reg" register --json m1.h5 --name one >r2.json 2>/dev/null
[ "$(json r1.json 'd["version"], d["existed"]')" = "('$v1', False)" ] || fail "register --json: $(cat r1.json)"
[ "$(json r2.json 'd["version"], d["existed"]')" = "('$v1', True)" ] || fail "register --json again: $(cat r2.json)"
grep -q "registered" r1.err || fail "register --json no longer says what it did on stderr"
"$registry" --registry "$reg" register m2.h5 >/dev/null 2>&1
"$registry" --registry "$reg" path --json "${v1:0:6}" >p.json
[ "$(json p.json 'd["ref"], d["version"], d["path"]')" = \
  "('${v1:0:6}', '$v1', '$("$registry" --registry "$reg" path "$v1")')" ] || fail "path --json: $(cat p.json)"
"$registry" --registry "$reg" alias --json prod "$v1" >a1.json 2>/dev/null
"$registry" --registry "$reg" alias --json prod "$v1" >a2.json 2>/dev/null
"$registry" --registry "$reg" alias --json prod "$v2" >a3.json 2>/dev/null
[ "$(json a1.json 'd["alias"], d["version"], d["previous"], d["changed"]')" = "('prod', '$v1', None, True)" ] &&
    [ "$(json a2.json 'd["version"], d["previous"], d["changed"]')" = "('$v1', '$v1', False)" ] &&
    [ "$(json a3.json 'd["version"], d["previous"], d["changed"]')" = "('$v2', '$v1', True)" ] ||
    fail "alias --json: $(cat a1.json a2.json a3.json)"
rc=0; "$registry" --registry "$reg" alias --json prod "$v1" --expect "$v1" >a4.json 2>/dev/null || rc=$?
[ $rc -eq 4 ] && [ ! -s a4.json ] || fail "alias --json with a failed --expect: exit $rc, printed $(cat a4.json)"
"$registry" --registry "$reg" list --json >l.json
[ "$(json l.json 'sorted(v["version"] for v in d)')" = "$(printf "['%s', '%s']" $(printf '%s\n' "$v1" "$v2" | sort))" ] ||
    fail "list --json: $(cat l.json)"
rc=0; "$registry" hash --json nosuch.h5 >n.json 2>/dev/null || rc=$?
[ $rc -eq 1 ] && [ ! -s n.json ] || fail "hash --json of a missing file: exit $rc, printed $(cat n.json)"
echo "ok: (a) dml-registry hash, register, path, alias and list --json"

# ---- (b) dml-data validate and inspect ---------------------------------------------
hash=$("$data" inspect ds | sed -n 's/^content hash: //p')
rc=0; "$data" validate --json ds nosuch >v.json 2>v.err || rc=$?
[ $rc -eq 1 ] || fail "validate --json of a missing dataset: exit $rc"
[ "$(json v.json '[(x["path"], x["sound"]) for x in d["datasets"]], d["datasets"][0]["content_hash"], d["datasets"][0]["samples"], d["datasets"][0]["shards"], d["datasets"][0]["problems"]')" = \
  "([('ds', True), ('nosuch', False)], '$hash', 120, 3, 0)" ] || fail "validate --json: $(cat v.json)"
json v.json 'd["datasets"][1]["error"]' | grep -q "nosuch" && grep -q "nosuch" v.err || fail "validate --json does not name the missing dataset"
"$data" validate --json ds >v1.json && [ "$(json v1.json 'd["datasets"][0]["sound"]')" = True ] || fail "validate --json ds"
"$data" inspect --json ds >i.json
[ "$(json i.json 'd["content_hash"], d["samples"], d["shape"], len(d["shards"]), sum(s["samples"] for s in d["shards"]), sum(c["samples"] for c in d["classes"]), len(d["classes"])')" = \
  "('$hash', 120, [784], 3, 120, 120, 10)" ] || fail "inspect --json: $(cat i.json)"
"$data" inspect ds | grep -q "shard-00000.h5 .* crc32 $(json i.json 'd["shards"][0]["crc32"]')" || fail "inspect --json's crc32 is not the plain form's"
# a damaged shard: not sound, with the problems counted
cp -r ds bad
size=$(stat -c %s bad/shard-00001.h5)
printf '\377' | dd of=bad/shard-00001.h5 bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
rc=0; "$data" validate --json bad >b.json 2>b.err || rc=$?
[ $rc -eq 1 ] && [ "$(json b.json 'd["datasets"][0]["sound"], d["datasets"][0]["problems"] > 0')" = "(False, True)" ] ||
    fail "validate --json of a damaged dataset: exit $rc, $(cat b.json)"
echo "ok: (b) dml-data validate and inspect --json"

# ---- (c) awkward names -----------------------------------------------------------
odd=$'q"b\\t\tx'
cp -r ds "$odd"
"$data" validate --json "$odd" >o.json
/usr/bin/python3 -c 'import json, sys; d = json.load(open("o.json")); assert d["datasets"][0]["path"] == sys.argv[1], d' "$odd" ||
    fail "validate --json garbles a path with a quote, a backslash and a tab: $(cat o.json)"
cp m1.h5 "$odd.h5"
"$registry" hash --json "$odd.h5" >oh.json
/usr/bin/python3 -c 'import json, sys; d = json.load(open("oh.json")); assert d["model"] == sys.argv[1], d' "$odd.h5" ||
    fail "hash --json garbles a path: $(cat oh.json)"
echo "ok: (c) paths with quotes, backslashes and tabs come back unchanged"

# ---- (d) names that are not UTF-8 --------------------------------------------------
bad=$'m\xff1.h5' badreg=$work/$'reg\xff'
cp m1.h5 "$bad"
rc=0; "$registry" --registry "$badreg" register --json "$bad" >u1.json 2>u1.err || rc=$?
[ $rc -eq 0 ] || fail "register --json of a non-UTF-8 path: exit $rc, $(cat u1.err)"
/usr/bin/python3 -c 'import json, sys; d = json.load(open("u1.json")); assert (d["version"], d["model"], d["existed"]) == (sys.argv[1], "m?1.h5", False), d' "$v1" ||
    fail "register --json of a non-UTF-8 path: $(cat u1.json)"
"$registry" --registry "$badreg" list --json >u2.json || fail "list of the registry with a non-UTF-8 name failed"
[ "$(json u2.json '[v["version"] for v in d]')" = "['$v1']" ] || fail "the version is not there exactly once: $(cat u2.json)"
[ "$(ls "$badreg/versions")" = "$v1" ] || fail "versions/ holds $(ls "$badreg/versions")"
rc=0; "$registry" hash --json "$bad" >u3.json || rc=$?
[ $rc -eq 0 ] && [ "$(json u3.json 'd["model"], d["hash"]')" = "('m?1.h5', '$v1')" ] || fail "hash --json of a non-UTF-8 path: exit $rc, $(cat u3.json)"
rc=0; "$registry" --registry "$badreg" path --json "$v1" >u4.json || rc=$?
[ $rc -eq 0 ] && [ "$(json u4.json 'd["version"], d["path"].endswith("/model.h5"), "reg?" in d["path"]')" = "('$v1', True, True)" ] ||
    fail "path --json in a non-UTF-8 directory: exit $rc, $(cat u4.json)"
rc=0; "$registry" --registry "$badreg" alias --json prod "$v1" >u5.json || rc=$?
[ $rc -eq 0 ] && [ "$(json u5.json 'd["alias"], d["version"], d["previous"], d["changed"]')" = "('prod', '$v1', None, True)" ] ||
    fail "alias --json in a non-UTF-8 directory: exit $rc, $(cat u5.json)"
echo "ok: (d) names that are not UTF-8 are answered for, with the byte as '?'"
echo PASS
