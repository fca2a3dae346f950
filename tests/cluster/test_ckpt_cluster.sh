#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Training that comes back by itself, on the local Slurm cluster, through
# jobs/train.sbatch:
#  (a) scancel --signal=USR1 on a running job -> checkpoint, requeue, resume,
#      finish;
#  (b) a job hitting its time limit checkpoints first (dml-train asks
#      slurmctld for the end time) and, requeued, finishes;
#  (c) node failure: one node's slurmd and every process of the job on it
#      killed, the node marked down -> Slurm requeues the job, it resumes on
#      the two nodes left with fewer ranks and finishes with the accuracy
#      expected;
#  (d) a signal sent to the batch script alone (#SBATCH --signal=B:USR2@90,
#      scancel --batch) is passed on to dml-train: checkpoint, requeue (the
#      log says what the requeue's lines mean), resume in the epoch it
#      stopped in, finish;
#  (e) dml-train --requeue under a job script that does not requeue (no
#      scontrol): dml-train requeues its job through libslurm, it resumes;
#  (f) scancel ends a job for good: train.sbatch's and dml-train --requeue's
#      jobs, cancelled, checkpoint and end CANCELLED, never requeued; as a
#      control, the same SIGTERM to a job that is still RUNNING (what a
#      preemption with GraceTime sends) requeues it.
# Each fault comes at a chosen step: dml-train's DML_TEST_HOLD pauses the
# job's ranks there until the test has sent its signal, waited for the time
# limit to come near or failed the node, so the outcome does not depend on
# how fast the machine trains.
. "$(dirname "$0")/lib.sh"
need_test_hooks
cluster_start 3

work=$CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"
export PATH=$abs_top_builddir/io:$abs_top_builddir/trainer:$PATH
script=$abs_top_srcdir/jobs/train.sbatch
"$abs_top_builddir/io/dml-data" synth --out "$work/ds" --samples 20000 --shape 64 --classes 4 \
    --noise 1.0 --seed 3 --dtype float32 --shards 4 >/dev/null
args=(--train "$work/ds" --test "$work/ds" --model mlp:64-128-4 --batch 32 --lr 0.02 --seed 1
      --log-every 100)

state_of() { squeue -h -t all -j "$1" -o '%T' 2>/dev/null | head -n 1; }
# Waits until the job is done, lifting Slurm's requeue delay (BeginTime about
# two minutes after a requeue) whenever it waits on it. Not at once: slurmd
# revokes the old run's credential, and a restart in the same second is
# refused ("Job credential revoked"), which the delay normally prevents.
wait_done() { # jobid timeout
    local id=$1 deadline=$((SECONDS + $2)) s r since=""
    while [ $SECONDS -lt $deadline ]; do
        s=$(state_of "$id")
        case $s in
            COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED) echo "$s"; return 0 ;;
            PENDING)
                r=$(squeue -h -j "$id" -o '%r')
                if [ "$r" = BeginTime ]; then
                    [ -n "$since" ] || since=$SECONDS
                    if [ $((SECONDS - since)) -ge 3 ]; then
                        scontrol update jobid="$id" StartTime=now >/dev/null 2>&1 || true
                        since=""
                    fi
                fi ;;
            *) since="" ;;
        esac
        sleep 0.5
    done
    fail_job "job $id not done after $2 s (state $(state_of "$id"), reason $(squeue -h -j "$id" -o '%r' 2>&1))"
}
fail_job() { fail_logs "$1" ${out:+"$out"}; } # $out: the job's output file
wait_for() { # file pattern timeout
    local deadline=$((SECONDS + $3))
    until grep -q -- "$2" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail_job "'$2' did not appear in $1 in $3 s"
        sleep 0.3
    done
}
wait_file() { # file timeout what
    local deadline=$((SECONDS + $2))
    until [ -e "$1" ]; do
        [ $SECONDS -lt $deadline ] || fail_job "$3: $1 did not appear in $2 s"
        sleep 0.2
    done
}
final_accuracy() { grep -o 'test loss [0-9.]* acc [0-9.]*' "$1" | tail -n 1 | awk '{print $5}'; }
# A job script that leaves the requeue to dml-train --requeue (no scontrol).
printf '%s\n' '#!/bin/bash' '#SBATCH --requeue' '#SBATCH --open-mode=append' '#SBATCH --output=plain-%j.out' \
    'echo "plain.sbatch: start ${SLURM_RESTART_COUNT:-0}"' 'exec srun --mpi=pmix dml-train "$@" --requeue' \
    >"$work/plain.sbatch"

only=${DML_TEST_ONLY:-abcdef} # for working on one part: DML_TEST_ONLY=c

