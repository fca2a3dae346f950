# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_ISAL: Intel ISA-L's CRC-32 (optional). Checkpoints, dataset shards,
# inference parts and model files all carry CRC-32s (zlib's polynomial);
# ISA-L computes the same values with carry-less multiplication, about 15x
# zlib's speed here (4 MiB: 0.13 ms against 2 ms). Without it, zlib computes
# them: files are the same either way.
AC_DEFUN([DML_CHECK_ISAL], [
  AC_ARG_WITH([isal],
    [AS_HELP_STRING([--with-isal],
      [fast CRC-32 with ISA-L (Debian: libisal-dev) @<:@default=check@:>@])],
    [], [with_isal=check])
  dml_isal_summary="no (zlib computes CRC-32)"
  AS_IF([test "x$with_isal" != xno],
    [PKG_CHECK_MODULES([ISAL], [libisal], [
       dml_save_CFLAGS=$CFLAGS
       CFLAGS="$CFLAGS $ISAL_CFLAGS"
       AC_CHECK_HEADER([isa-l/crc.h], [
         AC_DEFINE([HAVE_ISAL], [1], [Define to 1 to compute CRC-32 with ISA-L])
         dml_isal_summary="yes (`$PKG_CONFIG --modversion libisal`)"], [
         ISAL_CFLAGS= ISAL_LIBS=
         AS_IF([test "x$with_isal" = xyes], [AC_MSG_ERROR([ISA-L's isa-l/crc.h not found])])])
       CFLAGS=$dml_save_CFLAGS], [
       AS_IF([test "x$with_isal" = xyes],
         [AC_MSG_ERROR([ISA-L not found: install it (Debian: libisal-dev) or set ISAL_CFLAGS and ISAL_LIBS])])])])
])
