/*
 * test_infer_unit.c: the two pieces of arithmetic batch inference rests on:
 * how an input is split into parts (every sample in exactly one part, in
 * order, parts within one sample of each other in size) and the population
 * stability index that flags drift.
 */
#include "config.h"

#include "dml_infer.h"

#include <CUnit/Basic.h>
#include <math.h>
#include <stdint.h>

static void test_slices_cover_input(void)
{
    static const uint64_t ns[] = {0, 1, 7, 10000, 60001, 1ULL << 40};
    static const uint32_t ts[] = {1, 2, 3, 4, 16, 1000};
    size_t a, b;

    for (a = 0; a < sizeof(ns) / sizeof(ns[0]); a++)
        for (b = 0; b < sizeof(ts) / sizeof(ts[0]); b++) {
            uint64_t next = 0, first, count, lo = UINT64_MAX, hi = 0;
            uint32_t t;
            for (t = 0; t < ts[b]; t++) {
                dml_infer_slice(ns[a], ts[b], t, &first, &count);
                CU_ASSERT_EQUAL(first, next); /* contiguous, in order */
                next = first + count;
                lo = count < lo ? count : lo;
                hi = count > hi ? count : hi;
            }
            CU_ASSERT_EQUAL(next, ns[a]); /* every sample, once */
            CU_ASSERT(hi - lo <= 1);
        }
}

static void test_psi(void)
{
    uint64_t e[4] = {100, 200, 300, 400}, same[4] = {10, 20, 30, 40}, moved[4] = {400, 300, 200, 100};
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

int main(void)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("serve-batch", NULL, NULL);
    if (s == NULL || CU_add_test(s, "parts cover the input", test_slices_cover_input) == NULL ||
        CU_add_test(s, "population stability index", test_psi) == NULL) {
        CU_cleanup_registry();
        return 99;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
