/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dml_clock.h: the monotonic clock in seconds, for the step, phase and
 * progress timings every component takes (internal: not installed). Inline,
 * so that each library keeps it private without exporting a symbol.
 */
#ifndef DML_CLOCK_H
#define DML_CLOCK_H

#include <time.h>

static inline double dml__now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
