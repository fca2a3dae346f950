/* SPDX-License-Identifier: BSD-3-Clause */
/* conv_bench without oneDNN (configure --without-dnnl): nothing to compare. */
#include <stdio.h>

int main(void)
{
    printf("conv_bench: built without oneDNN: the convolutions are im2col and BLAS\n");
    return 0;
}
