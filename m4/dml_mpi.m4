# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_MPI: MPI for the trainer, loader and tests (required).
# Sets MPI_CFLAGS/MPI_LIBS from pkg-config (Open MPI's ompi-c, MPICH's mpich) or,
# failing that, from the MPI compiler wrapper, and keeps MPICC/MPIRUN for scripts.
# Only MPI programs link MPI: the SPANK plugin must not.
AC_DEFUN([DML_CHECK_MPI], [
  AC_ARG_VAR([MPICC], [MPI C compiler wrapper, used to find MPI's flags])
  AC_ARG_VAR([MPIRUN], [MPI launcher used by the tests])
  AC_PATH_PROGS([MPICC], [mpicc], [])
  AC_PATH_PROGS([MPIRUN], [mpirun mpiexec], [])
  AS_IF([test -z "$MPI_CFLAGS$MPI_LIBS"], [
    PKG_CHECK_MODULES([MPI], [ompi-c], [],
      [PKG_CHECK_MODULES([MPI], [mpich], [], [
        AS_IF([test -n "$MPICC"], [
          MPI_CFLAGS=`$MPICC --showme:compile 2>/dev/null || $MPICC -compile_info 2>/dev/null | cut -d' ' -f2-`
          MPI_LIBS=`$MPICC --showme:link 2>/dev/null || $MPICC -link_info 2>/dev/null | cut -d' ' -f2-`])])])])
  dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
  CFLAGS="$CFLAGS $MPI_CFLAGS"; LIBS="$MPI_LIBS $LIBS"
  AC_MSG_CHECKING([whether MPI programs link])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <mpi.h>]],
                   [[MPI_Init(0, 0); MPI_Finalize();]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([MPI not found: install Open MPI (Debian: libopenmpi-dev openmpi-bin) or set MPI_CFLAGS and MPI_LIBS])])
  CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
  AS_IF([test -z "$MPIRUN"],
    [AC_MSG_ERROR([no mpirun or mpiexec found: install Open MPI (Debian: openmpi-bin)])])
  AC_SUBST([MPI_CFLAGS])
  AC_SUBST([MPI_LIBS])
  dml_mpi_summary="yes ($MPIRUN)"
])
