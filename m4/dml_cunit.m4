# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_CUNIT: CUnit runs the unit tests of `make check` (required, so that
# no build silently drops its tests).
AC_DEFUN([DML_CHECK_CUNIT], [
  PKG_CHECK_MODULES([CUNIT], [cunit], [],
    [AC_CHECK_LIB([cunit], [CU_initialize_registry], [CUNIT_LIBS=-lcunit],
      [AC_MSG_ERROR([CUnit not found: install it (Debian: libcunit1-dev) or set CUNIT_CFLAGS and CUNIT_LIBS])])])
  dml_cunit_summary="yes"
])
