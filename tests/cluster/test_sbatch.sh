#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# sbatch and job arrays run to completion on the local cluster, their output
# files hold what the script wrote, and a failing job is reported as failed.
. "$(dirname "$0")/lib.sh"
cluster_start 3

work=$CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"

cat >job.sh <<'JOB'
#!/bin/bash
#SBATCH --job-name=dml-check
#SBATCH --nodes=2
#SBATCH --ntasks=2
echo "batch job $SLURM_JOB_ID on $SLURMD_NODENAME"
srun -l printenv SLURMD_NODENAME | sort
JOB
id=$(sbatch --parsable -o 'job-%j.out' job.sh) || fail "sbatch refused job.sh"
state=$(job_wait "$id")
[ "$state" = COMPLETED ] || fail "job $id ended $state, expected COMPLETED"
[ "$(job_field "$id" ExitCode)" = 0:0 ] || fail "job $id exit code $(job_field "$id" ExitCode)"
out=$(cat "job-$id.out")
echo "$out"
echo "$out" | grep -q "^batch job $id on n[1-3]$" || fail "batch script output missing in job-$id.out"
[ "$(echo "$out" | sed -n 's/^[01]: \(n[1-3]\)$/\1/p' | sort -u | wc -l)" -eq 2 ] ||
    fail "the job's step did not run one task on each of its 2 nodes"

# A 3-task array: one output file per task, named by %A_%a, each its own index.
cat >array.sh <<'JOB'
#!/bin/bash
echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT (array $SLURM_ARRAY_JOB_ID)"
JOB
aid=$(sbatch --parsable --array=0-2 -o 'array-%A_%a.out' array.sh) || fail "sbatch --array refused"
states=$(job_wait "$aid")
[ "$states" = COMPLETED ] || fail "array $aid tasks ended: $states"
for t in 0 1 2; do
    f=array-${aid}_$t.out
    [ -s "$f" ] || fail "array task $t wrote no $f"
    grep -q "^task $t of 3 (array $aid)$" "$f" || fail "$f: unexpected content: $(cat "$f")"
done

# A failing job is FAILED with its exit code, not COMPLETED.
printf '#!/bin/bash\nexit 3\n' >fail.sh
fid=$(sbatch --parsable -o /dev/null fail.sh)
state=$(job_wait "$fid")
[ "$state" = FAILED ] || fail "a script exiting 3 ended $state, expected FAILED"
[ "$(job_field "$fid" ExitCode)" = 3:0 ] || fail "failed job exit code $(job_field "$fid" ExitCode), expected 3:0"
echo "PASS"
