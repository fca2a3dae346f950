#!/bin/bash
# A bounded libFuzzer run (20 s) over the plugin's argument parser, built
# with AddressSanitizer and UBSan. Needs clang with libFuzzer (Debian:
# clang-14 libclang-rt-14-dev); skips without it, except in CI.
. "$(dirname "$0")/../lib.sh"
: "${abs_top_srcdir:?}"
cc=$(command -v clang-14 || command -v clang || true)
out=$abs_top_builddir/tests/spank
if [ -z "$cc" ] || ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
    "$cc" -x c -fsanitize=fuzzer - -o "$out/fuzz-probe" 2>/dev/null; then
    rm -f "$out/fuzz-probe"
    [ -z "${CI:-}" ] || { echo "ERROR: clang with libFuzzer missing (clang-14 libclang-rt-14-dev)" >&2; exit 99; }
    echo "SKIP: clang with libFuzzer missing"; exit 77
fi
rm -f "$out/fuzz-probe"
"$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$abs_top_builddir" -I"$abs_top_srcdir/common" -I"$abs_top_srcdir/spank-plugin" \
    "$abs_top_srcdir/tests/spank/fuzz_args.c" "$abs_top_srcdir/spank-plugin/args.c" \
    -o "$out/fuzz_args"
corpus=$(mktemp -d /tmp/dml-fuzz.XXXXXX)
at_exit 'rm -rf "$corpus"'
cp "$abs_top_srcdir"/tests/spank/fuzz-corpus/* "$corpus/"
cd "$out"
"$out/fuzz_args" -max_total_time=20 -seed=1 -max_len=512 -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo PASS
