#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# dml-cluster as users and tests rely on it: all nodes idle after start, a
# second start refuses to clobber the running cluster, a clash on a port is
# refused naming the port, and stop leaves no daemon behind.
. "$(dirname "$0")/lib.sh"
cluster_start 3

[ "$(sinfo -h -N -o '%N %T' | sort -u | tr '\n' ' ')" = "n1 idle n2 idle n3 idle " ] ||
    fail "nodes not idle after start: $(sinfo -h -N -o '%N %T')"
"$DML_CLUSTER" status --dir "$CLUSTER_DIR" >/dev/null || fail "status says the cluster is not running"

if msg=$("$DML_CLUSTER" start --dir "$CLUSTER_DIR" --port "$CLUSTER_PORT" 2>&1); then
    fail "a second start in the same directory succeeded"
fi
echo "$msg" | grep -q "already running in $CLUSTER_DIR" || fail "second start: unclear message: $msg"
[ "$(sinfo -h -N -o '%T' | sort -u)" = idle ] || fail "the refused start disturbed the running cluster"

other=$(mktemp -d /tmp/dml-test.XXXXXX)
if msg=$("$DML_CLUSTER" start --dir "$other" --port "$CLUSTER_PORT" 2>&1); then
    "$DML_CLUSTER" stop --dir "$other" >/dev/null 2>&1
    rm -rf "$other"
    fail "a second cluster started on ports already in use"
fi
rm -rf "$other"
echo "$msg" | grep -q "port $CLUSTER_PORT is already in use" || fail "port clash: unclear message: $msg"

if msg=$("$DML_CLUSTER" start --dir "$CLUSTER_DIR" --nodes 0 2>&1); then fail "--nodes 0 accepted"; fi
echo "$msg" | grep -q -- "--nodes '0'" || fail "bad --nodes: unclear message: $msg"

pids=$(cat "$CLUSTER_DIR"/run/*.pid)
[ "$(echo "$pids" | wc -l)" -eq 5 ] || fail "expected 5 pid files (munged, slurmctld, 3 slurmd): $pids"
"$DML_CLUSTER" stop --dir "$CLUSTER_DIR" >/dev/null || fail "stop failed"
for p in $pids; do
    ! kill -0 "$p" 2>/dev/null || fail "pid $p ($(cat /proc/"$p"/comm 2>/dev/null)) still runs after stop"
done
if "$DML_CLUSTER" status --dir "$CLUSTER_DIR" >/dev/null; then fail "status says a stopped cluster runs"; fi
[ -s "$CLUSTER_DIR/log/slurmctld.log" ] || fail "stop removed the logs"
echo "PASS"
