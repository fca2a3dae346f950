#!/bin/bash
# The SPANK plugin in real slurmd/slurmstepd on the local cluster:
#  - built hardened (stack protector, fortified calls, RELRO, bind now);
#  - with a recorded 8-GPU topology (plugstack topology=..., bind=no): each
#    task's CUDA_VISIBLE_DEVICES (its own GPUs first, then the step's others,
#    or its own only with --dml-gpu-isolate), NCCL_IB_HCA (every usable port,
#    the same on every task), UCX/NCCL/Gloo/Open MPI variables, ranks and the
#    env:// rendezvous (MASTER_ADDR: the first node's NodeAddr, MASTER_PORT
#    from the job and step), the --dml-verbose lines (with what UCX itself
#    finds), GPUs restricted by Slurm, a user's own setting kept;
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
nm -D "$plugin" | grep -q " U __stack_chk_fail" || fail "the plugin is not built with a stack protector"
nm -D "$plugin" | grep -q " U __[a-z]*printf_chk" || fail "the plugin is not built with _FORTIFY_SOURCE"
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
[ -n "$port" ] && [ "$port" -ge 12000 ] && [ "$port" -lt 32000 ] || fail "MASTER_PORT '$port' outside 12000-31999"
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
