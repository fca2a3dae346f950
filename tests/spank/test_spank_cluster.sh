#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# The SPANK plugin in real slurmd/slurmstepd on the local cluster:
#  - built hardened (stack protector, fortified calls, RELRO, bind now);
#  - with a recorded 8-GPU topology (plugstack topology=..., bind=no): each
#    task's CUDA_VISIBLE_DEVICES (its own GPUs first, then the step's others,
#    or its own only with --dml-gpu-isolate), NCCL_IB_HCA (every usable port,
#    the same on every task), UCX/NCCL/Gloo/Open MPI variables, ranks and the
#    env:// rendezvous (MASTER_ADDR: the first node's NodeAddr, MASTER_PORT
#    from the job and step), the --dml-verbose lines (with what UCX itself
#    finds), GPUs restricted by Slurm, a user's own setting kept; UCX's GPU
#    transports without InfiniBand; a step started inside a --dml-gpus task
#    set anew (the user's own variables still kept); a heterogeneous step
#    one world; 28 MIG UUIDs (over 1023 characters) handed out whole, a GPU
#    named twice refused;
#  - with Slurm's reserved ports (MpiParams=ports): steps 0 and 20 of a job,
#    and jobs 1000 ids apart, at once, each rank 0 listening on its own
#    MASTER_PORT;
#  - bad values refused by srun before anything runs; sbatch --dml-gpus
#    reaching the job's steps (and not the batch step); a job without the
#    flag untouched;
#  - with this machine's topology: tasks bound to their cores; an MPI job over
#    Open MPI's UCX layer with --dml-net=tcp (TCP only) and --dml-net=shm; an
#    error found per node (--dml-net=ib without InfiniBand) shown to the user;
#    a GPU list on a node without GPUs (a user's exported CUDA_VISIBLE_DEVICES)
#    left alone, not a failed task; the topology cache: another host's never
#    used, a cache directory of a user's refused by slurmd;
#  - a node whose HCAs have no active port: the fall back to TCP said.
. "$abs_top_srcdir/tests/cluster/lib.sh"
plugin=$abs_top_builddir/spank-plugin/.libs/dml_spank.so
[ -e "$plugin" ] || skip_or_fail "the SPANK plugin was not built (configure --without-slurm?)"
topo=$abs_top_srcdir/tests/spank/topo-xml/dgx-h100.xml

# Hardened: it runs inside slurmd and slurmstepd, as root.
readelf -d "$plugin" | grep -q "BIND_NOW" || fail "the plugin is not linked with -z now"
readelf -l "$plugin" | grep -q "GNU_RELRO" || fail "the plugin has no RELRO segment"
# (the listings are taken whole first: grep -q would end them early, and
# pipefail take that for a failure)
syms=$(nm -D "$plugin")
grep -q " U __stack_chk_fail" <<<"$syms" || fail "the plugin is not built with a stack protector"
grep -q " U __[a-z]*printf_chk" <<<"$syms" || fail "the plugin is not built with _FORTIFY_SOURCE"
# ... all of it: the status code from common/ too (its message formatting).
code=$(objdump -d "$plugin" | awk '/<dml__error_vset>:/,/^$/')
grep -q "__vsnprintf_chk" <<<"$code" ||
    fail "the plugin's status code (common/status.c) is not built with _FORTIFY_SOURCE"
echo "ok: the plugin is built hardened"

cluster_start 2 --plugin "$plugin" --plugin-args "topology=$topo bind=no netdev=lo"
work=$CLUSTER_DIR/work
mkdir -p "$work"
cd "$work"