# ---- (a) a signal: checkpoint, requeue, resume, finish ----------------------
if [[ $only == *a* ]]; then
# Held at step 300 (epoch 1 of 3); USR1 sent and seen by rank 0; released:
# the checkpoint is step 300's.
touch "$work/hold-a"
id=$(DML_TEST_HOLD="300:$work/hold-a" sbatch --parsable -N2 --ntasks-per-node=1 "$script" "${args[@]}" \
    --epochs 3 --checkpoint-dir "$work/ck-a" --output "$work/model-a.h5") || fail "sbatch refused train.sbatch"
out=dml-train-$id.out
wait_file "$work/hold-a.held" 120 "(a) job $id holding at step 300"
scancel --signal=USR1 "$id"
wait_file "$work/hold-a.stop" 60 "(a) USR1 reaching rank 0 of job $id"
rm "$work/hold-a"
state=$(wait_done "$id" 300)
[ "$state" = COMPLETED ] || fail_job "(a) job $id ended $state"
grep -q "checkpoint at step 300 (stop requested (signal))" "$out" || fail_job "(a) no checkpoint at step 300 on USR1"
grep -q "requeueing job $id" "$out" || fail_job "(a) the script did not requeue the job"
grep -q "job $id start 1 " "$out" || fail_job "(a) no second start of the job"
grep -q "resumed from $work/ck-a/ckpt-000000300.h5: .*saved by 2 ranks, now 2" "$out" || fail_job "(a) no resume from step 300"
grep -q "epoch 3 step" "$out" && [ -s "$work/model-a.h5" ] || fail_job "(a) training did not finish"
[ "$(job_field "$id" Restarts)" -ge 1 ] || fail_job "(a) Slurm counts no restart"
echo "ok (a): USR1 at step 300 -> checkpoint -> requeue -> resumed -> finished"
fi

# ---- (b) the time limit: dml-train stops in time by itself ------------------
if [[ $only == *b* ]]; then
# A one-minute job with 50 s of margin. Its first start is held at step 100
# until the end time is less than the margin away: dml-train must then
# checkpoint at that step by itself, and the requeued job finish.
touch "$work/hold-b"
id=$(DML_TEST_HOLD="100:$work/hold-b" sbatch --parsable -N2 --ntasks-per-node=1 --time=1 "$script" "${args[@]}" \
    --epochs 3 --log-every 0 --time-margin 50 --checkpoint-dir "$work/ck-b" --output "$work/model-b.h5") || fail "sbatch refused"
out=dml-train-$id.out
wait_file "$work/hold-b.held" 120 "(b) job $id holding at step 100"
end=$(date -d "$(job_field "$id" EndTime)" +%s) || fail_job "(b) no end time for job $id"
while [ "$(date +%s)" -lt $((end - 49)) ]; do sleep 0.5; done
rm "$work/hold-b"
state=$(wait_done "$id" 420)
[ "$state" = COMPLETED ] || fail_job "(b) job $id ended $state"
grep -q "job $id ends in [0-9]* s: checkpoint and stop 50 s before" "$out" || fail_job "(b) the end time was not asked of slurmctld"
grep -q "checkpoint at step 100 (time limit near)" "$out" || fail_job "(b) no checkpoint at step 100 before the time limit"
grep -q "resumed from $work/ck-b/ckpt-000000100.h5" "$out" || fail_job "(b) no resume from step 100 after the requeue"
grep -q "epoch 3 step" "$out" && [ -s "$work/model-b.h5" ] || fail_job "(b) training did not finish"
! grep -q "DUE TO TIME LIMIT" "$out" || fail_job "(b) Slurm killed the job at its limit"
echo "ok (b): time limit near -> checkpoint at step 100 -> requeue -> resumed -> finished ($(grep -c "train.sbatch: job $id start" "$out") starts)"
fi

# ---- (c) a node fails mid-training --------------------------------------------
if [[ $only == *c* ]]; then
# A node range, and no task count: srun then runs one task per node of
# whatever the job gets (three now, two after the failure). The node fails
# while the ranks are held at step 250, after the checkpoint of step 200.
touch "$work/hold-c"
id=$(DML_TEST_HOLD="250:$work/hold-c" sbatch --parsable -N2-3 "$script" "${args[@]}" --epochs 10 --log-every 0 \
    --checkpoint-every 200 --checkpoint-dir "$work/ck-c" --output "$work/model-c.h5") || fail "sbatch refused"
