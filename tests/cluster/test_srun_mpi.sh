#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# srun --mpi=pmix runs one MPI job across three slurmd: each rank lands on its
# own node, the allreduce is right on every rank, and a failing rank makes srun
# fail. slurm-dml's MPI tools started by srun without PMIx say in one line
# what to do, instead of Open MPI's page of PMI errors.
. "$(dirname "$0")/lib.sh"
cluster_start 3

prog=$abs_top_builddir/tests/cluster/mpi_allreduce
# The timeouts only catch a stuck step: generous, since test-all may run
# another suite's cluster beside this one on two cores (a 4-rank MPI start
# took over 120 s there once).
out=$(timeout 600 srun --mpi=pmix -N3 -n3 "$prog") || fail "srun --mpi=pmix exited $?: $out"
echo "$out"
[ "$(echo "$out" | grep -c ': allreduce of 4096 doubles ok$')" -eq 3 ] ||
    fail "expected 3 ranks reporting a correct allreduce"
for r in 0 1 2; do
    echo "$out" | grep -q "^rank $r of 3 on n$((r + 1)):" || fail "rank $r did not run on node n$((r + 1))"
done

# Two ranks per node over two nodes: shared memory within, the network between.
# Which two nodes Slurm picks is its business (a node still completing the last
# step is passed over), so the check is on the shape, not on names.
out=$(timeout 600 srun --mpi=pmix -N2 --ntasks-per-node=2 "$prog") ||
    fail "srun -N2 --ntasks-per-node=2 exited $?: $out"
[ "$(echo "$out" | grep -c ' of 4 on n[123]: allreduce of 4096 doubles ok$')" -eq 4 ] ||
    fail "expected 4 ranks reporting a correct allreduce: $out"
per_node=$(echo "$out" | sed -n 's/^rank [0-9]* of 4 on \(n[0-9]*\):.*/\1/p' | sort | uniq -c |
    awk '{print $1}' | tr '\n' ' ')
[ "$per_node" = "2 2 " ] || fail "expected 2 ranks on each of 2 nodes, got counts '$per_node': $out"

# A task that fails must fail the step, or users' job scripts cannot tell.
if timeout 300 srun -N3 -n3 bash -c '[ "$SLURM_PROCID" != 1 ] || exit 7' 2>/dev/null; then
    fail "srun returned 0 although task 1 exited 7"
fi
# srun without PMIx: one line saying what to do, exit 2, in every tool.
for tool in "io/dml-data synth --samples 10 --out $CLUSTER_DIR/x" "trainer/dml-train --train x --model mlp:2-2" \
            "serve-batch/dml-infer run --model m --input x --out $CLUSTER_DIR/y --task 0 --tasks 1"; do
    set -- $tool
    rc=0
    timeout 300 srun --quiet --mpi=none -N1 -n1 "$abs_top_builddir/$@" >"$CLUSTER_DIR/nopmix.out" 2>&1 || rc=$?
    grep -q "error: started by srun without PMIx, which MPI needs: run \`srun --mpi=pmix" "$CLUSTER_DIR/nopmix.out" ||
        fail "$1 under srun --mpi=none: $(cat "$CLUSTER_DIR/nopmix.out")"
    ! grep -q "OPAL ERROR\|PMI support" "$CLUSTER_DIR/nopmix.out" || fail "$1: Open MPI's PMI errors came through: $(cat "$CLUSTER_DIR/nopmix.out")"
    [ "$(grep -vc "^srun: error: .*Exited with exit code 2$" "$CLUSTER_DIR/nopmix.out")" -eq 1 ] ||
        fail "$1: more than one line: $(cat "$CLUSTER_DIR/nopmix.out")"
done
echo "ok: dml-data, dml-train and dml-infer under srun without PMIx: one line saying what to do"
echo "PASS"
