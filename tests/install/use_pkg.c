/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * use_pkg.c: a user's program built against the installed package with
 * nothing but `pkg-config --cflags --libs slurm-dml`: it includes every
 * public header (both spellings) and calls into every library, so a header
 * that needs a flag the .pc file lacks, or a library it leaves out, fails the
 * build or the run here rather than at a user's.
 */
#include <dml_ckpt.h>
#include <dml_crc.h>
#include <dml_infer.h>
#include <dml_io.h>
#include <dml_log.h>
#include <dml_mpi.h>
#include <dml_nn.h>
#include <dml_registry.h>
#include <dml_stats.h>
#include <dml_status.h>
#include <dml_topo.h>
#include <dml_train.h>
#include <slurm-dml/dml_train.h>

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "use_pkg: " __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                                   \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    const uint64_t shape[2] = {28, 28};
    static float x[28 * 28];
    float probs[10], sum = 0;
    dml_model_spec_t spec;
    dml_model_t *m = NULL;
    dml_registry_t *reg = NULL;
    dml_dataset_t *ds = NULL;
    dml_opt_config_t oc;
    dml_ckpt_config_t cc;
    dml_infer_merge_config_t mc;
    char text[256];
    int c;

    MPI_Init(&argc, &argv);
    CHECK(argc == 2, "usage: use_pkg DATASET");
    CHECK(dml_crc32(0, "123456789", 9) == 0xCBF43926u, "dml_crc32 is not zlib's CRC-32");
    CHECK(dml_mpi_agree(MPI_COMM_WORLD, DML_OK, NULL) == DML_OK, "dml_mpi_agree failed");
    CHECK(dml_dataset_open(argv[1], &ds) == DML_OK, "%s", dml_error_message());
    CHECK(dml_dataset_samples(ds) > 0, "%s: no samples", argv[1]);
    CHECK(dml_model_spec_parse("cnn-bn", &spec) == DML_OK, "%s", dml_error_message());
    CHECK(dml_model_spec_bind(&spec, 2, shape, 10) == DML_OK, "%s", dml_error_message());
    dml_model_spec_format(&spec, text, sizeof(text));
    CHECK(dml_model_create(&spec, 1, 4, &m) == DML_OK, "%s", dml_error_message());
    CHECK(dml_model_eval(m, x, NULL, 1, probs, NULL, NULL) == DML_OK, "%s", dml_error_message());
    for (c = 0; c < 10; c++)
        sum += probs[c];
    CHECK(fabsf(sum - 1) < 1e-5f, "the probabilities of one sample sum to %g", sum);
    dml_opt_config_init(&oc, DML_OPT_ADAMW);
    dml_ckpt_config_init(&cc);
    dml_infer_merge_config_init(&mc);
    CHECK(mc.drift_threshold > 0, "dml_infer_merge_config_init");
    CHECK(strcmp(dml_net_name(DML_NET_TCP), "tcp") == 0, "dml_net_name");
    CHECK(strcmp(dml_status_string(DML_ERR_CHECKSUM), "") != 0, "dml_status_string");
    /* a registry that is not there is named, not created */
    CHECK(dml_registry_open("/nonexistent/slurm-dml-registry", 0, &reg) == DML_ERR_NOT_FOUND,
          "dml_registry_open of a missing registry: %s", dml_error_message());
    printf("use_pkg: ok: %llu samples in %s; %s with %zu parameters\n",
           (unsigned long long)dml_dataset_samples(ds), argv[1], text, dml_model_nparams(m));
    dml_model_free(m);
    dml_dataset_close(ds);
    MPI_Finalize();
    return 0;
}