out=dml-train-$id.out
wait_file "$work/hold-c.held" 180 "(c) job $id holding at step 250"
grep -q "checkpoint at step 200" "$out" || fail_job "(c) no checkpoint at step 200 before step 250"
grep -q "on 3 node(s)" "$out" || fail_job "(c) the job did not start on 3 nodes"
# What a dead node looks like: its slurmd gone, and the job's processes on it
# (the task and its slurmstepd) killed at once; then marked down.
"$DML_CLUSTER" fail-node --dir "$CLUSTER_DIR" n3 >fail-node.out || fail_job "(c) dml-cluster fail-node failed"
grep -q "node n3 failed: slurmd and [1-9][0-9]* job processes killed" fail-node.out ||
    fail_job "(c) no task of job $id was killed on n3: $(cat fail-node.out)"
rm "$work/hold-c"
state=$(wait_done "$id" 420)
[ "$state" = COMPLETED ] || fail_job "(c) job $id ended $state"
grep -q "job $id start 1 on 2 node(s)" "$out" || fail_job "(c) the job did not restart on the 2 nodes left"
grep -q "resumed from $work/ck-c/ckpt-000000200.h5: .*saved by 3 ranks, now 2" "$out" || fail_job "(c) no 3 -> 2 resume from step 200"
acc=$(final_accuracy "$out")
awk -v a="$acc" 'BEGIN { exit !(a >= 0.80) }' || fail_job "(c) final test accuracy $acc, expected >= 0.80"
[ -s "$work/model-c.h5" ] || fail_job "(c) no model written"
echo "ok (c): node n3 failed at step 250 -> requeued -> resumed from step 200 on 2 nodes -> test accuracy $acc"
"$DML_CLUSTER" revive-node --dir "$CLUSTER_DIR" n3 >revive.out 2>&1 || fail "(c) revive-node failed: $(cat revive.out)"
grep -qx "dml-cluster: node n3 back: idle" revive.out || fail "(c) n3 not idle after revive-node: $(cat revive.out)"
fi
# ---- (d) a signal to the batch script alone -------------------------------------
if [[ $only == *d* ]]; then
touch "$work/hold-d"
id=$(DML_TEST_HOLD="300:$work/hold-d" sbatch --parsable -N2 --ntasks-per-node=1 "$script" "${args[@]}" \
    --epochs 3 --checkpoint-dir "$work/ck-d" --output "$work/model-d.h5") || fail "sbatch refused train.sbatch"
out=dml-train-$id.out
wait_file "$work/hold-d.held" 120 "(d) job $id holding at step 300"
scancel --batch --signal=USR2 "$id"
wait_file "$work/hold-d.stop" 60 "(d) USR2 passed on to dml-train of job $id"
rm "$work/hold-d"
state=$(wait_done "$id" 300)
[ "$state" = COMPLETED ] || fail_job "(d) job $id ended $state"
grep -q "train.sbatch: SIGUSR2 came to the batch script: passing it on to dml-train" "$out" ||
    fail_job "(d) the batch script did not pass USR2 on"
grep -q "checkpoint at step 300 (stop requested (signal))" "$out" || fail_job "(d) no checkpoint at step 300"
grep -q "train.sbatch: dml-train stopped after a checkpoint (exit 75; srun reports it as 'error: ... Exited with exit code 75'); requeueing job $id. Slurm ends this start as 'CANCELLED ... DUE TO JOB REQUEUE' and starts the job again after its requeue delay" "$out" ||
    fail_job "(d) the log does not explain the requeue"
stop=$(grep -o 'stopped at step 300 (epoch [0-9]*)' "$out" | sed 's/.*(epoch \([0-9]*\))/\1/')
again=$(grep -o "resumed from $work/ck-d/ckpt-000000300.h5: step 300, epoch [0-9]*" "$out" | sed 's/.*epoch //')
[ -n "$stop" ] && [ "$stop" = "$again" ] || fail_job "(d) stopped in epoch '$stop', resumed in epoch '$again'"
grep -q "epoch 3 step" "$out" && [ -s "$work/model-d.h5" ] || fail_job "(d) training did not finish"
echo "ok (d): USR2 to the batch script -> passed on -> checkpoint at step 300 (epoch $stop) -> requeue -> resumed in epoch $again -> finished"
fi

# ---- (e) dml-train --requeue, no scontrol -------------------------------------------
if [[ $only == *e* ]]; then
touch "$work/hold-e"
id=$(DML_TEST_HOLD="300:$work/hold-e" sbatch --parsable -N2 --ntasks-per-node=1 "$work/plain.sbatch" "${args[@]}" \
    --epochs 3 --checkpoint-dir "$work/ck-e" --output "$work/model-e.h5") || fail "sbatch refused plain.sbatch"
