# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_JANSSON: jansson writes every JSON file the tools produce (the
# trainer's --metrics lines, the inference report), so that quoting,
# escaping and numbers are a library's business, not ours (required).
AC_DEFUN([DML_CHECK_JANSSON], [
  PKG_CHECK_MODULES([JANSSON], [jansson >= 2.10], [],
    [AC_MSG_ERROR([jansson not found: install it (Debian: libjansson-dev) or set JANSSON_CFLAGS and JANSSON_LIBS])])
  dml_jansson_summary="yes (`$PKG_CONFIG --modversion jansson`)"
])
