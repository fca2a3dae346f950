#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# tests/lib.sh itself, which every shell test stands on: a test that fails
# (fail, a command failing under set -e, in a function or not) exits non-zero
# and says so, its at_exit commands run whatever the outcome (last first), and
# a test that succeeds exits 0. A test library that turned failures into
# passes would make every test meaningless. This script does not source
# lib.sh itself: its own verdict must not go through what it checks.
: "${abs_top_builddir:?run through make check}" "${abs_top_srcdir:?run through make check}"
work=$(mktemp -d /tmp/dml-lib-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
bad() { echo "FAIL: $*" >&2; exit 1; }
child() { # name body: runs a test script sourcing lib.sh; prints its exit status
    mkdir -p "$work/$1/sub"
    printf '. "%s/tests/lib.sh"\n%s\n' "$abs_top_srcdir" "$2" >"$work/$1/sub/t.sh"
    abs_top_builddir=$abs_top_builddir bash "$work/$1/sub/t.sh" >"$work/$1.out" 2>&1
    echo $?
}
[ "$(child fail 'at_exit "echo undo-1"; at_exit "echo undo-2"; fail "on purpose"')" = 1 ] ||
    bad "a test calling fail did not exit 1: $(cat "$work/fail.out")"
grep -q "FAIL: on purpose" "$work/fail.out" || bad "fail did not say why: $(cat "$work/fail.out")"
[ "$(grep -n undo "$work/fail.out" | tr '\n' ' ')" = "2:undo-2 3:undo-1 " ] ||
    bad "at_exit commands did not run last first: $(cat "$work/fail.out")"
[ "$(child func 'f() { false; echo not reached; }; f')" != 0 ] || bad "a failing command in a function passed"
grep -q 'FAIL: t.sh line 2: "false" exited 1' "$work/func.out" ||
    bad "the failing command was not named: $(cat "$work/func.out")"
! grep -q "not reached" "$work/func.out" || bad "set -e did not stop the test"
[ "$(child pipe 'x=$(false | cat)')" != 0 ] || bad "a failing pipeline passed"
[ "$(child ok 'at_exit "echo undone"; true')" = 0 ] || bad "a passing test did not exit 0: $(cat "$work/ok.out")"
grep -q undone "$work/ok.out" || bad "at_exit did not run after a passing test"
echo PASS
