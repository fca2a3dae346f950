/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ckpt_env.h: for the tools (and the tests and benchmarks that drive the
 * library directly), the environment's overrides of how checkpoints are
 * written; the library reads none itself. Not installed.
 *
 *   DML_CKPT_SINGLE_MAX  bytes of state up to which rank 0 writes alone
 *   DML_CKPT_PIECE       bytes per piece of large arrays' POSIX writes (0: one)
 *   DML_CKPT_REUSE       0: no spare checkpoint is kept to write the next into
 *
 * A value that is not a whole number is ignored (the default stays).
 */
#ifndef DML_CKPT_ENV_H
#define DML_CKPT_ENV_H

#include "dml_ckpt.h"

#include <stdlib.h>

static inline void dml_ckpt_config_env(dml_ckpt_config_t *c)
{
    static const char *const names[3] = {"DML_CKPT_SINGLE_MAX", "DML_CKPT_PIECE", "DML_CKPT_REUSE"};
    int i;

    for (i = 0; i < 3; i++) {
        const char *e = getenv(names[i]);
        char *end;
        unsigned long long v;
        if (e == NULL || *e == '\0')
            continue;
        v = strtoull(e, &end, 10);
        if (*end != '\0')
            continue;
        if (i == 0)
            c->single_max = (uint64_t)v;
        else if (i == 1)
            c->piece = (uint64_t)v;
        else
            c->reuse = v != 0;
    }
}

#endif /* DML_CKPT_ENV_H */