out=plain-$id.out
wait_file "$work/hold-e.held" 120 "(e) job $id holding at step 300"
scancel --signal=USR1 "$id"
wait_file "$work/hold-e.stop" 60 "(e) USR1 reaching rank 0 of job $id"
rm "$work/hold-e"
state=$(wait_done "$id" 300)
[ "$state" = COMPLETED ] || fail_job "(e) job $id ended $state"
grep -q "requeued job $id through slurmctld" "$out" || fail_job "(e) dml-train did not requeue its job"
grep -q "plain.sbatch: start 1" "$out" || fail_job "(e) no second start"
grep -q "resumed from $work/ck-e/ckpt-000000300.h5" "$out" && [ -s "$work/model-e.h5" ] ||
    fail_job "(e) did not resume from step 300 and finish"
echo "ok (e): --requeue: dml-train requeued its job through libslurm (no scontrol); resumed from step 300, finished"
fi

# ---- (f) scancel ends the job; a preemption's SIGTERM requeues it ------------------
if [[ $only == *f* ]]; then
# Slurm sends SIGTERM, then SIGKILL KillWait seconds later; give the ranks
# time to checkpoint and say why they end whatever the machine's load, as a
# site's default of 30 s does for real jobs.
sed -i 's/^KillWait=.*/KillWait=120/' "$SLURM_CONF"
scontrol reconfigure >/dev/null || fail "(f) scontrol reconfigure failed"
# A job's state once its processes are gone (PENDING where it was requeued).
settled() { # jobid timeout
    local deadline=$((SECONDS + $2)) s
    while [ $SECONDS -lt $deadline ]; do
        s=$(state_of "$1")
        case $s in RUNNING|COMPLETING|CONFIGURING|"") ;; *) echo "$s"; return 0 ;; esac
        sleep 0.3
    done
    fail_job "job $1 still $(state_of "$1") after $2 s"
}
# Three one-node jobs at once, each held at step 100: f1 (train.sbatch) and
# f2 (dml-train --requeue) cancelled with scancel, f3 (train.sbatch) sent
# SIGTERM while it runs on.
touch "$work/hold-f1" "$work/hold-f2" "$work/hold-f3"
ids=() outs=()
for k in 1 2 3; do
    case $k in 1) s=$script n=2 ;; 2) s=$work/plain.sbatch n=2 ;; 3) s=$script n=1 ;; esac
    ids[k]=$(DML_TEST_HOLD="100:$work/hold-f$k" sbatch --parsable -N1 -n$n "$s" "${args[@]}" \
        --epochs 3 --log-every 0 --checkpoint-dir "$work/ck-f$k") || fail "sbatch refused $s"
    outs[k]=$([ $k = 2 ] && echo plain || echo dml-train)-${ids[k]}.out
done
for k in 1 2 3; do
    out=${outs[k]}
    wait_file "$work/hold-f$k.held" 180 "(f) job ${ids[k]} holding at step 100"
done
scancel "${ids[1]}"
scancel "${ids[2]}"
scancel --signal=TERM "${ids[3]}"
for k in 1 2 3; do
    out=${outs[k]}
    wait_file "$work/hold-f$k.stop" 60 "(f) SIGTERM reaching rank 0 of job ${ids[k]}"
    rm "$work/hold-f$k"
done
for k in 1 2; do
    id=${ids[k]} out=${outs[k]}
    state=$(settled "$id" 180)
    [ "$state" = CANCELLED ] || fail_job "(f) job $id, cancelled with scancel, is $state, expected CANCELLED (not requeued)"
    [ "$(job_field "$id" Restarts)" = 0 ] || fail_job "(f) job $id was restarted after scancel"
    grep -q "checkpoint at step 100 (stop requested (signal))" "$out" || fail_job "(f) job $id: no checkpoint on scancel"
    grep -q "stopped at step 100 (epoch 1) after a checkpoint in $work/ck-f$k; job $id was cancelled (scancel): not requeued, exit 143; to continue, submit it again" "$out" ||
        fail_job "(f) job $id: dml-train does not say that the cancelled job is not requeued"
done
id=${ids[3]} out=${outs[3]}
state=$(settled "$id" 180)
[[ $state == PENDING || $state == REQUEUED ]] && grep -q "requeueing job $id" "$out" ||
    fail_job "(f) job $id, sent SIGTERM while running, is $state, expected requeued (PENDING)"
scancel "$id"
echo "ok (f): scancel -> checkpoint at step 100 -> CANCELLED, not requeued (train.sbatch and --requeue); SIGTERM to a running job -> requeued"
fi
echo PASS
