#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# PyTorch with no glue: jobs/torch_ddp.py, DistributedDataParallel with the
# Gloo backend on CPUs (Debian's python3-torch), as 3 tasks on the 3 nodes of
# the local cluster under srun --dml-gpus=none --dml-net=tcp. Neither the
# test nor the script sets any variable: torch.distributed's env://
# rendezvous finds RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT as the
# SPANK plugin set them (the first node's NodeAddr, 127.0.0.1 here, where the
# node names do not resolve). It trains, and every rank ends with the same
# weights.
. "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import torch' 2>/dev/null || skip_or_fail "Debian's python3-torch is not installed (scripts/install-deps)"
plugin=$abs_top_builddir/spank-plugin/.libs/dml_spank.so
[ -e "$plugin" ] || skip_or_fail "the SPANK plugin was not built (configure --without-slurm?)"
cluster_start 3 --plugin "$plugin" --plugin-args "netdev=lo"
cd "$CLUSTER_DIR"

# the test's own environment carries none of the rendezvous variables
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT GLOO_SOCKET_IFNAME
out=$(timeout 300 srun --dml-gpus=none --dml-net=tcp -N3 -n3 /usr/bin/python3 "$abs_top_srcdir/jobs/torch_ddp.py" 2>&1) ||
    fail "DDP under srun --dml-gpus=none --dml-net=tcp failed: $out"
echo "$out"
[ "$(grep -c '^rank [0-2] of 3 (local rank 0, cpu, rendezvous 127.0.0.1:[0-9]*): loss' <<<"$out")" -eq 3 ] ||
    fail "expected 3 ranks of 3 with the rendezvous at 127.0.0.1: $out"
sums=$(sed -n 's/.*weights checksum \([-0-9.]*\)$/\1/p' <<<"$out" | sort -u)
[ "$(wc -l <<<"$sums")" -eq 1 ] || fail "the ranks ended with different weights: $sums"
echo "ok: 3 ranks trained with DDP over Gloo, rendezvous from the plugin, weights equal ($sums)"
echo PASS
