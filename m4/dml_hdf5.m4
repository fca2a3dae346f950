# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_HDF5: parallel HDF5 (required). Datasets and checkpoints are read and
# written by all ranks through MPI-IO, so a serial HDF5 build is refused.
# --with-hdf5=DIR names an installation (DIR/include, DIR/lib); otherwise
# pkg-config hdf5-openmpi (Debian), then hdf5-mpi, then hdf5.
AC_DEFUN([DML_CHECK_HDF5], [
  AC_ARG_WITH([hdf5],
    [AS_HELP_STRING([--with-hdf5=DIR], [parallel HDF5 installation prefix @<:@pkg-config hdf5-openmpi@:>@])],
    [], [with_hdf5=yes])
  AS_IF([test "x$with_hdf5" = xno],
    [AC_MSG_ERROR([parallel HDF5 is required; --without-hdf5 is not supported])])
  AS_IF([test "x$with_hdf5" != xyes],
    [HDF5_CFLAGS="-I$with_hdf5/include"; HDF5_LIBS="-L$with_hdf5/lib -lhdf5"],
    [test -z "$HDF5_CFLAGS$HDF5_LIBS"],
    [PKG_CHECK_MODULES([HDF5], [hdf5-openmpi], [],
      [PKG_CHECK_MODULES([HDF5], [hdf5-mpi], [],
        [PKG_CHECK_MODULES([HDF5], [hdf5], [], [HDF5_LIBS=-lhdf5])])])])
  dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
  CFLAGS="$CFLAGS $MPI_CFLAGS $HDF5_CFLAGS"; LIBS="$HDF5_LIBS $MPI_LIBS $LIBS"
  AC_MSG_CHECKING([for parallel HDF5 (H5Pset_fapl_mpio)])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <hdf5.h>
#ifndef H5_HAVE_PARALLEL
#error serial HDF5
#endif]], [[hid_t p = H5Pcreate(H5P_FILE_ACCESS);
            H5Pset_fapl_mpio(p, MPI_COMM_WORLD, MPI_INFO_NULL);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([parallel HDF5 not found: install it (Debian: libhdf5-openmpi-dev) or use --with-hdf5=DIR])])
  # Files written whole are built in memory, and H5Fget_file_image's
  # superblock checksum is put right with HDF5's own metadata checksum
  # (io/h5util.c), exported by libhdf5 since 1.8.7, not in its headers.
  AC_MSG_CHECKING([for H5_checksum_metadata in HDF5])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <hdf5.h>
#include <stdint.h>
extern uint32_t H5_checksum_metadata(const void *data, size_t len, uint32_t initval);]],
      [[return (int)H5_checksum_metadata("x", 1, 0);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([this HDF5 does not export H5_checksum_metadata (HDF5 1.8.7 to 1.14 do): use another build of HDF5 with --with-hdf5=DIR])])
  CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
  AC_SUBST([HDF5_CFLAGS])
  AC_SUBST([HDF5_LIBS])
  dml_hdf5_summary="yes ($HDF5_LIBS)"
])
