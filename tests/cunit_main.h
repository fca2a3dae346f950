/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * cunit_main.h: how every CUnit test program runs its cases, so that one
 * case can be run by name, as libuv's runner allows (docs/testing.md):
 *
 *   tests/common/test_common                    every case
 *   tests/common/test_common 'error detail'     the cases of that name
 *   tests/common/test_common common             a whole suite
 *   tests/common/test_common 'common/error detail'
 *   tests/common/test_common --list             the names
 *
 * and through make: make check TESTS=common/test_common DML_TEST_CASE='error detail'.
 * A name that matches no case is a failure that lists the names, so that a
 * typo never passes as zero tests run.
 */
#ifndef DML_CUNIT_MAIN_H
#define DML_CUNIT_MAIN_H

#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dml__test_matches(const char *want, const char *suite, const char *test)
{
    size_t n = strlen(suite);

    return strcmp(want, test) == 0 || strcmp(want, suite) == 0 ||
           (strncmp(want, suite, n) == 0 && want[n] == '/' && strcmp(want + n + 1, test) == 0);
}

static void dml__test_list(FILE *out)
{
    CU_pSuite s;
    CU_pTest t;

    for (s = CU_get_registry()->pSuite; s != NULL; s = s->pNext)
        for (t = s->pTest; t != NULL; t = t->pNext)
            fprintf(out, "  %s/%s\n", s->pName, t->pName);
}

/* Runs the registered cases (all, or those argv[1] or DML_TEST_CASE names)
 * and returns how many failed; the caller cleans the registry up. */
static unsigned dml_test_run(int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : getenv("DML_TEST_CASE");
    unsigned failures = 0, ran = 0;
    CU_pSuite s;
    CU_pTest t;

    CU_basic_set_mode(CU_BRM_VERBOSE);
    if (want != NULL && strcmp(want, "--list") == 0) {
        dml__test_list(stdout);
        return 0;
    }
    if (want == NULL || want[0] == '\0') {
        CU_basic_run_tests();
        return CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    }
    for (s = CU_get_registry()->pSuite; s != NULL; s = s->pNext)
        for (t = s->pTest; t != NULL; t = t->pNext)
            if (dml__test_matches(want, s->pName, t->pName)) {
                CU_basic_run_test(s, t);
                failures += CU_get_number_of_failures() + CU_get_number_of_tests_failed();
                ran++;
            }
    if (ran == 0) {
        fprintf(stderr, "%s: no test case is named '%s' (SUITE, CASE or SUITE/CASE); the cases:\n",
                argv[0], want);
        dml__test_list(stderr);
        return 1;
    }
    return failures;
}

#endif
