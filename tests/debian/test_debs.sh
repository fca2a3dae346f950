#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test_debs.sh DEBDIR: the Debian packages as an admin and a user meet them
# (root; scripts/test-all runs it after dpkg-buildpackage and lintian):
#  - `apt-get install ./*.deb` installs them on this machine;
#  - the tools, manual pages, pkg-config file, headers, Python package and
#    plugin are where Debian looks for them, and the plugstack.conf.d snippet
#    is there, not enabled;
#  - a small job on a local Slurm cluster (dml-cluster, as installed, with the
#    installed plugin): srun --dml-gpus sets each task's variables, dml-train
#    trains under srun --mpi=pmix on 2 nodes, dml-infer runs and merges;
#  - the packages are removed again (purged), whatever the outcome.
set -euo pipefail
dir=$(cd "${1:?usage: test_debs.sh DEBDIR}" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (apt-get install)"
pkgs="slurm-dml libslurm-dml0 libslurm-dml-dev slurm-dml-spank python3-slurm-dml"
debs=()
for p in $pkgs; do
    f=$(ls "$dir/${p}_"*.deb 2>/dev/null | head -n 1)
    [ -n "$f" ] || fail "no $p package in $dir"
    debs+=("$f")
done
work=$(mktemp -d /tmp/dml-debs.XXXXXX)
cluster=""
cleanup() {
    rc=$?
    if [ -n "$cluster" ]; then
        [ $rc -eq 0 ] || tail -n 20 "$cluster"/log/*.log >&2 || true
        dml-cluster stop --dir "$cluster" >/dev/null 2>&1 || true
        rm -rf "$cluster"
    fi
    rm -rf "$work"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $pkgs >/dev/null 2>&1 || true
    exit $rc
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
apt-get install -y -q --no-install-recommends "${debs[@]}" >"$work/apt.log" 2>&1 ||
    { cat "$work/apt.log" >&2; fail "apt-get install of the packages failed"; }
echo "ok: installed: $pkgs"

ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for t in dml-data dml-train dml-ckpt dml-infer dml-topo dml-cluster dml-registry dml-pipeline; do
    [ "$(command -v $t)" = "/usr/bin/$t" ] || fail "$t is not /usr/bin/$t"
    [ -s "/usr/share/man/man1/$t.1.gz" ] || fail "no manual page for $t"
done
[ -s /usr/share/man/man8/dml_spank.8.gz ] || fail "no dml_spank(8)"
[ -f "/usr/lib/$ma/slurm-wlm/dml_spank.so" ] || fail "the plugin is not in Slurm's plugin directory"
snip=/etc/slurm/plugstack.conf.d/dml_spank.conf
grep -q "^#required /usr/lib/$ma/slurm-wlm/dml_spank.so" "$snip" || fail "$snip: no commented plugin line"
! grep -q '^[^#]' "$snip" || fail "$snip enables the plugin on install: the admin enables it"
[ "$(pkg-config --modversion slurm-dml)" = "$(dpkg-query -W -f '${Version}' libslurm-dml-dev)" ] ||
    fail "pkg-config does not find slurm-dml's installed version"
[ -f /usr/include/slurm-dml/dml_train.h ] || fail "no headers in /usr/include/slurm-dml"
# the pipeline finds its sbatch scripts and report beside it, in /usr/share/slurm-dml
for f in train.sbatch infer-submit dml-pipeline-report; do
    [ -x "/usr/share/slurm-dml/$f" ] || fail "/usr/share/slurm-dml/$f is not there for dml-pipeline"
done
/usr/bin/python3 -c 'import slurm_dml; assert slurm_dml.__file__.startswith("/usr/lib/python3/dist-packages/")' ||
    fail "/usr/bin/python3 does not import slurm_dml from dist-packages"
echo "ok: tools, pages, plugin, commented plugstack.conf.d snippet, pkg-config, headers, Python package in place"

# A local cluster of 2 nodes with the installed plugin (dml-cluster's default).
cluster=$(mktemp -d /tmp/dml-debs-cluster.XXXXXX)
port=$((12000 + (RANDOM % 500) * 10))
dml-cluster start --dir "$cluster" --nodes 2 --port "$port" >"$work/start.log" 2>&1 ||
    { cat "$work/start.log" >&2; fail "dml-cluster start failed"; }
grep -q "/usr/lib/$ma/slurm-wlm/dml_spank.so" "$cluster/etc/plugstack.conf" ||
    fail "dml-cluster did not load the installed plugin"
eval "$(dml-cluster env --dir "$cluster")"
cd "$work"
out=$(timeout 120 srun -N2 -n2 --dml-gpus=none --dml-net=tcp bash -c 'echo "$RANK $WORLD_SIZE $OMP_NUM_THREADS"' 2>&1) ||
    fail "srun --dml-gpus failed: $out"
[ "$(sort <<<"$out" | cut -d' ' -f1,2 | tr '\n' ' ')" = "0 2 1 2 " ] ||
    fail "the installed plugin did not set RANK and WORLD_SIZE: $out"
dml-data synth --out "$work/ds" --samples 2000 --shape 28x28 --classes 10 --seed 1 >/dev/null
timeout 300 srun -N2 -n2 --mpi=pmix --dml-gpus=none dml-train --train "$work/ds" --model cnn --batch 32 \
    --epochs 1 --log-every 0 --output "$work/m.h5" >"$work/train.out" 2>&1 ||
    { cat "$work/train.out" >&2; fail "dml-train under srun --mpi=pmix failed"; }
timeout 300 srun -N1 -n2 --mpi=pmix dml-infer run --model "$work/m.h5" --input "$work/ds" --out "$work/inf" \
    --task 0 --tasks 1 >"$work/infer.out" 2>&1 && dml-infer merge --out "$work/inf" >>"$work/infer.out" 2>&1 ||
    { cat "$work/infer.out" >&2; fail "dml-infer failed"; }
/usr/bin/python3 -c 'import slurm_dml, sys; r = slurm_dml.read_report(sys.argv[1]); assert r["samples"] == 2000, r' \
    "$work/inf" || fail "the installed Python package cannot read the installed dml-infer's report"
v=$(dml-registry --registry "$work/reg" register "$work/m.h5" 2>/dev/null) &&
    dml-registry --registry "$work/reg" alias production "$v" >/dev/null 2>&1 &&
    timeout 300 srun -N1 -n1 --mpi=pmix dml-infer run --model "$work/reg:production" --input "$work/ds" \
        --out "$work/inf2" --task 0 --tasks 1 >"$work/infer2.out" 2>&1 && dml-infer merge --out "$work/inf2" >/dev/null 2>&1 &&
    grep -q "\"hash\": \"$v\"" "$work/inf2/report.json" || { cat "$work/infer2.out" >&2; fail "dml-registry and dml-infer --model REG:production failed"; }
echo "ok: on a 2-node cluster with the installed plugin: srun --dml-gpus, dml-train (srun --mpi=pmix), dml-infer, dml-registry"
echo PASS
