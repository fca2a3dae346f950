/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_infer_unit.c: the two pieces of arithmetic batch inference rests on:
 * how an input is split into parts (every sample in exactly one part, in
 * order, parts of whole batches within one batch of each other), the population
 * stability index that flags drift, the top-k classes, and the drift histograms of byte inputs
 * (counted by thresholds, checked against a lookup of every byte).
 */
#include "config.h"

#include "dml_infer.h"
#include "infer_private.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static void test_slices_cover_input(void)
{
    static const uint64_t ns[] = {0, 1, 7, 10000, 60001, 1ULL << 40};
    static const uint32_t ts[] = {1, 2, 3, 4, 16, 1000};
    static const uint64_t bs[] = {1, 7, 256, 1024};
    size_t a, b, c;

    for (a = 0; a < sizeof(ns) / sizeof(ns[0]); a++)
        for (b = 0; b < sizeof(ts) / sizeof(ts[0]); b++)
            for (c = 0; c < sizeof(bs) / sizeof(bs[0]); c++) {
                const uint64_t B = bs[c], nb = (ns[a] + B - 1) / B;
                uint64_t next = 0, first, count, lo = UINT64_MAX, hi = 0;
                uint32_t t;
                for (t = 0; t < ts[b]; t++) {
                    dml_infer_slice(ns[a], B, ts[b], t, &first, &count);
                    CU_ASSERT_EQUAL(first, next); /* contiguous, in order */
                    /* whole batches: every part starts on a batch boundary
                     * and only the input's last batch is short, so every
                     * sample is computed in the same batch whatever the
                     * split */
                    CU_ASSERT_EQUAL(first % B, 0);
                    CU_ASSERT(first + count == ns[a] || count % B == 0);
                    next = first + count;
                    lo = count < lo ? count : lo;
                    hi = count > hi ? count : hi;
                }
                CU_ASSERT_EQUAL(next, ns[a]); /* every sample, once */
                /* even: parts within one batch of each other (the short
                 * last batch aside) */
                if (nb >= ts[b])
                    CU_ASSERT(hi - lo <= B);
            }
    /* 5000 samples in batches of 256 over 3 parts: 20 batches as 6, 7, 7 */
    {
        uint64_t first, count;
        dml_infer_slice(5000, 256, 3, 0, &first, &count);
        CU_ASSERT(first == 0 && count == 6 * 256);
        dml_infer_slice(5000, 256, 3, 1, &first, &count);
        CU_ASSERT(first == 6 * 256 && count == 7 * 256);
        dml_infer_slice(5000, 256, 3, 2, &first, &count);
        CU_ASSERT(first == 13 * 256 && count == 5000 - 13 * 256);
    }
}

static void test_psi(void)
{
    uint64_t e[4] = {100, 200, 300, 400}, same[4] = {10, 20, 30, 40},
             moved[4] = {400, 300, 200, 100};
    uint64_t empty[4] = {0, 0, 0, 0}, one[4] = {0, 0, 0, 50};
    double expect = 0;
    int i;

    /* the same shares: 0, whatever the counts */
    CU_ASSERT_DOUBLE_EQUAL(dml_psi(e, same, 4), 0.0, 1e-12);
    /* the textbook sum over bins of (q - p) ln(q / p) */
    for (i = 0; i < 4; i++) {
        double p = (double)e[i] / 1000, q = (double)moved[i] / 1000;
        expect += (q - p) * log(q / p);
    }
    CU_ASSERT_DOUBLE_EQUAL(dml_psi(e, moved, 4), expect, 1e-12);
    CU_ASSERT(dml_psi(e, moved, 4) > 0.1);
    /* symmetric */
    CU_ASSERT_DOUBLE_EQUAL(dml_psi(moved, e, 4), expect, 1e-12);
    /* empty bins are floored, not infinite; nothing counted: no drift */
    CU_ASSERT(isfinite(dml_psi(e, one, 4)));
    CU_ASSERT(dml_psi(e, one, 4) > 1.0);
    CU_ASSERT_DOUBLE_EQUAL(dml_psi(e, empty, 4), 0.0, 1e-12);
}

/* Most probable first, ties to the lower class (as the trainer's accuracy),
 * the whole row where k is C, and a NaN behind every number. */
static void test_topk(void)
{
    static const float p[6] = {0.1f, 0.3f, 0.05f, 0.3f, 0.2f, 0.05f};
    const float nan = NAN, q[4] = {0.2f, nan, 0.5f, 0.3f}, r[3] = {nan, 0.1f, nan};
    static const int32_t all[6] = {1, 3, 4, 0, 2, 5};
    int32_t cls[6];
    float prob[6];
    int i;

    dml__topk(p, 6, 1, cls, prob);
    CU_ASSERT_EQUAL(cls[0], 1);
    CU_ASSERT_EQUAL(prob[0], 0.3f);
    dml__topk(p, 6, 3, cls, prob);
    CU_ASSERT(cls[0] == 1 && cls[1] == 3 && cls[2] == 4);
    CU_ASSERT(prob[0] == 0.3f && prob[1] == 0.3f && prob[2] == 0.2f);
    dml__topk(p, 6, 6, cls, prob);
    for (i = 0; i < 6; i++) {
        CU_ASSERT_EQUAL(cls[i], all[i]);
        CU_ASSERT_EQUAL(prob[i], p[all[i]]);
    }
    dml__topk(q, 4, 4, cls, prob);
    CU_ASSERT(cls[0] == 2 && cls[1] == 3 && cls[2] == 0 && cls[3] == 1);
    CU_ASSERT(isnan(prob[3]));
    dml__topk(r, 3, 2, cls, prob);
    CU_ASSERT(cls[0] == 1 && cls[1] == 0);
}

