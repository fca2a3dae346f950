/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * flop_peak: one core's measured float32 peak, the bound a trainer's share
 * is stated against: independent fused multiply-adds on the widest vectors
 * the CPU has (AVX-512, else AVX2 with FMA, else SSE multiply and add), 24
 * chains so that none waits on another, for about half a second. Prints
 * GFLOP/s (a multiply-add counts two) and the instruction set.
 */
#include "config.h"

#include <stdio.h>
#include <time.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include "dml_clock.h"
#endif

#define CHAINS 24

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static double run512(long iters)
{
    __m512 acc[CHAINS], a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    float out[16];
    int k;

    for (k = 0; k < CHAINS; k++)
        acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
        for (k = 0; k < CHAINS; k++)
            acc[k] = _mm512_fmadd_ps(acc[k], a, b);
        /* the compiler may not fold iterations together */
        __asm__ volatile("" : "+v"(a));
    }
    for (k = 1; k < CHAINS; k++)
        acc[0] = _mm512_add_ps(acc[0], acc[k]);
    _mm512_storeu_ps(out, acc[0]);
    return out[0];
}

__attribute__((target("avx2,fma"))) static double run256(long iters)
{
    __m256 acc[CHAINS], a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    float out[8];
    int k;

    for (k = 0; k < CHAINS; k++)
        acc[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
        for (k = 0; k < CHAINS; k++)
            acc[k] = _mm256_fmadd_ps(acc[k], a, b);
        __asm__ volatile("" : "+x"(a));
    }
    for (k = 1; k < CHAINS; k++)
        acc[0] = _mm256_add_ps(acc[0], acc[k]);
    _mm256_storeu_ps(out, acc[0]);
    return out[0];
}

static double run128(long iters)
{
    __m128 acc[CHAINS], a = _mm_set1_ps(0.999999f), b = _mm_set1_ps(1e-7f);
    float out[4];
    int k;

    for (k = 0; k < CHAINS; k++)
        acc[k] = _mm_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 24
        for (k = 0; k < CHAINS; k++)
            acc[k] = _mm_add_ps(_mm_mul_ps(acc[k], a), b);
        __asm__ volatile("" : "+x"(a));
    }
    for (k = 1; k < CHAINS; k++)
        acc[0] = _mm_add_ps(acc[0], acc[k]);
    _mm_storeu_ps(out, acc[0]);
    return out[0];
}
#endif

int main(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    const int w512 = __builtin_cpu_supports("avx512f"), w256 = __builtin_cpu_supports("fma");
    const int lanes = w512 ? 16 : w256 ? 8 : 4;
    const char *isa = w512 ? "AVX-512 FMA" : w256 ? "AVX2 FMA" : "SSE (multiply and add)";
    long iters = 1000000;
    double t, sink = 0, best = 0;

    for (;;) {
        double t0 = dml__now();
        sink += w512 ? run512(iters) : w256 ? run256(iters) : run128(iters);
        t = dml__now() - t0;
        if (t > 0.1)
            break;
        iters *= 4;
    }
    /* the best of five: the machine is shared */
    for (int r = 0; r < 5; r++) {
        double t0 = dml__now(), g;
        sink += w512 ? run512(iters) : w256 ? run256(iters) : run128(iters);
        t = dml__now() - t0;
        g = 2.0 * lanes * CHAINS * (double)iters / t / 1e9;
        best = g > best ? g : best;
    }
    printf("%.1f %s\n", best, isa);
    return sink == 12345.0; /* keep the work */
#else
    printf("0 unknown\n");
    return 0;
#endif
}
