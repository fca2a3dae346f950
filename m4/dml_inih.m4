# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_INIH: libinih reads dml-train's configuration file (INI format),
# so that the file's syntax is a standard one handled by a library (required).
AC_DEFUN([DML_CHECK_INIH], [
  PKG_CHECK_MODULES([INIH], [inih], [],
    [AC_MSG_ERROR([libinih not found: install it (Debian: libinih-dev) or set INIH_CFLAGS and INIH_LIBS])])
  dml_inih_summary="yes (`$PKG_CONFIG --modversion inih`)"
])
