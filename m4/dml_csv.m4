# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_CSV: libcsv reads the CSV files dml-data converts (RFC 4180:
# quoted fields with commas, quotes and line breaks in them, "" for a quote,
# CRLF line ends), so that the file's syntax is a library's business, not a
# hand-written splitter's (required). libcsv ships no pkg-config file:
# CSV_CFLAGS and CSV_LIBS name another installation.
AC_DEFUN([DML_CHECK_CSV], [
  AC_ARG_VAR([CSV_CFLAGS], [C compiler flags for libcsv])
  AC_ARG_VAR([CSV_LIBS], [linker flags for libcsv @<:@-lcsv@:>@])
  AS_IF([test -z "$CSV_LIBS"], [CSV_LIBS=-lcsv])
  dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
  CFLAGS="$CFLAGS $CSV_CFLAGS"; LIBS="$CSV_LIBS $LIBS"
  AC_MSG_CHECKING([for libcsv >= 3.0.3 (csv.h, CSV_EMPTY_IS_NULL)])
  AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <csv.h>
#ifndef CSV_EMPTY_IS_NULL
#error libcsv older than 3.0.3
#endif]], [[struct csv_parser p;
            if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL | CSV_EMPTY_IS_NULL) != 0)
                return 1;
            csv_free(&p);]])],
    [AC_MSG_RESULT([yes])],
    [AC_MSG_RESULT([no])
     AC_MSG_ERROR([libcsv (3.0.3 or later) not found: install it (Debian: libcsv-dev) or set CSV_CFLAGS and CSV_LIBS])])
  CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
  AC_SUBST([CSV_CFLAGS])
  AC_SUBST([CSV_LIBS])
  dml_csv_summary="yes ($CSV_LIBS)"
])
