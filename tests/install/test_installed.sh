#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# test_installed.sh: the package as a user and an admin meet it after `make
# install` (run by `make installcheck`, and so by `make distcheck` in its
# scratch prefix):
#  - the headers are under include/slurm-dml/, none loose in include/;
#  - a program that includes every public header and calls into every
#    library builds with nothing but `pkg-config --cflags --libs slurm-dml`
#    and runs, on a dataset the installed dml-data made;
#  - every tool and the plugin have their manual page, and every option a
#    tool's --help lists is in its page;
#  - the Python package is where the interpreter configure chose imports it,
#    and reads the installed dml-data's dataset.
set -euo pipefail
: "${bindir:?run this through make installcheck}" "${libdir:?}" "${includedir:?}" "${mandir:?}" \
    "${srcdir:?}" "${CC:?}" "${VERSION:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/dml-installed.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PKG_CONFIG_PATH=$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

headers="dml_status.h dml_log.h dml_mpi.h dml_crc.h dml_stats.h dml_io.h dml_nn.h dml_ckpt.h dml_train.h dml_infer.h dml_topo.h"
for h in $headers; do
    [ -f "$includedir/slurm-dml/$h" ] || fail "$h is not installed in $includedir/slurm-dml"
    [ ! -e "$includedir/$h" ] || fail "$h is installed loose in $includedir"
done
[ "$(pkg-config --modversion slurm-dml)" = "$VERSION" ] ||
    fail "pkg-config finds no slurm-dml $VERSION in $libdir/pkgconfig"
flags=$(pkg-config --cflags --libs slurm-dml)
# shellcheck disable=SC2086 # the flags are words
"$CC" -Wall -Werror -o "$work/use_pkg" "$srcdir/install/use_pkg.c" $flags -lm ||
    fail "a program using every public header does not build with: $flags"
"$bindir/dml-data" synth --out "$work/ds" --samples 300 --shape 28x28 --classes 10 >/dev/null ||
    fail "the installed dml-data synth failed"
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$work/use_pkg" "$work/ds" ||
    fail "the program built with pkg-config's flags failed"
echo "ok: headers in include/slurm-dml; a program on every library builds with pkg-config alone and runs"

# Manual pages: installed, and each tool's page covers its --help.
for page in man1/dml-data.1 man1/dml-train.1 man1/dml-ckpt.1 man1/dml-infer.1 man1/dml-topo.1 \
    man1/dml-cluster.1 man1/dml-registry.1 man1/dml-pipeline.1 man8/dml_spank.8; do
    [ -s "$mandir/$page" ] || fail "no manual page $mandir/$page"
done
bash "$srcdir/install/check_man.sh" "$mandir" "$bindir/dml-data" "$bindir/dml-train" "$bindir/dml-ckpt" \
    "$bindir/dml-infer" "$bindir/dml-topo" "$bindir/dml-cluster" "$bindir/dml-registry" \
    "$bindir/dml-pipeline" || fail "the manual pages do not cover --help"
echo "ok: manual pages for every tool and the plugin, covering every option of --help"
if [ -n "${pythondir:-}" ] && [ "${PYTHON:-:}" != : ]; then
    got=$(PYTHONPATH=$pythondir "$PYTHON" -c 'import slurm_dml, sys
print(slurm_dml.__file__, len(slurm_dml.open_dataset(sys.argv[1])))' "$work/ds") ||
        fail "slurm_dml does not import from $pythondir, or cannot read a dataset"
    [[ "$got" == "$pythondir/slurm_dml/__init__.py 300" ]] || fail "slurm_dml: expected $pythondir's and 300 samples, got: $got"
    echo "ok: the Python package in $pythondir reads the installed tools' dataset"
fi
echo PASS
