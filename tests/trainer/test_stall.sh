#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The stall watchdog of dml-train under mpirun (3 ranks, oversubscribed):
#  - a rank stopped (SIGSTOP) while the others wait in a collective for it is
#    named, with its PID, host and the step it was stopped at (not that of
#    its last heartbeat), by rank 0, and the job ends with exit 75 (requeue:
#    it resumes from its newest checkpoint) instead of spinning for ever;
#  - by default the limit is derived from the run's own step times, at
#    least 60 s: a run of millisecond steps reports a stuck rank after 60 s,
#    not five minutes, and says how it came to that limit;
#  - rank 0 stopped is named by rank 1 (here under a fixed --stall-timeout);
#  - an ordinary run with checkpoints and evaluation, under a derived limit
#    with a low floor, is never taken for a stall.
# The ranks are held at a chosen step (DML_TEST_HOLD) and stopped by the PIDs
# this test started; the outcome does not depend on the machine's speed.
. "$(dirname "$0")/../lib.sh"
need_test_hooks
: "${MPIRUN:?run this test through make check}"
make_work stall-test
# the stopped ranks are this test's own: kill them by the PIDs it recorded
at_exit 'kill -9 $(cat "$work"/p*/pid.* 2>/dev/null) 2>/dev/null || true'

"$data" synth --out "$work/ds" --samples 6000 --shape 32 --classes 4 --noise 0.8 --seed 2 \
    --dtype float32 --shards 4 >/dev/null
common=(--train "$work/ds" --model mlp:32-64-4 --batch 16 --seed 9 --log-every 0)

# stall VICTIM LIMIT-PATTERN [options]: rank VICTIM stopped at step 50, the
# others released; the report ends with the limit as LIMIT-PATTERN says.
stall() {
    local victim=$1 limit=$2 p=$work/p$1 pid rc=0 line
    shift 2
    mkdir -p "$p"
    touch "$p.hold"
    DML_TEST_HOLD="50:$p.hold" mpirun_pids 3 "$p" "$train" "${common[@]}" --epochs 100000 \
        "$@" >"$p.out" 2>&1 &
    pid=$!
    wait_held "$p.hold" $pid "rank $victim to stop"
    kill -STOP "$(cat "$p/pid.$victim")"
    rm "$p.hold"
    wait $pid || rc=$?
    [ $rc -ne 124 ] || fail "rank $victim stopped: the job waited for it until the test's timeout (300 s)"
    [ $rc -eq 75 ] || fail "rank $victim stopped: exit $rc, expected 75: $(cat "$p.out")"
    line=$(grep "error: stalled" "$p.out")
    # a heartbeat may have come while it was held: then it is the one behind
    [[ $line == *"stalled: rank $victim (pid $(cat "$p/pid.$victim") on "*") has not been heard from for "*" s (last at step 50"* ||
       $line == *"stalled: rank $victim (pid $(cat "$p/pid.$victim") on "*") has not arrived where the others wait: no progress for "*" s, at step 50 ("* ]] ||
        fail "rank $victim stopped at step 50: not named with its PID, host and step 50: $(cat "$p.out")"
    echo "$line" | grep -q "$limit" || fail "rank $victim stopped: the report does not give the limit as '$limit': $line"
    [ "$(grep -c 'error: stalled' "$p.out")" -eq 1 ] || fail "the stall was reported more than once: $(cat "$p.out")"
    echo "ok: $(echo "$line" | grep -o 'stalled: rank [0-9]* ([^)]*) has not .*collective'), exit 75"
}
# The default: derived from millisecond steps, so the floor of 60 s (a step
# slower than 6 s on a loaded machine would raise it, never to 300 s).
stall 1 "stall limit \(6[0-9]\|[7-9][0-9]\|[12][0-9][0-9]\) s: 10 x the slowest recent step or checkpoint ([0-9.e-]* s), at least 60 s)"
stall 0 "stall timeout 3 s)" --stall-timeout 3

# No false alarm: checkpoints, evaluation and the end of training, under the
# derived limit with a floor of 30 s.
timeout 300 "$MPIRUN" --oversubscribe -np 3 "$train" "${common[@]}" --test "$work/ds" --epochs 3 \
    --checkpoint-dir "$work/ck" --checkpoint-every 50 --stall-floor 30 >"$work/ok.out" 2>&1 ||
    fail "an ordinary run under --stall-floor 30 failed: $(cat "$work/ok.out")"
! grep -q stalled "$work/ok.out" || fail "an ordinary run was taken for a stall: $(cat "$work/ok.out")"
echo "ok: an ordinary run with checkpoints and evaluation is not taken for a stall"
echo PASS
