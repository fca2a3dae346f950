# DML_CHECK_CUDA: the GPU path (CUDA runtime, cuBLAS, NCCL). --with-cuda[=DIR]
# defaults to "if found" under /usr/local/cuda: missing only warns, unless it was
# asked for. HAVE_CUDA guards the GPU sources. Linking needs no GPU; running does.
AC_DEFUN([DML_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@], [CUDA, cuBLAS and NCCL for the GPU path @<:@default: /usr/local/cuda if found@:>@])],
    [], [with_cuda=check])
  have_cuda=no
  dml_cuda_summary="no (--without-cuda)"
  AS_IF([test "x$with_cuda" != xno], [
    AS_CASE([$with_cuda], [yes|check], [dml_cuda_dir=/usr/local/cuda], [dml_cuda_dir=$with_cuda])
    CUDA_CFLAGS="-I$dml_cuda_dir/include"
    CUDA_LIBS="-L$dml_cuda_dir/lib64 -Wl,-rpath,$dml_cuda_dir/lib64 -lnccl -lcublas -lcudart"
    dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
    CFLAGS="$CFLAGS $CUDA_CFLAGS"; LIBS="$CUDA_LIBS $LIBS"
    AC_MSG_CHECKING([for CUDA runtime, cuBLAS and NCCL in $dml_cuda_dir])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <nccl.h>]], [[int n; cublasHandle_t h; ncclUniqueId id;
        cudaGetDeviceCount(&n); cublasCreate(&h); ncclGetUniqueId(&id);]])],
      [AC_MSG_RESULT([yes]); have_cuda=yes],
      [AC_MSG_RESULT([no])])
    CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
    AS_IF([test "x$have_cuda" = xyes],
      [AC_PATH_PROG([NVCC], [nvcc], [], [$dml_cuda_dir/bin:$PATH])
       AC_DEFINE([HAVE_CUDA], [1], [Define if CUDA, cuBLAS and NCCL are available])
       dml_cuda_summary="yes ($dml_cuda_dir)"],
      [test "x$with_cuda" = xcheck],
      [AC_MSG_WARN([CUDA/cuBLAS/NCCL not found in $dml_cuda_dir: building the CPU path only])
       CUDA_CFLAGS=; CUDA_LIBS=
       dml_cuda_summary="no (not found in $dml_cuda_dir)"],
      [AC_MSG_ERROR([--with-cuda given but CUDA runtime, cuBLAS or NCCL not found in $dml_cuda_dir])])
  ])
  AC_SUBST([CUDA_CFLAGS])
  AC_SUBST([CUDA_LIBS])
  AM_CONDITIONAL([HAVE_CUDA], [test "x$have_cuda" = xyes])
])
