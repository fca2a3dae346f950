/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * test_device.c: choosing the device (dml_device_select), as dml-train and
 * dml-infer will for --device: the names refused with the value named; the
 * CPU always there; "auto" falling back to the CPU where no GPU is seen;
 * "cuda" refused where none is, saying why (a build without the GPU path,
 * no driver, no GPU visible) and what to do. Where this process sees a GPU,
 * the build's device code is run on it (dml_device_select's self-test:
 * the sm_90 code or the PTX loads and computes) and the GPU is described.
 *
 * With --need-gpu (test_gpu.sh) it exits 77, skipped, where no GPU is seen,
 * so that the GPU half is never reported as passed without a GPU.
 */
#include "config.h"

#include "dml_nn.h"

#include <CUnit/Basic.h>
#include "cunit_main.h"
#include <stdio.h>
#include <string.h>

static int g_gpus;

static void test_names(void)
{
    const char *bad[] = {"gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "", "cpu0"};
    dml_device_t d;
    size_t i;

    CU_ASSERT_EQUAL(dml_device_select("cpu", 0, &d), DML_OK);
    CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CPU);
    CU_ASSERT_EQUAL(dml_device_select(NULL, 3, &d), DML_OK);
    CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CPU);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char quoted[64];

        d.kind = DML_DEVICE_CUDA;
        CU_ASSERT_EQUAL(dml_device_select(bad[i], 0, &d), DML_ERR_INVALID_ARG);
        CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CPU);
        snprintf(quoted, sizeof(quoted), "'%s'", bad[i]);
        if (strstr(dml_error_message(), quoted) == NULL)
            printf("\n  %s: message does not name the value: %s\n", bad[i], dml_error_message());
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), quoted));
        /* the tools' check of --device agrees with the selection */
        CU_ASSERT_FALSE(dml_device_name_valid(bad[i]));
    }
    CU_ASSERT_TRUE(dml_device_name_valid("cpu"));
    CU_ASSERT_TRUE(dml_device_name_valid("cuda"));
    CU_ASSERT_TRUE(dml_device_name_valid("auto"));
    CU_ASSERT_TRUE(dml_device_name_valid("cuda:0"));
    CU_ASSERT_TRUE(dml_device_name_valid("cuda:1023"));
    CU_ASSERT_FALSE(dml_device_name_valid("cuda:1024"));
    CU_ASSERT_FALSE(dml_device_name_valid("cuda:99999999999999999999"));
}

static void test_no_gpu(void)
{
    dml_device_t d;
    char buf[256];

    if (g_gpus > 0)
        return; /* test_with_gpu's */
    CU_ASSERT_EQUAL(dml_device_select("auto", 0, &d), DML_OK);
    CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CPU);
    dml_device_format(&d, buf, sizeof(buf));
    CU_ASSERT_STRING_EQUAL(buf, "cpu");
    CU_ASSERT_EQUAL(dml_device_select("cuda", 0, &d), DML_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CPU);
    printf("\n  --device cuda here: %s\n", dml_error_message());
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "device 'cuda'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "--device cpu"));
    if (dml_nn_have_cuda()) {
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "no GPU is visible"));
        CU_ASSERT_EQUAL(dml_device_select("cuda:0", 0, &d), DML_ERR_UNSUPPORTED);
    } else {
        CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "built without the GPU path"));
        CU_ASSERT_EQUAL(dml_device_count(&g_gpus), DML_ERR_UNSUPPORTED);
        CU_ASSERT_EQUAL(g_gpus, 0);
    }
}

static void test_with_gpu(void)
{
    dml_device_t d;
    char buf[512], want[32];
    int r;

    if (g_gpus == 0)
        return;
    /* Every rank of a node its own GPU while there are enough, then round
     * again (ranks sharing a GPU). */
    for (r = 0; r < 2 * g_gpus; r++) {
        CU_ASSERT_EQUAL_FATAL(dml_device_select("cuda", r, &d), DML_OK);
        CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CUDA);
        CU_ASSERT_EQUAL(d.index, r % g_gpus);
    }
    CU_ASSERT_EQUAL(dml_device_select("auto", 0, &d), DML_OK);
    CU_ASSERT_EQUAL(d.kind, DML_DEVICE_CUDA);
    CU_ASSERT(d.memory > 0);
    CU_ASSERT(d.cc_major >= 1);
    dml_device_format(&d, buf, sizeof(buf));
    printf("\n  --device auto: %s\n", buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, d.name));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "sm_"));
    snprintf(want, sizeof(want), "cuda:%d", g_gpus - 1);
    CU_ASSERT_EQUAL(dml_device_select(want, 0, &d), DML_OK);
    CU_ASSERT_EQUAL(d.index, g_gpus - 1);
    snprintf(want, sizeof(want), "cuda:%d", g_gpus);
    CU_ASSERT_EQUAL(dml_device_select(want, 0, &d), DML_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(dml_error_message(), "sees"));
}

int main(int argc, char **argv)
{
    int need_gpu = argc > 1 && strcmp(argv[1], "--need-gpu") == 0;
    unsigned failures;
    CU_pSuite s;

    if (dml_nn_have_cuda() && dml_device_count(&g_gpus) != DML_OK) {
        fprintf(stderr, "test_device: %s\n", dml_error_message());
        return 1;
    }
    if (need_gpu && g_gpus == 0) {
        printf("SKIP: no GPU visible to this process (%s)\n",
               dml_nn_have_cuda() ? "built with the GPU path" : "built without the GPU path");
        return 77;
    }
    printf("GPUs seen: %d (GPU path %s)\n", g_gpus, dml_nn_have_cuda() ? "built" : "not built");
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    s = CU_add_suite("device", NULL, NULL);
    CU_add_test(s, "device names; the CPU", test_names);
    CU_add_test(s, "no GPU: auto is the CPU, cuda refused with the reason", test_no_gpu);
    CU_add_test(s, "a GPU: chosen per local rank, its code runs, described", test_with_gpu);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    failures = dml_test_run(argc, argv);
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
