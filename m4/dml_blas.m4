# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_BLAS: a CBLAS for the CPU compute path (required). OpenBLAS is
# preferred (pkg-config openblas); --with-blas="LIBS" names any other CBLAS.
AC_DEFUN([DML_CHECK_BLAS], [
  AC_ARG_WITH([blas],
    [AS_HELP_STRING([--with-blas=LIBS], [link flags of a CBLAS library @<:@pkg-config openblas@:>@])],
    [], [with_blas=yes])
  AS_IF([test "x$with_blas" = xno],
    [AC_MSG_ERROR([a CBLAS is required; --without-blas is not supported])])
  AS_IF([test "x$with_blas" != xyes], [BLAS_LIBS=$with_blas],
    [test -z "$BLAS_CFLAGS$BLAS_LIBS"],
    [PKG_CHECK_MODULES([BLAS], [openblas], [],
      [PKG_CHECK_MODULES([BLAS], [cblas], [], [BLAS_LIBS=-lopenblas])])])
  dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
  CFLAGS="$CFLAGS $BLAS_CFLAGS"; LIBS="$BLAS_LIBS $LIBS"
  AC_MSG_CHECKING([for cblas_sgemm])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cblas.h>]],
      [[float a = 1, b = 1, c = 0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([no CBLAS found: install OpenBLAS (Debian: libopenblas-dev) or use --with-blas=LIBS])])
  AC_CHECK_FUNCS([openblas_set_num_threads])
  CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
  AC_SUBST([BLAS_CFLAGS])
  AC_SUBST([BLAS_LIBS])
  dml_blas_summary="yes ($BLAS_LIBS)"
])
