/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * topk.c: a sample's k most probable classes, in a total order (ties to the
 * lower class, NaN last) so that a prediction never depends on how the
 * classes' probabilities were computed beyond their values.
 */
#include "config.h"

#include "infer_private.h"

/* Whether probability a (of an earlier class where `earlier`) ranks above b:
 * greater, equal from an earlier class, or a number (or an earlier NaN)
 * against NaN. A total order: every class gets its own rank. */
static inline int dml__ranks_above(float a, float b, int earlier)
{
    return (a > b) | ((a == b) & earlier) | ((b != b) & ((a == a) | earlier));
}

void dml__topk(const float *p, int C, int k, int32_t *cls, float *prob)
{
    int i, j, n = 0, at;

    /* Insertion into the sorted top k, behind every kept class that ranks
     * above; once k are kept, most classes rank below the last and are
     * passed over with one comparison. */
    for (j = 0; j < C; j++) {
        if (n == k && !dml__ranks_above(p[j], prob[k - 1], 0))
            continue;
        for (at = n; at > 0 && !dml__ranks_above(prob[at - 1], p[j], 1); at--)
            ;
        if (n < k)
            n++;
        for (i = n - 1; i > at; i--) {
            cls[i] = cls[i - 1];
            prob[i] = prob[i - 1];
        }
        cls[at] = j;
        prob[at] = p[j];
    }
}
