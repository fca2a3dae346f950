/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_simd.h: DML_HOT marks the few elementwise loops that dominate a
 * component's own CPU time (the loader's byte-to-float conversion, batch
 * inference's bias and ReLU), so that they run as wide as the CPU allows.
 *
 * The project builds for the distribution's baseline (x86-64: SSE2), which
 * vectorises 4 floats at a time. DML_HOT compiles the function three times,
 * for x86-64-v4 (AVX-512), AVX2 and the baseline, and the dynamic loader
 * picks one for the CPU it runs on (GCC's target_clones, an ifunc): 16
 * floats at a time on the clusters' CPUs without giving up older ones.
 * fp-contract=off: no clone fuses a multiply and an add, so every clone
 * rounds alike and a model gets the same input bits on every CPU.
 * The libraries with such loops build with -fno-math-errno, so that sqrtf
 * may be the vector instruction (the same, exactly rounded value; no errno
 * for a negative argument, which nothing reads).
 *
 * Not installed; an internal header of the components.
 */
#ifndef DML_SIMD_H
#define DML_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define DML_HOT                                                                                    \
    __attribute__((optimize("O3", "fp-contract=off"),                                              \
                   target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define DML_HOT
#endif

#endif /* DML_SIMD_H */
