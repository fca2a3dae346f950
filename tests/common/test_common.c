/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_common.c: the status type and the tools' log prefix, which every
 * message a user reads goes through.
 */
#include "config.h"

#include "dml_crc.h"
#include "dml_log.h"
#include "dml_status.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Every status has its own non-empty message; the user tells causes apart. */
static void test_status_strings_distinct(void)
{
    int a, b;

    for (a = DML_OK; a > DML_ERR_LAST; a--) {
        const char *sa = dml_status_string((dml_status_t)a);
        CU_ASSERT_PTR_NOT_NULL_FATAL(sa);
        CU_ASSERT(strlen(sa) > 0);
        CU_ASSERT(strcmp(sa, "unknown status") != 0);
        for (b = a - 1; b > DML_ERR_LAST; b--)
            CU_ASSERT(strcmp(sa, dml_status_string((dml_status_t)b)) != 0);
    }
    CU_ASSERT_STRING_EQUAL(dml_status_string((dml_status_t)-999), "unknown status");
    CU_ASSERT_STRING_EQUAL(dml_status_string((dml_status_t)7), "unknown status");
}

static void test_status_from_errno(void)
{
    CU_ASSERT_EQUAL(dml_status_from_errno(0), DML_OK);
    CU_ASSERT_EQUAL(dml_status_from_errno(ENOENT), DML_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(dml_status_from_errno(EACCES), DML_ERR_PERMISSION);
    CU_ASSERT_EQUAL(dml_status_from_errno(ENOSPC), DML_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(dml_status_from_errno(EFBIG), DML_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(dml_status_from_errno(ENOMEM), DML_ERR_NO_MEMORY);
    CU_ASSERT_EQUAL(dml_status_from_errno(EEXIST), DML_ERR_EXISTS);
    CU_ASSERT_EQUAL(dml_status_from_errno(EIO), DML_ERR_IO);
}

/* The detail names the subject and the cause, and never overflows. */
static void test_error_detail(void)
{
    char big[3000];
    dml_status_t st;

    dml_error_clear();
    CU_ASSERT_EQUAL(dml_error_status(), DML_OK);
    CU_ASSERT_STRING_EQUAL(dml_error_message(), "");

    st = dml_error_set(DML_ERR_MISMATCH, "%s: dataset \"%s\" has %d columns, the model expects %d",
                       "/data/x/shard-3.h5", "x", 783, 784);
    CU_ASSERT_EQUAL(st, DML_ERR_MISMATCH);
    CU_ASSERT_EQUAL(dml_error_status(), DML_ERR_MISMATCH);
    CU_ASSERT_STRING_EQUAL(
        dml_error_message(),
        "/data/x/shard-3.h5: dataset \"x\" has 783 columns, the model expects 784");

    st = dml_error_set_errno(ENOSPC, "%s: write failed", "/ckpt/tmp.h5");
    CU_ASSERT_EQUAL(st, DML_ERR_NO_SPACE);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "/ckpt/tmp.h5: write failed: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), strerror(ENOSPC)));

    /* errno 0 on a failure path must not read as success. */
    CU_ASSERT_EQUAL(dml_error_set_errno(0, "x"), DML_ERR_IO);

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    dml_error_set(DML_ERR_FORMAT, "%s", big);
    CU_ASSERT_EQUAL(strlen(dml_error_message()), 1023);
    dml_error_set_errno(EIO, "%s", big);
    CU_ASSERT_EQUAL(strlen(dml_error_message()), 1023);

    /* A failure recorded without detail still says what kind it was. */
    dml_error_set(DML_ERR_CHECKSUM, "%s", "");
    CU_ASSERT_STRING_EQUAL(dml_error_message(), "checksum mismatch");

    /* The current detail, prefixed: read whole before it is replaced. */
    dml_error_set(DML_ERR_INVALID_ARG, "model \"%s\": needs at least an input and an output size",
                  "mlp:20");
    dml_error_set(DML_ERR_INVALID_ARG, "--model: %s", dml_error_message());
    CU_ASSERT_STRING_EQUAL(dml_error_message(), "--model: model \"mlp:20\": needs at least an "
                                                "input and an output size");
    dml_error_clear();
}

static void test_log_level_parse(void)
{
    dml_log_level_t l = DML_LOG_INFO;

    CU_ASSERT_EQUAL(dml_log_level_parse("debug", &l), 0);
    CU_ASSERT_EQUAL(l, DML_LOG_DEBUG);
    CU_ASSERT_EQUAL(dml_log_level_parse("ERROR", &l), 0);
    CU_ASSERT_EQUAL(l, DML_LOG_ERROR);
    CU_ASSERT_EQUAL(dml_log_level_parse("warning", &l), 0);
    CU_ASSERT_EQUAL(l, DML_LOG_WARN);
    CU_ASSERT_EQUAL(dml_log_level_parse("verbose", &l), -1);
    CU_ASSERT_EQUAL(l, DML_LOG_WARN);
    CU_ASSERT_EQUAL(dml_log_level_parse(NULL, &l), -1);
}

/* Reads back what the logger wrote to a temporary stream. */
static char *capture(FILE *f)
{
    static char buf[4096];
    size_t n;

    fflush(f);
    rewind(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    return buf;
}

/* The prefix shows program, rank and Slurm node; the level filter holds. */
static void test_log_prefix_and_level(void)
{
    FILE *f = tmpfile();
    char *out;

    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    dml_log_set_stream(f);

    setenv("SLURMD_NODENAME", "n2", 1);
    setenv("SLURM_PROCID", "3", 1);
    unsetenv("PMIX_RANK");
    unsetenv("OMPI_COMM_WORLD_RANK");
    unsetenv("PMI_RANK");
    setenv("DML_LOG_LEVEL", "warn", 1);
    CU_ASSERT_EQUAL(dml_log_init("/usr/bin/dml-train", -1), 0);
    dml_info("hidden %d", 1);
    dml_warn("shown %d", 2);
    dml_error("%s: broken", "/x.h5");
    out = capture(f);
    CU_ASSERT_PTR_NULL(strstr(out, "hidden"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "dml-train[3@n2]: warn: shown 2\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "dml-train[3@n2]: error: /x.h5: broken\n"));

    /* An unknown level is reported, naming the variable, and info is kept. */
    rewind(f);
    CU_ASSERT_EQUAL(ftruncate(fileno(f), 0), 0);
    setenv("DML_LOG_LEVEL", "loud", 1);
    unsetenv("SLURM_PROCID");
    CU_ASSERT_EQUAL(dml_log_init("dml-data", -1), -1);
    CU_ASSERT_EQUAL(dml_log_level, DML_LOG_INFO);
    dml_info("plain");
    out = capture(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "DML_LOG_LEVEL='loud'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "dml-data: plain\n"));

    /* The rank MPI reports replaces the environment's guess. */
    rewind(f);
    CU_ASSERT_EQUAL(ftruncate(fileno(f), 0), 0);
    dml_log_set_rank(5);
    dml_info("ranked");
    out = capture(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "dml-data[5@n2]: ranked\n"));

    dml_log_set_stream(NULL);
    fclose(f);
    unsetenv("DML_LOG_LEVEL");
    unsetenv("SLURMD_NODENAME");
}

/* dml_crc32 is zlib's CRC-32 whichever code computes it (ISA-L or zlib), so
 * that files written by one build verify in another: the same value for
 * every length (the folding code has 16-, 64- and 256-byte paths and tails)
 * and alignment, and pieces chain into the whole. */
static void test_crc32_is_zlibs(void)
{
    size_t n = 70000, len, off;
    unsigned char *b = malloc(n);
    uint32_t c;

    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    srand(7);
    for (len = 0; len < n; len++)
        b[len] = (unsigned char)rand();
    CU_ASSERT_EQUAL(dml_crc32(0, b, 0), 0);
    CU_ASSERT_EQUAL(dml_crc32(0x1234abcd, b, 0), 0x1234abcd);
    /* the standard check value of CRC-32 */
    CU_ASSERT_EQUAL(dml_crc32(0, "123456789", 9), 0xcbf43926);
    for (len = 1; len < 600; len++)
        for (off = 0; off < 4; off++)
            if (dml_crc32(0, b + off, len) != (uint32_t)crc32_z(0, b + off, len)) {
                CU_FAIL("dml_crc32 differs from zlib's crc32");
                off = 4, len = 600;
            }
    CU_ASSERT_EQUAL(dml_crc32(0, b, n), (uint32_t)crc32_z(0, b, n));
    c = dml_crc32(dml_crc32(dml_crc32(0, b, 1), b + 1, 4097), b + 4098, n - 4098);
    CU_ASSERT_EQUAL(c, (uint32_t)crc32_z(0, b, n));
    CU_ASSERT_EQUAL(dml_crc32((uint32_t)crc32_z(0, b, 333), b + 333, n - 333), c);
    free(b);
}

int main(int argc, char **argv)
{
    CU_pSuite s;
    unsigned int failures;

    if (CU_initialize_registry() != CUE_SUCCESS)
        return 99;
    s = CU_add_suite("common", NULL, NULL);
    if (s == NULL ||
        CU_add_test(s, "status strings are distinct", test_status_strings_distinct) == NULL ||
        CU_add_test(s, "errno conversion", test_status_from_errno) == NULL ||
        CU_add_test(s, "error detail", test_error_detail) == NULL ||
        CU_add_test(s, "log level parsing", test_log_level_parse) == NULL ||
        CU_add_test(s, "log prefix and level", test_log_prefix_and_level) == NULL ||
        CU_add_test(s, "CRC-32 is zlib's", test_crc32_is_zlibs) == NULL) {
        CU_cleanup_registry();
        return 99;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;
}
