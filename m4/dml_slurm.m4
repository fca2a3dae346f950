# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_SLURM: Slurm headers and libslurm for the SPANK plugin and the
# trainer's end-time query. --with-slurm[=DIR] (default: yes) and
# --without-slurm, which builds everything but the plugin. Asked for and missing
# is an error. The plugin is installed where Slurm looks for plugins: the
# directory holding Slurm's own auth_munge.so, unless --with-slurm-plugindir says.
AC_DEFUN([DML_CHECK_SLURM], [
  AC_ARG_WITH([slurm],
    [AS_HELP_STRING([--with-slurm@<:@=DIR@:>@], [build the SPANK plugin against Slurm in DIR @<:@default: yes@:>@])],
    [], [with_slurm=yes])
  AC_ARG_WITH([slurm-plugindir],
    [AS_HELP_STRING([--with-slurm-plugindir=DIR], [where to install the SPANK plugin @<:@Slurm's PluginDir@:>@])],
    [], [with_slurm_plugindir=])
  have_slurm=no
  dml_slurm_summary="no (--without-slurm)"
  AS_IF([test "x$with_slurm" != xno], [
    AS_IF([test "x$with_slurm" != xyes],
      [SLURM_CFLAGS="-I$with_slurm/include"; SLURM_LIBS="-L$with_slurm/lib -lslurm"; dml_slurm_prefix=$with_slurm],
      [test -z "$SLURM_CFLAGS$SLURM_LIBS"],
      [PKG_CHECK_MODULES([SLURM], [slurm], [], [SLURM_LIBS=-lslurm])
       dml_slurm_prefix=/usr])
    dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
    CFLAGS="$CFLAGS $SLURM_CFLAGS"; LIBS="$SLURM_LIBS $LIBS"
    AC_MSG_CHECKING([for slurm/spank.h and libslurm])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <slurm/spank.h>
#include <slurm/slurm.h>]], [[long v = slurm_api_version(); (void)v; (void)spank_context;]])],
      [AC_MSG_RESULT([yes]); have_slurm=yes],
      [AC_MSG_RESULT([no])
       AC_MSG_ERROR([Slurm headers or libslurm not found (Debian: libslurm-dev); use --with-slurm=DIR, or --without-slurm to build without the SPANK plugin])])
    CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
    AS_IF([test -z "$with_slurm_plugindir"], [
      for d in "$dml_slurm_prefix"/lib/*/slurm-wlm "$dml_slurm_prefix"/lib64/slurm "$dml_slurm_prefix"/lib/slurm "$dml_slurm_prefix"/lib/*/slurm; do
        AS_IF([test -e "$d/auth_munge.so" || test -e "$d/select_cons_tres.so"], [with_slurm_plugindir=$d; break])
      done
      AS_IF([test -z "$with_slurm_plugindir"], [with_slurm_plugindir='${libdir}/slurm'])])
    AC_DEFINE([HAVE_SLURM], [1], [Define if Slurm headers and libslurm are available])
    dml_slurm_summary="yes (plugin to $with_slurm_plugindir)"
  ])
  SLURM_PLUGINDIR=$with_slurm_plugindir
  AC_SUBST([SLURM_PLUGINDIR])
  AC_SUBST([SLURM_CFLAGS])
  AC_SUBST([SLURM_LIBS])
  AM_CONDITIONAL([HAVE_SLURM], [test "x$have_slurm" = xyes])
])
