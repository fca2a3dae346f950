# SPDX-License-Identifier: BSD-3-Clause
# DML_CHECK_CUDA: the GPU path (CUDA runtime, cuBLAS, cuDNN, NCCL and nvcc).
# --with-cuda[=DIR] defaults to "if found" under /usr/local/cuda: missing only
# warns, unless it was asked for. HAVE_CUDA guards the GPU sources. Building
# and linking need no GPU and no driver; running the GPU code does.
#
# DML_CUDA_ARCH (precious) is what nvcc builds the device code for: by
# default Hopper machine code (sm_90, the H100 and H200) plus compute_90 PTX,
# which the driver compiles for any later GPU. An older GPU (an A100 is
# sm_80) needs its own: DML_CUDA_ARCH="-gencode arch=compute_80,code=sm_80 ...".
AC_DEFUN([DML_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@], [CUDA, cuBLAS, cuDNN and NCCL for the GPU path @<:@default: /usr/local/cuda if found@:>@])],
    [], [with_cuda=check])
  AC_ARG_VAR([DML_CUDA_ARCH], [nvcc's -gencode options for the GPU code @<:@sm_90 and compute_90 PTX@:>@])
  AS_IF([test -z "$DML_CUDA_ARCH"],
    [DML_CUDA_ARCH="-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"])
  have_cuda=no
  dml_cuda_summary="no (--without-cuda)"
  dml_cuda_missing=
  AS_IF([test "x$with_cuda" != xno], [
    AS_CASE([$with_cuda], [yes|check], [dml_cuda_dir=/usr/local/cuda], [dml_cuda_dir=$with_cuda])
    CUDA_CFLAGS="-I$dml_cuda_dir/include"
    CUDA_LIBS="-L$dml_cuda_dir/lib64 -Wl,-rpath,$dml_cuda_dir/lib64 -lnccl -lcudnn -lcublas -lcudart"
    dml_save_CFLAGS=$CFLAGS; dml_save_LIBS=$LIBS
    CFLAGS="$CFLAGS $CUDA_CFLAGS"; LIBS="$CUDA_LIBS $LIBS"
    AC_MSG_CHECKING([for the CUDA runtime, cuBLAS, cuDNN and NCCL in $dml_cuda_dir])
    AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <cudnn.h>
#include <nccl.h>]], [[int n; cublasHandle_t h; cudnnHandle_t d; ncclUniqueId id;
        cudaGetDeviceCount(&n); cublasCreate(&h); cudnnCreate(&d); ncclGetUniqueId(&id);]])],
      [AC_MSG_RESULT([yes]); have_cuda=yes],
      [AC_MSG_RESULT([no]); dml_cuda_missing="the CUDA runtime, cuBLAS, cuDNN or NCCL"])
    CFLAGS=$dml_save_CFLAGS; LIBS=$dml_save_LIBS
    AS_IF([test "x$have_cuda" = xyes], [
      AC_PATH_PROG([NVCC], [nvcc], [], [$dml_cuda_dir/bin:$PATH])
      AS_IF([test -z "$NVCC"], [have_cuda=no; dml_cuda_missing="nvcc"])])
    AS_IF([test "x$have_cuda" = xyes], [
      # The arch list is tried once here: a typo in DML_CUDA_ARCH, or an
      # architecture this nvcc no longer builds, fails now, not mid-build.
      AC_MSG_CHECKING([whether $NVCC builds for $DML_CUDA_ARCH])
      echo '__global__ void dml_k(float *x) { x[[threadIdx.x]] += 1.0f; }' >conftest.cu
      AS_IF([$NVCC $DML_CUDA_ARCH -c conftest.cu -o conftest.$OBJEXT >&AS_MESSAGE_LOG_FD 2>&1],
        [AC_MSG_RESULT([yes])],
        [AC_MSG_RESULT([no]); have_cuda=no; dml_cuda_missing="nvcc building for $DML_CUDA_ARCH (see config.log)"])
      rm -f conftest.cu conftest.$OBJEXT])
    AS_IF([test "x$have_cuda" = xyes],
      [AC_DEFINE([HAVE_CUDA], [1], [Define if CUDA, cuBLAS, cuDNN, NCCL and nvcc are available])
       dml_cuda_summary="yes ($dml_cuda_dir, `$NVCC --version | sed -n 's/.*release \([[0-9.]]*\).*/nvcc \1/p'`; $DML_CUDA_ARCH)"],
      [test "x$with_cuda" = xcheck],
      [AC_MSG_WARN([$dml_cuda_missing not found in $dml_cuda_dir: building the CPU path only])
       CUDA_CFLAGS=; CUDA_LIBS=
       dml_cuda_summary="no ($dml_cuda_missing not found in $dml_cuda_dir)"],
      [AC_MSG_ERROR([--with-cuda given but $dml_cuda_missing not found in $dml_cuda_dir])])
  ])
  AC_SUBST([CUDA_CFLAGS])
  AC_SUBST([CUDA_LIBS])
  AC_SUBST([NVCC])
  AM_CONDITIONAL([HAVE_CUDA], [test "x$have_cuda" = xyes])
])