# Two tasks on an 8-GPU node: four GPUs and the four paired HCAs each; each
# sees its own GPUs first, then the other task's (NCCL's NVLink paths).
out=$(srun --dml-gpus=auto -N1 -n2 -l env) || fail "srun --dml-gpus=auto: $out"
want() { grep -q -x "$1" <<<"$out" || fail "expected '$1' in the tasks' environment: $(grep -E '^[0-9]+: (CUDA|NCCL|UCX|MASTER|GLOO)' <<<"$out")"; }
want "0: CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7"
want "1: CUDA_VISIBLE_DEVICES=4,5,6,7,0,1,2,3"
want "0: UCX_NET_DEVICES=mlx5_0:1"
want "1: UCX_NET_DEVICES=mlx5_4:1"
# NCCL: every usable port of the node, exactly, the same on every task
hcas="=mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1,mlx5_8:1,mlx5_4:1,mlx5_5:1,mlx5_6:1,mlx5_7:1,mlx5_9:1"
want "0: NCCL_IB_HCA=$hcas"
want "1: NCCL_IB_HCA=$hcas"
want "0: NCCL_SOCKET_IFNAME==ib0"
want "0: GLOO_SOCKET_IFNAME=ib0"
# env:// rendezvous: the first node's NodeAddr (node names do not resolve
# here), a port from the job and step ids, the same on every task
want "0: MASTER_ADDR=127.0.0.1"
want "1: MASTER_ADDR=127.0.0.1"
port=$(sed -n 's/^0: MASTER_PORT=//p' <<<"$out")
[ -n "$port" ] && [ "$port" -ge 12000 ] && [ "$port" -lt 32768 ] || fail "MASTER_PORT '$port' outside 12000-32767"
want "1: MASTER_PORT=$port"
out2=$(srun --dml-gpus -N1 -n1 -l env) || fail "srun: $out2"
[ "$(sed -n 's/^0: MASTER_PORT=//p' <<<"$out2")" != "$port" ] || fail "two steps got the same MASTER_PORT $port"
out=$(srun --dml-gpus --dml-gpu-isolate -N1 -n2 -l env) || fail "srun --dml-gpu-isolate: $out"
want "0: CUDA_VISIBLE_DEVICES=0,1,2,3"
want "1: CUDA_VISIBLE_DEVICES=4,5,6,7"
out=$(srun --dml-gpus=auto -N1 -n2 -l env) || fail "srun --dml-gpus=auto: $out"
want "0: OMPI_MCA_pml=ucx"
want "1: RANK=1"
want "1: LOCAL_RANK=1"
want "0: WORLD_SIZE=2"
want "0: LOCAL_WORLD_SIZE=2"
want "0: OMP_NUM_THREADS=56"
want "1: OPENBLAS_NUM_THREADS=56"

# --dml-verbose: one line per task with its mapping.
err=$(srun --dml-gpus --dml-verbose -N1 -n2 true 2>&1) || fail "srun --dml-verbose: $err"
grep -q "^dml: rank 0 (local 0) on n[1-9]: gpu 0,1,2,3, cpus 0-55,112-167 (not bound), numa 0, net ib, hca mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1; ucx finds " <<<"$err" ||
    fail "verbose line for rank 0 missing: $err"
[ "$(grep -c '^dml: rank ' <<<"$err")" -eq 2 ] || fail "expected one verbose line per task: $err"

# Slurm gave the step GPUs 2 and 3: the tasks get those and their HCAs,
# each its own first.
out=$(CUDA_VISIBLE_DEVICES=2,3 srun --dml-gpus -N1 -n2 -l env) || fail "restricted GPUs: $out"
want "0: CUDA_VISIBLE_DEVICES=2,3"
want "1: CUDA_VISIBLE_DEVICES=3,2"
want "1: UCX_NET_DEVICES=mlx5_3:1"
out=$(CUDA_VISIBLE_DEVICES=2,3 srun --dml-gpus --dml-gpu-isolate -N1 -n2 -l env) || fail "isolate: $out"
want "1: CUDA_VISIBLE_DEVICES=3"

# A variable the user set is left alone.
out=$(UCX_TLS=dc,self srun --dml-gpus -N1 -n1 -l env) || fail "user UCX_TLS: $out"
want "0: UCX_TLS=dc,self"

# No InfiniBand asked: UCX still gets CUDA's transports for GPU buffers.
out=$(srun --dml-gpus --dml-net=tcp -N1 -n1 -l env) || fail "--dml-net=tcp: $out"
want "0: UCX_TLS=tcp,cuda_copy,self"

