# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_DNNL: oneDNN (Debian: libdnnl-dev), the convolutions of the
# network (nn/conv.c). Measured against im2col with OpenBLAS on the book's
# models (docs/benchmarks/conv.md): several times faster, as PyTorch's CPU
# path, which uses it too. Without it (--without-dnnl) the convolutions are
# im2col and BLAS: the same results to float rounding, slower.
AC_DEFUN([DML_CHECK_DNNL], [
  AC_ARG_WITH([dnnl],
    [AS_HELP_STRING([--with-dnnl],
      [convolutions with oneDNN (Debian: libdnnl-dev) @<:@default=check@:>@])],
    [], [with_dnnl=check])
  dml_dnnl_summary="no (convolutions as im2col and BLAS)"
  DNNL_LIBS=
  AS_IF([test "x$with_dnnl" != xno], [
    AC_CHECK_HEADER([dnnl.h], [
      AC_CHECK_LIB([dnnl], [dnnl_convolution_forward_desc_init], [
        AC_DEFINE([HAVE_DNNL], [1], [Define to 1 to run convolutions with oneDNN])
        DNNL_LIBS="-ldnnl -lgomp"
        dml_dnnl_summary="yes"], [
        AS_IF([test "x$with_dnnl" = xyes], [AC_MSG_ERROR([libdnnl not found (Debian: libdnnl-dev)])])])], [
      AS_IF([test "x$with_dnnl" = xyes], [AC_MSG_ERROR([dnnl.h not found (Debian: libdnnl-dev)])])])])
  AC_SUBST([DNNL_LIBS])
  AM_CONDITIONAL([HAVE_DNNL], [test -n "$DNNL_LIBS"])
])