/* dml__topk against a sort on (probability, descending, NaN last; then
 * class), on rows full of ties and NaNs, for every k. */
static const float *topk_row;
static int topk_cmp(const void *a, const void *b)
{
    const int i = *(const int *)a, j = *(const int *)b;
    const float x = topk_row[i], y = topk_row[j];

    if (isnan(x) != isnan(y))
        return isnan(x) ? 1 : -1;
    if (!isnan(x) && x != y)
        return x > y ? -1 : 1;
    return i - j;
}

static void test_topk_random(void)
{
    static const int Cs[] = {1, 2, 3, 10, 17, 100};
    float p[100], prob[100];
    int32_t cls[100];
    int idx[100], c, i, k, t, bad = 0;
    unsigned seed = 7;

    for (c = 0; c < (int)(sizeof(Cs) / sizeof(Cs[0])); c++) {
        const int C = Cs[c];
        for (t = 0; t < 200; t++) {
            for (i = 0; i < C; i++) {
                seed = seed * 1103515245u + 12345u;
                /* few distinct values: many ties; one in eight a NaN */
                p[i] = (seed >> 16) % 8 == 0 ? NAN : (float)((seed >> 20) % 5) * 0.25f;
                idx[i] = i;
            }
            topk_row = p;
            qsort(idx, (size_t)C, sizeof(int), topk_cmp);
            k = 1 + t % C;
            dml__topk(p, C, k, cls, prob);
            for (i = 0; i < k; i++)
                bad +=
                    cls[i] != idx[i] || (isnan(p[idx[i]]) ? !isnan(prob[i]) : prob[i] != p[idx[i]]);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
}

/* Feature widths around the 64-feature vectors (narrower, one, one more,
 * Fashion-MNIST's 784), ranges that cover all bytes, a few, none (hi == lo)
 * or lie above them, and more rows than a byte counter holds: every count
 * as a lookup of dml_stats_bin per byte gives it. */
static void test_drift_counts(void)
{
    static const uint64_t Fs[] = {1, 10, 63, 64, 65, 130, 784};
    const uint64_t H = DML_DATASET_HIST_BINS, nr = 700;
    size_t c;

    srand(7);
    for (c = 0; c < sizeof(Fs) / sizeof(Fs[0]); c++) {
        const uint64_t F = Fs[c];
        double *lo = malloc(F * sizeof(double)), *hi = malloc(F * sizeof(double));
        uint8_t *bin8 = malloc(F * 256), *rows = malloc(nr * F);
        const uint8_t **rp = malloc(nr * sizeof(*rp));
        uint64_t *want = calloc(F * H, sizeof(uint64_t)), *got = calloc(F * H, sizeof(uint64_t));
        dml_stats_t st = {0};
        dml__drift_t *d = NULL;
        uint64_t f, i, v, k, total = 0;

        CU_ASSERT_FATAL(lo && hi && bin8 && rows && rp && want && got);
        for (f = 0; f < F; f++) {
            switch (f % 5) {
            case 0:
                lo[f] = 0, hi[f] = 255;
                break;
            case 1:
                lo[f] = 0, hi[f] = 0;
                break; /* constant feature */
            case 2:
                lo[f] = 40, hi[f] = 47.5;
                break; /* a few values */
            case 3:
                lo[f] = 300, hi[f] = 400;
                break; /* above every byte */
            default:
                lo[f] = -20 + rand() % 60, hi[f] = lo[f] + 1 + rand() % 300;
            }
        }
        st.hist_lo = lo, st.hist_hi = hi;
        for (f = 0; f < F; f++)
            for (v = 0; v < 256; v++)
                bin8[f * 256 + v] = (uint8_t)dml_stats_bin(&st, f, (double)v);
        for (i = 0; i < nr * F; i++) /* half background zeros, as in images */
            rows[i] = rand() % 2 ? 0 : (uint8_t)(rand() % 256);
        CU_ASSERT_FATAL(dml__drift_create(bin8, F, &d) == DML_OK);
        /* two calls (and a fold between), the second longer than 255 rows */
        for (i = 0; i < nr; i++)
            rp[i] = rows + i * F;
        dml__drift_count(d, rp, 100);
        dml__drift_hist(d, got);
        dml__drift_count(d, rp + 100, nr - 100);
        dml__drift_hist(d, got);
        for (i = 0; i < nr; i++)
            for (f = 0; f < F; f++)
                want[f * H + bin8[f * 256 + rows[i * F + f]]]++;
        for (k = 0; k < F * H; k++) {
            CU_ASSERT_EQUAL(got[k], want[k]);
            total += got[k];
        }
        CU_ASSERT_EQUAL(total, nr * F);
        dml__drift_free(d);
        free(lo), free(hi), free(bin8), free(rows), free(rp), free(want), free(got);
    }
}

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("serve-batch", NULL, NULL);
    if (s == NULL || CU_add_test(s, "parts cover the input", test_slices_cover_input) == NULL ||
        CU_add_test(s, "population stability index", test_psi) == NULL ||
        CU_add_test(s, "top-k classes", test_topk) == NULL ||
        CU_add_test(s, "top-k against a sort, ties and NaNs", test_topk_random) == NULL ||
        CU_add_test(s, "drift histograms of byte inputs", test_drift_counts) == NULL) {
        CU_cleanup_registry();
        return 99;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
