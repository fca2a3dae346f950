# SPDX-License-Identifier: BSD-3-Clause
# lib.sh: sourced by the cluster tests. Starts a private Slurm cluster for one
# test on free ports in a fresh directory, and stops it (and removes the
# directory) when the test exits, printing the daemons' logs if it failed.
#
# These tests need root and the Slurm packages. Outside CI they skip (exit 77)
# without them; in CI (CI set) they fail instead, so they are never skipped there.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DML_CLUSTER=$abs_top_builddir/jobs/dml-cluster
CLUSTER_DIR=""

# Fails with the cause first, then the end of each file given (jobs' output):
# CI shows the start of a failing test's log. The daemons' logs follow.
fail_logs() { # message [file...]
    local f
    echo "FAIL: $1" >&2
    shift
    for f in "$@"; do
        echo "---- $f, last 40 lines ----" >&2
        tail -n 40 "$f" >&2 || true
    done
    exit 1
}

require_root() {
    [ "$(id -u)" -eq 0 ] || skip_or_fail "needs root (slurmd starts jobs as their users)"
}

require_slurm() {
    local p
    for p in munged slurmctld slurmd srun sbatch scontrol ss; do
        command -v "$p" >/dev/null || skip_or_fail "$p is not installed (run scripts/install-deps)"
    done
}

# A base port with BASE..BASE+nodes free; random, so that tests run in
# parallel by make -j do not collide, and below the kernel's ephemeral range
# (ip_local_port_range, 32768 up by default), where MPI's own connections
# would otherwise take a port between this check and the daemons' bind.
free_port_base() { # nodes
    local n=$1 base k ok tries
    for tries in $(seq 1 100); do
        base=$((10000 + (RANDOM % 2000) * 10))
        ok=1
        for k in $(seq 0 "$n"); do
            if ss -Hatn exclude time-wait "sport = :$((base + k))" | grep -q .; then ok=0; break; fi
        done
        if [ $ok -eq 1 ]; then echo "$base"; return 0; fi
    done
    fail "no free port range found for $n nodes"
}

cluster_cleanup() {
    local f
    if [ -n "$CLUSTER_DIR" ]; then
        if [ "$_rc" -ne 0 ] && [ "$_rc" -ne 77 ]; then
            for f in "$CLUSTER_DIR"/log/*.log; do
                [ -e "$f" ] || continue
                echo "---- $f ----" >&2
                tail -n 30 "$f" >&2
            done
        fi
        "$DML_CLUSTER" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
        rm -rf "$CLUSTER_DIR"
    fi
}

# A test that wants the SPANK plugin names it (--plugin, the build's); any
# other runs with none, whatever is installed on the machine: dml-cluster's
# default is the installed plugin, which a package test (test-all's Debian
# phase) installs and purges while other tests run.
cluster_start() { # nodes [dml-cluster start options...]
    local nodes=$1 a plugin_opt=--no-plugin
    shift
    require_root
    require_slurm
    for a in "$@"; do case $a in --plugin | --no-plugin) plugin_opt="" ;; esac; done
    CLUSTER_DIR=$(mktemp -d /tmp/dml-test.XXXXXX)
    at_exit cluster_cleanup
    CLUSTER_PORT=$(free_port_base "$nodes")
    "$DML_CLUSTER" start --dir "$CLUSTER_DIR" --nodes "$nodes" --port "$CLUSTER_PORT" $plugin_opt "$@" ||
        fail "dml-cluster start failed"
    export SLURM_CONF=$CLUSTER_DIR/etc/slurm.conf
}

# Waits for a job (or every task of an array) to end; prints its final states.
job_wait() { # jobid [timeout-seconds]
    local id=$1 deadline=$((SECONDS + ${2:-120})) states
    while :; do
        states=$(squeue -h -j "$id" -t all -o '%T' 2>/dev/null | sort -u || true)
        if [ -n "$states" ] && ! echo "$states" | grep -q -E 'PENDING|RUNNING|CONFIGURING|COMPLETING|REQUEUED|SUSPENDED'; then
            echo "$states"
            return 0
        fi
        [ $SECONDS -lt $deadline ] || fail "job $id did not finish in time (states: $states)"
        sleep 0.5
    done
}

# Field=value from `scontrol show job -o` for one job id (not an array).
job_field() { # jobid field
    scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}
