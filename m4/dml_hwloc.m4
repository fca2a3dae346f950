# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_HWLOC: hwloc 2.x for the task-to-GPU/core/HCA mapping (required).
AC_DEFUN([DML_CHECK_HWLOC], [
  PKG_CHECK_MODULES([HWLOC], [hwloc >= 2.0], [],
    [AC_MSG_ERROR([hwloc >= 2.0 not found: install it (Debian: libhwloc-dev) or set HWLOC_CFLAGS and HWLOC_LIBS])])
  dml_hwloc_summary="yes (`$PKG_CONFIG --modversion hwloc`)"
])