# A step started inside a --dml-gpus task (srun --dml-gpus --pty bash, then
# srun there): what the plugin set for the shell is set anew for the step;
# a variable the user exported in that shell is still the user's.
out=$(srun --dml-gpus -N1 -n1 -c2 bash -c 'echo "outer: $MASTER_PORT"
    srun --overlap --dml-gpus -N1 -n2 -l env
    export MASTER_PORT=23456
    srun --overlap --dml-gpus -N1 -n2 -l env | sed "s/^/user /"') || fail "nested srun: $out"
want "0: RANK=0"
want "1: RANK=1"
want "1: WORLD_SIZE=2"
want "1: LOCAL_RANK=1"
want "1: CUDA_VISIBLE_DEVICES=4,5,6,7,0,1,2,3"
want "user 1: MASTER_PORT=23456"
want "user 1: RANK=1"
[ "$(sed -n 's/^0: MASTER_PORT=//p' <<<"$out")" != "$(sed -n 's/^outer: //p' <<<"$out")" ] ||
    fail "the inner step kept the enclosing step's MASTER_PORT: $out"

# 28 MIG UUIDs (1147 characters): handed out whole, not replaced.
mig=$(for k in $(seq 0 27); do printf 'MIG-%08x-0000-5000-8000-%012x\n' "$k" "$k"; done | paste -sd,)
# (printed unlabelled: srun -l splits lines past 1024 characters)
out=$(CUDA_VISIBLE_DEVICES=$mig srun --dml-gpus -N1 -n1 printenv CUDA_VISIBLE_DEVICES) || fail "28 MIG UUIDs: $out"
[ "$out" = "$mig" ] || fail "28 MIG UUIDs: the task got CUDA_VISIBLE_DEVICES=$out"
# A GPU named twice would be two tasks' own: refused, saying which.
if err=$(CUDA_VISIBLE_DEVICES=0,0 srun --dml-gpus -N1 -n2 true 2>&1); then fail "GPU list 0,0 accepted"; fi
grep -q 'dml: GPU list "0,0": GPU "0" is named twice' <<<"$err" || fail "unclear: $err"

# Bad values: refused by srun, naming what is accepted; nothing runs.
if err=$(srun --dml-gpus=lots -n1 touch "$work/ran" 2>&1); then fail "--dml-gpus=lots accepted"; fi
grep -q "dml: --dml-gpus=lots: expected auto, none, or GPUs per task" <<<"$err" || fail "unclear: $err"
if err=$(srun --dml-net=infiniband -n1 touch "$work/ran" 2>&1); then fail "--dml-net=infiniband accepted"; fi
grep -q "dml: --dml-net=infiniband: expected auto, ib, tcp or shm" <<<"$err" || fail "unclear: $err"
[ ! -e "$work/ran" ] || fail "a task ran despite a refused option"

# sbatch --dml-gpus reaches the job's steps but not the batch step itself.
cat >job.sh <<'JOB'
#!/bin/bash
echo "batch step: RANK=${RANK:-unset} CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}"
srun -l printenv CUDA_VISIBLE_DEVICES
JOB
id=$(sbatch --parsable --dml-gpus -N1 -n2 -o job.out job.sh) || fail "sbatch --dml-gpus refused"
state=$(job_wait "$id")
[ "$state" = COMPLETED ] || fail "sbatch --dml-gpus job ended $state: $(cat job.out)"
grep -q "^batch step: RANK=unset CUDA_VISIBLE_DEVICES=unset$" job.out || fail "the batch step was touched: $(cat job.out)"
grep -q "^1: 4,5,6,7,0,1,2,3$" job.out || fail "the job's step did not get the mapping: $(cat job.out)"

# Without the flag: untouched.
out=$(srun -N1 -n1 env) || fail "plain srun"
! grep -q -E "^(RANK|UCX_TLS|OMPI_MCA_pml|NCCL_IB_HCA)=" <<<"$out" || fail "a job without --dml-* was changed"

# ---- MASTER_PORT with Slurm's reserved ports ----------------------------------
# A free block above the cluster tests' daemon ports (free_port_base) and
# below the kernel's ephemeral ones. All nodes share this host and Slurm
# reserves per node, so the steps below all run on n1.
for tries in $(seq 1 50); do
    lo=$((30100 + (RANDOM % 25) * 100))
    ! ss -Hatn exclude time-wait "( sport >= :$lo and sport <= :$((lo + 99)) )" | grep -q . && break
done
echo "MpiParams=ports=$lo-$((lo + 99))" >>"$SLURM_CONF"
scontrol reconfigure || fail "scontrol reconfigure with MpiParams=ports=$lo-$((lo + 99))"
for tries in $(seq 1 100); do
    scontrol show config | grep -q "^MpiParams *= ports=$lo-" && break
    sleep 0.2
done
# listen [STOPFILE]: rank 0's part of a rendezvous: listen on MASTER_PORT,
# say so (or why not), and hold it until STOPFILE exists.
cat >listen <<'PY'
import os, socket, sys, time
port = int(os.environ["MASTER_PORT"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("", port))
    s.listen()
except OSError as e:
    print("job %s step %s: port %d: %s" % (os.environ["SLURM_JOB_ID"], os.environ["SLURM_STEP_ID"], port, e), flush=True)
    sys.exit(1)
print("listening %d" % port, flush=True)
while len(sys.argv) > 1 and not os.path.exists(sys.argv[1]):
    time.sleep(0.1)
PY
in_range() { [ -n "$1" ] && [ "$1" -ge "$lo" ] && [ "$1" -le $((lo + 99)) ]; }
wait_listening() { # file
    local i
    for i in $(seq 1 600); do
        grep -q -E "^(listening|job)" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fail "no rank 0 started listening ($1): $(cat "$1")"
}
# Steps 0 and 20 of one job at once (the same port when it came from
# job*20 + step%20).
cat >steps.sh <<JOB
#!/bin/bash
srun --dml-gpus -n1 python3 listen "$work/stop0" >step0.out 2>&1 &
for i in \$(seq 1 600); do grep -q -E "^(listening|job)" step0.out 2>/dev/null && break; sleep 0.1; done
for i in \$(seq 1 19); do srun --overlap -n1 true; done
srun --overlap --dml-gpus -n1 python3 listen >step20.out 2>&1
touch "$work/stop0"
wait
JOB
id=$(sbatch --parsable -w n1 -N1 -n1 --mem=100 -o steps.out steps.sh) || fail "sbatch steps.sh"
state=$(job_wait "$id" 180)
p0=$(sed -n 's/^listening //p' step0.out)
p20=$(sed -n 's/^listening //p' step20.out)
in_range "$p0" && in_range "$p20" && [ "$p0" != "$p20" ] ||
    fail "steps 0 and 20 at once: not each on its own reserved port ($lo-$((lo + 99))): step 0: $(cat step0.out); step 20: $(cat step20.out); job $state: $(cat steps.out)"
[ "$state" = COMPLETED ] || fail "steps 0 and 20: job ended $state: $(cat steps.out)"
# Jobs 1000 ids apart, at once (ids set through FirstJobId).
first_job_id() { # id
    sed -i '/^FirstJobId=/d' "$SLURM_CONF"
    echo "FirstJobId=$1" >>"$SLURM_CONF"
    scontrol reconfigure || fail "scontrol reconfigure with FirstJobId=$1"
}
first_job_id 5000
a=$(sbatch --parsable -w n1 -N1 -n1 --mem=100 -o jobA.out \
    --wrap "srun --dml-gpus -n1 python3 listen $work/stopA") || fail "sbatch job A"
wait_listening jobA.out
first_job_id $((a + 1000))
b=$(sbatch --parsable -w n1 -N1 -n1 --mem=100 -o jobB.out \
    --wrap "srun --dml-gpus -n1 python3 listen") || fail "sbatch job B"
[ "$b" -eq $((a + 1000)) ] || fail "FirstJobId did not give job id $((a + 1000)) but $b"
state=$(job_wait "$b" 120)
touch "$work/stopA"
job_wait "$a" 120 >/dev/null
pa=$(sed -n 's/^listening //p' jobA.out)
pb=$(sed -n 's/^listening //p' jobB.out)
in_range "$pa" && in_range "$pb" && [ "$pa" != "$pb" ] && [ "$state" = COMPLETED ] ||
    fail "jobs $a and $b at once: not each on its own reserved port: $(cat jobA.out) / $(cat jobB.out) (job $b $state)"
echo "ok: MASTER_PORT: steps 0 and 20 ($p0, $p20), jobs $a and $b ($pa, $pb) on their own reserved ports"

# A heterogeneous step is one world: ranks over its components, one size,
# one rendezvous. (Late in this part of the test: only the backfill
# scheduler starts heterogeneous jobs, first 30 s after slurmctld starts.)
out=$(srun -N1 -n1 --dml-gpus : -N1 -n1 --dml-gpus bash -c 'echo "het $SLURM_PROCID: RANK=$RANK WORLD_SIZE=$WORLD_SIZE MASTER=$MASTER_ADDR:$MASTER_PORT"' 2>&1) ||
    fail "heterogeneous step: $out"
p0=$(sed -n 's/^het 0: RANK=0 WORLD_SIZE=2 MASTER=//p' <<<"$out")
p1=$(sed -n 's/^het 1: RANK=1 WORLD_SIZE=2 MASTER=//p' <<<"$out")
[ -n "$p0" ] && [ "$p0" = "$p1" ] || fail "heterogeneous step: not one world with one rendezvous: $out"

# ---- this machine's own topology: binding, real MPI over UCX -------------
"$DML_CLUSTER" stop --dir "$CLUSTER_DIR" >/dev/null
CLUSTER_PORT=$(free_port_base 2)
cache=$CLUSTER_DIR/topo-cache
"$DML_CLUSTER" start --dir "$CLUSTER_DIR" --nodes 2 --port "$CLUSTER_PORT" --plugin "$plugin" \
    --plugin-args "netdev=lo cache=$cache" >/dev/null || fail "restarting the cluster with this machine's topology"
# slurmd kept the node's topology for the steps (no PCI scan per step).
grep -q '<topology version="2.0">' "$cache/topology.xml" || fail "slurmd wrote no topology cache in $cache"

ncpu=$(nproc)
out=$(srun --dml-gpus -N1 -n2 -l grep Cpus_allowed_list /proc/self/status) || fail "binding: $out"
c0=$(sed -n 's/^0: Cpus_allowed_list:\t*//p' <<<"$out")
c1=$(sed -n 's/^1: Cpus_allowed_list:\t*//p' <<<"$out")
[ -n "$c0" ] && [ -n "$c1" ] && [ "$c0" != "$c1" ] || fail "tasks not bound to distinct CPUs: $out"
if [ "$ncpu" -ge 2 ]; then
    [ "$c0" != "0-$((ncpu - 1))" ] || fail "task 0 not bound (allowed $c0 of $ncpu CPUs)"
fi

prog=$abs_top_builddir/tests/cluster/mpi_allreduce
out=$(timeout 120 srun --mpi=pmix --dml-net=tcp -N2 -n2 -l "$prog" 2>&1) || fail "MPI over UCX tcp: $out"
[ "$(grep -c 'allreduce of 4096 doubles ok$' <<<"$out")" -eq 2 ] || fail "MPI over UCX tcp: $out"
out=$(srun --dml-net=tcp -N1 -n1 env)
grep -q -x "UCX_TLS=tcp,self" <<<"$out" || fail "--dml-net=tcp did not restrict UCX to TCP"
grep -q -x "OMPI_MCA_pml_ucx_tls=any" <<<"$out" || fail "--dml-net=tcp: Open MPI's UCX layer not opened to TCP"
out=$(timeout 120 srun --mpi=pmix --dml-net=shm -N1 -n2 -l "$prog" 2>&1) || fail "MPI over UCX shm: $out"
[ "$(grep -c 'allreduce of 4096 doubles ok$' <<<"$out")" -eq 2 ] || fail "MPI over UCX shm: $out"

# A damaged cache costs only the discovery, not the step; another host's
# cache (a fixture's XML) is never used for this node.
echo "not xml" >"$cache/topology.xml"
out=$(srun --dml-gpus -N1 -n1 env) || fail "srun with a damaged topology cache: $out"
grep -q -x "LOCAL_WORLD_SIZE=1" <<<"$out" || fail "no mapping with a damaged topology cache"
cp "$topo" "$cache/topology.xml"
err=$(srun --dml-gpus --dml-verbose -N1 -n1 true 2>&1) || fail "srun with another host's cache: $err"
grep -q "note: topology cache not used (.*written on host '(none)', this is '" <<<"$err" ||
    fail "another host's topology cache was not refused: $err"
grep -q "gpu -, cpus " <<<"$err" || fail "the fixture's 8 GPUs were taken for this node's: $err"

# A user's exported CUDA_VISIBLE_DEVICES on a node without GPUs: left alone,
# the task runs (it used to fail: 'GPU "0": not a GPU of this node').
out=$(CUDA_VISIBLE_DEVICES=0 srun --dml-gpus -N1 -n1 env) || fail "a GPU list on a GPU-less node failed the task: $out"
grep -q -x "CUDA_VISIBLE_DEVICES=0" <<<"$out" && grep -q -x "LOCAL_WORLD_SIZE=1" <<<"$out" ||
    fail "a GPU-less node with CUDA_VISIBLE_DEVICES=0: $out"

# An error found once per node reaches the user, and the step fails.
if err=$(timeout 60 srun --dml-net=ib -N1 -n1 true 2>&1); then fail "--dml-net=ib ran without InfiniBand"; fi
grep -q "dml: --dml-net=ib: no active InfiniBand port on this node" <<<"$err" || fail "per-node error not shown: $err"

# ---- slurmd refuses a cache directory of a user's; no IB: said ----------------
"$DML_CLUSTER" stop --dir "$CLUSTER_DIR" >/dev/null
mkdir -p "$CLUSTER_DIR/usercache" && chown 65534:65534 "$CLUSTER_DIR/usercache"
CLUSTER_PORT=$(free_port_base 1)
"$DML_CLUSTER" start --dir "$CLUSTER_DIR" --nodes 1 --port "$CLUSTER_PORT" --plugin "$plugin" \
    --plugin-args "topology=$abs_top_srcdir/tests/spank/topo-xml/dgx-h100-ib-down.xml bind=no cache=$CLUSTER_DIR/usercache" \
    >/dev/null || fail "restarting the cluster with a user's cache directory"
[ ! -e "$CLUSTER_DIR/usercache/topology.xml" ] || fail "slurmd wrote its cache into a user's directory"
err=$(srun --dml-gpus -N1 -n2 true 2>&1) || fail "srun on a node without active ports: $err"
grep -q "dml: warning: n1 has 10 InfiniBand HCA(s) but no active port: falling back to TCP" <<<"$err" ||
    fail "the fall back to TCP was not said: $err"
[ "$(grep -c 'no active port' <<<"$err")" -eq 1 ] || fail "the warning came more than once per node: $err"
"$DML_CLUSTER" stop --dir "$CLUSTER_DIR" >/dev/null
CLUSTER_PORT=$(free_port_base 1)
"$DML_CLUSTER" start --dir "$CLUSTER_DIR" --nodes 1 --port "$CLUSTER_PORT" --plugin "$plugin" \
    --plugin-args "netdev=lo cache=$CLUSTER_DIR/usercache" >/dev/null || fail "restarting the cluster"
[ ! -e "$CLUSTER_DIR/usercache/topology.xml" ] || fail "slurmd wrote its cache into a user's directory"
grep -q "dml: topology cache: $CLUSTER_DIR/usercache: owned by uid 65534" "$CLUSTER_DIR"/log/n1.log ||
    fail "slurmd did not say why it refused the cache directory: $(grep dml "$CLUSTER_DIR"/log/n1.log)"
out=$(srun --dml-gpus -N1 -n1 env) || fail "a step without the cache: $out"
grep -q -x "LOCAL_WORLD_SIZE=1" <<<"$out" || fail "no mapping without the cache"
echo "ok: slurmd refuses a user's cache directory; no active port: the fall back to TCP said"
echo PASS
