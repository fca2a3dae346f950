#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# A bounded libFuzzer run (20 s) over the task mapping on every fixture
# topology (recorded, hand-written and degenerate: a socket without Core
# objects once made the mapping divide by zero), built with AddressSanitizer
# and UBSan. Needs clang with libFuzzer (Debian: clang-14 libclang-rt-14-dev);
# skips without it, except in CI.
. "$(dirname "$0")/../lib.sh"
: "${abs_top_srcdir:?}"
out=$abs_top_builddir/tests/spank
fuzz_build "$out/fuzz_topo" -DTOPO_DIR="\"$abs_top_srcdir/tests/spank/topo-xml\"" \
    "$abs_top_srcdir/tests/spank/fuzz_topo.c" "$abs_top_srcdir/spank-plugin/topo.c" \
    "$abs_top_srcdir/spank-plugin/topo_cache.c" "$abs_top_srcdir/common/status.c" -lhwloc
corpus=$(mktemp -d /tmp/dml-fuzz-topo.XXXXXX)
at_exit 'rm -rf "$corpus"'
# One seed per fixture: 4 tasks, auto GPUs, auto network, then lists.
for f in $(seq 0 10); do
    printf "\\x$(printf %02x "$f")\\x03\\x01\\x00" >"$corpus/seed$f"
    printf "\\x$(printf %02x "$f")\\x07\\x02\\x00""0,1,9\\x00\\x00""0-3\\x00""mlx5_8" >"$corpus/seed$f-lists"
done
cd "$out"
# hwloc keeps process-lifetime allocations; leaks are not this test's subject
ASAN_OPTIONS=detect_leaks=0 "$out/fuzz_topo" -max_total_time=20 -seed=1 -max_len=256 \
    -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
echo PASS
