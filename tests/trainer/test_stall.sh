#!/bin/bash
# The stall watchdog of dml-train under mpirun (3 ranks, oversubscribed):
#  - a rank stopped (SIGSTOP) while the others wait in a collective for it is
#    named, with its PID, host and last step, by rank 0, and the job ends
#    with exit 75 (requeue: it resumes from its newest checkpoint) instead of
#    spinning for ever;
#  - rank 0 stopped is named by rank 1;
#  - an ordinary run with checkpoints and evaluation, under a short stall
#    timeout, is never taken for a stall.
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

# stall VICTIM: rank VICTIM stopped at step 50, the others released.
stall() {
    local victim=$1 p=$work/p$1 pid rc=0
    mkdir -p "$p"
    touch "$p.hold"
    DML_TEST_HOLD="50:$p.hold" mpirun_pids 3 "$p" "$train" "${common[@]}" --epochs 100000 \
        --stall-timeout 3 >"$p.out" 2>&1 &
    pid=$!
    wait_held "$p.hold" $pid "rank $victim to stop"
    kill -STOP "$(cat "$p/pid.$victim")"
    rm "$p.hold"
    wait $pid || rc=$?
    [ $rc -ne 124 ] || fail "rank $victim stopped: the job waited for it until the test's timeout (300 s)"
    [ $rc -eq 75 ] || fail "rank $victim stopped: exit $rc, expected 75: $(cat "$p.out")"
    grep -q "error: stalled: rank $victim (pid $(cat "$p/pid.$victim") on [^)]*) has not been heard from for [0-9]* s (last at step [0-9]*" "$p.out" ||
        fail "rank $victim stopped: not named with its PID and host: $(cat "$p.out")"
    [ "$(grep -c 'error: stalled' "$p.out")" -eq 1 ] || fail "the stall was reported more than once: $(cat "$p.out")"
    echo "ok: $(grep -o 'stalled: rank [0-9]* ([^)]*) has not been heard from for [0-9]* s' "$p.out"), exit 75"
}
stall 1
stall 0

# No false alarm: checkpoints, evaluation and the end of training, with a
# stall timeout of 10 s.
timeout 300 "$MPIRUN" --oversubscribe -np 3 "$train" "${common[@]}" --test "$work/ds" --epochs 3 \
    --checkpoint-dir "$work/ck" --checkpoint-every 50 --stall-timeout 10 >"$work/ok.out" 2>&1 ||
    fail "an ordinary run under --stall-timeout 10 failed: $(cat "$work/ok.out")"
! grep -q stalled "$work/ok.out" || fail "an ordinary run was taken for a stall: $(cat "$work/ok.out")"
echo "ok: an ordinary run with checkpoints and evaluation is not taken for a stall"
echo PASS
