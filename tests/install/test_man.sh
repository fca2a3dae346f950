#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The manual pages in the tree (man/), as `make install` installs them:
#  - every option each tool's --help lists is in its page, and every page
#    formats without a groff warning (check_man.sh);
#  - dml_spank(8) names every user option the plugin registers with Slurm and
#    every plugstack.conf key it accepts (read from the plugin's source, so a
#    new option without its documentation fails here);
#  - dml-train.1 names every key of the effective configuration that
#    dml-train --print-config=json writes (its settings table: a setting
#    added there without its documentation fails here, as an option does
#    through --help).
. "$(dirname "$0")/../lib.sh"
src=$abs_top_srcdir
bash "$src/tests/install/check_man.sh" "$src/man" "$data" "$train" "$ckpt" "$infer" \
    "$abs_top_builddir/spank-plugin/dml-topo" "$abs_top_builddir/jobs/dml-cluster" "$registry" \
    "$src/jobs/dml-pipeline" ||
    fail "a manual page lacks options of its tool's --help, or does not format cleanly"
page=$(sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g' "$src/man/dml_spank.8")
opts=$(sed -n 's/^ *{"\(dml-[a-z-]*\)",.*/\1/p' "$src/spank-plugin/dml_spank.c")
keys=$(grep -o 'strcmp(key, "[a-z_]*")' "$src/spank-plugin/args.c" | sed 's/.*"\(.*\)")/\1/')
[ "$(wc -w <<<"$opts")" -ge 5 ] && [ "$(wc -w <<<"$keys")" -ge 8 ] ||
    fail "could not read the plugin's options ($opts) and keys ($keys) from its source"
for o in $opts; do grep -qF -- "--$o" <<<"$page" || fail "dml_spank.8 lacks the user option --$o"; done
for k in $keys; do grep -qF -- "$k=" <<<"$page" || fail "dml_spank.8 lacks the plugstack key $k="; done
# the keys are looked for in the section that documents them
train_page=$(awk '/^\.SH /{on = /EFFECTIVE CONFIGURATION/} on' "$src/man/dml-train.1" |
    sed -e 's/\\f[BIRP]//g' -e 's/\\-/-/g')
cfg_keys=$("$train" --print-config=json | sed -n 's/^  "\([a-z0-9_]*\)": .*/\1/p')
[ "$(wc -w <<<"$cfg_keys")" -ge 30 ] || fail "could not read dml-train --print-config=json's keys ($cfg_keys)"
for k in $cfg_keys; do
    grep -qw -- "$k" <<<"$train_page" || fail "dml-train.1 (EFFECTIVE CONFIGURATION) lacks the key $k of --print-config=json"
done
echo "ok: 8 tool pages cover their --help; dml_spank.8 covers $(wc -w <<<"$opts") options and $(wc -w <<<"$keys") keys; dml-train.1 covers $(wc -w <<<"$cfg_keys") configuration keys"
