# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_ZLIB: zlib for the gzip-compressed Fashion-MNIST files and checksums
# (required).
AC_DEFUN([DML_CHECK_ZLIB], [
  PKG_CHECK_MODULES([ZLIB], [zlib], [],
    [AC_MSG_ERROR([zlib not found: install it (Debian: zlib1g-dev) or set ZLIB_CFLAGS and ZLIB_LIBS])])
  dml_zlib_summary="yes (`$PKG_CONFIG --modversion zlib`)"
])
