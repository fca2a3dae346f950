#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# A bounded libFuzzer run (20 s) over the plugin's argument parser, built
# with AddressSanitizer and UBSan. Needs clang with libFuzzer (Debian:
# clang-14 libclang-rt-14-dev); skips without it, except in CI.
. "$(dirname "$0")/../lib.sh"
: "${abs_top_srcdir:?}"
out=$abs_top_builddir/tests/spank
fuzz_build "$out/fuzz_args" "$abs_top_srcdir/tests/spank/fuzz_args.c" "$abs_top_srcdir/spank-plugin/args.c"
corpus=$(mktemp -d /tmp/dml-fuzz.XXXXXX)
at_exit 'rm -rf "$corpus"'
cp "$abs_top_srcdir"/tests/spank/fuzz-corpus/* "$corpus/"
cd "$out"
"$out/fuzz_args" -max_total_time=20 -seed=1 -max_len=512 -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo PASS
