#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Layering (issue #41): the registry reads, verifies and writes model files
# and never computes, and the network needs neither the dataset library nor
# MPI. Checked on the binaries as built (libtool's .libs):
#  (a) dml-registry and libdml_registry load no OpenBLAS, oneDNN or OpenMP
#      (ldd: the libraries a run would load, through every dependency);
#  (b) libdml_registry, dml-registry and libdml_nn NEED neither libdml_io,
#      libdml_mpi nor libmpi themselves (readelf -d). libmpi still comes in
#      through Debian's parallel HDF5 (libhdf5_openmpi), which links it: that
#      is HDF5's dependency, not ours, so ldd is not asked about it;
#  (c) no nn/ or registry/ source includes dml_io.h (which includes mpi.h);
#  (d) libdml_registry exports only dml_registry_*: the model file layer it
#      carries stays libdml_nn's in a process that links both (dml-infer).
. "$(dirname "$0")/../lib.sh"

libtool=$abs_top_builddir/libtool
[ -x "$libtool" ] || fail "$libtool: missing (configure makes it)"
libreg=$abs_top_builddir/registry/.libs/libdml_registry.so
libnn=$abs_top_builddir/nn/.libs/libdml_nn.so
[ -f "$libreg" ] && [ -f "$libnn" ] || skip_or_fail "no shared libraries (configure --disable-shared?)"
command -v readelf >/dev/null || skip_or_fail "readelf (binutils) missing"

# (a) what a run loads
for f in "$registry" "$libreg"; do
    out=$("$libtool" --mode=execute ldd "$f") || fail "ldd $f failed"
    if bad=$(grep -E 'libopenblas|libblas|libdnnl|libgomp|libdml_nn' <<<"$out"); then
        fail "${f##*/} loads compute libraries it has no use for:
$bad"
    fi
done

# (b) direct dependencies; the program's own ELF file, not libtool's wrapper
realreg=$("$libtool" --mode=execute echo "$registry")
for f in "$realreg" "$libreg" "$libnn"; do
    needed=$(readelf -d "$f" | grep NEEDED) || fail "readelf -d $f: no NEEDED entries"
    if bad=$(grep -E 'libdml_io|libdml_mpi|libmpi\.' <<<"$needed"); then
        fail "${f##*/} depends on the dataset library or MPI itself:
$bad"
    fi
done

# (c) the headers that bring MPI in
for d in nn registry; do
    if bad=$(grep -l '#include [<"]\(dml_io\|dml_mpi\|mpi\)\.h[>"]' "$abs_top_srcdir/$d"/*.[ch]); then
        fail "$d/ includes dml_io.h, dml_mpi.h or mpi.h: $bad"
    fi
done

# (d) the registry's exports
exports=$(readelf --dyn-syms -W "$libreg" | awk '$5 == "GLOBAL" && $7 != "UND" {print $8}' | sed 's/@.*//')
if bad=$(grep -v '^dml_registry_' <<<"$exports" | grep -v '^_'); then
    fail "libdml_registry exports more than dml_registry_*: $bad"
fi
echo "PASS: registry loads no compute libraries; nn/ and registry/ link no io or MPI"
