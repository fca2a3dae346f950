# SPDX-License-Identifier: BSD-3-Clause
# lib.sh: sourced first by every shell test (tests/cluster/lib.sh builds on it).
#
#  - strict mode, and a command that fails under set -e says which (in the
#    test's own shell; a subshell's failure is named by the command that ran
#    it), so that no failure is silent;
#  - the tools as built: $train, $data, $infer, $ckpt;
#  - fail MESSAGE; skip_or_fail MESSAGE (skip, but never in CI); at_exit COMMAND (undone at exit, last first, whatever the
#    outcome; $_rc holds the test's exit status); make_work NAME (a fresh
#    $work directory, removed at exit);
#  - mpirun_pids and wait_held: the ranks' PIDs and a hold at a chosen step
#    (dml-train's DML_TEST_HOLD), so that a test signals or kills its own
#    processes at a step it chose, never processes found by name and never
#    in a race with the machine's speed;
#  - need_test_hooks: skip (fail in CI) where the tools have no test hooks;
#  - fuzz_build OUTPUT SOURCES/FLAGS...: a libFuzzer target with ASan and
#    UBSan, or skip where clang's libFuzzer is missing (fail in CI);
#  - json FILE [EXPR]: the tools' JSON read by a standard parser.
set -euo pipefail
set -E
trap 'e=$?; [ "$BASHPID" != "$$" ] || echo "FAIL: ${BASH_SOURCE[0]##*/} line $LINENO: \"$BASH_COMMAND\" exited $e" >&2' ERR

: "${abs_top_builddir:?run this test through make check}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
train=$abs_top_builddir/trainer/dml-train
data=$abs_top_builddir/io/dml-data
infer=$abs_top_builddir/serve-batch/dml-infer
ckpt=$abs_top_builddir/ckpt/dml-ckpt
registry=$abs_top_builddir/registry/dml-registry

fail() { echo "FAIL: $*" >&2; exit 1; }

# json FILE [EXPR]: FILE parsed by Python's standard json module (a *.jsonl
# file line by line), as UTF-8, refusing NaN and Infinity (Python accepts
# them; JSON has neither); a file that does not parse fails naming the file,
# the line and the cause. With EXPR (Python over d: the document, or the
# list of lines), prints its value.
json() {
    /usr/bin/python3 -c '
import json, sys
def refuse(c):
    raise ValueError("%s is not JSON" % c)
path = sys.argv[1]
try:
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            d = []
            for i, l in enumerate(f, 1):
                try:
                    d.append(json.loads(l, parse_constant=refuse))
                except ValueError as e:
                    sys.exit("%s line %d: not JSON: %s" % (path, i, e))
        else:
            d = json.load(f, parse_constant=refuse)
except (OSError, ValueError) as e:
    sys.exit("%s: not JSON: %s" % (path, e))
if len(sys.argv) > 2:
    print(eval(sys.argv[2]))
' "$@"
}

# What a test needs is missing: skip (77) outside CI; in CI (CI set), where
# scripts/install-deps installed everything, an error (99): never skipped there.
skip_or_fail() {
    if [ -n "${CI:-}" ]; then
        echo "ERROR: $1; CI must run this test, not skip it" >&2
        exit 99
    fi
    echo "SKIP: $1" >&2
    exit 77
}

_undo=()
_rc=0
at_exit() { _undo=("$1" ${_undo[@]+"${_undo[@]}"}); }
_at_exit_run() {
    _rc=$? # first: any command before it (local too) would reset $?
    local c
    trap - EXIT
    for c in ${_undo[@]+"${_undo[@]}"}; do
        eval "$c" || true
    done
    exit $_rc
}
trap _at_exit_run EXIT

make_work() { # name
    work=$(mktemp -d "/tmp/dml-$1.XXXXXX")
    at_exit 'rm -rf "$work"'
}

# mpirun -np N PROGRAM ARGS..., each rank writing its PID to PIDDIR/pid.RANK
# first (bounded by 300 s: a hang is a failure).
mpirun_pids() { # n piddir program args...
    local n=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    timeout 300 "${MPIRUN:?}" --oversubscribe -np "$n" bash -c \
        'echo $$ >"$0/pid.$OMPI_COMM_WORLD_RANK" && exec "$@"' "$dir" "$@"
}

# At exit, what a test started in the background and left running: each PID
# given with every process under it (timeout, mpirun), and the ranks whose
# PIDs mpirun_pids wrote in each PIDDIR given. Never processes found by name.
kill_started() { # pid-or-piddir...
    local a f
    _kill_tree() { local c; for c in $(pgrep -P "$1"); do _kill_tree "$c"; done; kill -9 "$1" 2>/dev/null; }
    for a in "$@"; do
        if [ -d "$a" ]; then
            for f in "$a"/pid.*; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
        elif [[ "$a" =~ ^[0-9]+$ ]]; then
            _kill_tree "$a"
        fi
    done
    return 0
}

# Waits until rank 0 holds at its DML_TEST_HOLD step (FILE.held exists);
# fails at once if the run (PID) ended instead.
wait_held() { # file pid what
    local i
    for i in $(seq 1 6000); do
        [ -e "$1.held" ] && return 0
        kill -0 "$2" 2>/dev/null || fail "$3: the run ended before its hold step"
        sleep 0.05
    done
    fail "$3: the run did not reach its hold step in 300 s"
}

# The tools' fault-injection hooks (DML_TEST_HOLD, DML_CKPT_CRASH,
# DML_INFER_CRASH, DML_DATA_CRASH) are built only with configure --enable-test-hooks, as
# scripts/test-all configures.
need_test_hooks() {
    [ "${DML_HAVE_TEST_HOOKS:-no}" = yes ] ||
        skip_or_fail "the tools were built without configure --enable-test-hooks (DML_TEST_HOLD, DML_CKPT_CRASH, DML_INFER_CRASH, DML_DATA_CRASH)"
}

# Builds a libFuzzer target (AddressSanitizer, UBSan; the plugin's and
# common headers) from the sources and flags given, or skips the test where
# clang's libFuzzer is missing (fails in CI, where the packages are installed).
fuzz_build() { # output sources-and-flags...
    local out=$1 cc probe=$abs_top_builddir/tests/fuzz-probe.$$
    shift
    cc=$(command -v clang-14 || command -v clang || true)
    if [ -z "$cc" ] || ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
        "$cc" -x c -fsanitize=fuzzer - -o "$probe" 2>/dev/null; then
        rm -f "$probe"
        skip_or_fail "clang with libFuzzer missing (clang-14 libclang-rt-14-dev)"
    fi
    rm -f "$probe"
    "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$abs_top_builddir" -I"$abs_top_srcdir/common" -I"$abs_top_srcdir/spank-plugin" "$@" -o "$out"
}
